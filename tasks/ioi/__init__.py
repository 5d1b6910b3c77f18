"""IOI: indirect object identification (Wang et al. 2022). See README.md."""

from harness.taskdefs.ioi.generator import IOITask

__all__ = ["IOITask"]
