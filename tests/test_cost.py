"""Cost accounting in every run record: forward equivalents and peak memory."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest

from harness.config_files import group_options
from harness.cost import peak_mem_mb, run_cost, time_forward
from harness.methods.base import make_method
from tests.helpers import local_run_args, make_context, random_batch
from tests.test_cli import local_args, run_cli


def test_time_forward_is_positive_and_uncounted(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=0), dtype="float32", batch_size=2)
    seconds = time_forward(ctx)
    assert seconds > 0 and math.isfinite(seconds)
    assert ctx.cost.n_forward == 0  # a measurement, not part of any method's cost
    assert peak_mem_mb("cpu") > 1.0


def test_summary_has_fwd_equiv_and_peak_memory(tiny_gpt2, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    rows = [
        {"clean": "w1 w2 w3 w4", "corrupt": "w5 w6 w7 w8", "answer": "w9", "wrong": "w10"},
        {"clean": "w2 w3 w4 w5", "corrupt": "w6 w7 w8 w9", "answer": "w9", "wrong": "w11"},
    ]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = local_args(tiny_gpt2, pairs, tmp_path) + ["circuits=false"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (path,) = (tmp_path / "results" / "runs").glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["forward_s"] > 0
    assert summary["fwd_equiv"] > 0 and math.isfinite(summary["fwd_equiv"])
    assert summary["fwd_equiv"] == summary["wall_s"] / summary["forward_s"]
    assert summary["peak_mem_mb"] > 1.0 and math.isfinite(summary["peak_mem_mb"])


@pytest.mark.parametrize("slug", group_options("method"))
def test_every_method_declares_whether_its_cost_grows_with_the_components(tiny_gpt2, slug):
    """``Method.cost_grows()`` is what ``cost_estimate`` says: flat in the number of components
    (of one site), or linear in it; a growing method's estimate on a sample
    (``sample_cost_estimate``) counts only the sampled components."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"method={slug}"]).method
    method = make_method(OmegaConf.to_container(cfg))
    ctx, _ = make_context(tiny_gpt2, random_batch(2, 5, seed=0), sites=("neuron",))
    small = method.cost_estimate(replace(ctx, components=ctx.components[:10]))
    large_ctx = replace(ctx, components=ctx.components[:100])
    large = method.cost_estimate(large_ctx)
    assert small.fwd_equiv > 0 and small.detail
    if not method.cost_grows():
        assert large.fwd_equiv == small.fwd_equiv
    else:  # linear: 90 more components cost 9 times what 10 more cost over the fixed part
        fixed = method.cost_estimate(replace(ctx, components=[])).fwd_equiv
        assert large.fwd_equiv - fixed == pytest.approx(10 * (small.fwd_equiv - fixed))
        sampled = method.sample_cost_estimate(large_ctx, list(range(0, 100, 10)))
        assert sampled.fwd_equiv < large.fwd_equiv and sampled.detail


def test_the_cheap_diagnostics_cost_the_same_for_any_number_of_components():
    extra = [run_cost(n, "cheap").fwd_equiv - run_cost(n, "off").fwd_equiv for n in (10, 10**5)]
    assert extra[0] == extra[1] > 0
    exact = [run_cost(n, "exact").fwd_equiv - run_cost(n, "off").fwd_equiv for n in (10, 10**5)]
    assert exact[1] > 1000 * exact[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["method=ig", "max_fwd_equiv=5000"],
            r"^error: method 'ig' on 1920 components would cost about 1\.84e\+05 forward "
            r"equivalents \(32 forward/backward steps per component\), above max_fwd_equiv=5000; "
            r"set max_fwd_equiv higher \(or null\) to run it anyway, or use fewer components "
            r"\(components.sites, components.positions\), or estimate a sample "
            r"\(truth.sample=COUNT or a fraction\)$",
        ),
        (
            ["method=ig", "max_fwd_equiv=5000", "truth.sample=10", "truth.method_on_sample=false"],
            r"^error: method 'ig' on 1920 components would cost about 1\.84e\+05 .* or estimate "
            r"the sampled ones only \(truth.method_on_sample=true\)$",
        ),
        (
            ["max_fwd_equiv=5000", "diagnostics=exact"],
            r"^error: the ground truth and diagnostics=exact of 1920 components would cost about "
            r"1\.35e\+04 .*above max_fwd_equiv=5000; .* or patch a sample "
            r"\(truth.sample=COUNT or a fraction\) or set diagnostics=cheap \(its cost does not "
            r"grow with the components\)$",
        ),
    ],
)
def test_a_size_the_cost_estimate_rules_out_is_refused_up_front(
    tiny_gpt2, tmp_path, capsys, extra, message
):
    pairs = tmp_path / "pairs.jsonl"
    row = {"clean": "w1 w2 w3 w4 w5", "corrupt": "w5 w6 w7 w8 w9", "answer": "w9", "wrong": "w10"}
    pairs.write_text(json.dumps(row) + "\n")
    args = [*local_run_args(tiny_gpt2, pairs, tmp_path / "results"), "components.sites=[neuron]"]
    code, out, err = run_cli([*args, "components.positions=each", *extra], capsys)
    assert code != 0 and re.match(message, err.strip()) and len(err.strip().splitlines()) == 1
    assert not list((tmp_path / "results").rglob("cache/truth/*.json"))  # refused before any pass


def test_the_cost_check_counts_only_the_components_a_sampled_method_estimates(
    tiny_gpt2, tmp_path, capsys
):
    """ig on 1920 components costs about 1.8e5 forwards; on a truth sample of 10 it is under
    max_fwd_equiv=5000 and runs (the same limit refuses it on every component, above)."""
    pairs = tmp_path / "pairs.jsonl"
    row = {"clean": "w1 w2 w3 w4 w5", "corrupt": "w5 w6 w7 w8 w9", "answer": "w9", "wrong": "w10"}
    pairs.write_text(json.dumps(row) + "\n")
    args = [*local_run_args(tiny_gpt2, pairs, tmp_path / "results"), "components.sites=[neuron]"]
    extra = ["method=ig", "max_fwd_equiv=5000", "truth.sample=10", "diagnostics=false"]
    code, _, err = run_cli([*args, "components.positions=each", *extra], capsys)
    assert code == 0, err
    (path,) = (tmp_path / "results" / "runs").glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["n_components"] == 1920 and summary["n_estimated"] == 10
