"""The one exception type the CLI turns into a one-line message (no traceback)."""

from __future__ import annotations


class HarnessError(Exception):
    """A user-facing error: bad input, a missing file, an unknown choice.

    The message is one line that names the bad value and what is accepted. The CLI prints it to
    stderr and exits non-zero without a traceback (unless ``HYDRA_FULL_ERROR=1``).
    """


class NumericalError(HarnessError):
    """A NaN or infinite metric, estimate or gradient; names the method and component."""
