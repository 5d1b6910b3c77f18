"""Component enumeration and ids."""

from __future__ import annotations

import pytest
import torch

from harness.adapter import ModelShape
from harness.components import enumerate_components, hook_of, reduce_per_component, slice_index
from harness.errors import HarnessError
from harness.types import SITES, Component
from tests.helpers import make_context, random_batch

SHAPE = ModelShape(n_layers=2, n_heads=3, d_head=4, d_model=12, n_ctx=16)


def test_counts_and_order():
    heads = enumerate_components(SHAPE, ["head"], "all", 5)
    assert len(heads) == 6 and heads[0] == Component("head", 0, 0, -1)
    each = enumerate_components(SHAPE, ["mlp_out", "resid_pre", "head"], "each", 5)
    assert len(each) == 2 * (3 + 1 + 1) * 5
    assert [c.site for c in each[:7:5]] == ["resid_pre", "head"]  # forward order in a block
    assert each == sorted(
        each,
        key=lambda c: (
            c.layer,
            ["resid_pre", "head", "attn_out", "mlp_out"].index(c.site),
            c.head,
            c.pos,
        ),
    )


def test_ids():
    assert Component("head", 1, 3).id == "head.L1.H3"
    assert Component("resid_pre", 0, -1, 5).id == "resid_pre.L0.P5"


@pytest.mark.parametrize(
    "sites, positions, message",
    [
        (["heads"], "all", "unknown site 'heads' \\(did you mean 'head'\\?\\); accepted: head"),
        (["head"], "every", "unknown positions mode 'every'.*accepted: all, each"),
        ([], "all", "components.sites is empty"),
    ],
)
def test_bad_input_is_one_line(sites, positions, message):
    with pytest.raises(HarnessError, match=message):
        enumerate_components(SHAPE, sites, positions, 5)


NEURON_SHAPE = ModelShape(
    n_layers=2, n_heads=3, d_head=4, d_model=12, n_ctx=16, d_mlp=5, sites=SITES
)


def test_neuron_components():
    neurons = enumerate_components(NEURON_SHAPE, ["neuron"], "all", 4)
    assert len(neurons) == 2 * 5 and neurons[7] == Component("neuron", 1, pos=-1, neuron=2)
    assert neurons[7].id == "neuron.L1.N2"
    each = enumerate_components(NEURON_SHAPE, ["mlp_out", "neuron", "head"], "each", 4)
    assert len(each) == 2 * (3 + 5 + 1) * 4
    # forward order inside a block: heads, then the MLP's neurons, then its output
    assert [c.site for c in each[: 9 * 4 : 4]] == ["head"] * 3 + ["neuron"] * 5 + ["mlp_out"]
    assert Component("neuron", 0, -1, 3, 4).id == "neuron.L0.N4.P3"


def test_neuron_site_of_a_model_without_mlp_is_one_line():
    attn_only = ModelShape(2, 3, 4, 12, 16, d_mlp=0, sites=("head", "attn_out", "resid_pre"))
    with pytest.raises(
        HarnessError,
        match="site 'neuron' does not exist in this model \\(the "
        "model has no MLP\\); accepted: head, attn_out, resid_pre$",
    ):
        enumerate_components(attn_only, ["head", "neuron"], "all", 4)


@pytest.mark.parametrize("positions", ["all", "each"])
def test_reduce_per_component_sums_each_slice(positions):
    shapes = {"head": (3, 4), "neuron": (5,), "mlp_out": (12,), "resid_pre": (12,)}
    components = enumerate_components(NEURON_SHAPE, list(shapes), positions, 4)
    gen = torch.Generator().manual_seed(0)
    per_hook = {
        hook_of(c): torch.randn(2, 4, *shapes[c.site], generator=gen, dtype=torch.float64)
        for c in components
    }
    expected = torch.stack(
        [per_hook[hook_of(c)][(slice(None),) + slice_index(c)].sum() for c in components]
    )
    torch.testing.assert_close(reduce_per_component(per_hook, components), expected)


@pytest.mark.parametrize("family", ["gpt2", "neox", "llama", "gemma2", "qwen2"])
def test_neuron_hook_is_the_mlp_output_projection_input(tiny_models, family):
    """The neuron site is what the MLP's output projection reads: mapping it through that
    projection gives the MLP's output, and moving one neuron changes the logits exactly as
    moving the MLP output by the projection of that change does (so the site sits after the
    activation and, for gated MLPs, after act(gate) * up)."""
    batch = random_batch(2, 6, seed=3)
    ctx, _ = make_context(tiny_models[family], batch, sites=["neuron"])
    model, layer = ctx.model, 1
    d_mlp = 128 if family == "gpt2" else 64  # GPT-2: 4 d_model; the others: intermediate_size
    assert model.shape.d_mlp == d_mlp and "neuron" in model.shape.sites
    name = hook_of(Component("neuron", layer, neuron=0))
    mlp_output = f"blocks.{layer}.mlp.hook_out"
    logits, acts = model.cache(batch.clean, [name, mlp_output])
    post = acts[name]
    assert post.shape == (2, 6, d_mlp)
    down = model.bridge.blocks[layer].mlp.out  # TransformerLens's output projection
    torch.testing.assert_close(down(post), acts[mlp_output])
    delta = torch.zeros_like(post)
    delta[:, 3, 7] = 0.5
    moved = model.run(batch.clean, [(name, lambda act, hook: act + delta)])
    shift = down(post + delta) - down(post)
    via_output = model.run(batch.clean, [(mlp_output, lambda act, hook: act + shift)])
    torch.testing.assert_close(moved, via_output)
    assert (moved - logits).abs().max() > 1e-3
