"""Weights & Biases logging of finished run records, and a reader for offline W&B files.

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

A W&B problem never loses results: any error while logging is caught and printed as one warning
line. ``mode: offline`` (the default) writes ``<dir>/wandb/offline-run-*/run-<id>.wandb``; upload
it later with ``wandb sync <that folder>``. ``mode: online`` falls back to offline when W&B cannot
be reached or no API key is set.

:func:`read_offline_run` reads such a ``.wandb`` file back without W&B's servers (wandb 0.31 no
longer ships a reader): a 7-byte header (``:W&B``, magic ``0xBEE1``, version), then LevelDB-log
blocks of 32 KiB made of records with a 7-byte header (CRC-32 of type byte + payload, little-endian
u32; payload length, u16; type, u8: 1 full, 2 first, 3 middle, 4 last). A block whose tail is
shorter than a record header is zero-padded. Each reassembled payload is one
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_PROJECT = "attribution-harness"
LOGGERS = ("none", "wandb")
MODES = ("offline", "online", "disabled")
"""Accepted ``logger.name`` and ``logger.mode`` values."""
OPTIONS = ("name", "project", "entity", "mode", "dir", "tags")
"""Accepted logger keys (``conf/logger/wandb.yaml``)."""

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
    from harness.errors import HarnessError
    from harness.registry import unknown_choice

    name = _logger_name(logger_cfg)
    if name not in LOGGERS:
        raise HarnessError(unknown_choice("logger", name, list(LOGGERS)))
    for key in logger_cfg or {}:
        if key not in OPTIONS:
            accepted = [f"logger.{k}" for k in OPTIONS]
            raise HarnessError(unknown_choice("config key", f"logger.{key}", accepted))
    if name == "wandb" and logger_cfg is not None:
        mode = logger_cfg.get("mode")
        if mode is not None and mode not in MODES:
            raise HarnessError(unknown_choice("logger.mode", str(mode), list(MODES)))


def log_run(run_dir: Path, logger_cfg: Mapping[str, Any], job: Mapping[str, Any]) -> None:
    """Mirror the run record in ``run_dir`` into one W&B run (``logger_cfg["name"] == "wandb"``).

    ``job`` holds ``sweep`` (the sweep id or None), ``overrides`` (the job's Hydra overrides) and
    ``num`` (the job number). Never raises: a logging error is printed as one warning line.
    """
    if _logger_name(logger_cfg) != "wandb":
        return
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        import pandas as pd

        estimates = pd.read_parquet(run_dir / "estimates.parquet")
        _log_record(run_dir, summary, estimates, logger_cfg, job)
    except Exception as err:  # a W&B problem must never lose results
        _warn(f"W&B logging failed for {run_dir}: {type(err).__name__}: {_one_line(err)}")


def log_failure(
    run_dir: Path, logger_cfg: Mapping[str, Any], job: Mapping[str, Any], error: str
) -> None:
    """Record a failed job as a W&B run marked failed (exit code 1), the error in its summary.

    The config comes from ``failure.json`` (or ``summary.json``) when the job wrote one, else
    from Hydra's ``.hydra/config.yaml`` in ``run_dir``. Never raises.
    """
    if _logger_name(logger_cfg) != "wandb":
        return
    run_dir = Path(run_dir)
    try:
        config = _failure_config(run_dir)
        ids = {key: _dig(config, key, "name") for key in ("model", "task", "method")}
        config = {**config, "record": {"run_dir": str(run_dir.resolve()), "status": "failed"}}
        run = _init(
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
    except Exception as err:
        _warn(f"W&B logging failed for {run_dir}: {type(err).__name__}: {_one_line(err)}")


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
) -> None:
    import wandb

    from harness import plots

    config = dict(summary.get("config") or {})
    record = {key: summary[key] for key in RECORD_KEYS if key in summary}
    record["run_dir"] = str(run_dir.resolve())
    config["record"] = record
    ids = {key: summary.get(key) for key in ("model", "task", "method")}
    run = _init(
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
) -> Any:
    """``wandb.init`` with the harness's conventions; online falls back to offline."""
    import wandb

    mode = str(logger_cfg.get("mode") or "offline")
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
        ),
    )
    try:
        return wandb.init(mode=mode, **kwargs)
    except Exception as err:
        if mode != "online":
            raise
        _warn(f"W&B online failed ({_one_line(err)}); logging offline under {root}")
        return wandb.init(mode="offline", **kwargs)


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


