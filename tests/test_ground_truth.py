"""Ground truth: computed once, cached under a content key, recomputed when corrupted."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from harness.adapter import ModelShape
from harness.components import enumerate_components
from harness.context import CostCounter
from harness.errors import HarnessError
from harness.ground_truth import (
    check_truth_sample,
    compute_ground_truth,
    ground_truth,
    sample_truth,
)
from tests.helpers import local_run_args, make_context, random_batch


def test_cache_hit_miss_and_corruption(tiny_gpt2, tmp_path):
    ctx, fingerprint = make_context(tiny_gpt2, random_batch(4, 6, seed=7))
    first = ground_truth(ctx, fingerprint, tmp_path)
    assert not first.cached
    second = ground_truth(ctx, fingerprint, tmp_path)
    assert second.cached and second.key == first.key
    assert torch.equal(first.effects, second.effects)

    entry = tmp_path / "truth" / f"{first.key}.json"
    data = json.loads(entry.read_text())
    data["payload"]["effects"][0] += 1.0  # silent corruption: the content hash no longer matches
    entry.write_text(json.dumps(data))
    third = ground_truth(ctx, fingerprint, tmp_path)
    assert not third.cached and torch.equal(third.effects, first.effects)

    entry.write_text(entry.read_text()[:50])  # truncated file
    fourth = ground_truth(ctx, fingerprint, tmp_path)
    assert not fourth.cached and torch.equal(fourth.effects, first.effects)


def test_key_depends_on_what_truth_depends_on(tiny_gpt2, tmp_path):
    ctx, fingerprint = make_context(tiny_gpt2, random_batch(4, 6, seed=7))
    key = ground_truth(ctx, fingerprint, tmp_path).key
    other_prompts, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=8))
    other_metric, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), metric="logprob")
    other_direction, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), direction="denoising")
    other_sites, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), sites=("mlp_out",))
    keys = {
        ground_truth(c, fingerprint, tmp_path).key
        for c in (other_prompts, other_metric, other_direction, other_sites)
    }
    assert key not in keys and len(keys) == 4
    assert ground_truth(ctx, "another-model", tmp_path).key != key


def test_noising_and_denoising_truths_differ_and_metrics_swap(tiny_gpt2):
    batch = random_batch(4, 6, seed=9)
    noising, _ = make_context(tiny_gpt2, batch, direction="noising")
    denoising, _ = make_context(tiny_gpt2, batch, direction="denoising")
    effects_n, base_n, source_n = compute_ground_truth(noising)
    effects_d, base_d, source_d = compute_ground_truth(denoising)
    assert base_n == source_d and source_n == base_d
    assert not torch.allclose(effects_n, effects_d)


def test_sample_is_stratified_by_site_and_layer_and_fixed_by_the_seed():
    shape = ModelShape(n_layers=3, n_heads=4, d_head=2, d_model=8, n_ctx=8, d_mlp=16)
    components = enumerate_components(shape, ["head", "neuron"], "all", 4)  # 60 components
    picked = sample_truth(components, 15, seed=0)
    assert len(picked) == 15 and list(picked) == sorted(set(picked.tolist()))
    strata = Counter((components[i].site, components[i].layer) for i in picked)
    assert strata == {
        (site, layer): 1 if site == "head" else 4
        for site in ("head", "neuron")
        for layer in range(3)
    }
    assert np.array_equal(picked, sample_truth(components, 15, seed=0))
    assert not np.array_equal(picked, sample_truth(components, 15, seed=1))
    assert len(sample_truth(components, 0.5, seed=0)) == 30
    assert len(sample_truth(components, 0.01, seed=0)) == 1  # a fraction rounds up
    for everything in (None, 60, 1000, 1.0):
        assert sample_truth(components, everything, seed=0) is None


@pytest.mark.parametrize("bad", [0, -3, 1.5, 0.0, True, "10"])
def test_bad_sample_is_one_line(bad):
    with pytest.raises(
        HarnessError,
        match=r"^truth.sample must be null \(every component\), a "
        r"positive integer count or a fraction in \(0, 1\], got .*$",
    ):
        check_truth_sample(bad)


def test_cached_truths_of_a_subset_are_reused_and_merged(tiny_gpt2, tmp_path):
    ctx, fingerprint = make_context(tiny_gpt2, random_batch(3, 6, seed=2), sites=("neuron",))
    universe = list(ctx.components)
    first = replace(ctx, components=[universe[i] for i in sample_truth(universe, 20, 0)])
    a = ground_truth(first, fingerprint, tmp_path, universe=universe)
    assert not a.cached and a.cost["n_sequences"] > 0
    # a subset of what is cached: nothing is patched
    inner = replace(first, components=first.components[::3])
    b = ground_truth(inner, fingerprint, tmp_path, universe=universe)
    assert b.cached and b.key == a.key and torch.equal(b.effects, a.effects[::3])
    # a larger set: only the components not cached yet are patched, then all are merged
    more = sample_truth(universe, 40, 1)
    new = [universe[i] for i in more if universe[i] not in first.components]
    outer = replace(ctx, components=[universe[i] for i in more])
    c = ground_truth(outer, fingerprint, tmp_path, universe=universe)
    assert not c.cached and 0 < len(new) < len(more)
    only_new = CostCounter()
    compute_ground_truth(replace(ctx, components=new, cost=only_new))
    assert c.cost["n_sequences"] == only_new.n_sequences
    whole = compute_ground_truth(ctx)[0]
    position = {comp: i for i, comp in enumerate(universe)}
    expected = whole[[position[comp] for comp in outer.components]]
    torch.testing.assert_close(c.effects, expected, rtol=1e-9, atol=1e-12)
    everything = ground_truth(ctx, fingerprint, tmp_path)  # the full set shares the entry
    assert everything.key == a.key and not everything.cached
    again = ground_truth(ctx, fingerprint, tmp_path)
    assert again.cached
    torch.testing.assert_close(again.effects, whole, rtol=1e-9, atol=1e-12)


def _pairs(tmp_path):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"clean": "w1 w2 w3 w4 w12", "corrupt": "w5 w6 w7 w8 w12", "answer": "w9", "wrong": "w10"},
        {"clean": "w2 w3 w4 w5 w13", "corrupt": "w6 w7 w8 w9 w13", "answer": "w9", "wrong": "w11"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sampled_run_scores_the_sample_with_intervals(tiny_gpt2, tmp_path, capsys):
    import pandas as pd

    from tests.test_cli import run_cli

    args = local_run_args(tiny_gpt2, _pairs(tmp_path), tmp_path / "results")
    extra = ["components.sites=[neuron]", "truth.sample=12", "truth.bootstrap=200"]
    code, out, err = run_cli([*args, *extra, "diagnostics=exact"], capsys)
    assert code == 0, err
    assert "(truth patched on a sample of 12)" in out and "spearman 95% CI" in out
    assert "95% CI [" in out
    run = next((tmp_path / "results" / "runs").glob("*/*/summary.json"))
    summary = json.loads(run.read_text())
    assert summary["n_components"] == 3 * 128 and summary["n_truth"] == 12
    lo, hi = summary["spearman_ci_lo"], summary["spearman_ci_hi"]
    assert lo <= summary["spearman"] <= hi and summary["spearman_ci_width"] == pytest.approx(
        hi - lo
    )
    assert "flag_precision" in summary and "bound_coverage" in summary and "cpr" in summary
    frame = pd.read_parquet(run.parent / "estimates.parquet")
    assert len(frame) == 384 and frame["sampled"].sum() == 12
    assert frame["estimate"].notna().all() and frame["neuron"].between(0, 127).all()
    sampled, rest = frame[frame["sampled"]], frame[~frame["sampled"]]
    assert sampled["truth"].notna().all() and rest["truth"].isna().all()
    assert sampled["unreliable"].notna().all() and rest["unreliable"].isna().all()
    assert rest["atp_bound_lo"].isna().all() and sampled["atp_bound_lo"].notna().all()
    assert sorted(sampled.groupby("layer").size()) == [4, 4, 4]  # stratified by layer
    from harness.plots import close, reliability_pr, run_figures

    close([*run_figures(frame, summary).values(), reliability_pr(frame)])  # nulls are drawn
    import wandb

    assert len(wandb.Table(dataframe=frame).data) == 384  # the W&B table takes the nulls
    for bad, message in [
        ("truth.sample=0", "truth.sample must be null (every component), a positive integer"),
        ("truth.sample=1.5", "or a fraction in (0, 1], got 1.5"),
        ("truth.bootstrap=-1", "truth.bootstrap must be an integer >= 0, got -1"),
        ("truth.confidence=1", "truth.confidence must be in (0, 1), got 1"),
        ("max_fwd_equiv=0", "max_fwd_equiv must be in (0, inf), got 0"),
    ]:
        code, _, err = run_cli([*args, bad], capsys)
        assert code != 0 and err.strip().splitlines() == [f"error: {err.strip()[7:]}"]
        assert message in err


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "empty", "not_json", "swap_payload"])
def test_damaged_cache_entry_is_recomputed(damage, tiny_gpt2, tmp_path):
    import torch

    from harness.ground_truth import ground_truth
    from tests.helpers import make_context, random_batch

    ctx, fingerprint = make_context(tiny_gpt2, random_batch(3, 5, seed=3))
    first = ground_truth(ctx, fingerprint, tmp_path)
    entry = tmp_path / "truth" / f"{first.key}.json"
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":  # a digit of an effect changes: the content hash catches it
        data = bytearray(raw)
        i = raw.index(b'"effects"') + raw[raw.index(b'"effects"') :].index(b"0.") + 3
        data[i] = ord("1") if data[i] != ord("1") else ord("2")
        entry.write_bytes(bytes(data))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "not_json":
        entry.write_bytes(b"\x00\x01\x02garbage")
    else:  # a valid entry of other components under this key
        data = json.loads(raw)
        data["payload"]["components"] = data["payload"]["components"][::-1]
        from harness.storage import content_hash

        data["sha256"] = content_hash(data["payload"])
        entry.write_text(json.dumps(data))
    again = ground_truth(ctx, fingerprint, tmp_path)
    assert not again.cached and torch.equal(again.effects, first.effects)
    third = ground_truth(ctx, fingerprint, tmp_path)  # the recomputed entry was rewritten
    assert third.cached and torch.equal(third.effects, first.effects)


def test_chunked_atp_and_truth_equal_one_chunk(tiny_gpt2):
    """AtP and the ground truth hold one prompt chunk at a time; the result does not depend on
    the chunking (float64, up to rounding)."""
    import torch

    from harness.ground_truth import compute_ground_truth
    from harness.methods.atp import AttributionPatching
    from tests.helpers import make_context, random_batch

    batch = random_batch(5, 5, seed=11)
    whole, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",), batch_size=64)
    chunked, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",), batch_size=2)
    atp = AttributionPatching()
    torch.testing.assert_close(
        atp.estimate(chunked).estimates, atp.estimate(whole).estimates, rtol=1e-10, atol=1e-12
    )
    effects_w, base_w, source_w = compute_ground_truth(whole)
    effects_c, base_c, source_c = compute_ground_truth(chunked)
    torch.testing.assert_close(effects_c, effects_w.cpu(), rtol=1e-10, atol=1e-12)
    assert base_c == pytest.approx(base_w, rel=1e-12)
    assert source_c == pytest.approx(source_w, rel=1e-12)
    assert chunked.cost.n_forward > whole.cost.n_forward  # it did run in chunks


@pytest.fixture()
def ends(monkeypatch) -> list[float]:
    """The t of every path-derivative call the diagnostics make, in order."""
    import harness.diagnostics as diagnostics

    calls = []
    original = diagnostics.path_derivatives

    def recording(ctx, components, base, source, t=0.0, **options):
        calls.append(float(t))
        return original(ctx, components, base, source, t=t, **options)

    monkeypatch.setattr(diagnostics, "path_derivatives", recording)
    return calls


def test_hvp_run_lends_the_diagnostics_its_derivatives_at_zero(tiny_gpt2, tmp_path, capsys, ends):
    """method=hvp computes f'(0) and f''(0) of every component; the diagnostics take the sampled
    ones from it (a pass at t = 1 only) and come out as when they compute them themselves."""
    import pandas as pd

    from tests.test_cli import run_cli

    frames = {}
    for method in ("hvp", "atp"):  # separate results dirs: no diagnostics cache shared
        args = local_run_args(tiny_gpt2, _pairs(tmp_path), tmp_path / method)
        extra = ["components.sites=[neuron]", "truth.sample=12", f"method={method}"]
        extra.append("diagnostics=exact")  # the tier with path derivatives
        code, _, err = run_cli([*args, *extra], capsys)
        assert code == 0, err
        run = next((tmp_path / method / "runs").glob("*/*/summary.json"))
        frame = pd.read_parquet(run.parent / "estimates.parquet")
        frames[method] = frame[frame["sampled"]].reset_index(drop=True)
    assert ends == [1.0, 0.0, 1.0]  # hvp's diagnostics: t = 1 only; atp's: both ends
    columns = [c for c in frames["atp"] if c.startswith(("reliability_", "atp_bound", "hvp_bound"))]
    assert "reliability_curvature_ratio" in columns and "hvp_bound_hi" in columns
    for column in columns:
        np.testing.assert_allclose(
            frames["hvp"][column], frames["atp"][column], rtol=1e-4, atol=1e-7, err_msg=column
        )
    assert frames["hvp"]["flagged"].tolist() == frames["atp"]["flagged"].tolist()


def test_end_point_rules_share_the_path_ends_with_the_diagnostics(
    tiny_gpt2, tmp_path, capsys, ends
):
    """An exact diagnostics run caches f'(0), f''(0), f'(1): a later hermite run of the same
    truth reads them (no pass of its own) and estimates what a fresh run does; a trapezoid run
    lends its f'(1) to its diagnostics, which then take no pass at t = 1."""
    import json

    import pandas as pd

    from tests.test_cli import run_cli

    def run(folder: str, method: str) -> tuple[dict, pd.DataFrame]:
        args = local_run_args(tiny_gpt2, _pairs(tmp_path), tmp_path / folder)
        extra = ["components.sites=[neuron]", "truth.sample=12", f"method={method}"]
        code, _, err = run_cli([*args, *extra, "diagnostics=exact"], capsys)
        assert code == 0, err
        path = max((tmp_path / folder / "runs").glob(f"*/*{method}/summary.json"))
        frame = pd.read_parquet(path.parent / "estimates.parquet")
        return json.loads(path.read_text()), frame[frame["sampled"]].reset_index(drop=True)

    run("shared", "atp")  # computes and caches the exact tier's path derivatives
    shared, shared_frame = run("shared", "hermite")
    assert shared["path_ends_cached"] and shared["n_backward"] == 0 and shared["n_hvp"] == 0
    fresh, fresh_frame = run("fresh", "hermite")
    assert not fresh["path_ends_cached"] and fresh["n_backward"] > 0
    np.testing.assert_allclose(shared_frame["estimate"], fresh_frame["estimate"], rtol=1e-9)
    ends.clear()
    run("lent", "trapezoid")
    assert ends == [0.0]  # the diagnostics' f'(1) is trapezoid's
