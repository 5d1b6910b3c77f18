"""``harness-report``: a real 2 models x 2 methods grid made by the CLI, gathered into tables
and figures; plus the report's pieces (Pareto front, precision-recall, skipping bad runs)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness import plots, report
from tests.conftest import build_tiny_model
from tests.helpers import local_run_args

REPO = Path(__file__).resolve().parents[1]
METHODS = ("atp", "actpatch")
MODELS = {"tiny-gpt2": "gpt2", "tiny-neox": "neox"}


def write_pairs(path: Path, n: int = 6, length: int = 6, seed: int = 0) -> Path:
    """``n`` prompt pairs over the test tokenizer's words, all ``length`` tokens long."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        clean = [f"w{rng.randrange(3, 61)}" for _ in range(length)]
        corrupt = [f"w{rng.randrange(3, 61)}" for _ in range(length)]
        answer, wrong = rng.sample(range(3, 61), 2)
        rows.append(
            {
                "clean": " ".join(clean),
                "corrupt": " ".join(corrupt),
                "answer": f"w{answer}",
                "wrong": f"w{wrong}",
            }
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def harness_env(cwd: Path) -> dict[str, str]:
    """The environment of a ``harness`` subprocess: this checkout first, W&B inside ``cwd``."""
    env = {
        **os.environ,
        "WANDB_CACHE_DIR": str(cwd / ".wandb-cache"),
        "WANDB_CONFIG_DIR": str(cwd / ".wandb-config"),
        "WANDB_DATA_DIR": str(cwd / ".wandb-data"),
        "HYDRA_FULL_ERROR": "1",
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    env.pop("WANDB_API_KEY", None)
    env.pop("WANDB_MODE", None)
    return env


def run_harness(args: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """The ``harness`` CLI in a subprocess (``python -m harness``), W&B kept inside ``cwd``."""
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=harness_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """results dir of one multirun: 2 tiny models x (atp, actpatch) on a prompts file."""
    root = tmp_path_factory.mktemp("report_grid")
    for name, family in MODELS.items():
        build_tiny_model(root / "models" / name, family)
    pairs = write_pairs(root / "pairs.jsonl")
    results = root / "results"
    run_harness(
        [
            "-m",
            "model=local",
            "model.name=" + ",".join(MODELS),
            f"model.path={root / 'models'}/${{model.name}}",
            "task=prompts",
            f"task.path={pairs}",
            "method=" + ",".join(METHODS),
            f"results_dir={results}",
            # a tolerance that labels some AtP estimates unreliable on these tiny models
            "unreliable.abs=0.002",
            "unreliable.rel=0.1",
        ],
        cwd=root,
    )
    return results


@pytest.mark.slow
def test_report_on_cli_grid(grid):
    proc = subprocess.run(
        [sys.executable, "-m", "harness.report", str(grid)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    assert "4 runs (0 skipped)" in proc.stdout
    out = grid / "report"
    results = pd.read_parquet(out / "results.parquet")
    assert len(results) == 4
    assert set(zip(results["model"], results["method"], strict=True)) == {
        (m, k) for m in MODELS for k in METHODS
    }
    assert set(results["task"]) == {"prompts"}
    for column in ("run_id", "run_dir", "spearman", "rel_error", "wall_s", "n_forward"):
        assert results[column].notna().all(), column
    for name in ("tables.md", "tables.tex"):
        assert (out / name).stat().st_size > 0
    for stem in report.FIGURES:
        for fmt in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{fmt}").stat().st_size > 1000, (stem, fmt)

    tables = report.table_frames(results)
    assert list(tables) == ["prompts"]
    table = tables["prompts"]
    assert len(table) == 4 and list(table.columns[:2]) == ["model", "method"]
    for column in ("cpr", "cmd", "flag_precision", "bound_coverage"):
        # a column is in the table exactly when some run reports it
        assert (column in table) == (column in results and results[column].notna().any())
    actpatch = table[table["method"] == "actpatch"]
    assert np.allclose(actpatch["spearman"], 1.0) and np.allclose(actpatch["rel_error"], 0.0)

    markdown, environment = (out / "tables.md").read_text().split("Environment of")
    body = [line for line in markdown.splitlines() if line.startswith("| tiny-")]
    assert len(body) == 4
    assert "| model" in markdown and "Spearman" in markdown and "wall s" in markdown
    assert len([line for line in environment.splitlines() if line.startswith("| tiny-")]) == 4
    latex, latex_environment = (out / "tables.tex").read_text().split("Environment of")
    assert latex.count("\\begin{tabular}") == 1 and latex.count(" \\\\") == 5
    assert latex_environment.count("\\begin{tabular}") == 1
    assert "tiny-neox & atp" in latex


@pytest.mark.slow
def test_report_skips_failed_and_partial_runs(grid, tmp_path, capsys):
    root = tmp_path / "results"
    shutil.copytree(grid, root, ignore=shutil.ignore_patterns("report"))
    run_dirs = sorted(p.parent for p in root.rglob("summary.json"))
    (run_dirs[0] / "estimates.parquet").unlink()  # partial
    (run_dirs[1] / "summary.json").unlink()  # failed before writing its record
    (run_dirs[1] / "failure.json").write_text(json.dumps({"error": "CUDA out of memory"}))
    collected = report.write_report(root)
    err = capsys.readouterr().err
    assert len(collected.results) == 2 and len(collected.skipped) == 2
    assert err.count("warning: skipped") == 2
    assert "partial run" in err and "CUDA out of memory" in err
    assert len(pd.read_parquet(root / "report" / "results.parquet")) == 2


def test_main_refuses_a_dir_without_runs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main([str(tmp_path)])
    assert exit_.value.code == 2
    assert "no complete run" in capsys.readouterr().err


def test_pareto_front():
    cost = np.array([1.0, 2.0, 3.0, 0.5, 4.0])
    error = np.array([0.5, 0.2, 0.3, 0.9, 0.0])
    assert plots.pareto_front(cost, error).tolist() == [3, 0, 1, 4]


def test_precision_recall_matches_sklearn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.random(200) < 0.3
    scores = rng.random(200) + labels * 0.5
    scores[:20] = np.round(scores[:20], 1)  # ties
    precision, recall = plots.precision_recall(scores, labels)
    assert np.isclose(
        plots.average_precision(precision, recall),
        metrics.average_precision_score(labels, scores),
    )
    assert recall[0] == 0 and recall[-1] == 1 and np.isclose(precision[-1], labels.mean())


def test_tables_average_repeats_and_split_varying_settings():
    rows = []
    for seed in (0, 1):
        for direction in ("noising", "denoising"):
            rows.append(
                dict(
                    model="m",
                    task="t_1",
                    method="atp",
                    seed=seed,
                    direction=direction,
                    spearman=0.5 + seed * 0.2,
                    rel_error=float("nan"),
                    wall_s=1.0,
                    n_forward=2,
                )
            )
    tables = report.table_frames(pd.DataFrame(rows))
    table = tables["t_1"]
    assert list(table.columns) == [
        "model",
        "method",
        "direction",
        "spearman",
        "wall_s",
        "n_forward",
        "runs",
    ]
    assert np.allclose(table["spearman"], 0.6) and (table["runs"] == 2).all()
    assert "t\\_1" in report.to_latex(tables)
    assert "| m     | atp    | denoising |" in report.to_markdown(tables)


def fake_run(
    run_dir: Path,
    model: str,
    method: str,
    seed: int,
    diagnostics: bool,
    environment: dict | None = None,
    digests: bool = True,
) -> None:
    """A run record in the format ``harness.run`` writes, with made-up numbers (unit tests of
    the report only; the CLI grid above uses real runs): with ``environment`` when given, with
    ``files.json`` unless ``digests`` is False (a record of an older harness)."""
    rng = np.random.default_rng(seed)
    n = 12
    truth = rng.normal(size=n)
    estimate = truth + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame(
        {
            "model": model,
            "task": "prompts",
            "method": method,
            "component": [f"head.L{i // 4}.H{i % 4}" for i in range(n)],
            "site": "head",
            "layer": np.arange(n) // 4,
            "head": np.arange(n) % 4,
            "pos": -1,
            "estimate": estimate,
            "truth": truth,
            "abs_error": np.abs(estimate - truth),
        }
    )
    summary = {
        "run_id": f"{model}{method}{seed}",
        "model": model,
        "task": "prompts",
        "method": method,
        "status": "ok",
        "sites": ["head"],
        "spearman": 0.9,
        "rel_error": 0.2,
        "topk_recall": 1.0,
        "wall_s": 0.5 + seed,
        "n_forward": 2,
        "n_backward": 1,
        "n_hvp": 0,
        "config": {"seed": seed},
    }
    if diagnostics:
        frame["reliability_delta_norm"] = rng.random(n)
        frame["unreliable"] = frame["abs_error"] > 0.3
        frame["flagged"] = frame["reliability_delta_norm"] > 0.8
        summary |= {"flag_precision": 0.5, "flag_recall": 0.5, "bound_coverage": 0.9}
        summary |= {"diagnostics_tier": "cheap", "flag_auroc_delta_norm": 0.6}
        summary |= {"flag_auroc_abs_atp": 0.8, "flag_auroc_abs_atp_rel": 0.5}
    if environment is not None:
        summary["environment"] = environment
    run_dir.mkdir(parents=True)
    frame.to_parquet(run_dir / "estimates.parquet")
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if digests:
        record_digests(run_dir)


def record_digests(run_dir: Path) -> None:
    """``files.json`` with the SHA-256 of the run's files, as ``harness.run.write_record``
    writes it."""
    from harness.storage import FILE_DIGESTS, write_hashed_json

    names = ("summary.json", "estimates.parquet")
    files = {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest() for name in names}
    write_hashed_json(run_dir / FILE_DIGESTS, files)


def rewrite_summary(run_dir: Path, **fields) -> None:
    """A record whose writer put ``fields`` into summary.json (its digests recorded too)."""
    path = run_dir / "summary.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    record_digests(run_dir)


@pytest.mark.parametrize("diagnostics", [True, False])
def test_write_report_files(tmp_path, diagnostics):
    for i, (model, method) in enumerate([("a", "atp"), ("a", "hvp"), ("b", "atp"), ("b", "hvp")]):
        fake_run(tmp_path / "runs" / f"{i}", model, method, i, diagnostics)
    (tmp_path / "runs" / "9" / ".hydra").mkdir(parents=True)  # a job that never finished
    collected = report.write_report(tmp_path, formats=("png",))
    assert len(collected.results) == 4 and len(collected.skipped) == 1
    out = tmp_path / "report"
    assert len(pd.read_parquet(out / "results.parquet")) == 4
    header = next(
        line for line in (out / "tables.md").read_text().splitlines() if "| model" in line
    )
    assert ("flag precision" in header) == diagnostics
    for name in ("tables.md", "tables.tex"):
        assert ("Reliability scores" in (out / name).read_text()) == diagnostics
    for stem in report.FIGURES:
        assert (out / "figures" / f"{stem}.png").stat().st_size > 1000


# --------------------------------------------------------------------------------------------
# Bad input to harness-report is one line (issue 11)


def report_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        report.main(args)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_unknown_figure_format_is_one_line_before_any_work(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    code, _, err = report_cli([str(tmp_path), "--formats", "png,bogus"], capsys)
    line = one_error_line(err)
    assert code == 2 and "unknown figure format 'bogus'" in line and "accepted:" in line
    assert "png" in line and not (tmp_path / "report").exists()


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_out_that_is_not_a_folder_is_one_line(where, tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    blocker = tmp_path / "taken"
    blocker.write_text("not a folder")
    out = blocker if where == "file" else blocker / "report"
    code, _, err = report_cli([str(tmp_path), "--out", str(out)], capsys)
    assert code == 2 and f"report folder {str(out)!r} is not a writable folder" in one_error_line(
        err
    )


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_one_line(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = report_cli([str(tmp_path), "--out", str(locked / "r")], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and "is not a writable folder (Permission denied)" in one_error_line(err)


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("spearman", "high", "'spearman' is str 'high', expected a number or null"),
        ("wall_s", [1, 2], "'wall_s' is list [1, 2], expected a number or null"),
        ("n_forward", {"a": 1}, "'n_forward' is dict"),
        ("topk_recall", True, "'topk_recall' is bool True"),
        ("model", 3, "'model' is int 3, expected a string"),
        ("task_solved", 1, "'task_solved' is int 1, expected true, false or null"),
        ("environment", "torch 2", "'environment' is str 'torch 2', expected an object"),
        ("environment", {"torch": 2}, "'environment.torch' is int 2, expected a string or null"),
    ],
)
def test_summary_field_of_the_wrong_type_skips_that_run(field, value, expected, tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    fake_run(tmp_path / "runs" / "1", "b", "atp", 1, False)
    rewrite_summary(tmp_path / "runs" / "1", **{field: value})
    code, out, err = report_cli([str(tmp_path), "--formats", "png"], capsys)
    assert code == 0 and "1 runs (1 skipped)" in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and expected in warnings[0] and "Traceback" not in err
    # with every run damaged: one error line, no traceback
    rewrite_summary(tmp_path / "runs" / "0", **{field: value})
    code, _, err = report_cli([str(tmp_path), "--out", str(tmp_path / "r2")], capsys)
    assert code == 2 and "no complete run" in one_error_line(err)


def test_undefined_scores_are_missing_in_tables(tmp_path):
    """A run whose Spearman is undefined (null in summary.json, as harness.run writes it) shows
    '-' / '--' in the tables, not a number."""
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    fake_run(tmp_path / "runs" / "1", "b", "atp", 1, False)
    rewrite_summary(tmp_path / "runs" / "1", spearman=None)
    report.write_report(tmp_path, formats=("png",))
    metrics_table = (tmp_path / "report" / "tables.md").read_text().split("Environment of")[0]
    rows = [line.split("|") for line in metrics_table.splitlines() if line.startswith("| b ")]
    assert len(rows) == 1 and rows[0][3].strip() == "-"
    results = pd.read_parquet(tmp_path / "report" / "results.parquet").set_index("model")
    assert pd.isna(results.loc["b", "spearman"]) and results.loc["a", "spearman"] == 0.9


def test_tables_show_the_spearman_interval_and_the_truth_sample():
    from harness.report import table_frames, to_markdown

    rows = [
        {
            "model": "m",
            "task": "t",
            "method": "atp",
            "spearman": 0.8,
            "spearman_ci_lo": 0.7,
            "spearman_ci_hi": 0.9,
            "spearman_ci_width": 0.2,
            "n_truth": 1000,
        },
    ]
    markdown = to_markdown(table_frames(pd.DataFrame(rows)))
    header = next(line for line in markdown.splitlines() if line.startswith("| model"))
    for label in ("Spearman CI lo", "Spearman CI hi", "Spearman CI width", "truth n"):
        assert f" {label} |" in header
    row = next(line for line in markdown.splitlines() if line.startswith("| m "))
    assert row.split("|")[3:8] == [
        f" {v:>{w}} "
        for v, w in zip(
            ("0.800", "0.700", "0.900", "0.200", "1000"), (8, 14, 14, 17, 7), strict=True
        )
    ]


def test_a_method_variant_is_its_own_row(tiny_gpt2, tmp_path, capsys):
    """``ig`` (32 steps) and ``ig_fast`` (8 steps) are two methods in records and tables."""
    from tests.test_cli import run_cli

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=2, length=5)
    args = [*local_run_args(tiny_gpt2, pairs, tmp_path / "results"), "diagnostics=false"]
    for method in ("ig", "ig_fast"):
        code, _, err = run_cli([*args, f"method={method}", "circuits=false"], capsys)
        assert code == 0, err
    results = report.collect(tmp_path / "results").results
    assert sorted(results["method"]) == ["ig", "ig_fast"]
    (table,) = report.table_frames(results).values()
    assert sorted(table["method"]) == ["ig", "ig_fast"]


# --------------------------------------------------------------------------------------------
# Every record verified as resume does; each run_id once; nothing written without runs;
# the environment's versions per row, with a warning when a table mixes them (issue 24)


@pytest.fixture(scope="module")
def seed_runs(tiny_gpt2, tmp_path_factory) -> Path:
    """results dir of two real runs of one (model, task, method), seeds 0 and 1."""
    from harness.run import main as harness_main

    root = tmp_path_factory.mktemp("seed_runs")
    pairs = write_pairs(root / "pairs.jsonl", n=2, length=5)
    args = [*local_run_args(tiny_gpt2, pairs, root / "results"), "diagnostics=false"]
    old = sys.argv
    try:
        for seed in (0, 1):
            sys.argv = ["harness", *args, "circuits=false", f"seed={seed}"]
            harness_main()
    finally:
        sys.argv = old
    return root / "results"


def copy_runs(results: Path, to: Path) -> list[Path]:
    """A copy of ``results`` (without its report); the run folders, in path order."""
    shutil.copytree(results, to, ignore=shutil.ignore_patterns("report"))
    return sorted(p.parent for p in to.rglob("summary.json"))


def test_an_edited_summary_is_skipped_with_a_warning(seed_runs, tmp_path, capsys):
    kept, edited = copy_runs(seed_runs, tmp_path / "results")
    path = edited / "summary.json"
    summary = json.loads(path.read_text())
    summary["mae"] = 9.63  # valid JSON of the right type, not what was computed
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    code, out, err = report_cli([str(tmp_path / "results"), "--formats", "png"], capsys)
    assert code == 0 and "1 runs (1 skipped)" in out and "unverified" not in out, out + err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert str(edited) in warning and "summary.json is missing or differs from the SHA-256" in (
        warning
    )
    results = pd.read_parquet(tmp_path / "results" / "report" / "results.parquet")
    assert results["mae"].tolist() == [json.loads((kept / "summary.json").read_text())["mae"]]
    (table,) = report.table_frames(results).values()
    assert table["runs"].tolist() == [1]


def test_a_truncated_estimates_file_is_skipped(seed_runs, tmp_path):
    _, damaged = copy_runs(seed_runs, tmp_path / "results")
    estimates = damaged / "estimates.parquet"
    estimates.write_bytes(estimates.read_bytes()[:-8])
    collected = report.collect(tmp_path / "results")
    assert len(collected.results) == 1
    assert [why for _, why in collected.skipped] == [
        "estimates.parquet is missing or differs from the SHA-256 recorded when it was written "
        "(edited or damaged)"
    ]


def test_a_copied_run_folder_is_counted_once(seed_runs, tmp_path, capsys):
    first, second = copy_runs(seed_runs, tmp_path / "results")
    copy = tmp_path / "results" / "zz_copy"
    shutil.copytree(second, copy)
    code, out, err = report_cli([str(tmp_path / "results"), "--formats", "png"], capsys)
    assert code == 0 and "2 runs (1 skipped)" in out, out + err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: skipped")]
    assert str(copy) in warning and str(second) in warning and "counted once" in warning
    results = pd.read_parquet(tmp_path / "results" / "report" / "results.parquet")
    assert sorted(results["run_dir"]) == sorted(
        str(p.relative_to(tmp_path / "results")) for p in (first, second)
    )
    (table,) = report.table_frames(results).values()
    assert table["runs"].tolist() == [2]


def test_a_real_run_shows_its_versions(seed_runs):
    from harness.environment import environment

    collected = report.collect(seed_runs)
    assert not collected.unverified and not collected.skipped
    versions = environment("cpu")
    environments = report.environment_frames(collected.results)
    markdown = report.to_markdown(report.table_frames(collected.results), environments)
    env_header = next(line for line in markdown.splitlines() if "| torch" in line)
    env_row = markdown.splitlines()[markdown.splitlines().index(env_header) + 2]
    for key in ("python", "torch", "transformers", "harness"):
        assert f"| {key}" in env_header and f"| {versions[key]}" in env_row, key


@pytest.mark.parametrize("out", [None, "elsewhere"])
def test_an_empty_folder_leaves_nothing_behind(out, tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    args = [str(root)] + (["--out", str(tmp_path / out)] if out else [])
    code, _, err = report_cli(args, capsys)
    assert code == 2 and "no complete run" in one_error_line(err)
    assert list(tmp_path.rglob("*")) == [root]


def test_only_failed_runs_leave_nothing_behind(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False)
    (tmp_path / "runs" / "0" / "estimates.parquet").unlink()
    code, _, err = report_cli([str(tmp_path)], capsys)
    assert code == 2 and "no complete run" in one_error_line(err)
    assert not (tmp_path / "report").exists()


def env(torch_version: str, harness_version: str = "0.1.0") -> dict:
    return {
        "python": "3.12.3",
        "torch": torch_version,
        "transformers": "4.57.1",
        "transformer_lens": None,
        "captum": "0.8.0",
        "harness": harness_version,
        "device_name": "x86_64",
        "cpu_threads": 2,
    }


def test_a_table_that_mixes_versions_warns(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False, env("2.13.0"))
    fake_run(tmp_path / "runs" / "1", "a", "atp", 1, False, env("2.12.0", "0.2.0"))
    fake_run(tmp_path / "runs" / "2", "b", "atp", 2, False, env("2.13.0"))
    code, out, err = report_cli([str(tmp_path), "--formats", "png"], capsys)
    assert code == 0 and "3 runs (0 skipped)" in out, err
    mixes = "table 'prompts' mixes versions (torch 2.12.0, 2.13.0; harness 0.1.0, 0.2.0)"
    assert err.splitlines() == [f"warning: {mixes}: its rows may not be comparable"]
    markdown = (tmp_path / "report" / "tables.md").read_text()
    assert f"> **Warning:** {mixes}" in markdown
    rows = {line.split("|")[1].strip(): line for line in markdown.splitlines() if "x86_64" in line}
    assert "| 2.12.0, 2.13.0 |" in rows["a"] and "| 0.1.0, 0.2.0 |" in rows["a"]
    assert "| 2.13.0 " in rows["b"] and "| not installed " in rows["b"]
    latex = (tmp_path / "report" / "tables.tex").read_text()
    assert "Warning: table 'prompts' mixes versions (torch 2.12.0, 2.13.0" in latex
    assert "2.12.0, 2.13.0 &" in latex


def test_one_version_does_not_warn(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False, env("2.13.0"))
    fake_run(tmp_path / "runs" / "1", "b", "atp", 1, False, env("2.13.0"))
    code, _, err = report_cli([str(tmp_path), "--formats", "png"], capsys)
    assert code == 0 and err == ""
    assert "Warning" not in (tmp_path / "report" / "tables.md").read_text()


def test_records_without_environment_or_digests_are_unknown_and_unverified(tmp_path, capsys):
    fake_run(tmp_path / "runs" / "0", "a", "atp", 0, False, digests=False)
    fake_run(tmp_path / "runs" / "1", "a", "atp", 1, False, env("2.13.0"))
    code, out, err = report_cli([str(tmp_path), "--formats", "png"], capsys)
    assert code == 0 and "2 runs (0 skipped, 1 unverified)" in out, err
    assert err.splitlines() == [
        "warning: 1 of 2 runs unverified: no files.json with their SHA-256s (written by an older "
        "harness), so an edit cannot be detected"
    ]
    markdown = (tmp_path / "report" / "tables.md").read_text()
    (row,) = [line for line in markdown.splitlines() if "x86_64" in line]
    assert "| 2.13.0, unknown |" in row and "| unknown, x86_64 |" in row


def test_committed_records_still_report(tmp_path):
    """A published record (no files.json, no environment) is read, unverified and unknown."""
    collected = report.write_report(REPO / "results" / "real_default", tmp_path, ("png",))
    assert len(collected.results) == 1 and not collected.skipped
    assert len(collected.unverified) == 1
    assert (collected.results["env_torch"] == "unknown").all()
    assert "| unknown" in (tmp_path / "tables.md").read_text()


def test_reliability_table_puts_the_abs_atp_auroc_beside_every_score():
    rows = []
    for model, tier in (("m", "exact"), ("n", "cheap")):
        for method in ("atp", "hvp"):
            row = {"model": model, "task": "t", "method": method, "diagnostics_tier": tier}
            row |= {"flag_auroc_abs_atp": 0.8, "flag_auroc_abs_atp_rel": 0.5}
            row |= {"flag_ap_abs_atp": 0.4, "flag_ap_abs_atp_rel": 0.3}
            row |= {"flag_auroc_delta_norm": 0.6, "flag_auroc_delta_norm_rel": 0.7}
            if tier == "exact":
                row |= {"flag_auroc_curvature_ratio": 0.9, "flag_ap_curvature_ratio": 0.2}
            rows.append(row)
    (table,) = report.reliability_frames(pd.DataFrame(rows)).values()
    assert table.columns.tolist() == [  # the tier varies between models only: no column
        "model",
        "score",
        "tier",
        "auroc",
        "auroc_abs_atp",
        "ap",
        "auroc_rel",
        "auroc_abs_atp_rel",
        "ap_rel",
        "runs",
    ]
    by = {(r.model, r.score): r for r in table.itertuples()}
    assert set(by) == {("m", "curvature_ratio"), ("m", "delta_norm"), ("m", "abs_atp")} | {
        ("n", "delta_norm"),
        ("n", "abs_atp"),
    }
    assert (table["auroc_abs_atp"] == 0.8).all() and (table["runs"] == 2).all()
    assert by["m", "curvature_ratio"].tier == "exact" and by["m", "delta_norm"].tier == "cheap"
    assert by["m", "curvature_ratio"].auroc == 0.9 and by["n", "delta_norm"].auroc_rel == 0.7
    assert math.isnan(by["m", "curvature_ratio"].auroc_rel)  # not reported: a blank cell
    markdown = report.to_markdown(report.table_frames(pd.DataFrame(rows)), reliability={"t": table})
    assert "## Reliability scores, task `t`" in markdown and "| abs_atp AUROC |" in markdown
    assert "| m     | curvature_ratio | exact |" in markdown


def test_error_vs_cost_has_a_panel_per_component_set():
    """Runs of one model and task on two component sets are two panels, not one mixed front."""
    from harness import plots

    frame = pd.DataFrame(
        {
            "model": ["m"] * 4,
            "task": ["t"] * 4,
            "method": ["a", "b", "a", "b"],
            "rel_error": [1.0, 2.0, 3.0, 4.0],
            "wall_s": [1.0, 2.0, 1.0, 2.0],
            "sites": ["head", "head", "resid_pre", "resid_pre"],
            "positions": ["all", "all", "each", "each"],
        }
    )
    fig = plots.error_vs_cost(frame)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["m / t / head / all", "m / t / resid_pre / each"]
    plots.close([fig])
