"""Greater-Than prompt pairs (Hanna et al. 2023)."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from harness.taskdefs import toy_vocab
from harness.taskdefs.common import choice, count, fill, n_tokens, same_length, sample_pairs
from harness.taskdefs.greater_than.data import NOUNS, TEMPLATES

from harness.config import Range
from harness.errors import HarnessError
from harness.tasks import Task, resolve_vocab
from harness.types import PromptPair

CORRUPT_YY = 1
"""Corruption: the start year's last two digits become 01 (1732 -> 1701)."""


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def valid_years(tokenizer: Any, centuries: list[int]) -> list[tuple[int, int]]:
    """(XX, YY) with YY in 2..98 where " XXYY" tokenizes as [" XX", "YY"] and " XX01" as
    [" XX", "01"] (Hanna et al.'s filter)."""
    out: list[tuple[int, int]] = []
    for xx in centuries:
        head = _ids(tokenizer, f" {xx}")
        if len(head) != 1:
            continue
        low = _ids(tokenizer, f"{CORRUPT_YY:02d}")
        if _ids(tokenizer, f" {xx}{CORRUPT_YY:02d}") != head + low or len(low) != 1:
            continue
        for yy in range(2, 99):
            tail = _ids(tokenizer, f"{yy:02d}")
            if len(tail) == 1 and _ids(tokenizer, f" {xx}{yy:02d}") == head + tail:
                out.append((xx, yy))
    return out


class GreaterThanTask(Task):
    """Greater-Than (Hanna et al. 2023, arXiv:2305.00586).

    Clean: "The war lasted from the year 1732 to the year 17" (``form: canonical``, EAP-IG) or
    "... from the year 1732 to 17" (``form: acdc``, ACDC/auto-circuit); corrupt: the start year's
    last two digits become 01 ("1701"). Answers: every two-digit token greater than YY; wrong
    answers: every two-digit token <= YY. Metric: the answer-set minus wrong-set average logit
    (or the probability difference of Hanna et al.) at the last position. Toy: the digits are
    separate words ("17 32"), two-digit tokens "00".."99" are words of the toy vocabulary.
    """

    slug: ClassVar[str] = "greater_than"

    def __init__(
        self,
        vocab: str = "auto",
        form: str = "canonical",
        centuries: list[int] | tuple[int, ...] = (11, 12, 13, 14, 15, 16, 17),
        prepend_bos: bool = False,
    ) -> None:
        self.vocab = vocab
        self.form = choice("greater_than form", form, TEMPLATES)
        cents = list(centuries)
        if not cents:
            raise HarnessError("greater_than centuries is empty; accepted: integers from 10 to 99")
        for i, century in enumerate(cents):  # the config schema's one range validator
            Range(lo=10, hi=99, integer=True).check(f"task.centuries[{i}]", century)
        self.centuries = cents
        self.prepend_bos = bool(prepend_bos)

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        n = count(n)
        if resolve_vocab(self.vocab, tokenizer) == "toy":
            template = toy_vocab.GREATER_THAN_TEMPLATES[self.form]
            nouns: list[str] = list(toy_vocab.YEAR_NOUNS)
            years = [(xx, yy) for xx in self.centuries for yy in range(2, 99)]
            digits = list(toy_vocab.DIGITS)
            accept = None
        else:
            template = TEMPLATES[self.form]
            nouns = list(NOUNS)
            years = valid_years(tokenizer, self.centuries)
            if not years:
                raise HarnessError(
                    f"greater_than: no year ' XXYY' tokenizes as [' XX', 'YY'] with tokenizer "
                    f"{type(tokenizer).__name__} (it splits digits differently)"
                )
            digits = [f"{i:02d}" for i in range(100) if n_tokens(tokenizer, f"{i:02d}") == 1]

            def accept(pair: PromptPair) -> bool:
                return bool(pair.answers and pair.wrongs) and same_length(
                    tokenizer, str(pair.clean), str(pair.corrupt)
                )

        def make_one(rng: random.Random) -> PromptPair:
            noun = rng.choice(nouns)
            xx, yy = rng.choice(years)
            clean = fill(template, {"NOUN": noun, "XX": str(xx), "YY": f"{yy:02d}"})
            corrupt = fill(template, {"NOUN": noun, "XX": str(xx), "YY": f"{CORRUPT_YY:02d}"})
            answers = tuple(d for d in digits if int(d) > yy)
            wrongs = tuple(d for d in digits if int(d) <= yy)
            return PromptPair(clean, corrupt, answers, wrongs)

        return sample_pairs(n, seed, make_one, accept, what="greater_than")
