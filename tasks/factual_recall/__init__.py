"""Factual recall: landmark -> city. See README.md."""

from harness.taskdefs.factual_recall.generator import FactualRecallTask

__all__ = ["FactualRecallTask"]
