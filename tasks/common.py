"""Helpers shared by the standard task generators (vocabulary filters, sampling, options)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from harness.config import POSITIVE_INT
from harness.errors import HarnessError
from harness.registry import unknown_choice
from harness.tasks import DEFAULT_N
from harness.types import PromptPair

MAX_TRIES = 200
"""Resampling attempts per pair before a task gives up on a tokenizer."""


def count(n: int | None) -> int:
    """``n`` checked (None -> :data:`DEFAULT_N`)."""
    if n is None:
        return DEFAULT_N
    if not POSITIVE_INT.accepts(n):
        raise HarnessError(f"number of prompt pairs must be a positive integer, got {n!r}")
    return n


def choice(option: str, value: object, accepted: Iterable[str]) -> str:
    """``value`` if it is one of ``accepted``, else a one-line error naming the option."""
    accepted = list(accepted)
    if value not in accepted:
        raise HarnessError(unknown_choice(option, value, accepted))
    return str(value)


def n_tokens(tokenizer: Any, text: str) -> int:
    """Token count of ``text`` without special tokens."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def single_token_words(tokenizer: Any, words: Iterable[str], space: bool = True) -> list[str]:
    """The words that are one token (with a leading space when ``space``), order kept."""
    prefix = " " if space else ""
    return [w for w in words if n_tokens(tokenizer, prefix + w) == 1]


def need(words: list[str], k: int, what: str, tokenizer: Any) -> list[str]:
    """``words`` if it has at least ``k`` entries, else an error naming the tokenizer."""
    if len(words) < k:
        raise HarnessError(
            f"only {len(words)} {what} are single tokens for tokenizer "
            f"{type(tokenizer).__name__} (need {k})"
        )
    return words


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids ``tokenizer(text)`` puts before the text's own tokens (e.g. ``[bos]``; often [])."""
    full = list(tokenizer("hello")["input_ids"])
    bare = list(tokenizer("hello", add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start]
    return []


def same_length(tokenizer: Any, clean: str, corrupt: str) -> bool:
    """Whether two text prompts tokenize (with the tokenizer's defaults) to the same length."""
    return len(tokenizer(clean)["input_ids"]) == len(tokenizer(corrupt)["input_ids"])


def sample_pairs(
    n: int,
    seed: int,
    make_one: Callable[[random.Random], PromptPair],
    accept: Callable[[PromptPair], bool] | None = None,
    what: str = "task",
) -> list[PromptPair]:
    """``n`` pairs from ``make_one(rng)`` with one ``random.Random(seed)``.

    Pairs are made one after another, so the first ``k`` pairs for ``n >= k`` are the same.
    A pair ``accept`` rejects (e.g. clean and corrupt differ in token length for a natural
    tokenizer) is drawn again, up to :data:`MAX_TRIES` times.
    """
    rng = random.Random(seed)
    pairs: list[PromptPair] = []
    for i in range(n):
        for _ in range(MAX_TRIES):
            pair = make_one(rng)
            if accept is None or accept(pair):
                break
        else:
            raise HarnessError(
                f"{what}: no valid prompt pair after {MAX_TRIES} tries "
                "(clean and corrupt keep tokenizing to different lengths)"
            )
        pairs.append(
            PromptPair(pair.clean, pair.corrupt, pair.answers, pair.wrongs, f"{what}[{i}]")
        )
    return pairs


def fill(template: str, slots: dict[str, str]) -> str:
    """Replace ``[KEY]`` placeholders; ``slots`` maps a key to its text."""
    for key, value in slots.items():
        template = template.replace(f"[{key}]", value)
    return template
