"""IOI prompt pairs (Wang et al. 2022): toy and natural vocabularies, two corruptions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.taskdefs.induction.data import TOY_POOL
from harness.taskdefs.ioi.data import (
    BABA_TEMPLATES,
    FILLER_WORDS,
    NAME_LISTS,
    OBJECTS,
    PLACES,
    TOY_NAMES,
    TOY_TEMPLATES,
)

from harness.config import one_of
from harness.errors import HarnessError
from harness.tasks import (
    Task,
    choice,
    count,
    fill,
    need,
    resolve_vocab,
    same_length,
    sample_pairs,
    single_token_words,
)
from harness.types import PromptPair

CORRUPTIONS = ("name_swap", "random_token")
ORDERS = ("mixed", "baba", "abba")


def slot_template(template: str, order: str) -> str:
    """A BABA template with the final ``[A]`` dropped and its name slots marked
    ``{IO}``, ``{S1}``, ``{S2}``; ``order="abba"`` swaps the first clause's two names."""
    body = template.removesuffix("[A]").rstrip()
    first, second = ("{S1}", "{IO}") if order == "baba" else ("{IO}", "{S1}")
    body = body.replace("[B]", first, 1).replace("[A]", second, 1).replace("[B]", "{S2}", 1)
    if "[A]" in body or "[B]" in body:
        raise AssertionError(f"template has extra name slots: {template!r}")
    return body


class IOITask(Task):
    """Indirect Object Identification (Wang et al. 2022, arXiv:2211.00593).

    Clean: "When Mary and John went to the store, John gave a drink to" -> answer " Mary" (the
    indirect object IO), wrong answer " John" (the subject S). Corruption ``name_swap``: the three
    name slots IO, S1, S2 each get a fresh name not in the clean prompt (ACDC's "ABC" dataset);
    ``random_token``: the repeated subject S2 becomes a random non-name word. Metric: logit
    difference logit(IO) - logit(S) at the last position.
    """

    toy_templates = TOY_TEMPLATES
    toy_words = {"names": TOY_NAMES, "places": PLACES, "objects": OBJECTS}

    @dataclass(frozen=True)
    class Options:
        vocab: str = "auto"  # auto | toy | natural (resolve_vocab)
        corruption: str = one_of("name_swap", CORRUPTIONS)
        order: str = one_of("mixed", ORDERS)
        names: str | list[str] = "wang"  # a list of NAME_LISTS or the names themselves
        prepend_bos: bool = False

    def validate(self) -> None:
        names = self.options.names
        if isinstance(names, str):
            choice(f"{self.name} name list", names, NAME_LISTS)
        elif not (isinstance(names, (list, tuple)) and all(isinstance(x, str) for x in names)):
            raise HarnessError(f"{self.name} names must be 'wang', 'arena' or a list of names")

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        n = count(n)
        opts = self.options
        if resolve_vocab(opts.vocab, tokenizer) == "toy":
            templates = TOY_TEMPLATES
            names = list(TOY_NAMES)
            places, objects = PLACES, OBJECTS
            fillers = [*TOY_POOL]  # random_token: toy words that are not names
            accept = None
        else:
            templates = BABA_TEMPLATES
            raw = NAME_LISTS[opts.names] if isinstance(opts.names, str) else list(opts.names)
            names = need(single_token_words(tokenizer, raw), 5, "IOI names", tokenizer)
            places, objects = PLACES, OBJECTS
            fillers = need(
                single_token_words(tokenizer, [w for w in FILLER_WORDS if w not in raw]),
                1,
                "filler words",
                tokenizer,
            )

            def accept(pair: PromptPair) -> bool:
                return same_length(tokenizer, str(pair.clean), str(pair.corrupt))

        orders = ("baba", "abba") if opts.order == "mixed" else (opts.order,)

        def make_one(rng: random.Random) -> PromptPair:
            body = slot_template(rng.choice(templates), rng.choice(orders))
            body = fill(body, {"PLACE": rng.choice(places), "OBJECT": rng.choice(objects)})
            io, s, x, y, z = rng.sample(names, 5)
            clean = body.format(IO=io, S1=s, S2=s)
            if opts.corruption == "name_swap":
                corrupt = body.format(IO=x, S1=y, S2=z)
            else:
                corrupt = body.format(IO=io, S1=s, S2=rng.choice(fillers))
            return PromptPair(clean, corrupt, (" " + io,), (" " + s,))

        return sample_pairs(n, seed, make_one, accept, what="ioi")
