"""A grid planned before it runs (harness/plan.py, ``dry_run=true``): every job with its
estimated forward equivalents and wall time, and the total; nothing run, nothing written; an
invalid grid is the real run's one line."""

from __future__ import annotations

import json
import re

import pytest

from harness.job import config_hash
from harness.plan import duration
from tests.helpers import GOOD, local_run_args, write_lines
from tests.test_cli import run_cli

ROW = re.compile(
    r"^  (\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+(?: of \d+)?)\s+(\S+)\s+(\S+ \S+)\s*(.*)$"
)


def plan_rows(out: str) -> list[dict]:
    """The job rows of a printed plan: num, model, task, method, components, fwd_equiv,
    wall, note."""
    keys = ("num", "model", "task", "method", "components", "fwd_equiv", "wall", "note")
    rows = [ROW.match(line) for line in out.splitlines()]
    return [dict(zip(keys, m.groups(), strict=True)) for m in rows if m]


def total_line(out: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith("total: ")]
    return line


@pytest.fixture()
def args(tiny_gpt2, tmp_path) -> list[str]:
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    return [*local_run_args(tiny_gpt2, pairs, tmp_path / "results"), "diagnostics=false"]


def test_a_dry_run_prints_every_job_and_the_total_and_writes_nothing(args, tmp_path, capsys):
    code, out, err = run_cli(["-m", *args, "method=atp,hvp,ig", "seed=0,1", "dry_run=true"], capsys)
    assert code == 0, err
    rows = plan_rows(out)
    assert [int(r["num"]) for r in rows] == list(range(6))
    assert {r["method"] for r in rows} == {"atp", "hvp", "ig"}
    assert sum("seed=1" in r["note"] for r in rows) == 3  # the other axis, beside each job
    assert all(r["components"] == "12" for r in rows)  # 3 layers x 4 heads
    fwd = [float(r["fwd_equiv"]) for r in rows]
    assert all(f > 0 for f in fwd)
    by_method = {r["method"]: float(r["fwd_equiv"]) for r in rows if "seed=0" in r["note"]}
    assert max(by_method["atp"], by_method["hvp"]) < by_method["ig"]  # 32 path points each
    total = total_line(out)
    assert total.startswith("total: 6 job(s), ")
    printed = float(re.search(r"job\(s\), (\S+) forward equivalents", total).group(1))
    assert printed == pytest.approx(sum(fwd), rel=0.01) and "core-hours at " in total
    assert not (tmp_path / "results").exists()  # no run folder, no sweep folder, no cache
    # the same grid run for real: the jobs it lists are the ones that run
    code, out, err = run_cli(["-m", *args, "method=atp,hvp,ig", "seed=0,1"], capsys)
    assert code == 0, err
    assert len(list((tmp_path / "results" / "multirun").glob("*/*/*/summary.json"))) == 6


def test_a_dry_run_counts_what_the_real_run_would_skip_or_reuse(args, tmp_path, capsys):
    """After a real atp run, its job is skipped (resume) and the truth it cached is not
    counted again; the dry_run key is left out of the config hash."""
    code, _, err = run_cli([*args, "method=atp"], capsys)
    assert code == 0, err
    before = sorted(p for p in (tmp_path / "results").rglob("*"))
    code, out, err = run_cli(["-m", *args, "method=atp,hvp", "dry_run=true"], capsys)
    assert code == 0, err
    atp, hvp = plan_rows(out)
    assert atp["note"].startswith("skipped: in ") and float(atp["fwd_equiv"]) == 0
    assert "truth cached" in hvp["note"]
    assert sorted(p for p in (tmp_path / "results").rglob("*")) == before
    config = {"seed": 0, "method": {"name": "atp"}}
    assert config_hash({**config, "dry_run": True}) == config_hash(config)


