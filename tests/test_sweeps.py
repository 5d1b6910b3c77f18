"""Multiruns through the Hydra launchers the harness documents: joblib (parallel worker
processes, reused across jobs) and submitit's local executor (the stand-in for SLURM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import tracking_reader as wandb_reader
from tests.helpers import assert_one_line, local_run_args
from tests.test_report import REPO, harness_env, run_harness, write_pairs


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
        wandb_reader.read_offline_run(path, wait_s=30)
        for path in wandb_reader.find_offline_runs(tmp_path / "results" / "wandb")
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
    assert [bool(s) for s in redone.values()] == [True, True], sorted(redone)  # job 0: no folder
    assert not any(name.startswith("0_") for name in redone)
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


# --------------------------------------------------------------------------------------------
# Issue 11: one folder per sweep, the sweep's exit status counts every job, interrupts


def start_harness(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    """``python -m harness ARGS`` in its own process group (so a test can Ctrl-C all of it),
    with Ctrl-C's default disposition as in a terminal (a suite started in the background, as
    ``cmd &`` in a script, inherits SIGINT ignored, and an ignored signal stays ignored);
    without HYDRA_FULL_ERROR, so a failing job is recorded as it is for a user."""
    environ = {**harness_env(cwd), **env}
    environ.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _claim(args: tuple) -> str:
    from harness.run import claim_output_dir

    barrier, results = args
    barrier.wait()
    return claim_output_dir(results, "multirun/2026-01-01/12-00-00")


def test_simultaneous_claims_of_one_folder_get_distinct_folders(tmp_path):
    """Eight processes claim the same sweep folder name at the same instant: each gets its own
    (the name, then -1, -2, ...), created exclusively."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(8)
    with context.Pool(8) as pool:
        claimed = pool.map(_claim, [(barrier, str(tmp_path))] * 8)
    assert len(set(claimed)) == 8 and all(Path(p).is_dir() for p in claimed)
    base = tmp_path / "multirun" / "2026-01-01" / "12-00-00"
    assert sorted(claimed) == sorted([str(base)] + [f"{base}-{n}" for n in range(1, 8)])


@pytest.mark.slow
def test_two_sweeps_started_together_keep_both_results(tmp_path, tiny_gpt2):
    """The issue's reproduction: two sweeps into one results_dir at once (the default sweep
    folder, named to the second). Both results survive, in two folders the index points to."""
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    results = tmp_path / "results"
    base = ["-m", *local_run_args(tiny_gpt2, pairs, results), "diagnostics=false"]
    procs = [start_harness([*base, f"n_prompts={n}"], tmp_path) for n in (2, 3)]
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
    sweeps = [p for p in (results / "multirun").glob("*/*") if p.is_dir()]
    assert len(sweeps) == 2, sweeps
    entries = [json.loads(p.read_text())["payload"] for p in (results / "index").glob("*.json")]
    run_dirs = [Path(e["run_dir"]) for e in entries]
    assert len(run_dirs) == 2 and run_dirs[0].parent != run_dirs[1].parent
    n_prompts = sorted(json.loads((d / "summary.json").read_text())["n_prompts"] for d in run_dirs)
    assert n_prompts == [2, 3]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_failed_job_fails_the_sweep_under_every_launcher(launcher, tmp_path, tiny_gpt2):
    """One job of two fails (a malformed prompts file) in a worker process: the sweep exits 1
    and names it; the other job's record is written."""
    good = write_pairs(tmp_path / "good.jsonl", n=2)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"clean": "w1 w2"}\n')
    results = tmp_path / "results"
    args = [
        "-m",
        *local_run_args(tiny_gpt2, good, results),
        f"task.path={good},{bad}",
        "diagnostics=false",
        "circuits=false",
        f"hydra/launcher={launcher}",
    ]
    args.remove(f"task.path={good}")
    if launcher == "submitit_local":
        args.append("hydra.launcher.timeout_min=5")
    proc = start_harness(args, tmp_path)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, out[-2000:] + err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 1 job(s) failed: ") and "bad.jsonl" in last, err[-2000:]
    (failure,) = results.rglob("failure.json")
    assert "bad.jsonl:1: missing field" in json.loads(failure.read_text())["error"]
    (summary,) = results.rglob("summary.json")
    assert json.loads(summary.read_text())["status"] == "ok"


