"""The user's own prompt pairs from a JSONL file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.config import POSITIVE_INT
from harness.errors import HarnessError
from harness.tasks import Task
from harness.types import PromptPair

FIELDS: tuple[str, ...] = ("clean", "corrupt", "answer", "wrong")


class _DuplicateKey(ValueError):
    """A JSON object names one key twice (``json`` would silently keep the last)."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses a repeated key."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def read_pairs(path: str | Path) -> list[PromptPair]:
    """Every pair in a JSONL file: one object per line with string fields ``clean``,
    ``corrupt``, ``answer``, ``wrong``; blank lines are skipped. Each pair's ``source`` is
    ``<path>:<line>``; every problem is a one-line :class:`HarnessError` naming file and line."""
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise HarnessError(
            f"prompts file {name!r} not found" + (" (a directory)" if p.is_dir() else "")
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise HarnessError(f"{name}: cannot read: {err}") from err
    pairs: list[PromptPair] = []
    # JSONL lines end at "\n" only (str.splitlines would also split at U+2028 and other
    # characters that may appear unescaped inside a JSON string)
    for lineno, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        src = f"{name}:{lineno}"
        try:
            obj = json.loads(line, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as err:
            raise HarnessError(f"{src}: bad JSON: {err.msg} (column {err.colno})") from err
        except _DuplicateKey as err:
            raise HarnessError(
                f"{src}: duplicate key {err.args[0]!r} in one JSON object (each field once)"
            ) from None
        if not isinstance(obj, dict):
            raise HarnessError(f"{src}: expected a JSON object, got {type(obj).__name__}")
        for key in FIELDS:
            if key not in obj:
                raise HarnessError(f"{src}: missing field {key!r} (needs {', '.join(FIELDS)})")
            if not isinstance(obj[key], str):
                raise HarnessError(
                    f"{src}: field {key!r} must be a string, got {type(obj[key]).__name__}"
                )
        pairs.append(
            PromptPair(obj["clean"], obj["corrupt"], (obj["answer"],), (obj["wrong"],), src)
        )
    if not pairs:
        raise HarnessError(f"{name}: empty file (no prompt pairs)")
    return pairs


class PromptsTask(Task):
    """The user's own prompt pairs (JSONL; ``path`` option).

    Each line: ``{"clean": ..., "corrupt": ..., "answer": ..., "wrong": ...}``. Clean and corrupt
    must tokenize to the same length and answers to one token (checked by
    :func:`harness.tasks.tokenize_pairs`, errors name ``file:line``). ``n=None`` gives every
    pair, ``n`` the first ``n``; the seed is not used. Metric: logit difference
    logit(answer) - logit(wrong) at the last position.
    """

    @dataclass(frozen=True)
    class Options:
        path: str | None = None  # required: the JSONL file
        prepend_bos: bool = False

    def validate(self) -> None:
        path = self.options.path
        if path is None or (isinstance(path, str) and not path.strip()):
            raise HarnessError("task prompts needs option 'path' (a JSONL file of prompt pairs)")
        if not isinstance(path, (str, Path)):
            raise HarnessError(f"task prompts: path must be a string, got {type(path).__name__}")

    @property
    def path(self) -> str:
        return str(self.options.path)

    def input_files(self) -> list[Path]:
        return [Path(self.path)]

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        pairs = read_pairs(self.path)
        if n is None:
            return pairs
        if not POSITIVE_INT.accepts(n):
            raise HarnessError(f"number of prompt pairs must be a positive integer, got {n!r}")
        if n > len(pairs):
            raise HarnessError(
                f"n_prompts={n} but prompts file {self.path!r} has only {len(pairs)} pairs; "
                f"accepted: 1 to {len(pairs)}, or null for all"
            )
        return pairs[:n]
