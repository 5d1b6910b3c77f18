"""Factual-recall prompt pairs: landmark -> city."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from harness.taskdefs.factual_recall.data import (
    FACTS,
    TEMPLATES,
    TOY_CITIES,
    TOY_LANDMARKS,
    TOY_TEMPLATES,
)

from harness.errors import HarnessError
from harness.tasks import Task, count, need, resolve_vocab, sample_pairs, single_token_words
from harness.types import PromptPair


def _fill(template: str, subject: str) -> str:
    text = template.replace("[S]", subject)
    return text[:1].upper() + text[1:]


class FactualRecallTask(Task):
    """Factual recall of landmark -> city (after Meng et al. 2022, arXiv:2202.05262, and the
    fact-retrieval tasks of Hanna et al. 2024 / auto-circuit).

    Clean: "The Eiffel Tower is located in the city of" -> answer " Paris". Corrupt: the same
    template with another landmark whose city differs and whose prompt has the same token length
    ("The Colosseum is located in the city of"); wrong answer: that landmark's city (" Rome").
    Metric: logit difference at the last position. Toy: one-word landmarks from the zoo's
    memorised table. Natural: :data:`~harness.taskdefs.factual_recall.data.FACTS`, keeping cities
    that are one token with a leading space.
    """

    toy_templates = TOY_TEMPLATES
    toy_words = {"landmarks": tuple(TOY_LANDMARKS), "cities": TOY_CITIES}

    @dataclass(frozen=True)
    class Options:
        vocab: str = "auto"  # auto | toy | natural (resolve_vocab)
        prepend_bos: bool = False

    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        n = count(n)
        if resolve_vocab(self.options.vocab, tokenizer) == "toy":
            facts = list(TOY_LANDMARKS.items())
            templates = list(TOY_TEMPLATES)
            fill_one = lambda template, subject: template.replace("[S]", subject)
            length = lambda text: 0  # every toy subject is one word
        else:
            ok = set(single_token_words(tokenizer, {city for _, city in FACTS}))
            facts = [(s, c) for s, c in FACTS if c in ok]
            need(sorted({c for _, c in facts}), 2, "cities", tokenizer)
            templates = list(TEMPLATES)
            fill_one = _fill
            length = lambda text: len(tokenizer(text)["input_ids"])

        # Prompts per (template, fact), and for each the facts that can corrupt it.
        prompts = {(t, s): fill_one(t, s) for t in templates for s, _ in facts}
        sizes = {key: length(text) for key, text in prompts.items()}
        choices: list[tuple[str, str, str, list[tuple[str, str]]]] = []
        for t in templates:
            for s, c in facts:
                others = [(s2, c2) for s2, c2 in facts if c2 != c and sizes[t, s2] == sizes[t, s]]
                if others:
                    choices.append((t, s, c, others))
        if not choices:
            raise HarnessError(
                f"factual_recall: no two landmarks with different cities tokenize to the same "
                f"length with tokenizer {type(tokenizer).__name__}"
            )

        def make_one(rng: random.Random) -> PromptPair:
            t, s, c, others = rng.choice(choices)
            s2, c2 = rng.choice(others)
            return PromptPair(prompts[t, s], prompts[t, s2], (" " + c,), (" " + c2,))

        return sample_pairs(n, seed, make_one, what="factual_recall")
