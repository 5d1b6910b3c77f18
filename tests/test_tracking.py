"""W&B tracking: a real offline W&B run mirrored from a real run record, read back from the
binary ``.wandb`` file with :func:`harness.wandb_reader.read_offline_run`."""

from __future__ import annotations

import json
import shutil
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import tracking
from harness.run import _job_records as job_records
from harness.run import main as run_main
from tests import tracking_reader as wandb_reader
from tests.helpers import local_run_args
from tests.test_cli import run_cli
from tests.test_report import write_pairs

WANDB = {"name": "wandb", "project": "harness-tests", "mode": "offline", "tags": ["test"]}


@pytest.fixture(autouse=True)
def wandb_sandbox(tmp_path, monkeypatch):
    """Keep W&B's caches and settings inside the test's tmp dir; never upload."""
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_gpt2) -> Path:
    """results dir of one real CLI run (in-process) with ``logger=wandb`` and diagnostics."""
    root = tmp_path_factory.mktemp("tracking")
    pairs = write_pairs(root / "pairs.jsonl", n=4)
    results = root / "results"
    args = [
        *local_run_args(tiny_gpt2, pairs, results),
        "logger=wandb",
        "logger.project=harness-tests",
    ]
    env = {
        "WANDB_CACHE_DIR": str(root / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(root / "wandb_config"),
        "WANDB_DATA_DIR": str(root / "wandb_data"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for var, value in env.items():
            patch.setenv(var, value)
        patch.delenv("WANDB_API_KEY", raising=False)
        patch.delenv("WANDB_MODE", raising=False)
        patch.setattr(sys, "argv", ["harness", *args])
        try:
            run_main()
        except SystemExit as exit_:
            assert not exit_.code, f"harness exited with {exit_.code}"
    return results


def the_run_dir(results: Path) -> Path:
    (summary,) = results.rglob("summary.json")
    return summary.parent


def assert_summary_matches(logged: dict, summary: dict) -> None:
    metrics = tracking.summary_metrics(summary)
    assert metrics and {"spearman", "mae", "wall_s", "n_forward"} <= set(metrics)
    for key, value in metrics.items():
        assert key in logged, key
        assert wandb_reader.same_value(value, logged[key]), (key, value, logged[key])


def test_cli_run_logs_its_record_offline(cli_run):
    run_dir = the_run_dir(cli_run)
    summary = json.loads((run_dir / "summary.json").read_text())
    (wandb_file,) = wandb_reader.find_offline_runs(cli_run / "wandb")
    logged = wandb_reader.read_offline_run(wandb_file, wait_s=30)
    assert_summary_matches(logged["summary"], summary)
    assert logged["exit_code"] == 0
    assert logged["run"]["id"] == summary["run_id"]
    assert logged["run"]["project"] == "harness-tests"
    assert logged["run"]["job_type"] == "atp"
    assert logged["run"]["group"] == ""  # a single run belongs to no sweep
    config = dict(logged["config"])
    record = config.pop("record")
    assert config == summary["config"]
    assert record["run_dir"] == str(run_dir.resolve()) and record["commit"] == summary["commit"]


def test_log_run_table_figures_and_names(cli_run, tmp_path):
    run_dir = the_run_dir(cli_run)
    summary = json.loads((run_dir / "summary.json").read_text())
    estimates = pd.read_parquet(run_dir / "estimates.parquet")
    job = {"sweep": "12-00-00", "overrides": ["model=local", "method=atp"], "num": 3}
    tracking.log_run(run_dir, {**WANDB, "dir": str(tmp_path / "wb")}, job)
    (wandb_file,) = wandb_reader.find_offline_runs(tmp_path / "wb")
    logged = wandb_reader.read_offline_run(wandb_file, wait_s=30)
    assert logged["run"]["group"] == "12-00-00"
    assert logged["run"]["name"] == "model=local,method=atp"
    assert logged["run"]["tags"] == ["test"]
    assert_summary_matches(logged["summary"], summary)
    (step,) = logged["history"]
    table = step["estimates"]
    assert table["_type"] == "table-file"
    assert table["nrows"] == len(estimates) and table["ncols"] == len(estimates.columns)
    files = wandb_file.parent / "files"
    columns = json.loads((files / table["path"]).read_text())["columns"]
    assert columns == list(estimates.columns)
    for name in ("estimate_vs_truth", "error_by_layer"):
        image = step[f"figures/{name}"]
        assert image["_type"] == "image-file"
        assert (files / image["path"]).stat().st_size > 1000


def test_failed_job_is_marked_failed(cli_run, tmp_path, capsys):
    failed = tmp_path / "failed_job"
    shutil.copytree(the_run_dir(cli_run) / ".hydra", failed / ".hydra")
    job = {"sweep": "s", "overrides": ["method=atp"], "num": 0}
    tracking.log_failure(failed, {**WANDB, "dir": str(tmp_path / "wb")}, job, "boom: no memory")
    (wandb_file,) = wandb_reader.find_offline_runs(tmp_path / "wb")
    logged = wandb_reader.read_offline_run(wandb_file, wait_s=30)
    assert logged["exit_code"] == 1
    assert logged["summary"]["error"] == "boom: no memory"
    assert logged["summary"]["status"] == "failed"
    assert logged["config"]["method"]["name"] == "atp"  # from .hydra/config.yaml
    assert logged["run"]["job_type"] == "atp"
    assert "warning" not in capsys.readouterr().err


def test_logger_none_writes_nothing(cli_run, tmp_path):
    run_dir = the_run_dir(cli_run)
    target = tmp_path / "wb"
    job = {"sweep": None, "overrides": [], "num": 0}
    tracking.log_run(run_dir, {"name": "none", "dir": str(target)}, job)
    tracking.log_failure(run_dir, {"name": "none", "dir": str(target)}, job, "error")
    assert not target.exists()


def test_logging_errors_are_returned_as_one_line_status(tmp_path, capsys):
    job = {"sweep": None, "overrides": [], "num": 0}
    statuses = [
        tracking.log_run(tmp_path / "missing", {**WANDB, "dir": str(tmp_path)}, job),
        tracking.log_failure(
            tmp_path, {**WANDB, "mode": "no-such-mode", "dir": str(tmp_path)}, job, "x"
        ),
    ]
    for status in statuses:
        assert status.startswith(tracking.FAILED) and "\n" not in status, status
    assert "FileNotFoundError" in statuses[0]
    assert "Traceback" not in capsys.readouterr().err


def test_read_offline_run_spans_blocks(tmp_path):
    """A record larger than a 32 KiB block (first/middle/last fragments) and many steps."""
    import wandb

    big = "x" * 80_000
    run = wandb.init(
        project="harness-tests",
        dir=str(tmp_path),
        mode="offline",
        config={"big": big, "nested": {"a": [1, 2]}},
        settings=wandb.Settings(console="off", x_disable_stats=True, quiet=True),
    )
    for step in range(400):
        run.log({"loss": 1.0 / (step + 1), "step_text": f"s{step}"})
    run.summary["final"] = float("nan")
    run.finish()
    (wandb_file,) = wandb_reader.find_offline_runs(tmp_path)
    logged = wandb_reader.read_offline_run(wandb_file, wait_s=30)
    assert wandb_file.stat().st_size > 3 * 32 * 1024
    assert logged["config"]["big"] == big and logged["config"]["nested"] == {"a": [1, 2]}
    assert len(logged["history"]) == 400
    assert [h["_step"] for h in logged["history"]] == list(range(400))
    assert logged["history"][399]["loss"] == pytest.approx(1 / 400)
    assert logged["summary"]["loss"] == pytest.approx(1 / 400)
    assert logged["summary"]["final"] is None  # W&B stores NaN as null
    assert logged["exit_code"] == 0


def test_read_offline_run_rejects_other_files(tmp_path):
    path = tmp_path / "run-x.wandb"
    path.write_bytes(b"not a wandb file at all")
    with pytest.raises(ValueError, match="not a W&B run file"):
        wandb_reader.read_offline_run(path)


def test_online_without_credentials_falls_back_to_offline(cli_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a W&B key
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    job = {"sweep": None, "overrides": [], "num": 0}
    logger_cfg = {**WANDB, "mode": "online", "dir": str(tmp_path)}
    status = tracking.log_run(the_run_dir(cli_run), logger_cfg, job)
    assert status.startswith(tracking.FALLBACK), status
    assert "logging offline" in capsys.readouterr().err
    (wandb_file,) = wandb_reader.find_offline_runs(tmp_path)
    assert wandb_reader.read_offline_run(wandb_file, wait_s=30)["exit_code"] == 0


def test_large_estimates_table_keeps_the_largest_effects(cli_run, tmp_path, monkeypatch, capsys):
    import wandb

    monkeypatch.setattr(wandb.Table, "MAX_ROWS", 5)
    run_dir = the_run_dir(cli_run)
    job = {"sweep": None, "overrides": [], "num": 0}
    tracking.log_run(run_dir, {**WANDB, "dir": str(tmp_path)}, job)
    assert "W&B table holds the 5 of" in capsys.readouterr().err
    (wandb_file,) = wandb_reader.find_offline_runs(tmp_path)
    (step,) = wandb_reader.read_offline_run(wandb_file, wait_s=30)["history"]
    table = json.loads((wandb_file.parent / "files" / step["estimates"]["path"]).read_text())
    truth = table["columns"].index("truth")
    largest = pd.read_parquet(run_dir / "estimates.parquet")["truth"].abs().nlargest(5)
    assert sorted(abs(row[truth]) for row in table["data"]) == sorted(largest)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wandb_job_args(tiny_gpt2, tmp_path: Path, results: Path, *logger: str) -> list[str]:
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=4)
    args = [*local_run_args(tiny_gpt2, pairs, results), "diagnostics=false", "logger=wandb"]
    return [*args, "logger.project=harness-tests", *logger]


def test_online_unreachable_falls_back_to_a_complete_offline_run(
    tiny_gpt2, tmp_path, monkeypatch, capsys
):
    """An API key and a W&B host that refuses connections: the online init gives up after
    logger.init_timeout, and the offline run under the record's id holds everything."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "f" * 40)  # with a key, W&B tries the server
    results = tmp_path / "results"
    sweep = results / "multirun" / "sweep"
    online = ("logger.mode=online", "logger.init_timeout=2")
    args = ["-m", *wandb_job_args(tiny_gpt2, tmp_path, results, *online)]
    code, _, err = run_cli([*args, f"hydra.sweep.dir={sweep}"], capsys)
    assert code == 0, err
    (job_status,) = job_records(sweep).values()
    assert job_status["status"] == "ok"
    assert job_status["logger_status"].startswith(tracking.FALLBACK), job_status
    assert "127.0.0.1" in job_status["logger_status"]
    assert "(logger.init_timeout=2s)" in job_status["logger_status"]

    run_dir = the_run_dir(results)
    summary = json.loads((run_dir / "summary.json").read_text())
    estimates = pd.read_parquet(run_dir / "estimates.parquet")
    (wandb_file,) = wandb_reader.find_offline_runs(results / "wandb")
    logged = wandb_reader.read_offline_run(wandb_file, wait_s=30)
    assert logged["exit_code"] == 0 and logged["run"]["id"] == summary["run_id"]
    assert logged["config"]["record"]["run_dir"] == str(run_dir.resolve())
    assert_summary_matches(logged["summary"], summary)
    (step,) = logged["history"]
    assert step["estimates"]["nrows"] == len(estimates)
    assert {"figures/estimate_vs_truth", "figures/error_by_layer"} <= set(step)
    # the online attempt waited logger.init_timeout, not W&B's own default
    (online_log,) = (results / "wandb").glob(f"run-*-{summary['run_id']}/logs/debug.log")
    assert "with 2.0 second timeout" in online_log.read_text()


def test_failed_logging_is_the_job_status_and_keeps_the_record(tiny_gpt2, tmp_path, capsys):
    """W&B cannot write at all (logger.dir is a file): a single run exits 1 with one error line
    after its summary, a sweep counts the job; the record stays whole and is resumed."""
    blocked = tmp_path / "not_a_folder"
    blocked.write_text("")
    results = tmp_path / "single"
    args = wandb_job_args(tiny_gpt2, tmp_path, results, f"logger.dir={blocked}")
    code, out, err = run_cli(args, capsys)
    assert code == 1, err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: W&B logging failed: FileExistsError") and "is kept" in line
    assert "spearman" in out and "Traceback" not in err
    code, out, _ = run_cli(args, capsys)  # the record is intact: the job is resumed
    assert code == 0 and "skipped" in out

    results = tmp_path / "sweep"
    sweep = results / "multirun" / "sweep"
    args = ["-m", *wandb_job_args(tiny_gpt2, tmp_path, results, f"logger.dir={blocked}")]
    code, _, err = run_cli([*args, f"hydra.sweep.dir={sweep}"], capsys)
    assert code == 1, err
    assert "(W&B logging failed: FileExistsError" in err.strip().splitlines()[-1]
    (job_status,) = job_records(sweep).values()
    assert job_status["status"] == "ok"
    assert job_status["logger_status"].startswith(tracking.FAILED)
    assert json.loads((the_run_dir(results) / "summary.json").read_text())["status"] == "ok"


def test_init_timeout_out_of_range_is_one_line():
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=r"logger.init_timeout must be in \(0, 600\], got 0"):
        tracking.check_logger_config({**WANDB, "init_timeout": 0})
