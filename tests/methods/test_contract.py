"""The contract every registered method keeps: its declared error bound matches its estimate.

A method whose estimate is f'(0) (AtP) must declare the ``atp`` bound, one whose estimate is
f'(0) + f''(0) / 2 (the HVP estimate) the ``hvp`` bound, and any other says None, explicitly in
its own class body; a declared bound then gets a finite ``bound_coverage`` in the record.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.config_files import group_options
from harness.context import CostCounter
from harness.diagnostics import DiagnosticSettings, path_quantities, run_diagnostics
from harness.methods.base import Method, make_method
from tests.helpers import make_context, random_batch
from tests.test_cli import local_args, run_cli

VARIANTS = [(slug, {}) for slug in group_options("method")] + [
    ("ms_hvp", {"steps": 1}),
    ("atp_star", {"qk_fix": False}),
    ("atp_star", {"qk_fix": False, "graddrop": True}),
]


@pytest.fixture(scope="module")
def toy(tiny_gpt2):
    """A float64 context with several heads per layer, its path derivatives and its truth."""
    ctx, _ = make_context(tiny_gpt2, random_batch(2, 5, seed=21), sites=("head",))
    path = path_quantities(ctx)
    truth = make_method({"name": "actpatch"}).estimate(ctx).estimates.numpy()
    return ctx, path, truth


def composed_method(slug: str, options: dict) -> Method:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"method={slug}"]).method
    return make_method({**OmegaConf.to_container(cfg), **options})


@pytest.mark.parametrize(("slug", "options"), VARIANTS, ids=lambda v: str(v))
def test_every_method_declares_the_bound_its_estimate_has(toy, slug, options):
    ctx, path, truth = toy
    method = composed_method(slug, options)
    declared_in = [k for k in type(method).__mro__ if k is not Method and "bound" in vars(k)]
    assert declared_in, f"{type(method).__name__} must declare `bound` (None when it has none)"

    estimates = method.estimate(ctx).estimates.double()
    atp, hvp = path.first0, path.first0 + path.second0 / 2
    assert not torch.allclose(atp, hvp, rtol=1e-6, atol=1e-9)  # the toy tells them apart
    expected = None
    if torch.allclose(estimates, atp, rtol=1e-6, atol=1e-9):
        expected = "atp"
    elif torch.allclose(estimates, hvp, rtol=1e-6, atol=1e-9):
        expected = "hvp"
    assert method.error_bound() == expected

    settings = DiagnosticSettings(["delta_norm"], {"fraction": 0.2}, {"abs": 0.05, "rel": 0.25})
    _, summary = run_diagnostics(ctx, truth, settings, method.error_bound())
    assert math.isfinite(summary["bound_coverage"]) == (expected is not None)


@pytest.mark.parametrize(("slug", "options"), VARIANTS, ids=lambda v: str(v))
def test_a_method_whose_cost_grows_estimates_a_sample_as_it_estimates_all(toy, slug, options):
    """``estimate_sample`` (truth.sample): float64 equal to ``estimate`` on every component it
    estimates (the sampled ones at least), NaN on the others, in fewer passes (one patched
    copy or path point a pass, so the passes count the copies)."""
    ctx, _, _ = toy
    method = composed_method(slug, options)
    if not method.cost_grows():
        pytest.skip(f"{slug} costs the same for any number of components: it estimates all")
    if "steps" in method.config and "steps" not in options:  # fewer passes, the same contract
        method = composed_method(slug, {**options, "steps": 2})
    index = [0, 3, 5, 6, 10]
    one_copy = replace(ctx, batch_size=ctx.batch.n, chunks={})
    full_ctx, sample_ctx = one_copy.with_cost(CostCounter()), one_copy.with_cost(CostCounter())
    full = method.estimate(full_ctx)
    part = method.estimate_sample(sample_ctx, index)
    computed = part.computed
    assert computed is not None and computed[index].all() and not computed.all()
    assert part.estimates[~computed].isnan().all()
    torch.testing.assert_close(
        part.estimates[computed], full.estimates.double()[computed], rtol=1e-9, atol=1e-12
    )
    for name, column in part.columns.items():
        expected = full.columns[name].double()[computed]
        torch.testing.assert_close(column.double()[computed], expected, rtol=1e-9, atol=1e-12)

    def passes(cost: CostCounter) -> int:
        return cost.n_forward + cost.n_backward + cost.n_hvp

    assert passes(sample_ctx.cost) < passes(full_ctx.cost)


@pytest.mark.parametrize("slug", ["atp", "hvp"])
def test_a_run_of_a_bounded_method_records_its_bound_coverage(tiny_gpt2, tmp_path, capsys, slug):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"clean": "w1 w2 w3 w4", "corrupt": "w5 w6 w7 w8", "answer": "w9", "wrong": "w10"},
        {"clean": "w2 w3 w4 w5", "corrupt": "w6 w7 w8 w9", "answer": "w9", "wrong": "w11"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = [a for a in local_args(tiny_gpt2, pairs, tmp_path) if a != "diagnostics=false"]
    code, _, err = run_cli([*args, f"method={slug}", "circuits=false", "diagnostics=exact"], capsys)
    assert code == 0, err
    (path,) = (tmp_path / "results" / "runs").glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["bound_coverage"] == summary[f"{slug}_bound_coverage"]
    assert np.isfinite(summary["bound_coverage"]) and np.isfinite(summary["bound_width"])


@pytest.mark.parametrize("slug", group_options("method"))
def test_every_method_config_is_named_by_its_slug(slug):
    """One slug is the identity: the Hydra choice is the ``method`` of records, tables, W&B."""
    method = composed_method(slug, {})
    assert method.name == slug