def test_a_dry_run_counts_only_the_sampled_components_a_method_estimates(args, capsys):
    code, out, err = run_cli(
        ["-m", *args, "method=ig", "truth.sample=3", "truth.method_on_sample=true,false"]
        + ["dry_run=true"],
        capsys,
    )
    assert code == 0, err
    sample, every = plan_rows(out)
    assert sample["components"] == "3 of 12" and every["components"] == "12"
    assert float(sample["fwd_equiv"]) < float(every["fwd_equiv"]) / 3


def test_a_dry_run_of_the_smoke_grid(tmp_path, capsys):
    code, out, err = run_cli(
        ["-m", "experiment=smoke", "dry_run=true", f"results_dir={tmp_path / 'r'}"], capsys
    )
    assert code == 0, err
    assert [r["method"] for r in plan_rows(out)] == ["atp", "hvp", "actpatch"]
    assert total_line(out).startswith("total: 3 job(s)") and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "grid",
    [
        ["-m", "method=atp,bogus"],
        ["-m", "method=atp", "truth.sample=0"],
        ["-m", "method=atp,hvp", "method.steps=3"],
        ["method=ig", "max_fwd_equiv=100"],  # one job, refused by its cost
    ],
)
def test_a_dry_run_of_an_invalid_grid_is_the_real_runs_one_line(args, tmp_path, capsys, grid):
    code, out, err = run_cli([*grid, *args, "dry_run=true"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: ")
    assert not (tmp_path / "results").exists()
    real_code, _, real_err = run_cli([*grid, *args], capsys)
    assert (real_code, real_err) == (code, err)


def test_a_job_of_a_grid_the_real_run_would_refuse_is_listed_with_its_error(args, capsys):
    code, out, err = run_cli(
        ["-m", *args, "method=atp,ig", "max_fwd_equiv=100", "dry_run=true"], capsys
    )
    assert code == 0, err
    atp, ig = plan_rows(out)
    assert atp["note"] == "" and ig["note"].startswith("fails: method 'ig' on 12 components ")
    assert "1 job(s) would fail" in total_line(out)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.84, "0.84 s"), (59, "59 s"), (720, "12 min"), (3 * 3600, "3 h"), (2 * 86400, "2 days")],
)
def test_durations_read_in_their_largest_unit(seconds, text):
    assert duration(seconds) == text


def test_the_expected_cost_scales_only_the_per_component_part(tiny_gpt2):
    """The probe's ratios scale what the cost model spends per component (the method's path
    points, the truth's patched copies); a method whose cost does not grow with the components
    keeps the model's estimate, and ratios of 1 give the model's estimates back."""
    from hydra import compose, initialize_config_module

    from harness.cost import FORWARD, PER_PATH_POINT
    from harness.plan import expected_costs
    from harness.run import check_composed, stage_costs
    from tests.helpers import make_context, random_batch

    ctx, _ = make_context(tiny_gpt2, random_batch(2, 5, seed=4), sites=("head",))
    n = len(ctx.components)

    def costs(method: str, ratios: tuple[float, float]) -> tuple[dict, dict]:
        with initialize_config_module(config_module="harness.conf", version_base="1.3"):
            overrides = [f"method={method}", "diagnostics=cheap", "results_dir=/tmp/unused"]
            spec = check_composed(compose("config", overrides=overrides))
        stages = stage_costs(spec, ctx, None)
        return stages, expected_costs(spec, ctx, None, stages, ratios)

    stages, same = costs("ms_hvp", (1.0, 1.0))
    assert same == {k: v[1].fwd_equiv for k, v in stages.items()}
    stages, scaled = costs("ms_hvp", (0.5, 0.25))
    steps = 8  # conf/method/ms_hvp.yaml
    per_component = n * steps * PER_PATH_POINT
    assert scaled["method"] == pytest.approx(stages["method"][1].fwd_equiv - 0.75 * per_component)
    assert scaled["truth"] == pytest.approx(stages["truth"][1].fwd_equiv - 0.5 * n * FORWARD)
    stages, atp = costs("atp", (0.5, 0.25))
    assert atp["method"] == stages["method"][1].fwd_equiv
