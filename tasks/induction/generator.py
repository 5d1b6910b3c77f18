"""Induction prompt pairs: a random sequence followed by its own prefix."""

from __future__ import annotations

import random
from typing import Any, ClassVar

from harness.taskdefs.induction.data import TOY_POOL

from harness.config import POSITIVE_INT
from harness.errors import HarnessError
from harness.tasks import Task, count, resolve_vocab, sample_pairs, special_prefix
from harness.types import PromptPair


def _positive_int(name: str, value: object) -> int:
    POSITIVE_INT.check(f"task.{name}", value)  # the config schema's one range validator
    return int(value)  # type: ignore[call-overload]


class InductionTask(Task):
    """Induction (Olsson et al. 2022, arXiv:2209.11895; ACDC's synthetic variant).

    Clean: random tokens ``R`` (``seq_len`` distinct tokens) then ``R[:k]`` (``k = query_len``);
    answer ``R[k]``. Corrupt: the first copy is replaced by fresh random tokens ``R2`` (same
    length, disjoint from ``R``), so ``R[:k]`` no longer repeats anything; wrong answer
    ``R2[k]``. Toy: words of the toy induction pool; natural: token ids drawn from ``id_range``
    (clipped to the vocabulary) given as id lists after the tokenizer's own prefix (e.g. BOS).
    Metric: logit difference logit(R[k]) - logit(R2[k]) at the last position.
    """

    slug: ClassVar[str] = "induction"
    toy_words = {"induction pool": TOY_POOL}

    def __init__(
        self,
        vocab: str = "auto",
        seq_len: int = 10,
        query_len: int | None = None,
        id_range: list[int] | tuple[int, int] = (1000, 10000),
        prepend_bos: bool = False,
    ) -> None:
        self.vocab = vocab
        self.seq_len = _positive_int("seq_len", seq_len)
        k = seq_len // 2 if query_len is None else _positive_int("query_len", query_len)
        if seq_len < 2 or k >= seq_len:
            raise HarnessError(
                f"induction needs seq_len >= 2 and query_len < seq_len, got {seq_len} and {k}"
            )
        self.query_len = k
        if (
            not isinstance(id_range, (list, tuple))
            or len(id_range) != 2
            or not all(isinstance(x, int) for x in id_range)
            or id_range[0] >= id_range[1]
        ):
            raise HarnessError(
                f"induction id_range must be [low, high) with low < high, got {id_range!r}"
            )
        self.id_range = (int(id_range[0]), int(id_range[1]))
        self.prepend_bos = bool(prepend_bos)

    def token_pool(self, tokenizer: Any) -> list[int]:
        """Candidate token ids for the natural version: ``id_range`` clipped to the vocabulary,
        minus special tokens; all non-special ids when that range is too small."""
        size = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        low, high = self.id_range
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
        toy = resolve_vocab(self.vocab, tokenizer) == "toy"
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
