"""Progress bars on stderr: one per stage of a job (ground truth, method, diagnostics, circuits).

The ``progress`` setting: ``auto`` (or ``null``, the default) shows bars when stderr is a
terminal and the ``CI`` environment variable is unset or empty; ``true`` and ``false`` force
them on or off. A stage's bar counts batched passes: every chunk loop of the engine iterates
its passes through :meth:`Progress.passes`, which adds their number to the bar's total when the
loop starts (so the total grows as a stage's later loops start) and advances it after each
pass; tqdm's estimate of the time left is taken over the passes planned so far. Bars write to
stderr only; under ``-m`` each one names its job (``job i/n``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm

from harness.errors import HarnessError
from harness.registry import unknown_choice

T = TypeVar("T")

SETTINGS = ("auto", "null", "true", "false")
"""The accepted ``progress`` values, as written on the command line."""

DEFAULT_SIZE = (79, 23)
"""(columns, rows) for bars on a terminal that reports no size (a pseudo-terminal nobody
sized): an 80 x 24 terminal, less tqdm's margin of one."""


def check_progress(value: Any) -> bool | None:
    """The ``progress`` setting as True (on), False (off) or None (auto); any other value is a
    one-line :class:`HarnessError` naming the accepted ones."""
    if value is None or value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise HarnessError(unknown_choice("progress", value, list(SETTINGS)))


def progress_enabled(setting: bool | None, stream: Any = None) -> bool:
    """Whether bars are shown: ``setting`` when it is True or False; for None (auto), when
    ``stream`` (default stderr) is a terminal and the ``CI`` environment variable is unset or
    empty."""
    if setting is not None:
        return setting
    stream = sys.stderr if stream is None else stream
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        terminal = False
    return terminal and not os.environ.get("CI")


def _screen(stream: Any) -> tuple[int | None, int | None]:
    """(columns, rows) for tqdm's ``ncols`` and ``nrows`` on the terminal ``stream`` writes
    to: tqdm's own choice (None, None) when it is not a terminal; a terminal that reports 0 x 0
    (a pseudo-terminal nobody sized) gets :data:`DEFAULT_SIZE`, where tqdm would hide every bar
    (it takes -1 columns and rows from it)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return None, None
    columns = size.columns - 1 if size.columns > 1 else DEFAULT_SIZE[0]
    rows = size.lines - 1 if size.lines > 1 else DEFAULT_SIZE[1]
    return columns, rows


class Progress:
    """The progress bars of one job: :meth:`stage` opens a stage's bar, :meth:`passes` counts
    a chunk loop's passes on it. Disabled (``enabled`` False), or outside a stage, both only
    pass their work through. ``prefix`` starts every bar's label (``job 2/6``)."""

    def __init__(self, enabled: bool = False, prefix: str = "") -> None:
        self.enabled = enabled
        self.prefix = prefix
        self._name: str | None = None
        self._bar: tqdm | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """The stage ``name``: its bar opens at its first pass (a stage that runs no pass,
        e.g. read from the cache, shows none) and stays on screen, at its last count, when
        the stage ends (or fails)."""
        self._name = name if self.enabled else None
        try:
            yield
        finally:
            bar, self._bar, self._name = self._bar, None, None
            if bar is not None:
                bar.close()

    def passes(self, items: Iterable[T], what: str) -> Iterator[T]:
        """``items``, one batched pass each, of the loop ``what`` (shown after the bar): their
        number joins the stage bar's total, and the bar advances when the caller asks for the
        next item (the pass before it is done)."""
        if self._name is None:
            yield from items
            return
        items = list(items)
        if not items:
            return
        bar = self._plan(len(items))
        bar.set_postfix_str(what, refresh=False)
        done = 0
        try:
            for item in items:
                yield item
                done += 1
                bar.update(1)
        finally:
            if done < len(items) and bar is self._bar:  # stopped early: passes that never ran
                bar.total -= len(items) - done
                bar.refresh()

    def _plan(self, count: int) -> tqdm:
        """The open stage's bar (opened now if it is not yet), ``count`` passes added."""
        if self._bar is None:
            label = f"[{self.prefix}] {self._name}" if self.prefix else self._name
            columns, rows = _screen(sys.stderr)
            self._bar = tqdm(
                total=count,
                desc=label,
                unit="pass",
                file=sys.stderr,
                ncols=columns,
                nrows=rows,
                leave=True,
            )
        elif count:
            self._bar.total += count
            self._bar.refresh()
        return self._bar
