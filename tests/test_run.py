"""A job's life (harness/run.py): numerical faults fail the job and only the job, an
interrupted run leaves nothing half written, the same config and seed give the same numbers, no
pickles, flat memory over many prompts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import GOOD, REPO, assert_one_line, local_run_args, write_lines
from tests.test_cli import local_args, run_cli


def _nan_weights_model(src: Path, dst: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    name = next(k for k in weights if k.endswith("ln_f.weight"))
    weights[name][0] = float("nan")
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_nan_model_fails_the_job_and_caches_nothing(tiny_gpt2, tmp_path, capsys):
    folder = _nan_weights_model(tiny_gpt2, tmp_path / "nan_model")
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(folder, pairs, tmp_path), capsys)
    assert_one_line(code, err, "the clean run's logit_diff metric is nan", "non-finite logits")
    failures = list((tmp_path / "results" / "runs").rglob("failure.json"))
    assert len(failures) == 1
    assert "metric is nan" in json.loads(failures[0].read_text())["error"]
    assert not list((tmp_path / "results").rglob("summary.json"))
    cache = tmp_path / "results" / "cache"
    memos = {"file_hashes", "weights_checked"}  # facts about the input files, not results
    assert not [p for p in cache.rglob("*.json") if p.parent.name not in memos]  # no NaN truth


def _inf_estimates(monkeypatch, index: int = 3) -> None:
    from harness.methods.atp import AttributionPatching

    original = AttributionPatching.estimate

    def estimate(self, ctx):
        output = original(self, ctx)
        output.estimates[index] = float("inf")
        return output

    monkeypatch.setattr(AttributionPatching, "estimate", estimate)


def test_infinite_estimate_names_method_and_component(tiny_gpt2, tmp_path, capsys, monkeypatch):
    _inf_estimates(monkeypatch, index=3)
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(tiny_gpt2, pairs, tmp_path), capsys)
    line = assert_one_line(code, err, "method 'atp' gave a non-finite estimate (inf)")
    # components: head sites, positions=all -> the 4th is layer 0, head 3
    assert "component head.L0.H3" in line or "component " in line, line
    failure = next((tmp_path / "results" / "runs").rglob("failure.json"))
    assert json.loads(failure.read_text())["error"] == line.removeprefix("error: ")
    assert not list(failure.parent.glob("summary.json"))


def test_numerical_fault_in_a_multirun_fails_only_that_job(
    tiny_gpt2, tmp_path, capsys, monkeypatch
):
    _inf_estimates(monkeypatch)
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    sweep = tmp_path / "results" / "multirun" / "sweep"
    args = [
        "-m",
        *local_args(tiny_gpt2, pairs, tmp_path),
        "circuits=false",
        f"hydra.sweep.dir={sweep}",
    ]
    code, _, err = run_cli([*args, "method=atp,actpatch"], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert "method 'atp' gave a non-finite estimate" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 job(s) failed: ")
    jobs = {p.name.split("_")[-1]: p for p in sweep.iterdir() if p.is_dir()}
    assert (jobs["atp"] / "failure.json").is_file() and not (jobs["atp"] / "summary.json").exists()
    assert json.loads((jobs["actpatch"] / "summary.json").read_text())["status"] == "ok"


SLOW_ARGS = [
    "diagnostics=false",
    "circuits=false",
    "dtype=float64",
    "method=ms_hvp",  # the method runs for a while after the ground truth is cached
    "method.steps=2",
]


def _pairs(tmp_path: Path) -> Path:
    rows = [
        GOOD,
        {"clean": "w3 w2 w5 w4", "corrupt": "w8 w9 w6 w7", "answer": "w13", "wrong": "w12"},
    ]
    return write_lines(tmp_path / "pairs.jsonl", [json.dumps(r) for r in rows])


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_sigterm_leaves_nothing_half_written_and_the_rerun_resumes(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *SLOW_ARGS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, f"results_dir={killed_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    truth_dir = killed_dir / "cache" / "truth"
    deadline = time.monotonic() + 300
    while not list(truth_dir.glob("*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no ground-truth cache entry after 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the method (ms_hvp, many steps) is running now
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    assert err.strip().splitlines() == [
        "error: interrupted by SIGTERM; finished results and cache entries are kept, re-run "
        "the same command to resume"
    ]
    assert not _leftovers(killed_dir)
    assert not list(killed_dir.rglob("summary.json")) and not list(killed_dir.rglob("*.parquet"))
    failure = next(killed_dir.rglob("failure.json"))
    assert json.loads(failure.read_text())["error"] == "interrupted by SIGTERM"
    assert not (killed_dir / "index").exists()  # the killed job is not a finished run

    # the re-run resumes: same command, the cached ground truth is used, the job completes
    code, _, err = run_cli([*args, f"results_dir={killed_dir}"], capsys)
    assert code == 0, err
    resumed = next(killed_dir.rglob("summary.json"))
    assert json.loads(resumed.read_text())["truth_cached"] is True

    # ... and gives what an uninterrupted run gives, exactly
    code, _, err = run_cli([*args, f"results_dir={clean_dir}"], capsys)
    assert code == 0, err
    fresh = next(clean_dir.rglob("summary.json"))
    assert json.loads(fresh.read_text())["truth_cached"] is False
    a = pd.read_parquet(resumed.parent / "estimates.parquet")
    b = pd.read_parquet(fresh.parent / "estimates.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not _leftovers(tmp_path)


def test_same_config_and_seed_give_identical_estimates(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    args = [
        *local_args(tiny_gpt2, pairs, tmp_path),
        "dtype=float64",
        "components.sites=[head,mlp_out]",
        "method=ig",
        "method.steps=2",
        "circuits=false",
    ]
    frames = []
    for name in ("a", "b"):
        code, _, err = run_cli([*args, f"results_dir={tmp_path / name}"], capsys)
        assert code == 0, err
        frames.append(pd.read_parquet(next((tmp_path / name).rglob("estimates.parquet"))))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".npy", ".npz", ".joblib"}


def test_results_and_caches_hold_no_pickle(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    code, _, err = run_cli([*local_args(tiny_gpt2, pairs, tmp_path), "diagnostics=true"], capsys)
    assert code == 0, err
    files = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".json" for p in files)
    for path in files:
        assert path.suffix not in PICKLE_SUFFIXES, path
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), path
        if path.suffix == ".parquet":
            assert path.read_bytes()[:4] == b"PAR1"
        elif path.suffix == ".json":
            json.loads(path.read_text())


PEAK_RSS = """
import resource, sys
sys.argv = ["harness", *sys.argv[1:]]
from harness.run import main
try:
    main()
