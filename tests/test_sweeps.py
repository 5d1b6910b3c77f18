"""Multiruns through the Hydra launchers the harness documents: joblib (parallel worker
processes, reused across jobs) and submitit's local executor (the stand-in for SLURM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import tracking
from tests.helpers import local_run_args
from tests.test_report import REPO, run_harness, write_pairs


def sweep_args(tmp_path: Path, model: Path) -> list[str]:
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    return [
        "-m",
        *local_run_args(model, pairs, tmp_path / "results"),
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


KILLER_MODULE = '''
"""AtP whose process is SIGKILLed part-way through estimating while HARNESS_TEST_KILL=1."""
import os
import signal

from harness.methods.atp import AttributionPatching


class KilledAtP(AttributionPatching):
    def estimate(self, ctx):
        if os.environ.get("HARNESS_TEST_KILL") == "1":
            os.kill(os.getpid(), signal.SIGKILL)  # no failure.json, no summary: a hard kill
        return super().estimate(ctx)
'''


@pytest.mark.slow
def test_interrupted_sweep_resumes_only_missing_jobs(tmp_path, tiny_gpt2, monkeypatch):
    """A 3-job sweep killed during job 2 (of 0, 1, 2); the same sweep again computes only jobs
    1 and 2: job 0 is skipped by its config hash, nothing is lost or run twice."""
    user = tmp_path / "user"
    (user / "conf" / "method").mkdir(parents=True)
    (user / "killed_atp.py").write_text(KILLER_MODULE)
    (user / "conf" / "method" / "killed_atp.yaml").write_text(
        "name: killed_atp\nimpl: killed_atp:KilledAtP\n"
    )
    args = [
        *sweep_args(tmp_path, tiny_gpt2)[:-2],  # own sweep dirs below
        "diagnostics=false",
        "circuits=false",
        "method=atp,killed_atp,actpatch",
        f"hydra.searchpath=[file://{user / 'conf'}]",
    ]
    results = tmp_path / "results"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(user), os.environ.get("PYTHONPATH", "")]),
        "HYDRA_FULL_ERROR": "1",
    }
    first = subprocess.run(
        [sys.executable, "-m", "harness", *args, f"hydra.sweep.dir={results / 'sweep1'}"],
        env={**env, "HARNESS_TEST_KILL": "1"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    done = job_summaries(results / "sweep1")
    assert [bool(s) for s in done.values()] == [True, False], sorted(done)  # job 2 never began
    (kept,) = [s for s in done.values() if s]
    assert kept["method"] == "atp"
    assert len(list((results / "index").glob("*.json"))) == 1

    monkeypatch.setenv("PYTHONPATH", env["PYTHONPATH"])  # run_harness keeps it, adds REPO
    second = run_harness([*args, f"hydra.sweep.dir={results / 'sweep2'}"], cwd=tmp_path)
    assert second.stdout.count("skipped") == 1 and "[job 0]" in second.stdout
    redone = job_summaries(results / "sweep2")
    assert [bool(s) for s in redone.values()] == [False, True, True], sorted(redone)
    assert sorted(s["method"] for s in redone.values() if s) == ["actpatch", "killed_atp"]

    every = [json.loads(p.read_text()) for p in sorted(results.rglob("summary.json"))]
    hashes = [s["config_hash"] for s in every]
    assert len(every) == 3 and len(set(hashes)) == 3  # one summary per config, none twice
    assert kept["run_id"] in {s["run_id"] for s in every}  # job 0's record is untouched
    index = {p.stem for p in (results / "index").glob("*.json")}
    assert index == set(hashes)
    # the killed job's estimates equal AtP's (same truth cache, same class underneath)
    by_method = {s["method"]: s for s in every}
    assert by_method["killed_atp"]["truth_cached"] is True
    assert by_method["killed_atp"]["spearman"] == pytest.approx(by_method["atp"]["spearman"])
