"""Progress bars: on in a terminal (off in CI and when stderr is not a terminal), forced with
``progress=true``, none with ``progress=false``; one bar per stage on stderr; ``job i/n`` under
``-m``; a bad value is one line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.job import config_hash, default_config
from harness.progress import Progress, check_progress, progress_enabled
from tests.helpers import local_run_args
from tests.test_cli import run_cli
from tests.test_report import harness_env, write_pairs

STAGES = ("ground truth", "method atp", "diagnostics", "circuits")


def finished_bars(text: str) -> dict[str, str]:
    """The last state of each bar in ``text`` (a terminal's or a captured stderr's bytes), by
    stage label: tqdm rewrites a bar after a carriage return."""
    bars = {}
    for piece in re.split(r"[\r\n]+", text):
        match = re.match(r"(?:\[(job \d+/\d+)\] )?([a-z ]+): +\d+%\|", piece)
        if match:
            bars[" ".join(filter(None, match.groups()))] = piece
    return bars


def run_on_terminal(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``harness`` in a subprocess whose stderr is a pseudo-terminal of 0 x 0 (as ``script``
    gives one outside a terminal) and whose stdout is a pipe: (exit code, stdout, what the
    terminal received)."""
    master, slave = os.openpty()
    received: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed its end
                return
            if not data:
                return
            received.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "harness", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
            timeout=600,
        )
    finally:
        os.close(slave)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, proc.stdout, b"".join(received).decode(errors="replace")


@pytest.fixture()
def job_args(tiny_gpt2, tmp_path) -> list[str]:
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=2)
    return local_run_args(tiny_gpt2, pairs, tmp_path / "results")


def terminal_env(tmp_path: Path) -> dict[str, str]:
    env = harness_env(tmp_path)
    env.pop("CI", None)
    return env


def test_auto_on_a_terminal_shows_a_bar_per_stage_on_stderr(job_args, tmp_path):
    """The default (auto) in a terminal: each stage's bar ends complete, with its total and
    the time left, on stderr; stdout keeps only the table."""
    code, out, terminal = run_on_terminal(job_args, tmp_path, terminal_env(tmp_path))
    assert code == 0, out + terminal
    bars = finished_bars(terminal)
    assert sorted(bars) == sorted(STAGES), terminal
    for bar in bars.values():
        done, total = re.search(r"\| (\d+)/(\d+) \[", bar).groups()
        assert done == total and int(total) > 0, bar
        assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", bar), bar  # elapsed<remaining
    assert "atp vs activation patching" in out
    assert "pass/s" not in out and "%|" not in out


def test_progress_false_on_a_terminal_shows_none(job_args, tmp_path):
    args = [*job_args, "progress=false", "diagnostics=false", "circuits=false"]
    code, out, terminal = run_on_terminal(args, tmp_path, terminal_env(tmp_path))
    assert code == 0, out + terminal
    assert finished_bars(terminal) == {} and "pass/s" not in terminal, terminal


def test_auto_is_off_in_ci_and_without_a_terminal(tmp_path, monkeypatch):
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as terminal, open(tmp_path / "log.txt", "w") as log_file:
        monkeypatch.delenv("CI", raising=False)
        assert progress_enabled(None, terminal)
        assert not progress_enabled(None, log_file)
        assert progress_enabled(True, log_file)
        assert not progress_enabled(False, terminal)
        monkeypatch.setenv("CI", "true")
        assert not progress_enabled(None, terminal)
        assert progress_enabled(True, terminal)
    os.close(master)
    assert check_progress("auto") is None and check_progress(None) is None


def test_forced_progress_on_captured_stderr(job_args, tmp_path, capsys):
    """progress=true where stderr is not a terminal: a bar per stage on stderr; auto, the
    default, shows none there."""
    code, out, err = run_cli([*job_args, "progress=true"], capsys)
    assert code == 0, err
    assert sorted(finished_bars(err)) == sorted(STAGES), err
    assert "pass/s" not in out and "%|" not in out
    code, out, err = run_cli([*job_args, "seed=1"], capsys)
    assert code == 0, err
    assert finished_bars(err) == {} and "pass/s" not in err, err


def test_multirun_bars_name_the_job_and_the_job_count(job_args, tmp_path, capsys):
    sweep = tmp_path / "results" / "multirun" / "sweep"
    args = [
        "-m",
        *job_args,
        f"hydra.sweep.dir={sweep}",
        "metric=logit_diff,logprob",  # two ground truths: each job runs every stage
        "progress=true",
        "diagnostics=false",
        "circuits=false",
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    bars = finished_bars(err)
    assert sorted(bars) == [f"job {i}/2 {stage}" for i in (1, 2) for stage in STAGES[:2]], err
    assert json.loads((sweep / ".jobs" / "count.json").read_text()) == {"jobs": 2}


def test_job_count_of_a_preset_grid():
    """hydra.sweeper.params (an experiment preset) and the command line's axes multiply."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from harness.run import count_sweep_jobs

    overrides = ["experiment=smoke", "seed=0,1"]
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        config = loader.load_configuration("config", overrides, RunMode.MULTIRUN)
        assert count_sweep_jobs(config) == 3 * 2  # method: atp,hvp,actpatch


@pytest.mark.parametrize("value", ["yes", "1", "maybe"])
def test_bad_value_is_one_line(value, tmp_path, capsys):
    code, _, err = run_cli([f"progress={value}", f"results_dir={tmp_path}"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    assert lines[0].startswith(f"error: unknown progress {value}") or lines[0].startswith(
        f"error: unknown progress '{value}'"
    ), lines[0]
    assert "accepted: auto, null, true, false" in lines[0]


def test_progress_is_left_out_of_the_config_hash():
    config = default_config()
    hashes = {config_hash({**config, "progress": value}) for value in ("auto", None, True, False)}
    assert len(hashes) == 1


def test_a_loop_stopped_early_leaves_the_total(capsys):
    """A fast-path loop abandoned after 2 of 5 passes, then its 3-pass fallback: 5/5 at the end."""
    progress = Progress(True)
    with progress.stage("ground truth"):
        with pytest.raises(RuntimeError):
            for i in progress.passes(range(5), "fast path"):
                if i == 2:
                    raise RuntimeError("the fast path's check failed")
        list(progress.passes(range(3), "full forwards"))
    bar = finished_bars(capsys.readouterr().err)["ground truth"]
    assert "| 5/5 [" in bar, bar
