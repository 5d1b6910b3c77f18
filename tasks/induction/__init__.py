"""Induction: continue a repeated random sequence. See README.md."""

from harness.taskdefs.induction.generator import InductionTask

__all__ = ["InductionTask"]
