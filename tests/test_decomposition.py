"""The error decomposition: its two invariants on every zoo family, in float64.

With every non-linear operation downstream of a component linearized around the base run the
patched effect is AtP (the chain rule); with nothing linearized it is activation patching.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from harness.decomposition import (
    cached_decomposition,
    component_parts,
    decompose,
    linearized_effects,
)
from harness.errors import HarnessError
from harness.models.loader import ZOO_DIR
from harness.patching import collect_activations, patch_effects, site_names
from harness.second_order import path_derivatives
from harness.types import Component
from tests.helpers import make_context, random_batch

ZOO = ("toy-gpt2", "toy-pythia", "toy-llama", "toy-gemma2", "toy-qwen2")

COMPONENTS = [
    Component("head", 0, head=1),
    Component("resid_pre", 1, pos=3),
    Component("neuron", 2, neuron=5, pos=2),
    Component("attn_out", 0, pos=4),
    Component("mlp_out", 3),
    Component("head", 2, head=3, pos=5),
]


@pytest.fixture
def true_float64(monkeypatch):
    """Run the float32 islands of a float64 model in float64: HF's RMSNorms (Llama, Qwen-2,
    Gemma-2) cast their input to float32, and the rotary attention bridge takes its softmax in
    float32. Through them AtP (reverse mode) and the linearized network (forward mode) differ
    by float32 rounding (up to 7e-7 on toy-qwen2 with these prompts); in true float64 the
    invariants hold to about 1e-14, which is what this test checks (at 1e-9)."""
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge
    from transformers.models.gemma2 import modeling_gemma2
    from transformers.models.llama import modeling_llama
    from transformers.models.qwen2 import modeling_qwen2

    def rms(self, x):
        return self.weight * (
            x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        )

    def gemma_rms(self, x):
        return self._norm(x) * (1.0 + self.weight)

    masked_softmax = AttentionBridge._masked_softmax
    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms)
    monkeypatch.setattr(modeling_qwen2.Qwen2RMSNorm, "forward", rms)
    monkeypatch.setattr(modeling_gemma2.Gemma2RMSNorm, "forward", gemma_rms)
    monkeypatch.setattr(
        AttentionBridge, "_masked_softmax", lambda self, s, dtype=None: masked_softmax(self, s)
    )


def _context(model: str, batch_size: int = 64):
    ctx, _ = make_context(ZOO_DIR / model, random_batch(3, 7, seed=5), batch_size=batch_size)
    ctx.components = list(COMPONENTS)
    return ctx


@pytest.mark.parametrize("model", ZOO)
def test_all_linearized_is_atp_and_nothing_linearized_is_the_truth(model, true_float64):
    # batch_size 6 with 3 prompts: two copies a pass, so passes start at later positions too
    ctx = _context(model, batch_size=6)
    names = site_names(ctx.components)
    base_metric, base = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    atp, _ = path_derivatives(ctx, ctx.components, base, source, second=False)
    truth = patch_effects(ctx, ctx.components, source, base_metric)
    n_layers = ctx.model.shape.n_layers
    everything = [dict(component_parts(c, n_layers, gated=True))["all"] for c in ctx.components]
    nothing = [frozenset()] * len(ctx.components)
    effects = linearized_effects(ctx, ctx.components * 2, everything + nothing, source)
    count = len(ctx.components)
    assert (truth - atp).abs().max() > 1e-3  # AtP is wrong here: the invariant is not trivial
    torch.testing.assert_close(effects[:count], atp, rtol=0, atol=1e-9)
    torch.testing.assert_close(effects[count:], truth, rtol=0, atol=1e-9)


def test_columns_shares_and_cache(tmp_path):
    ctx = _context("toy-llama")
    columns, summary = decompose(ctx)
    truth = make_truth(ctx)
    error = columns["decomp_atp"] - truth
    np.testing.assert_allclose(columns["decomp_lin_all"], columns["decomp_atp"], atol=1e-6)
    big = np.abs(error) > 1e-4
    np.testing.assert_allclose(columns["decomp_share_all"][big], 1.0, atol=1e-3)
    for index, component in enumerate(ctx.components):
        own = columns[f"decomp_lin_block{component.layer}"][index]
        assert own == columns["decomp_lin_local"][index]
        assert np.isnan(columns["decomp_lin_block0"][index]) == (component.layer > 0)
    # the last block's MLP output: nothing non-linear downstream but the readout
    last = ctx.components.index(Component("mlp_out", 3))
    assert columns["decomp_share_readout"][last] == pytest.approx(1.0, abs=1e-6)
    assert columns["decomp_share_local"][last] == pytest.approx(0.0, abs=1e-6)
    assert summary["decomp_max_gap_all_vs_atp"] < 1e-6
    assert summary["decomp_error_share_all"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < summary["decomp_n_scored"] <= len(ctx.components)

    first, s1 = cached_decomposition(tmp_path, "key", ctx, truth)
    again, s2 = cached_decomposition(tmp_path, "key", ctx, truth)
    assert not s1["decomposition_cached"] and s2["decomposition_cached"]
    for name, column in first.items():
        np.testing.assert_array_equal(again[name], column)


def make_truth(ctx) -> np.ndarray:
    names = site_names(ctx.components)
    base_metric, _ = collect_activations(ctx, ctx.base_tokens, names)
    _, source = collect_activations(ctx, ctx.source_tokens, names)
    return patch_effects(ctx, ctx.components, source, base_metric).numpy()


def test_a_block_the_harness_cannot_intercept_is_one_line():
    ctx = _context("toy-gpt2")
    ctx.model._hook_names.discard("blocks.1.attn.hook_attn_scores")
    with pytest.raises(HarnessError) as err:
        decompose(ctx)
    message = str(err.value)
    assert "\n" not in message
    assert "attention" in message and "blocks.1.attn.hook_attn_scores" in message


@pytest.mark.slow  # three CLI runs: about 20 s alone, 40 s on the shared machine
def test_a_run_with_decomposition_writes_columns_and_reuses_its_cache(tmp_path, capsys):
    from tests.test_cli import run_cli

    args = [
        "model=toy-gpt2",
        "n_prompts=2",
        "components.sites=[mlp_out]",
        "diagnostics=false",
        "circuits=false",
        "truth.bootstrap=0",
        "dtype=float64",
        f"results_dir={tmp_path}",
    ]
    code, _, err = run_cli([*args, "decomposition=true"], capsys)
    assert code == 0, err
    (folder,) = (tmp_path / "runs").glob("*/*")
    frame = pd.read_parquet(folder / "estimates.parquet")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["decomposition_cached"] is False
    np.testing.assert_allclose(frame["decomp_lin_all"], frame["decomp_atp"], atol=1e-6)
    last = frame["component"] == "mlp_out.L3"  # only the readout is downstream of it
    np.testing.assert_allclose(frame.loc[last, "decomp_lin_readout"], frame.loc[last, "decomp_atp"])
    assert summary["decomp_error_share_all"] == pytest.approx(1.0, abs=1e-6)

    code, _, err = run_cli([*args, "decomposition=true", "resume=false"], capsys)
    assert code == 0, err
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/*/summary.json")]
    assert sorted(s["decomposition_cached"] for s in summaries) == [False, True]

    code, _, err = run_cli([*args, "decomposition=true", "max_fwd_equiv=10"], capsys)
    assert code == 2 and "error decomposition of 4 components" in err and "\n" not in err.strip()


@pytest.mark.parametrize(
    "experiment", ["site_types", "decomposition_zoo", "depth_series", "decomposition_real"]
)
def test_the_issue_14_experiments_compose_with_the_decomposition_on(experiment):
    from hydra import compose, initialize_config_module

    from harness.config import register_schemas
    from harness.config_files import group_options

    register_schemas()
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.decomposition is True
    models = str((cfg.hydra.sweeper.params or {}).get("model", "toy-gpt2")).split(",")
    assert set(models) <= set(group_options("model"))


@pytest.mark.parametrize("model", ["toy-gpt2", "toy-gemma2"])
def test_copies_entering_from_the_recorded_prefix_match_copies_run_from_the_component(
    model, true_float64
):
    # every part of every component (block<j>, downstream and readout enter after c's block)
    # with two copies a pass, so passes start at later positions and mix entry blocks
    ctx = _context(model, batch_size=6)
    n_layers = ctx.model.shape.n_layers
    items, variants = [], []
    for component in ctx.components:
        for _, variant in component_parts(component, n_layers, gated=True):
            items.append(component)
            variants.append(variant)
    items += ctx.components
    variants += [frozenset()] * len(ctx.components)
    reused = linearized_effects(ctx, items, variants, reuse_prefix=True)
    reference = linearized_effects(ctx, items, variants, reuse_prefix=False)
    assert reference.abs().max() > 1e-3
    torch.testing.assert_close(reused, reference, rtol=0, atol=1e-10)