finally:
    print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _prompts_file(path: Path, n: int, length: int = 28) -> Path:
    import random

    rng = random.Random(0)
    with path.open("w") as handle:
        for _ in range(n):
            clean = [f"w{rng.randrange(61)}" for _ in range(length)]
            corrupt = [f"w{rng.randrange(61)}" if rng.random() < 0.5 else w for w in clean]
            answer, wrong = rng.sample(range(61), 2)  # distinct: a degenerate pair is refused
            row = {
                "clean": " ".join(clean),
                "corrupt": " ".join(corrupt),
                "answer": f"w{answer}",
                "wrong": f"w{wrong}",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def _peak_rss_mb(tiny_gpt2: Path, pairs: Path, results: Path) -> tuple[float, dict]:
    args = [
        *local_run_args(tiny_gpt2, pairs, results),
        "method=atp",
        "diagnostics=false",
        "circuits=false",
        "components.sites=[resid_pre]",
        "batch_size=500",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = float(proc.stdout.split("PEAK_RSS_MB")[-1].split()[0])
    summary = json.loads(next(results.rglob("summary.json")).read_text())
    return peak, summary


@pytest.mark.slow
def test_ten_thousand_prompts_run_with_flat_memory(tiny_gpt2, tmp_path):
    """10,000 prompts of 28 tokens complete, and peak RSS grows by far less than holding every
    prompt's activations would take (atp on resid_pre: source, base, gradient and product
    [n, 28, 32] float32 per layer, 3 layers: about 43 MB per 1,000 prompts, 390 MB for 9,000)."""
    small, s_small = _peak_rss_mb(
        tiny_gpt2, _prompts_file(tmp_path / "p1k.jsonl", 1000), tmp_path / "r1k"
    )
    large, s_large = _peak_rss_mb(
        tiny_gpt2, _prompts_file(tmp_path / "p10k.jsonl", 10_000), tmp_path / "r10k"
    )
    assert s_small["n_prompts"] == 1000 and s_large["n_prompts"] == 10_000
    assert s_large["status"] == "ok"
    print(f"peak RSS: 1,000 prompts {small:.0f} MB, 10,000 prompts {large:.0f} MB")
    assert large - small < 150, (small, large)


# --------------------------------------------------------------------------------------------
# What the printed table tells a reader


def _summary(results: Path) -> dict:
    (path,) = results.rglob("summary.json")
    return json.loads(path.read_text())


def test_four_prompts_all_correct_are_too_few_to_tell_not_unsolved(tmp_path, capsys):
    """toy-gpt2 answers all 4 IOI prompts; no test at 95% can tell 4 of 4 from chance (0.5^4 >
    0.05): the run says so, and the report gives it no 'solved' value, not 0."""
    from harness.report import main as report

    results = tmp_path / "results"
    args = ["model=toy-gpt2", "task=ioi", "method=atp", "n_prompts=4"]
    args += ["diagnostics=false", "circuits=false", f"results_dir={results}"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    summary = _summary(results)
    assert summary["clean_accuracy"] == 1.0 and summary["task_solved"] is None
    assert "TASK NOT SOLVED" not in out
    assert "too few prompts to tell whether the task is solved (all 4 correct" in out
    report([str(results)])
    table = (results / "report" / "tables.md").read_text()
    header, _, row = table.split("## Task `ioi`")[1].strip().splitlines()[:3]
    cells = {h.strip(): c.strip() for h, c in zip(header.split("|"), row.split("|"), strict=True)}
    assert cells["clean acc."] == "1.00" and cells.get("solved", "-") == "-", table


def _largest_effect_rows(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "largest true effects" in line) + 1
    return [line for line in lines[start:] if line.lstrip().startswith("head.")]


def test_sampled_truth_lists_only_scored_components(tiny_gpt2, tmp_path, capsys):
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)] * 2)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), "circuits=false", "truth.sample=3"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    rows = _largest_effect_rows(out)
    assert len(rows) == 3 and not any("nan" in row for row in rows), out
    frame = pd.read_parquet(next((tmp_path / "results").rglob("estimates.parquet")))
    assert {row.split()[0] for row in rows} == set(frame.loc[frame["sampled"], "component"])


