"""The scalar metric L that every effect is measured on.

``logit_diff`` (default): mean logit of the answer token(s) minus mean logit of the wrong
token(s), at each prompt's last real position. ``logprob``: log-probability of the answer
(log of the summed probability of the answer set). L is the mean over prompts of the per-prompt
value; an effect is L(patched) - L(unpatched).
"""

from __future__ import annotations

import torch

from harness.errors import HarnessError
from harness.registry import unknown_choice
from harness.types import PromptBatch

METRICS = ("logit_diff", "logprob")


def check_metric(name: str) -> str:
    if name not in METRICS:
        raise HarnessError(unknown_choice("metric", name, list(METRICS)))
    return name


def per_prompt_metric(
    logits: torch.Tensor, batch: PromptBatch, metric: str, copies: int = 1
) -> torch.Tensor:
    """Per-prompt metric of ``logits`` [copies * n, seq, vocab] -> [copies * n].

    ``copies`` > 1 means the batch's n prompts were repeated ``copies`` times along the batch
    dimension (one copy per patched component). Logits [copies * n, 1, vocab] are taken to be
    at each prompt's last real position already (``read_pos`` of the adapter's passes).
    """
    if logits.shape[1] == 1:
        final = logits[:, 0]  # [copies * n, vocab]
    else:
        last = batch.last.repeat(copies)
        rows = torch.arange(logits.shape[0], device=logits.device)
        final = logits[rows, last]
    answers = batch.answers.repeat(copies, 1)
    answer_mask = batch.answer_mask.repeat(copies, 1)
    if metric == "logit_diff":
        wrongs = batch.wrongs.repeat(copies, 1)
        wrong_mask = batch.wrong_mask.repeat(copies, 1)
        return _masked_mean(final, answers, answer_mask) - _masked_mean(final, wrongs, wrong_mask)
    if metric == "logprob":
        logprobs = torch.log_softmax(final, dim=-1)
        picked = logprobs.gather(1, answers.clamp(min=0))
        picked = picked.masked_fill(~answer_mask, float("-inf"))
        return torch.logsumexp(picked, dim=-1)
    raise HarnessError(unknown_choice("metric", metric, list(METRICS)))


def _masked_mean(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    picked = values.gather(1, index.clamp(min=0)) * mask
    return picked.sum(dim=-1) / mask.sum(dim=-1)
