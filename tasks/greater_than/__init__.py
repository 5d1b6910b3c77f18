"""Greater-Than: which years can end a span (Hanna et al. 2023). See README.md."""

from harness.taskdefs.greater_than.generator import GreaterThanTask

__all__ = ["GreaterThanTask"]
