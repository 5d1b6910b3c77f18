"""The metric L on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from harness.errors import HarnessError
from harness.task_metric import check_metric, metric_columns, per_prompt_metric
from harness.types import PromptBatch


def batch_with(answers, wrongs, last):
    a = torch.tensor(answers)
    w = torch.tensor(wrongs)
    tokens = torch.zeros(len(last), 3, dtype=torch.long)
    return PromptBatch(
        tokens, tokens, torch.tensor(last), a.clamp(min=0), a >= 0, w.clamp(min=0), w >= 0
    )


def test_logit_diff_reads_last_real_position_and_averages_sets():
    logits = torch.zeros(2, 3, 5)
    logits[0, 1] = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    logits[1, 2] = torch.tensor([5.0, 1.0, 0.0, 0.0, 2.0])
    batch = batch_with([[4, -1], [0, 4]], [[1, 2], [1, -1]], [1, 2])
    values = per_prompt_metric(logits, batch, "logit_diff")
    assert values.tolist() == [4.0 - 1.5, 3.5 - 1.0]


def test_logit_diff_on_the_columns_it_reads_equals_the_full_vocabulary():
    """A pass that builds only the answer/wrong columns scores the same (answer sets, padding,
    ids shared between prompts, copies)."""
    torch.manual_seed(0)
    logits = torch.randn(6, 1, 50)
    batch = batch_with([[4, -1], [0, 4], [7, 7]], [[1, 2], [1, -1], [49, -1]], [0, 0, 0])
    columns, reindexed = metric_columns(batch, "logit_diff")
    assert columns.tolist() == [0, 1, 2, 4, 7, 49]
    full = per_prompt_metric(logits, batch, "logit_diff", copies=2)
    narrow = per_prompt_metric(logits[..., columns], reindexed, "logit_diff", copies=2)
    assert torch.equal(full, narrow)
    assert metric_columns(batch, "logprob") == (None, batch)  # normalizes over the vocabulary


def test_logprob_is_log_of_answer_set_probability():
    logits = torch.randn(1, 2, 6)
    batch = batch_with([[2, 3]], [[0, -1]], [1])
    probs = torch.softmax(logits[0, 1], -1)
    value = per_prompt_metric(logits, batch, "logprob")[0].item()
    assert value == pytest.approx(math.log(probs[2] + probs[3]), rel=1e-6)


def test_copies_repeat_the_batch():
    logits = torch.randn(6, 3, 5)
    batch = batch_with([[1], [2], [3]], [[0], [0], [0]], [2, 1, 0])
    together = per_prompt_metric(logits, batch, "logit_diff", copies=2)
    first = per_prompt_metric(logits[:3], batch, "logit_diff")
    second = per_prompt_metric(logits[3:], batch, "logit_diff")
    assert torch.equal(together, torch.cat([first, second]))


def test_unknown_metric_is_one_line():
    with pytest.raises(HarnessError, match="unknown metric 'kl'.*accepted: logit_diff, logprob"):
        check_metric("kl")


def test_answer_correct_compares_the_best_of_each_set():
    from harness.task_metric import answer_correct

    final = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 0.0, 0.0, 2.0]])
    # row 0: best answer 4 (logit 4) beats wrongs 1, 2; row 1: answers 4 (2.0) vs wrong 0 (5.0)
    batch = batch_with([[4, -1], [4, 3]], [[1, 2], [0, -1]], [0, 0])
    assert answer_correct(final, batch).tolist() == [True, False]


def test_clean_task_scores_on_a_trained_toy_model():
    """toy-gpt2 solves IOI; with answers and wrong answers swapped it 'cannot do' the task, and
    the summary's task_solved says so."""
    from harness.components import enumerate_components
    from harness.context import AttributionContext
    from harness.models.loader import load_model
    from harness.task_metric import clean_task_scores
    from harness.tasks import load_task, tokenize_pairs
    from harness.types import PromptPair

    loaded = load_model({"name": "toy-gpt2", "source": "zoo"}, device="cpu", dtype="float32")
    pairs = load_task("ioi").make_pairs(loaded.tokenizer, 16, seed=0)
    swapped = [PromptPair(p.clean, p.corrupt, p.wrongs, p.answers) for p in pairs]
    scores = []
    for prompt_pairs in (pairs, swapped):
        batch = tokenize_pairs(prompt_pairs, loaded.tokenizer)
        comps = enumerate_components(loaded.adapter.shape, ["head"], "all", batch.seq_len)
        ctx = AttributionContext(model=loaded.adapter, batch=batch, components=comps)
        scores.append(clean_task_scores(ctx))
    solved, unsolved = scores
    assert solved["clean_accuracy"] == 1.0 and solved["task_solved"] is True
    assert solved["chance_accuracy"] == 0.5 and solved["clean_logit_diff"] > 1.0
    assert unsolved["clean_accuracy"] == 0.0 and unsolved["task_solved"] is False
    assert unsolved["clean_logit_diff"] == pytest.approx(-solved["clean_logit_diff"])


@pytest.mark.parametrize(
    "n_correct, n, chance, expected",
    [
        (4, 4, 0.5, None),  # 0.5^4 > 0.05: even all correct cannot be told from chance
        (5, 5, 0.5, True),  # 0.5^5 < 0.05
        (3, 5, 0.5, False),
        (9, 12, 0.5, False),  # P(X >= 9) = 0.073
        (10, 12, 0.5, True),  # P(X >= 10) = 0.019
        (2, 2, 0.1, True),  # chance 0.1 (one answer of ten): 2 of 2 is enough
    ],
)
def test_task_solved_is_an_exact_binomial_test(n_correct, n, chance, expected):
    from harness.task_metric import task_solved

    assert task_solved(n_correct, n, chance) is expected