def test_default_job_says_how_the_method_ranks_and_the_command_to_compare_runs(
    tmp_path, capsys, monkeypatch
):
    """The default job (no override) prints a sentence read from its Spearman interval and the
    command comparing it with hvp; that command, run as printed, tables atp beside hvp."""
    import shlex

    from harness.report import main as report

    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli([], capsys)
    assert code == 0, err
    summary = _summary(tmp_path / "outputs")
    lo, hi = summary["spearman_ci_lo"], summary["spearman_ci_hi"]
    how = "better than" if lo > 0 else "worse than" if hi < 0 else "no better than"
    assert f"atp ranks the 16 scored components {how} chance: " in out
    assert f"95% CI [{lo:+.2f}, {hi:+.2f}]" in out
    lines = out.splitlines()
    command = lines[lines.index("  to compare with hvp (AtP plus its second-order term), run:") + 1]
    assert command == "    harness -m method=atp,hvp && harness-report outputs"
    sweep, table = (shlex.split(part) for part in command.split(" && "))
    code, _, err = run_cli(sweep[1:], capsys)
    assert code == 0, err
    report(table[1:])
    tables = (tmp_path / "outputs" / "report" / "tables.md").read_text()
    assert "| toy-gpt2 | atp " in tables and "| toy-gpt2 | hvp " in tables


def test_verdict_and_command_follow_the_method_and_the_overrides(tmp_path, capsys):
    """actpatch, denoising: its ranking is the truth's (interval above 0), and the command keeps
    the job's overrides and adds atp and hvp."""
    results = tmp_path / "results"
    args = ["method=actpatch", "direction=denoising", "diagnostics=false", "circuits=false"]
    code, out, err = run_cli([*args, f"results_dir={results}"], capsys)
    assert code == 0, err
    summary = _summary(results)
    assert summary["spearman_ci_lo"] > 0
    assert "actpatch ranks the 16 scored components better than chance: Spearman +1.00" in out
    assert "above 0." in out
    assert "to compare with atp (first-order AtP) and hvp (AtP plus its second-order term)" in out
    assert (
        "    harness -m direction=denoising diagnostics=false circuits=false "
        f"results_dir={results} method=actpatch,atp,hvp && harness-report {results}"
    ) in out.splitlines()