SLEEPER_MODULE = '''
"""AtP that first announces itself (a file named after its process) and sleeps."""
import os
import time
from pathlib import Path

from harness.methods.atp import AttributionPatching


class SleepyAtP(AttributionPatching):
    def estimate(self, ctx):
        Path(os.environ["HARNESS_TEST_STARTED"], str(os.getpid())).touch()
        time.sleep(600)
        return super().estimate(ctx)
'''


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm_to_main", "ctrl_c_to_group"])
def test_interrupted_joblib_sweep_leaves_failure_json_for_its_jobs(how, tmp_path, tiny_gpt2):
    """Both jobs of a joblib sweep are running in worker processes when the sweep is stopped:
    SIGTERM to the main process (a scheduler, ``kill``) or SIGINT to the whole process group
    (Ctrl-C). Each job's folder gets a failure.json saying so; the exit status is 128+signal."""
    user = tmp_path / "user"
    (user / "conf" / "method").mkdir(parents=True)
    (user / "sleepy_atp.py").write_text(SLEEPER_MODULE)
    (user / "conf" / "method" / "sleepy_atp.yaml").write_text(
        "name: sleepy_atp\nimpl: sleepy_atp:SleepyAtP\n"
    )
    started = tmp_path / "started"
    started.mkdir()
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=2)
    results = tmp_path / "results"
    args = [
        "-m",
        *local_run_args(tiny_gpt2, pairs, results),
        "method=sleepy_atp",
        "seed=0,1",
        "diagnostics=false",
        "circuits=false",
        f"hydra.searchpath=[file://{user / 'conf'}]",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]
    path = os.pathsep.join([str(REPO), str(user), os.environ.get("PYTHONPATH", "")])
    proc = start_harness(args, tmp_path, PYTHONPATH=path, HARNESS_TEST_STARTED=str(started))
    deadline = time.monotonic() + 300
    while len(list(started.iterdir())) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the two jobs did not start within 300 s"
        time.sleep(0.1)
    signum = signal.SIGTERM if how == "sigterm_to_main" else signal.SIGINT
    if how == "sigterm_to_main":
        proc.send_signal(signum)
    else:
        os.killpg(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, out[-2000:] + err[-2000:]
    name = signal.Signals(signum).name
    assert err.splitlines()[0].startswith(f"error: interrupted by {name}"), err
    jobs = [p for p in results.glob("multirun/*/*/*") if p.is_dir() and p.name[0].isdigit()]
    assert len(jobs) == 2, jobs
    for job in jobs:
        assert json.loads((job / "failure.json").read_text())["error"] == f"interrupted by {name}"
        assert not (job / "summary.json").exists()
    assert not (results / "index").exists()


NO_LAUNCHER_PLUGINS = 'import sys\nsys.modules["hydra_plugins"] = None  # no plugin installed\n'
"""A ``sitecustomize`` that makes the interpreter run as if the launcher extras (the only Hydra
plugins the harness installs, in the ``hydra_plugins`` namespace) were not installed."""


@pytest.mark.parametrize(
    "launcher, message",
    [
        ("joblib", 'hydra/launcher=joblib needs the launcher plugins: pip install ".[launchers]"'),
        ("slurm", 'hydra/launcher=slurm needs the launcher plugins: pip install ".[launchers]"'),
        ("submitit_local", "hydra/launcher=submitit_local needs the launcher plugins"),
        ("jblib", "unknown hydra/launcher 'jblib'; accepted: basic (joblib, slurm, submitit_loc"),
    ],
)
def test_a_launcher_without_the_launcher_extras_is_one_line(launcher, message, tmp_path):
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_LAUNCHER_PLUGINS)
    env = harness_env(tmp_path)
    env["PYTHONPATH"] = f"{shim}{os.pathsep}{env['PYTHONPATH']}"
    env.pop("HYDRA_FULL_ERROR")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "-m",
            f"hydra/launcher={launcher}",
            "method=atp,actpatch",
            f"results_dir={tmp_path / 'results'}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    line = assert_one_line(proc.returncode, proc.stderr, message)
    if launcher != "jblib":
        assert line.endswith("; accepted without them: basic"), line
    assert not (tmp_path / "results").exists()
