"""The factual-recall task (tasks/factual_recall/)."""

from __future__ import annotations

from harness.taskdefs.factual_recall.data import FACTS, TOY_LANDMARKS

from harness.tasks import load_task, tokenizer_is_toy


def test_factual_recall_structure(tokenizer):
    toy = tokenizer_is_toy(tokenizer)
    table = TOY_LANDMARKS if toy else {s: c for s, c in FACTS}
    for pair in load_task("factual_recall").make_pairs(tokenizer, 30, seed=0):
        city, other = pair.answers[0].strip(), pair.wrongs[0].strip()
        assert city != other
        found = [s for s in table if s in str(pair.clean) or s[:1].upper() + s[1:] in pair.clean]
        assert table[max(found, key=len)] == city
