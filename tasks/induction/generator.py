"""Induction prompt pairs: a random sequence followed by its own prefix."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.taskdefs.induction.data import TOY_POOL

from harness.config import POSITIVE_INT, bounded
from harness.errors import HarnessError
from harness.tasks import Task, count, resolve_vocab, sample_pairs, special_prefix
from harness.types import PromptPair


class InductionTask(Task):
    """Induction (Olsson et al. 2022, arXiv:2209.11895; ACDC's synthetic variant).

    Clean: random tokens ``R`` (``seq_len`` distinct tokens) then ``R[:k]`` (``k = query_len``);
    answer ``R[k]``. Corrupt: the first copy is replaced by fresh random tokens ``R2`` (same
    length, disjoint from ``R``), so ``R[:k]`` no longer repeats anything; wrong answer
    ``R2[k]``. Toy: words of the toy induction pool; natural: token ids drawn from ``id_range``
    (clipped to the vocabulary) given as id lists after the tokenizer's own prefix (e.g. BOS).
    Metric: logit difference logit(R[k]) - logit(R2[k]) at the last position.
    """

    toy_words = {"induction pool": TOY_POOL}

    @dataclass(frozen=True)
    class Options:
        vocab: str = "auto"  # auto | toy | natural (resolve_vocab)
        seq_len: int = bounded(10, POSITIVE_INT)  # length of the random sequence R
        query_len: int | None = bounded(None, POSITIVE_INT, optional=True)  # None: seq_len // 2
        id_range: tuple[int, int] | list[int] = (1000, 10000)  # natural vocab: ids [low, high)
        prepend_bos: bool = False

    def validate(self) -> None:
        seq_len, k, id_range = self.options.seq_len, self.query_len, self.options.id_range
        if seq_len < 2 or k >= seq_len:
            raise HarnessError(
                f"induction needs seq_len >= 2 and query_len < seq_len, got {seq_len} and {k}"
            )
        if (
            not isinstance(id_range, (list, tuple))
            or len(id_range) != 2
            or not all(isinstance(x, int) for x in id_range)
            or id_range[0] >= id_range[1]
        ):
            raise HarnessError(
                f"induction id_range must be [low, high) with low < high, got {id_range!r}"
            )

    @property
    def seq_len(self) -> int:
        return self.options.seq_len

    @property
    def query_len(self) -> int:
        """k: the tokens of R repeated before the answer R[k]."""
        query_len = self.options.query_len
        return self.options.seq_len // 2 if query_len is None else query_len

    def token_pool(self, tokenizer: Any) -> list[int]:
        """Candidate token ids for the natural version: ``id_range`` clipped to the vocabulary,
        minus special tokens; all non-special ids when that range is too small."""
        size = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        low, high = (int(x) for x in self.options.id_range)
        pool = [i for i in range(max(low, 0), min(high, size)) if i not in special]
        if len(pool) < 4 * self.seq_len:
            pool = [i for i in range(size) if i not in special]
        if len(pool) < 2 * self.seq_len:
            raise HarnessError(
                f"induction: vocabulary of {size} tokens is too small for seq_len {self.seq_len}"
            )
        return pool

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        n = count(n)
        L, k = self.seq_len, self.query_len
        toy = resolve_vocab(self.options.vocab, tokenizer) == "toy"
        if toy:
            words = list(TOY_POOL)
            if len(words) < 2 * L:
                raise HarnessError(
                    f"induction: toy pool has {len(words)} words, seq_len {L} needs {2 * L}"
                )

            def make_one(rng: random.Random) -> PromptPair:
                picked = rng.sample(words, 2 * L)
                r, r2 = picked[:L], picked[L:]
                clean = " ".join(r + r[:k])
                corrupt = " ".join(r2 + r[:k])
                return PromptPair(clean, corrupt, (" " + r[k],), (" " + r2[k],))

        else:
            pool = self.token_pool(tokenizer)
            prefix = special_prefix(tokenizer)

            def make_one(rng: random.Random) -> PromptPair:
                picked = rng.sample(pool, 2 * L)
                r, r2 = picked[:L], picked[L:]
                clean = prefix + r + r[:k]
                corrupt = prefix + r2 + r[:k]
                return PromptPair(clean, corrupt, (r[k],), (r2[k],))

        return sample_pairs(n, seed, make_one, what="induction")