def _one_line(err: BaseException | str) -> str:
    text = " ".join(str(err).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Reading an offline .wandb file

_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(wandb_file: Path) -> Any:
    """Yield every ``wandb_internal_pb2.Record`` of an offline ``.wandb`` file, in order.

    Raises ``ValueError`` on a file that is not a W&B run file or on a corrupt record. A record
    cut short at the end of the file (a run still being written) ends the iteration.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(wandb_file).read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{wandb_file}: too short for a W&B run file")
    ident, magic, _version = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{wandb_file}: not a W&B run file (header {data[:7]!r})")
    pos = _HEADER.size
    pending: bytearray | None = None
    while pos < len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER.size:  # zero padding at a block's end
            pos += left_in_block
            continue
        if pos + _RECORD_HEADER.size > len(data):
            return
        crc, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled remainder of a block
            pos += left_in_block
            continue
        start = pos + _RECORD_HEADER.size
        if start + length > len(data):
            return  # truncated tail
        payload = data[start : start + length]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{wandb_file}: bad checksum in the record at offset {pos}")
        pos = start + length
        if kind == _FULL:
            chunk = payload
        elif kind == _FIRST:
            pending = bytearray(payload)
            continue
        elif kind in (_MIDDLE, _LAST):
            if pending is None:
                raise ValueError(f"{wandb_file}: record fragment without its start at {pos}")
            pending += payload
            if kind == _MIDDLE:
                continue
            chunk, pending = bytes(pending), None
        else:
            raise ValueError(f"{wandb_file}: unknown record type {kind} at offset {pos}")
        record = pb.Record()
        record.ParseFromString(chunk)
        yield record


def read_offline_run(wandb_file: Path, wait_s: float = 0.0) -> dict[str, Any]:
    """What an offline W&B run logged, read from its ``run-<id>.wandb`` file.

    W&B's service writes the file in the background and may still be flushing it for a moment
    after ``run.finish()`` returns: ``wait_s`` > 0 re-reads the file until it holds the run's
    exit record or that many seconds have passed (``exit_code`` None: not finished yet).

    Returns a dict with
    ``run`` (id, project, entity, group, job_type, name, tags),
    ``config`` (the logged config, W&B's internal ``_wandb`` key dropped),
    ``summary`` (the final run summary, nested keys as nested dicts; NaN was stored as None),
    ``history`` (one dict per logged step),
    ``exit_code`` (None if the run never finished), ``files`` (paths saved with the run) and
    ``record_counts`` (how many records of each type the file holds).
    """
    deadline = time.monotonic() + wait_s
    while True:
        result = _read_offline_run(wandb_file)
        if result["exit_code"] is not None or time.monotonic() >= deadline:
            return result
        time.sleep(0.05)


def _read_offline_run(wandb_file: Path) -> dict[str, Any]:
    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    files: list[str] = []
    counts: dict[str, int] = {}
    exit_code: int | None = None
    for record in iter_records(wandb_file):
        kind = record.WhichOneof("record_type")
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "run":
            r = record.run
            run = {
                "id": r.run_id,
                "project": r.project,
                "entity": r.entity,
                "group": r.run_group,
                "job_type": r.job_type,
                "name": r.display_name,
                "tags": list(r.tags),
            }
            _apply_items(config, r.config.update, r.config.remove)
            _apply_items(summary, r.summary.update, r.summary.remove)
        elif kind == "config":
            _apply_items(config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply_items(summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply_items(row, record.history.item, ())
            if "_step" not in row and record.history.HasField("step"):
                row["_step"] = record.history.step.num
            history.append(row)
        elif kind == "files":
            files.extend(f.path for f in record.files.files)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    config.pop("_wandb", None)
    return {
        "run": run,
        "config": config,
        "summary": summary,
        "history": history,
        "exit_code": exit_code,
        "files": files,
        "record_counts": counts,
    }


def find_offline_runs(root: Path) -> list[Path]:
    """Every ``run-*.wandb`` file below ``root``, oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)


def _apply_items(target: dict[str, Any], updates: Sequence[Any], removes: Sequence[Any]) -> None:
    for item in updates:
        path = list(item.nested_key) or [item.key]
        node = target
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = _item_value(item)
    for item in removes:
        path = list(item.nested_key) or [item.key]
        node = target
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    field = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if field is None or field == "none":
        return None
    value = getattr(item, field)
    return json.loads(value) if field == "json" else value


def same_value(a: Any, b: Any, rel: float = 1e-12) -> bool:
    """Equality for values read back from W&B: NaN matches NaN or None (W&B writes NaN as null)."""
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(b, float) and math.isnan(b):
        return a is None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b
    return a == b
