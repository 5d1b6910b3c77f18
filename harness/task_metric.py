"""The scalar metric L that every effect is measured on.

``logit_diff`` (default): mean logit of the answer token(s) minus mean logit of the wrong
token(s), at each prompt's last real position. ``logprob``: log-probability of the answer
(log of the summed probability of the answer set). L is the mean over prompts of the per-prompt
value; an effect is L(patched) - L(unpatched).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from harness.errors import HarnessError
from harness.registry import unknown_choice
from harness.types import PromptBatch

if TYPE_CHECKING:
    from harness.context import AttributionContext

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


def metric_columns(batch: PromptBatch, metric: str) -> tuple[torch.Tensor | None, PromptBatch]:
    """The vocabulary columns ``metric`` reads on ``batch``, and ``batch`` re-indexed into them.

    ``logit_diff`` reads the answer and wrong tokens' logits only: a pass may compute logits
    [rows, 1, k] for those k columns (sorted unique ids, [k]) and score them with the returned
    batch, whose ``answers``/``wrongs`` are positions in ``columns`` (:func:`per_prompt_metric`
    gives the same values). ``logprob`` normalizes over the whole vocabulary: (None, batch).
    """
    if metric != "logit_diff":
        return None, batch
    columns = torch.unique(
        torch.cat([batch.answers[batch.answer_mask], batch.wrongs[batch.wrong_mask]])
    )

    def reindex(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        position = torch.searchsorted(columns, ids.clamp(min=0).contiguous())
        return position.clamp(max=columns.numel() - 1).masked_fill(~mask, 0)

    return columns, replace(
        batch,
        answers=reindex(batch.answers, batch.answer_mask),
        wrongs=reindex(batch.wrongs, batch.wrong_mask),
    )


def _masked_mean(values: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    picked = values.gather(1, index.clamp(min=0)) * mask
    return picked.sum(dim=-1) / mask.sum(dim=-1)


def answer_correct(final: torch.Tensor, batch: PromptBatch) -> torch.Tensor:
    """Per-prompt bool [n]: the best answer token's logit beats every wrong answer's.

    ``final`` [n, vocab] holds the logits at each prompt's last real position. With one answer
    and one wrong answer this is logit(answer) > logit(wrong); with answer sets (greater-than) the
    highest-ranked token of answers + wrongs must be an answer.
    """
    neg = torch.finfo(final.dtype).min
    best_answer = final.gather(1, batch.answers.clamp(min=0)).masked_fill(~batch.answer_mask, neg)
    best_wrong = final.gather(1, batch.wrongs.clamp(min=0)).masked_fill(~batch.wrong_mask, neg)
    return best_answer.max(dim=-1).values > best_wrong.max(dim=-1).values


def clean_task_scores(
    ctx: AttributionContext, confidence: float = 0.95
) -> dict[str, float | bool | None]:
    """How well the model does the task on the clean prompts (one unhooked forward pass).

    ``clean_accuracy``: fraction of prompts where :func:`answer_correct`; ``chance_accuracy``:
    its expectation when the answer and wrong tokens are ranked at random (mean of
    |answers| / (|answers| + |wrongs|), 0.5 for one of each); ``clean_logit_diff``: mean logit
    difference (answers minus wrongs) whatever the run's metric; ``task_solved``: the count of
    correct prompts is above chance by an exact one-sided binomial test at ``confidence``
    (:func:`task_solved`) and the mean logit difference is positive; ``None`` when too few
    prompts to tell. A run with ``task_solved`` false measures attributions of a task the model
    cannot do; reports keep it apart.
    """
    batch = ctx.batch
    correct, diffs = [], []
    with torch.no_grad():
        for rows in ctx.prompt_chunks():
            sub = batch.select(rows)
            logits = ctx.model.run(batch.clean[rows], read_pos=sub.last)
            if logits.shape[1] == 1:  # already at each prompt's last position
                final = logits[:, 0]
            else:
                final = logits[torch.arange(logits.shape[0], device=logits.device), sub.last]
            correct.append(answer_correct(final, sub))
            diffs.append(per_prompt_metric(logits, sub, "logit_diff"))
    n = batch.n
    n_correct = int(torch.cat(correct).sum())
    k_answers = batch.answer_mask.sum(dim=-1).double()
    chance = float((k_answers / (k_answers + batch.wrong_mask.sum(dim=-1).double())).mean())
    logit_diff = float(torch.cat(diffs).double().mean())
    solved = task_solved(n_correct, n, chance, confidence)
    if solved is not None:
        solved = solved and logit_diff > 0
    return {
        "clean_accuracy": n_correct / n,
        "chance_accuracy": chance,
        "clean_logit_diff": logit_diff,
        "task_solved": solved,
    }


def task_solved(n_correct: int, n: int, chance: float, confidence: float = 0.95) -> bool | None:
    """Whether ``n_correct`` of ``n`` prompts is above ``chance`` accuracy: the exact one-sided
    binomial test (``scipy.stats.binomtest``, alternative 'greater') rejects chance at level
    1 - ``confidence``. ``None`` when no count could: even ``n`` of ``n`` correct is not
    significant (chance ** n > 1 - confidence: too few prompts to tell)."""
    from scipy.stats import binomtest

    alpha = 1.0 - confidence
    if binomtest(n, n, chance, alternative="greater").pvalue > alpha:
        return None
    return bool(binomtest(n_correct, n, chance, alternative="greater").pvalue <= alpha)
