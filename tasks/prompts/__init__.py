"""The user's own prompt pairs from a JSONL file. See README.md."""

from harness.taskdefs.prompts.loader import PromptsTask, read_pairs

__all__ = ["PromptsTask", "read_pairs"]