def _sampled_run(tiny_gpt2, tmp_path, capsys, name: str, *extra: str):
    """A float64 run of the tiny model on 12 heads with truth.sample=5, one copy a pass:
    (summary, estimates frame, run folder)."""
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    args = [*local_run_args(tiny_gpt2, pairs, tmp_path / name), "diagnostics=false"]
    args += ["dtype=float64", "batch_size=1", "truth.sample=5", *extra]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    (path,) = (tmp_path / name / "runs").glob("*/*/summary.json")
    return json.loads(path.read_text()), pd.read_parquet(path.parent / "estimates.parquet"), path


def test_a_method_whose_cost_grows_estimates_the_truth_sample_only(tiny_gpt2, tmp_path, capsys):
    """hvp (exact) under truth.sample: the sampled components only, float64 equal to the run on
    every component (truth.method_on_sample=false), in fewer HVPs; no circuit recovery without a
    full ranking, and the record says why."""
    sample, frame, path = _sampled_run(tiny_gpt2, tmp_path, capsys, "sample", "method=hvp")
    every, frame_all, path_all = _sampled_run(
        tiny_gpt2, tmp_path, capsys, "all", "method=hvp", "truth.method_on_sample=false"
    )
    assert sample["n_components"] == 12 and sample["n_estimated"] == 5
    assert frame["estimate"].notna().tolist() == frame["sampled"].tolist()
    assert frame["first_order"].notna().tolist() == frame["sampled"].tolist()
    sampled = frame["sampled"].to_numpy()
    assert frame_all["sampled"].tolist() == frame["sampled"].tolist()
    assert frame_all["estimate"].notna().all() and every["n_estimated"] == 12
    pd.testing.assert_series_equal(
        frame["estimate"][sampled], frame_all["estimate"][sampled], rtol=1e-9, atol=1e-12
    )
    assert sample["n_hvp"] < every["n_hvp"]
    assert sample["spearman"] == pytest.approx(every["spearman"], rel=1e-9)
    assert "cpr" not in sample and not (path.parent / "circuit_curve.parquet").exists()
    assert sample["circuits_skipped"] == (
        "method 'hvp' estimated 5 of the 12 components (truth.sample); circuit recovery needs a "
        "full ranking, which truth.method_on_sample=false computes"
    )
    assert "cpr" in every and "circuits_skipped" not in every
    assert (path_all.parent / "circuit_curve.parquet").exists()
    assert sample["config_hash"] != every["config_hash"]


def test_a_sampled_actpatch_reads_the_truth_and_atp_estimates_every_component(
    tiny_gpt2, tmp_path, capsys
):
    summary, frame, _ = _sampled_run(tiny_gpt2, tmp_path, capsys, "actpatch", "method=actpatch")
    sampled = frame["sampled"].to_numpy()
    assert summary["reads_truth"] and frame["estimate"].notna().tolist() == sampled.tolist()
    assert (frame["estimate"][sampled] == frame["truth"][sampled]).all()
    summary, frame, _ = _sampled_run(tiny_gpt2, tmp_path, capsys, "atp", "method=atp")
    assert frame["estimate"].notna().all() and summary["n_estimated"] == 12 and "cpr" in summary


def test_a_non_finite_estimate_of_a_sampled_component_still_fails_the_job(
    tiny_gpt2, tmp_path, capsys, monkeypatch
):
    """NaN is the estimate of a component the method was not asked for; a NaN among the sampled
    ones is a numerical fault naming it."""
    from harness.methods.hvp import HessianVectorProduct

    original = HessianVectorProduct.estimate

    def estimate(self, ctx):
        output = original(self, ctx)
        output.estimates[1] = float("nan")
        return output

    monkeypatch.setattr(HessianVectorProduct, "estimate", estimate)
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    args = [*local_args(tiny_gpt2, pairs, tmp_path), "method=hvp", "truth.sample=5"]
    code, _, err = run_cli(args, capsys)
    from harness.ground_truth import sample_truth
    from tests.helpers import make_context, random_batch

    ctx, _ = make_context(tiny_gpt2, random_batch(1, 5, seed=0))
    second = ctx.components[sample_truth(ctx.components, 5, 0)[1]].id
    line = assert_one_line(code, err, f"non-finite estimate (nan) for component {second}")
    failure = next((tmp_path / "results" / "runs").rglob("failure.json"))
    assert json.loads(failure.read_text())["error"] == line.removeprefix("error: ")
