"""Integrated Gradients: complete along the joint path, converging to activation patching along
each component's own path, with the harness's sign; nothing moves when base == source."""

from __future__ import annotations

import json

import pytest
import torch

from harness.components import hook_of
from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.models.loader import ZOO_DIR
from harness.patching import collect_activations
from harness.task_metric import per_prompt_metric
from tests.helpers import make_context, random_batch
from tests.methods.test_ms_hvp import STEPS, errors_by_steps, truth_of


def site_effect(ctx, name: str) -> float:
    """L(base | whole site ``name`` <- source) - L(base), written independently of ig.py."""
    _, source = collect_activations(ctx, ctx.source_tokens, [name])
    patched = ctx.model.run(ctx.base_tokens, [(name, lambda act, hook: source[name])])
    base = ctx.model.run(ctx.base_tokens)
    metric = lambda logits: per_prompt_metric(logits, ctx.batch, ctx.metric).mean()  # noqa: E731
    return (metric(patched) - metric(base)).item()


@pytest.mark.parametrize(("family", "direction"), [("gpt2", "noising"), ("neox", "denoising")])
def test_joint_path_is_complete(tiny_models, family, direction):
    ctx, _ = make_context(
        tiny_models[family],
        random_batch(3, 6, seed=31),
        sites=("head", "mlp_out", "resid_pre"),
        positions="each",
        direction=direction,
        batch_size=256,
    )
    everything = list(ctx.components)
    for site, layer in (("head", 1), ("mlp_out", 0), ("resid_pre", 2)):
        ctx.components = [c for c in everything if (c.site, c.layer) == (site, layer)]
        out = make_method({"name": "ig", "path": "joint", "steps": 64}).estimate(ctx)
        truth = site_effect(ctx, hook_of(ctx.components[0]))
        delta = out.summary["convergence_delta"]
        assert abs(truth) > 1e-3, f"{site} L{layer}: effect too small for a meaningful check"
        assert abs(out.estimates.sum().item() - truth) <= delta + 1e-12, (site, layer)
        assert delta < 1e-6 * abs(truth), (site, layer)


def test_joint_equals_component_path_for_one_component_sites(tiny_gpt2):
    # With one component per site (positions=all), the whole site moving *is* the component
    # moving: captum's LayerIntegratedGradients and path_derivatives integrate the same path
    # with the same rule. This checks the joint path's sign and reduction, and (riemann_left
    # is asymmetric) that both orient the path alike. captum rounds its step sizes to float32,
    # hence agreement to ~1e-7 only.
    ctx, _ = make_context(
        tiny_gpt2,
        random_batch(3, 6, seed=32),
        sites=("attn_out", "mlp_out", "resid_pre"),
        batch_size=1024,
    )
    cfg = {"name": "ig", "steps": 5, "integration": "riemann_left"}
    component = make_method(cfg).estimate(ctx).estimates
    joint = make_method({**cfg, "path": "joint"}).estimate(ctx).estimates
    assert component.abs().max() > 1e-3
    torch.testing.assert_close(joint, component, rtol=1e-6, atol=1e-9)


def test_component_path_converges_to_activation_patching(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=33), sites=("head",), batch_size=1024)
    ctx.components = [c for c in ctx.components if c.layer == 0]  # most network downstream
    truth = truth_of(ctx)
    trapezoid = errors_by_steps(ctx, {"name": "ig", "integration": "riemann_trapezoid"}, truth)
    gauss = errors_by_steps(ctx, {"name": "ig"}, truth, steps=STEPS[:2])
    print("ig trapezoid max |error| at steps", dict(zip(STEPS, trapezoid, strict=True)))
    print("ig gausslegendre max |error| at steps", dict(zip(STEPS, gauss, strict=False)))
    assert trapezoid[0] > 1e-6, "error too small for a meaningful check"
    assert trapezoid[1] < trapezoid[0] / 4 and trapezoid[2] < trapezoid[1] / 4  # O(K^-2)
    # Gauss-Legendre converges spectrally, to round-off at 16 points: the same values, and so
    # the same sign L(patched) - L(base), as activation patching.
    assert gauss[0] < trapezoid[0] and gauss[1] < 1e-10 * truth.abs().max()


@pytest.mark.skipif(
    not (ZOO_DIR / "toy-gpt2" / "config.json").exists(), reason="zoo model not trained yet"
)
def test_component_path_converges_on_zoo_model():
    folder = ZOO_DIR / "toy-gpt2"
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    batch = random_batch(3, 8, seed=34, vocab=min(vocab, 64))
    ctx, _ = make_context(folder, batch, sites=("head",), batch_size=1024)
    ctx.components = [c for c in ctx.components if c.layer == 0]
    rule = {"name": "ig", "integration": "riemann_trapezoid"}
    errors = errors_by_steps(ctx, rule, truth_of(ctx))
    print("zoo ig trapezoid max |error| at steps", dict(zip(STEPS, errors, strict=True)))
    assert errors[1] < errors[0] and errors[2] < errors[1]


@pytest.mark.parametrize("path", ["component", "joint"])
def test_patching_own_activations_gives_zero(tiny_gpt2, path):
    batch = random_batch(3, 6, seed=35)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out"), batch_size=1024)
    out = make_method({"name": "ig", "path": path, "steps": 2}).estimate(ctx)
    assert out.estimates.abs().max() == 0


def test_joint_cost_is_counted(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=36), sites=("mlp_out",))
    ctx.batch_size = 8  # two steps of four prompts per captum pass
    make_method({"name": "ig", "path": "joint", "steps": 6}).estimate(ctx)
    # per site: two layer evaluations, 3 passes of 2 steps, one completeness check; + 2 runs
    assert ctx.cost.n_backward == 3 * 3
    assert ctx.cost.n_forward == 2 + 3 * (2 + 3 + 1)


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("path", "jiont", "component, joint"),
        ("integration", "simpson", "riemann_trapezoid, gausslegendre"),
        ("steps", 0, "integer >= 1"),
        ("steps", 1.5, "integer >= 1"),
    ],
)
def test_bad_option_is_a_one_line_error(option, value, accepted):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "ig", option: value})
    message = str(info.value)
    assert "\n" not in message and repr(value) in message and accepted in message


def test_riemann_rules_need_two_steps():
    make_method({"name": "ig", "steps": 1})  # Gauss-Legendre: one point is the midpoint rule
    with pytest.raises(HarnessError, match="integer >= 2"):
        make_method({"name": "ig", "steps": 1, "integration": "riemann_left"})
