"""The induction task (tasks/induction/)."""

from __future__ import annotations

from harness.tasks import load_task, tokenizer_is_toy


def test_induction_structure(tokenizer):
    task = load_task("induction", seq_len=8, query_len=3)
    for pair in task.make_pairs(tokenizer, 20, seed=2):
        if tokenizer_is_toy(tokenizer):
            clean, corrupt = str(pair.clean).split(), str(pair.corrupt).split()
            answer, wrong = pair.answers[0].strip(), pair.wrongs[0].strip()
        else:
            clean, corrupt = list(pair.clean), list(pair.corrupt)
            answer, wrong = pair.answers[0], pair.wrongs[0]
        r, r2 = clean[:8], corrupt[:8]
        assert clean[8:] == r[:3] == corrupt[8:]
        assert len(set(r)) == 8 and not set(r) & set(r2)
        assert answer == r[3] and wrong == r2[3]


def test_induction_natural_ids(bpe_tokenizer):
    pairs = load_task("induction").make_pairs(bpe_tokenizer, 10, 0)
    ids = {t for p in pairs for t in p.clean}
    assert all(1000 <= t < len(bpe_tokenizer) for t in ids)
    small = load_task("induction", id_range=[5, 20], seq_len=4)
    ids = {t for p in small.make_pairs(bpe_tokenizer, 10, 0) for t in p.clean}
    assert ids <= set(range(len(bpe_tokenizer))) - set(bpe_tokenizer.all_special_ids)
