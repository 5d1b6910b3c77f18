"""Every method runs on neuron components (the MLP's hidden units) of a zoo model, and the exact
ones agree with activation patching there."""

from __future__ import annotations

import pytest
import torch

from harness.components import enumerate_components
from harness.context import AttributionContext
from harness.methods.base import make_method
from harness.models.loader import load_model
from harness.patching import collect_activations, patch_effects, site_names
from harness.tasks import load_task, tokenize_pairs
from harness.types import Component

METHODS = [
    {"name": "actpatch"},
    {"name": "atp"},
    {"name": "hvp"},
    {"name": "hvp", "mode": "shared"},
    {"name": "ms_hvp", "steps": 4},
    {"name": "ig", "steps": 6},
    {"name": "ig", "path": "joint", "steps": 6},
    {"name": "integrated_hessians", "steps": 4},
    {"name": "atp_star"},
    {"name": "sff"},
]
EXACT = {"actpatch": 1e-9, "ig": 1e-7, "integrated_hessians": 1e-7}
"""Methods exact on single-component paths (IG's Gauss-Legendre rule on a smooth path)."""


@pytest.fixture(scope="module")
def neuron_context():
    loaded = load_model({"name": "toy-gpt2", "source": "zoo"}, device="cpu", dtype="float64")
    task = load_task("ioi")
    batch = tokenize_pairs(task.make_pairs(loaded.tokenizer, 2, 0), loaded.tokenizer)
    shape = loaded.adapter.shape
    every = enumerate_components(shape, ["neuron"], "all", batch.seq_len)
    assert len(every) == shape.n_layers * shape.d_mlp
    # in each layer the neuron of largest |d|, and one of them at the last position
    _, base = collect_activations(_ctx(loaded, batch, every), batch.clean, site_names(every))
    _, corrupt = collect_activations(_ctx(loaded, batch, every), batch.corrupt, site_names(every))
    picks = []
    for layer, name in enumerate(site_names(every)):
        unit = int((corrupt[name] - base[name]).abs().sum(dim=(0, 1)).argmax())
        picks.append(Component("neuron", layer, neuron=unit))
    picks.append(Component("neuron", 1, pos=int(batch.last[0]), neuron=picks[1].neuron))
    ctx = _ctx(loaded, batch, picks)
    base_metric, _ = collect_activations(ctx, ctx.base_tokens, [])
    _, source = collect_activations(ctx, ctx.source_tokens, site_names(picks))
    truth = patch_effects(ctx, picks, source, base_metric, fast=False)
    assert truth.abs().max() > 1e-3 and len({c.layer for c in picks}) == 4
    return ctx, truth.cpu()


def _ctx(loaded, batch, components) -> AttributionContext:
    return AttributionContext(model=loaded.adapter, batch=batch, components=components)


@pytest.mark.parametrize("cfg", METHODS, ids=lambda c: "-".join(map(str, c.values())))
def test_every_method_runs_on_neurons(neuron_context, cfg):
    ctx, truth = neuron_context
    out = make_method(cfg).estimate(ctx)
    estimates = out.estimates.double().cpu()
    assert estimates.shape == truth.shape and torch.isfinite(estimates).all()
    scale = float(truth.abs().max())
    if cfg["name"] in EXACT and cfg.get("path", "component") == "component":
        assert (estimates - truth).abs().max() <= EXACT[cfg["name"]] * scale, cfg
    else:  # estimates of the same effects (shared HVP adds cross terms): same magnitude
        assert (estimates - truth).abs().max() <= 3 * scale, cfg
