"""The default job's numbers against a committed record: a dependency or engine change that
moves an estimate or a true effect beyond float32 tolerance fails here instead of passing
silently.

Refresh the record (only after checking that the change in the numbers is intended) with
``python -m tests.test_golden``; it stores the environment it was made in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

RECORD = Path(__file__).parent / "golden" / "default_job.json"
COLUMNS = ("estimate", "truth")
RTOL, ATOL = 1e-4, 1e-5
"""float32 tolerance: a few units in the last place of values of order 1-10."""


def default_job(results: Path) -> tuple[dict, pd.DataFrame]:
    """Run ``harness`` with no choices (the README's first command), writing under
    ``results``; returns its summary and estimates."""
    from tests.test_cli import run_cli

    class Quiet:  # run_cli reads captured output through this
        @staticmethod
        def readouterr():
            return type("Out", (), {"out": "", "err": ""})()

    code, _, _ = run_cli([f"results_dir={results}"], Quiet)
    assert code == 0, "the default job failed"
    (run,) = list(results.rglob("summary.json"))
    return json.loads(run.read_text()), pd.read_parquet(run.parent / "estimates.parquet")


def record_of(summary: dict, frame: pd.DataFrame) -> dict:
    return {
        "command": "harness",
        "environment": summary.get("environment"),
        "components": frame["component"].tolist(),
        **{column: frame[column].astype(float).tolist() for column in COLUMNS},
    }


def test_default_job_matches_the_committed_record(tmp_path):
    golden = json.loads(RECORD.read_text())
    summary, frame = default_job(tmp_path / "results")
    assert frame["component"].tolist() == golden["components"]
    for column in COLUMNS:
        now, then = frame[column].to_numpy(float), np.asarray(golden[column], dtype=float)
        worst = int(np.argmax(np.abs(now - then) - RTOL * np.abs(then)))
        assert np.allclose(now, then, rtol=RTOL, atol=ATOL), (
            f"{column} of {golden['components'][worst]} moved from {then[worst]!r} to "
            f"{now[worst]!r} (record made with {golden['environment']}, now "
            f"{summary.get('environment')})"
        )


if __name__ == "__main__":  # python -m tests.test_golden: write the record anew
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        summary, frame = default_job(Path(tmp) / "results")
    RECORD.write_text(json.dumps(record_of(summary, frame), indent=1) + "\n")
    print(f"wrote {RECORD} ({len(frame)} components)", file=sys.stderr)
