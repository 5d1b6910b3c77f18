"""hvp_probe: the Hutchinson estimate of f_c''(0) is exact with one component per site, its
mean over an orthogonal sign design is exactly hvp's own term where a site holds several heads
(one probe is not), and it is seeded and chunk-invariant."""

from __future__ import annotations

import pytest
import torch

import harness.methods.hvp_probe as hvp_probe
from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.patching import site_names
from tests.helpers import make_context, random_batch


def exact(ctx) -> torch.Tensor:
    return make_method({"name": "hvp"}).estimate(ctx).columns["second_order"]


def probe(ctx, **options):
    return make_method({"name": "hvp_probe", **options}).estimate(ctx)


def hadamard(size: int) -> torch.Tensor:
    """Sylvester's [size, size] +1/-1 matrix: its columns are pairwise orthogonal."""
    out = torch.ones(1, 1, dtype=torch.float64)
    while len(out) < size:
        out = torch.cat([torch.cat([out, out], 1), torch.cat([out, -out], 1)])
    return out


@pytest.fixture(scope="module")
def heads(tiny_gpt2):
    """Four heads in each of three layers: cross terms within a site are large."""
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=31), sites=("head",))
    return ctx, exact(ctx)


@pytest.mark.parametrize("probes", [1, 3])
def test_one_component_per_site_gives_the_exact_term_for_any_probes(tiny_gpt2, probes):
    batch = random_batch(4, 6, seed=32)
    ctx, _ = make_context(tiny_gpt2, batch, sites=("attn_out", "mlp_out", "resid_pre"))
    want = make_method({"name": "hvp"}).estimate(ctx)
    assert want.columns["second_order"].abs().max() > 1e-4
    ctx.cost.__init__()
    got = probe(ctx, probes=probes, seed=5)
    assert (ctx.cost.n_backward, ctx.cost.n_hvp) == (1, probes * len(site_names(ctx.components)))
    torch.testing.assert_close(got.estimates, want.estimates, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got.columns, want.columns, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("scope", ["layer", "all"])
def test_the_probe_mean_over_an_orthogonal_design_is_the_exact_term(heads, monkeypatch, scope):
    """Over the 16 rows of a Hadamard matrix every two components' signs are orthogonal
    (sum_k s_kc s_kj = 0): the cross terms cancel exactly, within a layer and (scope all)
    across layers, so the mean is d_c^T H d_c. One random probe keeps them."""
    ctx, want = heads
    one = probe(ctx, probes=1, scope=scope).columns["second_order"]
    assert (one - want).abs().max() > 0.2 * want.abs().max()
    design = hadamard(16)
    monkeypatch.setattr(hvp_probe, "rademacher", lambda probes, count, seed: design[:, :count])
    got = probe(ctx, probes=16, scope=scope)
    torch.testing.assert_close(got.columns["second_order"], want, rtol=1e-9, atol=1e-12)


def test_scope_all_brings_in_the_cross_layer_terms(tiny_gpt2, monkeypatch):
    """One component per site: scope layer is exact, one probe of scope all is not (the other
    layers' d_j enter with random sign), and the orthogonal design cancels them again."""
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=34), sites=("attn_out", "mlp_out"))
    want = exact(ctx)
    ctx.cost.__init__()
    one = probe(ctx, probes=2, scope="all").columns["second_order"]
    assert ctx.cost.n_hvp == 2
    assert (one - want).abs().max() > 0.2 * want.abs().max()
    design = hadamard(8)
    monkeypatch.setattr(hvp_probe, "rademacher", lambda probes, count, seed: design[:, :count])
    got = probe(ctx, probes=8, scope="all").columns["second_order"]
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_more_random_probes_come_closer(heads):
    ctx, want = heads
    error = [(probe(ctx, probes=k).columns["second_order"] - want).abs().mean() for k in (1, 256)]
    assert error[1] < 0.25 * error[0]


def test_the_same_seed_gives_the_same_numbers_and_another_seed_others(heads):
    ctx, _ = heads
    first, again, other = (probe(ctx, seed=s).estimates for s in (0, 0, 1))
    assert torch.equal(first, again)
    assert (first - other).abs().max() > 1e-6


@pytest.mark.parametrize("scope", ["layer", "all"])
def test_chunked_prompts_equal_one_chunk(tiny_gpt2, scope):
    batch = random_batch(5, 6, seed=33)
    one, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out"), batch_size=64)
    chunked, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out"), batch_size=2)
    want, got = (probe(c, probes=3, scope=scope) for c in (one, chunked))
    assert chunked.cost.n_backward == 3 and one.cost.n_backward == 1
    torch.testing.assert_close(got.estimates, want.estimates, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got.columns, want.columns, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("option", "value", "accepted"),
    [
        ("probes", 0, "an integer >= 1"),
        ("probes", -2, "an integer >= 1"),
        ("probes", 1.5, "an integer >= 1"),
        ("seed", -1, "an integer >= 0"),
        ("scope", "x", "layer, all"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_pass(option, value, accepted):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "hvp_probe", option: value})
    message = str(info.value)
    assert "\n" not in message and repr(value) in message and accepted in message
