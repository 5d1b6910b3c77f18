"""The real pretrained model (SmolLM2-135M-Instruct, the offline GGUF copy) through the harness.

- Per-head activation patching, AtP and the exact HVP correction on natural IOI prompts equal the
  independent float64 implementation of ``tests/test_independent.py`` (plain transformers and
  PyTorch hooks) to 1e-6, for the 9 heads of layer 0 (the most network downstream, so the
  largest AtP errors) on 2 prompts: the reference stacks one copy of the prompts per head and
  runs the whole 30-layer model once for patching and once, with its double backward, for f''.
- Every standard task is solved by the model on its own tokenizer (clean accuracy above chance),
  and a task it cannot do (answers and wrong answers swapped) is flagged ``task_solved: false``.
"""

from __future__ import annotations

import pytest
import torch

from harness.components import enumerate_components
from harness.context import AttributionContext
from harness.ground_truth import ground_truth
from harness.methods.base import make_method
from harness.models.loader import load_model
from harness.task_metric import clean_task_scores
from harness.tasks import load_task, tokenize_pairs
from harness.types import PromptPair
from tests.test_independent import Reference

LAYERS = [0]  # the heads with the most network downstream: where AtP is least exact
N_PROMPTS = 2


@pytest.fixture(scope="module")
def smollm2(smollm2_folder):
    """The fetched model booted in float64 on CPU."""
    cfg = {"name": "smollm2-135m", "source": "local", "path": str(smollm2_folder)}
    return load_model(cfg, device="cpu", dtype="float64")


def _context(loaded, pairs: list[PromptPair], layers: list[int] | None = None):
    batch = tokenize_pairs(pairs, loaded.tokenizer)
    components = [
        c
        for c in enumerate_components(loaded.adapter.shape, ["head"], "all", batch.seq_len)
        if layers is None or c.layer in layers
    ]
    return AttributionContext(
        model=loaded.adapter,
        batch=batch,
        components=components,
        metric="logit_diff",
        direction="noising",
        batch_size=64,
    )


def _same_length_ioi(tokenizer, n: int) -> list[PromptPair]:
    """n natural IOI pairs of one token length (the reference does not pad)."""
    pairs = load_task("ioi").make_pairs(tokenizer, 24, seed=3)
    lengths = [len(tokenizer(str(p.clean))["input_ids"]) for p in pairs]
    common = max(set(lengths), key=lengths.count)
    picked = [p for p, length in zip(pairs, lengths, strict=True) if length == common][:n]
    assert len(picked) == n
    return picked


def test_real_model_matches_independent_float64_implementation(smollm2, smollm2_folder):
    pairs = _same_length_ioi(smollm2.tokenizer, N_PROMPTS)
    ctx = _context(smollm2, pairs, LAYERS)
    assert len(ctx.components) == 9 * len(LAYERS)
    truth = ground_truth(ctx, smollm2.fingerprint, None).effects.numpy()
    atp = make_method({"name": "atp"}).estimate(ctx).estimates.double().numpy()
    hvp = make_method({"name": "hvp", "mode": "exact"}).estimate(ctx).estimates.double().numpy()

    rows = [
        {"clean": p.clean, "corrupt": p.corrupt, "answer": p.answers[0], "wrong": p.wrongs[0]}
        for p in pairs
    ]
    ref_truth, ref = Reference(smollm2_folder, rows).run(LAYERS)
    scale = max(abs(v) for v in ref_truth.values())
    assert scale > 1e-2
    tol = 1e-6 * max(1.0, scale)
    for i, c in enumerate(ctx.components):
        key = (c.layer, c.head)
        assert truth[i] == pytest.approx(ref_truth[key], abs=tol), c.id
        assert atp[i] == pytest.approx(ref["atp"][key], abs=tol), c.id
        assert hvp[i] == pytest.approx(ref["hvp"][key], abs=tol), c.id
    # the second-order term matters on the real model, so the HVP comparison has teeth
    assert max(abs(h - a) for h, a in zip(hvp, atp, strict=True)) > 1e-3 * scale


TASKS = [
    ("ioi", {}),
    ("ioi", {"corruption": "random_token"}),
    ("greater_than", {}),
    ("factual_recall", {}),
    ("induction", {}),
]


@pytest.mark.parametrize("slug,options", TASKS, ids=[f"{s}-{len(o)}" for s, o in TASKS])
def test_real_model_solves_every_task(smollm2, slug, options):
    pairs = load_task(slug, **options).make_pairs(smollm2.tokenizer, 12, seed=0)
    scores = clean_task_scores(_context(smollm2, pairs, layers=[]))
    assert scores["task_solved"] is True, scores
    assert scores["clean_accuracy"] >= 0.8 and scores["clean_logit_diff"] > 1.0, scores


def test_task_the_model_cannot_do_is_flagged(smollm2):
    """Answers and wrong answers swapped: the model is confidently 'wrong' on every prompt."""
    pairs = load_task("ioi").make_pairs(smollm2.tokenizer, 12, seed=0)
    swapped = [PromptPair(p.clean, p.corrupt, p.wrongs, p.answers) for p in pairs]
    scores = clean_task_scores(_context(smollm2, swapped, layers=[]))
    assert scores["task_solved"] is False
    assert scores["clean_accuracy"] <= 0.2 and scores["chance_accuracy"] == 0.5
    assert torch.isfinite(torch.tensor(scores["clean_logit_diff"]))
