"""Bring your own method: a Method subclass in the user's own module (outside the package),
named by import path in a config found through ``hydra.searchpath``, is run by the CLI, scored,
tracked and reported exactly like the built-ins."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from harness import report
from harness.run import main as run_main
from tests import tracking_reader as wandb_reader
from tests.helpers import local_run_args
from tests.test_report import write_pairs

REPO = Path(__file__).resolve().parents[1]

USER_MODULE = '''
"""A user's method: AtP with each elementwise delta clipped to [-clip, clip]."""

from dataclasses import dataclass

from harness.components import reduce_per_component
from harness.methods.base import Method, MethodOutput
from harness.patching import collect_activations, metric_gradients, site_names


class ClippedAtP(Method):
    @dataclass(frozen=True)
    class Options:
        clip: float = 1.0

    def estimate(self, ctx):
        names = site_names(ctx.components)
        _, source = collect_activations(ctx, ctx.source_tokens, names)
        _, base, grads = metric_gradients(ctx, ctx.base_tokens, names)
        clip = float(self.options.clip)
        products = {
            k: (source[k] - base[k]).clamp(-clip, clip) * grads[k] for k in names
        }
        estimates = reduce_per_component(products, ctx.components).double()
        return MethodOutput(estimates=estimates, summary={"clip": clip})
'''


def run_cli(args: list[str], monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", ["harness", *args])
    try:
        run_main()
    except SystemExit as exit_:
        assert not exit_.code, f"harness exited with {exit_.code}"


@pytest.fixture()
def user_dir(tmp_path, monkeypatch) -> Path:
    """A folder outside the package with the user's module and config group folder."""
    root = tmp_path / "user"
    (root / "conf" / "method").mkdir(parents=True)
    (root / "byo_clipped_atp.py").write_text(textwrap.dedent(USER_MODULE))
    (root / "conf" / "method" / "clipped_atp.yaml").write_text(
        "name: clipped_atp\nimpl: byo_clipped_atp:ClippedAtP\nclip: 1000.0\n"
    )
    monkeypatch.syspath_prepend(str(root))  # what PYTHONPATH=DIR does for the console script
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    return root


@pytest.mark.slow
def test_user_method_is_scored_tracked_and_reported(user_dir, tmp_path, tiny_gpt2, monkeypatch):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    results = tmp_path / "results"
    run_cli(
        [
            "-m",
            *local_run_args(tiny_gpt2, pairs, results),
            "method=atp,clipped_atp",
            f"hydra.searchpath=[file://{user_dir / 'conf'}]",
            f"hydra.sweep.dir={results / 'sweep'}",
            "logger=wandb",
        ],
        monkeypatch,
    )
    summaries = {
        json.loads(p.read_text())["method"]: p.parent for p in results.rglob("summary.json")
    }
    assert set(summaries) == {"atp", "clipped_atp"}
    mine = json.loads((summaries["clipped_atp"] / "summary.json").read_text())
    assert mine["status"] == "ok" and mine["clip"] == 1000.0
    assert mine["config"]["method"]["impl"] == "byo_clipped_atp:ClippedAtP"
    for key in ("spearman", "mae", "flag_precision", "cpr", "n_forward"):
        assert key in mine, key
    frame = pd.read_parquet(summaries["clipped_atp"] / "estimates.parquet")
    atp = pd.read_parquet(summaries["atp"] / "estimates.parquet")
    assert set(frame["method"]) == {"clipped_atp"} and len(frame) == len(atp)
    # a clip far above every delta leaves AtP unchanged: the user's class really ran
    assert frame["estimate"].to_numpy() == pytest.approx(atp["estimate"].to_numpy(), rel=1e-9)
    assert frame["truth"].to_numpy() == pytest.approx(atp["truth"].to_numpy())

    # tracked: one offline W&B run per job, the user's method as job type
    runs = [
        wandb_reader.read_offline_run(p, wait_s=30)
        for p in wandb_reader.find_offline_runs(results / "wandb")
    ]
    assert sorted(r["run"]["job_type"] for r in runs) == ["atp", "clipped_atp"]

    # reported: a row of the task's table and a point of the figures' data
    collected = report.write_report(results, formats=("png",))
    assert set(collected.results["method"]) == {"atp", "clipped_atp"}
    tables = (results / "report" / "tables.md").read_text()
    assert "clipped_atp" in tables
    assert "clipped\\_atp" in (results / "report" / "tables.tex").read_text()


def test_shipped_example_config_composes():
    """examples/my_method: its config names its class, which is a harness Method."""
    from harness.methods.base import Method, make_method

    example = REPO / "examples" / "my_method"
    sys.path.insert(0, str(example))
    try:
        import yaml

        cfg = yaml.safe_load((example / "conf" / "method" / "atp_trapezoid.yaml").read_text())
        method = make_method(cfg)
        assert isinstance(method, Method) and method.name == "atp_trapezoid"
        assert method.config == {"weight": 0.5}
    finally:
        sys.path.remove(str(example))


def test_unknown_user_method_is_one_line(user_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "harness",
            "method=clipped_atq",
            f"hydra.searchpath=[file://{user_dir / 'conf'}]",
            f"results_dir={tmp_path}",
        ],
    )
    with pytest.raises(SystemExit) as exit_:
        run_main()
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown method 'clipped_atq'" in err[0]
    assert "did you mean 'clipped_atp'" in err[0]
