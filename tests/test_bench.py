"""Smoke test of the benchmark scripts (benchmarks are not unit tests: this only checks that B1,
B5 and B7 run end to end on a tiny shape, that B1's three ground-truth engines agree and that
B7's TransformerLens loop agrees with the harness's truth)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_b1_runs_and_engines_agree():
    args = ["--layers", "2", "--d-model", "32", "--heads", "4", "--vocab", "300"]
    args += ["--prompts", "2", "--seq", "6", "--skip-full"]
    out = subprocess.run(
        [sys.executable, str(BENCH / "b1_ground_truth.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "machine:" in out.stdout and "torch" in out.stdout
    assert out.stdout.count("-> agree") == 2, out.stdout
    assert "all effects agree" in out.stdout


def test_b5_runs_and_writes_its_figure(tmp_path):
    args = ["--layers", "2", "--d-model", "32", "--heads", "4", "--vocab", "300", "--seq", "6"]
    args += ["--prompts", "2", "--sizes", "4,8,100000", "--sets", "heads_each,neurons"]
    args += ["--methods", "atp,actpatch,hvp_shared", "--out", str(tmp_path)]
    out = subprocess.run(
        [sys.executable, str(BENCH / "b5_scale.py"), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "b5_scale_gpt2-random.jsonl").open()]
    assert {(r["set"], r["n"]) for r in rows} == {
        (s, n) for s in ("heads_each", "neurons") for n in (4, 8)
    }  # no set holds 100000
    assert all(r["wall_s"] > 0 and r["est_fwd_equiv"] > 0 for r in rows)
    assert "crosses actpatch at N" in out.stdout
    assert (tmp_path / "b5_scale_gpt2-random.png").stat().st_size > 10_000


def test_b7_times_whole_processes_and_the_tl_loop_agrees():
    shrink = ["n_layer=1", "n_embd=32", "n_head=4"]
    args = [f"--set=+model.arch_overrides.{kv}" for kv in shrink] + ["--prompts", "2"]
    out = subprocess.run(
        [sys.executable, str(BENCH / "b7_whole_process.py"), *args, "--skip-defaults"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:] + out.stdout[-2000:]
    assert "(agree, tolerance 1e-5)" in out.stdout, out.stdout
    assert "ground truth only" in out.stdout and "TL loop / ground truth only (CPU):" in out.stdout
