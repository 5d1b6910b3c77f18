"""Multiruns through the Hydra launchers the harness documents: joblib (parallel worker
processes, reused across jobs) and submitit's local executor (the stand-in for SLURM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import tracking
from tests.test_report import run_harness, write_pairs


def sweep_args(tmp_path: Path, model: Path) -> list[str]:
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    return [
        "-m",
        "model=local",
        f"model.path={model}",
        "task=prompts",
        f"task.path={pairs}",
        f"results_dir={tmp_path / 'results'}",
        f"hydra.sweep.dir={tmp_path / 'results' / 'multirun' / 'sweep'}",
        "diagnostics=false",
    ]


def job_summaries(sweep_dir: Path) -> dict[str, dict]:
    """summary.json of every job folder of the sweep, keyed by folder name."""
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {
        job.name: json.loads(path.read_text()) if (path := job / "summary.json").exists() else {}
        for job in jobs
    }


@pytest.mark.slow
def test_joblib_sweep_one_wandb_run_per_job(tmp_path, tiny_gpt2):
    """4 jobs on 2 reused worker processes: every job writes its record and its own W&B run."""
    args = sweep_args(tmp_path, tiny_gpt2)
    run_harness(
        [
            *args,
            "method=atp,actpatch",
            "seed=0,1",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "logger=wandb",
        ],
        cwd=tmp_path,
    )
    sweep = tmp_path / "results" / "multirun" / "sweep"
    summaries = job_summaries(sweep)
    assert len(summaries) == 4 and all(summaries.values()), sorted(summaries)
    assert sorted(s["method"] for s in summaries.values()) == ["actpatch"] * 2 + ["atp"] * 2
    assert (sweep / "multirun.yaml").exists()

    runs = [
        tracking.read_offline_run(path, wait_s=30)
        for path in tracking.find_offline_runs(tmp_path / "results" / "wandb")
    ]
    assert sorted(r["run"]["id"] for r in runs) == sorted(s["run_id"] for s in summaries.values())
    for logged in runs:
        assert logged["exit_code"] == 0
        assert logged["run"]["group"] == "sweep"
        summary = next(s for s in summaries.values() if s["run_id"] == logged["run"]["id"])
        assert logged["run"]["job_type"] == summary["method"]
        assert logged["summary"]["spearman"] == pytest.approx(summary["spearman"])
        assert f"method={summary['method']}" in logged["run"]["name"].split(",")


@pytest.mark.slow
def test_submitit_local_sweep(tmp_path, tiny_gpt2):
    args = sweep_args(tmp_path, tiny_gpt2)
    run_harness(
        [
            *args,
            "method=atp,actpatch",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=2",
        ],
        cwd=tmp_path,
    )
    sweep = tmp_path / "results" / "multirun" / "sweep"
    summaries = job_summaries(sweep)
    assert len(summaries) == 2 and all(summaries.values()), sorted(summaries)
    assert sorted(s["method"] for s in summaries.values()) == ["actpatch", "atp"]
    assert (sweep / ".submitit").is_dir()  # submitit's own transport, beside the jobs
