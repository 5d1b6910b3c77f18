"""Weights & Biases logging of finished run records.

The run record (``summary.json`` + ``estimates.parquet`` in the run directory) is the source of
truth. :func:`log_run` only reads it and mirrors it into one W&B run:

- ``id``: the record's ``run_id`` (so a W&B run points back to its run directory);
- ``group``: the sweep id (``job["sweep"]``), ``job_type``: the method slug, ``name``: the
  job's Hydra overrides joined with commas (``model-task-method`` when there are none);
- ``config``: the resolved config from ``summary.json``, plus ``record`` with the identifiers
  that are not metrics (run id, run dir, commit, timestamp, fingerprints, ...);
- ``summary``: every numeric value of ``summary.json`` (booleans excluded); W&B stores NaN as
  ``null``;
- one logged step with the estimates as a ``wandb.Table`` and the run's figures
  (:mod:`harness.plots`) as ``wandb.Image``.

A W&B problem never loses results: any error while logging is caught and returned as the
logger status (:data:`FAILED` and one line), which the job reports (:mod:`harness.run`).
``mode: offline`` (the default) writes ``<dir>/wandb/offline-run-*/run-<id>.wandb``; upload it
later with ``wandb sync <that folder>``. ``mode: online`` waits at most ``init_timeout`` seconds
for W&B and falls back to a complete offline run under the same id when W&B cannot be reached or
no API key is set (status :data:`FALLBACK` and the reason).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.config import Range, bounded

DEFAULT_PROJECT = "attribution-harness"
LOGGERS = ("none", "wandb")
MODES = ("offline", "online", "disabled")
"""Accepted ``logger.name`` and ``logger.mode`` values."""


@dataclass
class LoggerOptions:
    """The logger keys (``conf/logger/*.yaml``); numeric ones with their accepted range."""

    name: str = "none"
    project: str = DEFAULT_PROJECT
    entity: Optional[str] = None  # noqa: UP045
    mode: str = "offline"
    dir: Optional[str] = None  # noqa: UP045
    tags: list[str] = field(default_factory=list)
    init_timeout: float = bounded(15.0, Range(lo=0, hi=600, lo_open=True))  # seconds online


OPTIONS = tuple(f.name for f in dataclasses.fields(LoggerOptions))
"""Accepted logger keys."""

LOGGED = "ok"
FALLBACK = "offline fallback: "
FAILED = "failed: "
"""Logger status of a job: :data:`LOGGED`, or one of the prefixes followed by one line (the reason
online W&B was not used; the logging error)."""

# Overrides that say where output goes, not what the job is: left out of the W&B run name.
NAME_EXCLUDE = ("results_dir", "cache_dir", "logger", "progress")

# Summary fields that identify a run rather than measure it: they go into config["record"].
RECORD_KEYS = (
    "run_id",
    "timestamp",
    "commit",
    "model",
    "task",
    "method",
    "metric",
    "direction",
    "dtype",
    "device",
    "environment",
    "seed",
    "sites",
    "positions",
    "flag_score",
    "truth_key",
    "truth_cached",
    "model_fingerprint",
)


# --------------------------------------------------------------------------------------------
# Logging


def check_logger_config(logger_cfg: Mapping[str, Any] | None) -> None:
    """One-line :class:`HarnessError` for a logger name or W&B mode the harness does not know;
    called before the job runs, so a typo does not surface only after the work is done."""
    from harness.config import check_ranges
    from harness.errors import HarnessError
    from harness.registry import unknown_choice

    name = _logger_name(logger_cfg)
    if name not in LOGGERS:
        raise HarnessError(unknown_choice("logger", name, list(LOGGERS)))
    for key in logger_cfg or {}:
        if key not in OPTIONS:
            accepted = [f"logger.{k}" for k in OPTIONS]
            raise HarnessError(unknown_choice("config key", f"logger.{key}", accepted))
    check_ranges(logger_cfg or {}, LoggerOptions, "logger.")
    if name == "wandb" and logger_cfg is not None:
        mode = logger_cfg.get("mode")
        if mode is not None and mode not in MODES:
            raise HarnessError(unknown_choice("logger.mode", str(mode), list(MODES)))


def log_run(run_dir: Path, logger_cfg: Mapping[str, Any], job: Mapping[str, Any]) -> str | None:
    """Mirror the run record in ``run_dir`` into one W&B run (``logger_cfg["name"] == "wandb"``).

    ``job`` holds ``sweep`` (the sweep id or None), ``overrides`` (the job's Hydra overrides) and
    ``num`` (the job number). Returns the logger status (:data:`LOGGED`, :data:`FALLBACK` or
    :data:`FAILED` with one line; None without a logger). Never raises and never touches the
    record.
    """
    if _logger_name(logger_cfg) != "wandb":
        return None
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        import pandas as pd

        estimates = pd.read_parquet(run_dir / "estimates.parquet")
        return _log_record(run_dir, summary, estimates, logger_cfg, job)
    except Exception as err:  # a W&B problem must never lose results
        return _failed(err)


def log_failure(
    run_dir: Path, logger_cfg: Mapping[str, Any], job: Mapping[str, Any], error: str
) -> str | None:
    """Record a failed job as a W&B run marked failed (exit code 1), the error in its summary.

    The config comes from ``failure.json`` (or ``summary.json``) when the job wrote one, else
    from Hydra's ``.hydra/config.yaml`` in ``run_dir``. Returns the logger status, as
    :func:`log_run`; never raises.
    """
    if _logger_name(logger_cfg) != "wandb":
        return None
    run_dir = Path(run_dir)
    try:
        config = _failure_config(run_dir)
        ids = {key: _dig(config, key, "name") for key in ("model", "task", "method")}
        config = {**config, "record": {"run_dir": str(run_dir.resolve()), "status": "failed"}}
        run, status = _init(
            logger_cfg,
            job,
            run_id=None,
            ids=ids,
            config=config,
            results_dir=config.get("results_dir"),
            run_dir=run_dir,
        )
        try:
            run.summary.update({"error": str(error), "status": "failed"})
        finally:
            run.finish(exit_code=1)
        return status
    except Exception as err:
        return _failed(err)


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float | int]:
    """The numeric (non-boolean) top-level values of a ``summary.json``: what goes to W&B."""
    return {
        key: value
        for key, value in summary.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def run_name(job: Mapping[str, Any], ids: Mapping[str, Any]) -> str:
    """The W&B display name: the job's overrides joined with commas (leaving out where results
    and logs go: ``results_dir``, ``cache_dir``, ``logger...``), or model-task-method."""
    overrides = [
        str(o)
        for o in (job.get("overrides") or [])
        if str(o).lstrip("+~").partition("=")[0].split(".")[0] not in NAME_EXCLUDE
    ]
    if overrides:
        return ",".join(overrides)
    return "-".join(str(ids.get(k) or "unknown") for k in ("model", "task", "method"))


def _log_record(
    run_dir: Path,
    summary: Mapping[str, Any],
    estimates: Any,
    logger_cfg: Mapping[str, Any],
    job: Mapping[str, Any],
) -> str:
    import wandb

    from harness import plots

    config = dict(summary.get("config") or {})
    record = {key: summary[key] for key in RECORD_KEYS if key in summary}
    record["run_dir"] = str(run_dir.resolve())
    config["record"] = record
    ids = {key: summary.get(key) for key in ("model", "task", "method")}
    run, status = _init(
        logger_cfg,
        job,
        run_id=summary.get("run_id"),
        ids=ids,
        config=config,
        results_dir=config.get("results_dir"),
        run_dir=run_dir,
    )
    exit_code = 1
    try:
        run.summary.update(summary_metrics(summary))
        payload: dict[str, Any] = {"estimates": wandb.Table(dataframe=_table_rows(estimates))}
        try:
            figures = plots.run_figures(estimates, summary)
            try:
                for key, fig in figures.items():
                    payload[f"figures/{key}"] = wandb.Image(plots.to_rgb(fig))
            finally:
                plots.close(figures)
        except Exception as err:  # the metrics and table still get logged
            _warn(f"W&B figures skipped for {run_dir}: {type(err).__name__}: {_one_line(err)}")
        run.log(payload)
        exit_code = 0
    finally:
        run.finish(exit_code=exit_code)
    return status


def _table_rows(estimates: Any) -> Any:
    """The estimates for the W&B table: W&B truncates tables past ``wandb.Table.MAX_ROWS``
    rows, so a larger run logs the components with the largest true effects (all rows stay in
    ``estimates.parquet``)."""
    import wandb

    limit = int(wandb.Table.MAX_ROWS)
    if len(estimates) <= limit:
        return estimates
    _warn(
        f"W&B table holds the {limit} of {len(estimates)} components with the largest |truth| "
        "(all are in estimates.parquet)"
    )
    order = estimates["truth"].abs().sort_values(ascending=False, kind="stable").index
    return estimates.loc[order[:limit]]


def _init(
    logger_cfg: Mapping[str, Any],
    job: Mapping[str, Any],
    run_id: str | None,
    ids: Mapping[str, Any],
    config: Mapping[str, Any],
    results_dir: Any,
    run_dir: Path,
) -> tuple[Any, str]:
    """``wandb.init`` with the harness's conventions, and the logger status so far.

    Online waits at most ``logger.init_timeout`` seconds, then falls back to offline under the
    same run id (status :data:`FALLBACK` and the reason)."""
    import wandb

    mode = str(logger_cfg.get("mode") or "offline")
    timeout = logger_cfg.get("init_timeout")
    if timeout is None:
        timeout = LoggerOptions.init_timeout
    root = _wandb_root(logger_cfg, results_dir, run_dir)
    root.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = dict(
        project=logger_cfg.get("project") or DEFAULT_PROJECT,
        entity=logger_cfg.get("entity") or None,
        group=job.get("sweep") or None,
        job_type=ids.get("method") or None,
        name=run_name(job, ids),
        tags=[str(t) for t in (logger_cfg.get("tags") or [])] or None,
        config=dict(config),
        dir=str(root),
        id=run_id or None,
        reinit="finish_previous",
        settings=wandb.Settings(
            console="off",  # nothing to capture: the record is already written
            x_disable_stats=True,  # no system-metrics sampling for a post-hoc log
            quiet=True,
            init_timeout=float(timeout),
        ),
    )
    try:
        return wandb.init(mode=mode, **kwargs), LOGGED
    except Exception as err:
        if mode != "online":
            raise
        # wandb's own hint names its Settings; the harness's knob is logger.init_timeout
        text, hint, _ = str(err).partition("Consider increasing the init_timeout")
        reason = _one_line(text) + (f" (logger.init_timeout={timeout:g}s)" if hint else "")
        _warn(f"W&B online failed ({reason}); logging offline under {root}")
        _release_run_ids()
        return wandb.init(mode="offline", **kwargs), FALLBACK + reason


def _release_run_ids() -> None:
    """Stop W&B's service process: a failed online ``wandb.init`` leaves its run id registered
    there ("run ID ... is in use"), which the offline retry under the same id needs; the next
    ``wandb.init`` starts a fresh service."""
    import wandb

    try:
        wandb.teardown()
    except SystemExit:  # the service process's own non-zero exit code, not a request to exit
        pass


def _wandb_root(logger_cfg: Mapping[str, Any], results_dir: Any, run_dir: Path) -> Path:
    """Where W&B puts its ``wandb/`` folder: logger ``dir``, else the results dir."""
    chosen = logger_cfg.get("dir") or results_dir
    if not chosen or "${" in str(chosen):  # unresolved interpolation: stay beside the run
        chosen = Path(run_dir).parent
    return Path(chosen).expanduser().resolve()


def _failure_config(run_dir: Path) -> dict[str, Any]:
    """The failed job's resolved config: from ``failure.json`` or ``summary.json`` when the
    job wrote one, else Hydra's ``.hydra/config.yaml``."""
    for name in ("failure.json", "summary.json"):
        path = run_dir / name
        if path.exists():
            try:
                config = json.loads(path.read_text()).get("config")
            except (OSError, ValueError, AttributeError):
                config = None
            if isinstance(config, dict):
                return dict(config)
    hydra_cfg = run_dir / ".hydra" / "config.yaml"
    if hydra_cfg.exists():
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(hydra_cfg)
        try:
            container = OmegaConf.to_container(cfg, resolve=True)
        except Exception:  # an interpolation that needs Hydra's resolvers
            container = OmegaConf.to_container(cfg, resolve=False)
        return dict(container) if isinstance(container, dict) else {}
    return {}


def _logger_name(logger_cfg: Mapping[str, Any] | None) -> str:
    if not logger_cfg:
        return "none"
    return str(logger_cfg.get("name") or "none")


def _dig(config: Mapping[str, Any], *keys: str) -> Any:
    node: Any = config
    for key in keys:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _failed(err: BaseException) -> str:
    return f"{FAILED}{type(err).__name__}: {_one_line(err)}"


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)
