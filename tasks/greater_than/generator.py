"""Greater-Than prompt pairs (Hanna et al. 2023)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.taskdefs.greater_than.data import (
    NOUNS,
    TEMPLATES,
    TOY_DIGITS,
    TOY_NOUNS,
    TOY_TEMPLATES,
)

from harness.config import Range, bounded, one_of
from harness.errors import HarnessError
from harness.tasks import (
    Task,
    count,
    fill,
    n_tokens,
    resolve_vocab,
    same_length,
    sample_pairs,
    special_prefix,
)
from harness.types import PromptPair

CORRUPT_YY = 1
"""Corruption: the start year's last two digits become 01 (1732 -> 1701)."""

YEAR_TOKENS = ("auto", "two_digit", "next_token")
"""``two_digit``: Hanna et al.'s form (the prompt ends in " XX", answers are the tokens "00".."99";
needs a tokenizer with two-digit tokens, e.g. GPT-2); ``next_token``: the prompt ends where the
end years' tokenizations part, answers are the tokens that come next (any tokenizer, e.g. one
that splits digits one by one); ``auto``: ``two_digit`` when the tokenizer allows it."""


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def next_token_sets(
    tokenizer: Any, text_before_end_year: str, start_year: int, century: int
) -> tuple[list[int], list[int], list[int]]:
    """Prompt ids and the answer / wrong-answer token sets of the ``next_token`` form.

    The end year E runs over the century (``century`` * 100 + 0..99). Each full text
    ``text_before_end_year + str(E)`` is tokenized (the tokenizer's own prefix, e.g. BOS, then the
    text without special tokens); the prompt is the longest token prefix all of them share, and
    E's *next token* is the token that follows it. A next token is an answer when every E it
    starts is later than ``start_year``, a wrong answer when every E it starts is not, and left
    out when it starts both (e.g. the digit "3" after "17" for start year 1732). Returns
    (prompt ids, answer ids, wrong ids); the sets are empty when the tokenizer gives no such
    split.
    """
    prefix = special_prefix(tokenizer)
    years = [century * 100 + yy for yy in range(100)]
    texts = [text_before_end_year + str(e) for e in years]
    rows = [prefix + list(r) for r in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    shared = 0
    while all(len(r) > shared + 1 for r in rows) and len({r[shared] for r in rows}) == 1:
        shared += 1
    later: dict[int, set[bool]] = {}
    for e, r in zip(years, rows, strict=True):
        later.setdefault(r[shared], set()).add(e > start_year)
    answers = sorted(t for t, kinds in later.items() if kinds == {True})
    wrongs = sorted(t for t, kinds in later.items() if kinds == {False})
    return rows[0][:shared], answers, wrongs


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
    Tokenizers without two-digit year tokens (digit by digit, or Llama-3's chunks of three) use
    ``year_tokens: next_token``: answers are the next tokens after the end years' shared token
    prefix (:func:`next_token_sets`; README.md).
    """

    toy_templates = tuple(TOY_TEMPLATES.values())
    toy_words = {"digits": TOY_DIGITS, "year nouns": TOY_NOUNS}

    @dataclass(frozen=True)
    class Options:
        vocab: str = "auto"  # auto | toy | natural (resolve_vocab)
        form: str = one_of("canonical", tuple(TEMPLATES))
        centuries: list[int] = bounded(list(range(11, 18)), Range(lo=10, hi=99, integer=True))
        year_tokens: str = one_of("auto", YEAR_TOKENS)
        prepend_bos: bool = False

    def validate(self) -> None:
        if not isinstance(self.options.centuries, (list, tuple)) or not self.options.centuries:
            raise HarnessError("greater_than centuries is empty; accepted: integers from 10 to 99")

    @property
    def centuries(self) -> list[int]:
        return list(self.options.centuries)

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        n = count(n)
        form, year_tokens = self.options.form, self.options.year_tokens
        if resolve_vocab(self.options.vocab, tokenizer) == "toy":
            template = TOY_TEMPLATES[form]
            nouns: list[str] = list(TOY_NOUNS)
            years = [(xx, yy) for xx in self.centuries for yy in range(2, 99)]
            digits = list(TOY_DIGITS)
            accept = None
        else:
            template = TEMPLATES[form]
            nouns = list(NOUNS)
            two_digit = year_tokens != "next_token"
            years = valid_years(tokenizer, self.centuries) if two_digit else []
            if not years and year_tokens != "two_digit":
                return self._next_token_pairs(tokenizer, n, seed, template, nouns)
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

    def _next_token_pairs(
        self, tokenizer: Any, n: int, seed: int, template: str, nouns: list[str]
    ) -> list[PromptPair]:
        """The ``next_token`` form (:func:`next_token_sets`): clean and corrupt prompts are token
        id lists (the shared prefix of the clean / corrupt text), answers are token ids."""
        if not template.endswith("[XX]"):
            raise AssertionError(f"template must end with the end year's [XX]: {template!r}")
        head = template.removesuffix("[XX]")

        def make_one(rng: random.Random) -> PromptPair:
            noun, xx, yy = rng.choice(nouns), rng.choice(self.centuries), rng.randrange(2, 99)
            slots = {"NOUN": noun, "XX": str(xx)}
            clean, answers, wrongs = next_token_sets(
                tokenizer, fill(head, {**slots, "YY": f"{yy:02d}"}), xx * 100 + yy, xx
            )
            corrupt, _, _ = next_token_sets(
                tokenizer, fill(head, {**slots, "YY": f"{CORRUPT_YY:02d}"}), xx * 100 + 1, xx
            )
            return PromptPair(clean, corrupt, tuple(answers), tuple(wrongs))

        def accept(pair: PromptPair) -> bool:
            return bool(pair.answers and pair.wrongs) and len(pair.clean) == len(pair.corrupt)

        return sample_pairs(n, seed, make_one, accept, what="greater_than")
