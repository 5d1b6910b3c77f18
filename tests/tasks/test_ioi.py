"""The IOI task (tasks/ioi/)."""

from __future__ import annotations

import pytest
from harness.taskdefs.ioi.data import TOY_NAMES

from harness.errors import HarnessError
from harness.tasks import load_task, tokenizer_is_toy


def test_ioi_structure(tokenizer):
    toy = tokenizer_is_toy(tokenizer)
    for pair in load_task("ioi", corruption="name_swap").make_pairs(tokenizer, 40, seed=1):
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        clean, corrupt = str(pair.clean).split(), str(pair.corrupt).split()
        clean_names = [w.strip(",.") for w in clean]
        assert clean_names.count(io) == 1 and clean_names.count(s) == 2
        fresh = {w.strip(",.") for w in corrupt} - {w.strip(",.") for w in clean}
        assert len(fresh) == 3 and not fresh & {io, s}
        if toy:
            assert fresh <= set(TOY_NAMES)
    for pair in load_task("ioi", corruption="random_token").make_pairs(tokenizer, 40, seed=1):
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        corrupt = [w.strip(",.") for w in str(pair.corrupt).split()]
        assert corrupt.count(io) == 1 and corrupt.count(s) == 1
        assert len(set(str(pair.clean).split()) ^ set(str(pair.corrupt).split())) == 1


def test_ioi_orders(toy_tokenizer):
    for pair in load_task("ioi", order="abba").make_pairs(toy_tokenizer, 10, 0):
        words = str(pair.clean).split()
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        assert words.index(io) < words.index(s)
    for pair in load_task("ioi", order="baba").make_pairs(toy_tokenizer, 10, 0):
        words = str(pair.clean).split()
        assert words.index(pair.answers[0].strip()) > words.index(pair.wrongs[0].strip())


def test_ioi_natural_filters_names(bpe_tokenizer):
    pairs = load_task("ioi", names=["Mary", "John", "Zyxwvutq", "Anna", "Kevin", "Laura"])
    used = set()
    for pair in pairs.make_pairs(bpe_tokenizer, 30, 0):
        used |= {pair.answers[0].strip(), pair.wrongs[0].strip()}
    assert "Zyxwvutq" not in used  # not a single token
    with pytest.raises(HarnessError, match="only 1 IOI names are single tokens"):
        load_task("ioi", names=["Mary", "Zyxwvutq"]).make_pairs(bpe_tokenizer, 2, 0)
