"""Cost accounting in every run record: forward equivalents and peak memory."""

from __future__ import annotations

import json
import math

from harness.cost import peak_mem_mb, time_forward
from tests.helpers import make_context, random_batch
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
