"""The metric L on hand-made logits."""

from __future__ import annotations

import math

import pytest
import torch

from harness.errors import HarnessError
from harness.task_metric import check_metric, per_prompt_metric
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
