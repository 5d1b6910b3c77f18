"""The Hydra entry point: ``harness model=... task=... method=...``.

``run_one(cfg, out_dir)`` does one job: load the model, build the prompts, enumerate the
components, get the (cached) ground truth, run the method, score it, and write
``estimates.parquet`` and ``summary.json`` into ``out_dir`` (the Hydra run directory). The run
record on disk is the source of truth; trackers and reports only read it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from harness.config import register_schemas
from harness.errors import HarnessError, NumericalError

register_schemas()

CONFIG_GROUPS = ("model", "task", "method", "logger", "experiment")


@dataclass
class RunRecord:
    """What one job wrote: the summary (identifiers, config, metrics) and the estimates."""

    summary: dict[str, Any]
    estimates: pd.DataFrame
    out_dir: Path


def git_commit() -> str:
    """The harness checkout's commit hash, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_one(cfg: Any, out_dir: Path, key: str | None = None) -> RunRecord:
    """Run one (model, task, method) job described by the composed config ``cfg``.

    ``key`` is the job's config hash (computed from ``cfg`` when not given)."""
    from omegaconf import OmegaConf

    from harness.circuits import circuit_recovery
    from harness.components import check_components, enumerate_components
    from harness.config import check_names, check_ranges
    from harness.context import AttributionContext, CostCounter, check_direction
    from harness.cost import peak_mem_mb, reset_peak_memory, time_forward
    from harness.diagnostics import cached_diagnostics, check_reliability_config
    from harness.evaluation import score_estimates
    from harness.ground_truth import ground_truth
    from harness.methods.base import make_method
    from harness.models.loader import load_model
    from harness.storage import atomic_write_json, atomic_write_parquet
    from harness.task_metric import check_metric
    from harness.tasks import make_task, tokenize_pairs
    from harness.tracking import check_logger_config

    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    key = key or config_hash(container)
    check_components(list(cfg.components.sites), str(cfg.components.positions))
    check_metric(cfg.metric)
    check_direction(cfg.direction)
    check_ranges(container)
    check_names(container)
    check_logger_config(container.get("logger"))
    check_reliability_config({"scores": cfg.reliability, "flag_fraction": cfg.flag.fraction})
    method = make_method(container["method"])
    task = make_task(container["task"])
    out_dir = Path(out_dir)
    _check_writable(out_dir)

    torch.manual_seed(cfg.seed)
    reset_peak_memory()
    dtype = cfg.dtype or cfg.model.get("dtype") or "float32"
    device = cfg.device or cfg.model.get("device") or "auto"
    loaded = load_model(container["model"], device=device, dtype=dtype, seed=cfg.seed)
    pairs = task.make_pairs(loaded.tokenizer, cfg.n_prompts, cfg.seed)
    batch = tokenize_pairs(pairs, loaded.tokenizer, prepend_bos=task.prepend_bos)
    n_ctx = loaded.adapter.shape.n_ctx
    if n_ctx and batch.seq_len > n_ctx:
        raise HarnessError(
            f"prompts are {batch.seq_len} tokens long but model {cfg.model.name!r} has a "
            f"context of {n_ctx} tokens"
        )
    components = enumerate_components(
        loaded.adapter.shape,
        list(cfg.components.sites),
        str(cfg.components.positions),
        batch.seq_len,
    )
    ctx = AttributionContext(
        model=loaded.adapter,
        batch=batch.to(loaded.adapter.device),
        components=components,
        metric=cfg.metric,
        direction=cfg.direction,
        batch_size=cfg.batch_size,
        progress=bool(cfg.progress),
    )
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    truth = ground_truth(ctx, loaded.fingerprint, cache_dir)

    forward_s = time_forward(ctx)  # one clean forward of the prompt batch (after a warm-up)
    start = time.perf_counter()
    output = method.estimate(ctx)
    wall_s = time.perf_counter() - start
    peak_mb = peak_mem_mb(loaded.adapter.device)
    estimates = output.estimates.detach().double().cpu().numpy()
    check_finite(method.name, estimates, components)
    truth_np = truth.effects.numpy()
    scores = score_estimates(estimates, truth_np, topk=cfg.topk)

    frame = pd.DataFrame(
        {
            "model": cfg.model.name,
            "task": cfg.task.name,
            "method": method.name,
            "component": [c.id for c in components],
            "site": [c.site for c in components],
            "layer": [c.layer for c in components],
            "head": [c.head for c in components],
            "pos": [c.pos for c in components],
            "estimate": estimates,
            "truth": truth_np,
            "abs_error": abs(estimates - truth_np),
        }
    )
    diagnostics: dict[str, Any] = {}
    if cfg.diagnostics:
        diag_cost = CostCounter()
        start = time.perf_counter()
        columns, diagnostics = cached_diagnostics(  # shared by the methods of a grid
            cache_dir,
            truth.key,
            ctx.with_cost(diag_cost),
            truth_np,
            list(cfg.reliability),
            cfg.flag,
            cfg.unreliable,
            method.bound,
        )
        diagnostics["diagnostics_wall_s"] = time.perf_counter() - start
        for name, column in columns.items():
            frame[name] = column
    for name, column in output.columns.items():
        frame[name] = column.detach().cpu().numpy()
    curve = None
    if cfg.circuits:
        start = time.perf_counter()
        circuit_scores, curve = circuit_recovery(ctx.with_cost(CostCounter()), estimates)
        diagnostics.update(circuit_scores)
        diagnostics["circuits_wall_s"] = time.perf_counter() - start

    summary: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "model": cfg.model.name,
        "task": cfg.task.name,
        "method": method.name,
        "metric": cfg.metric,
        "direction": cfg.direction,
        "dtype": dtype,
        "device": str(loaded.adapter.device),
        "seed": cfg.seed,
        "sites": list(cfg.components.sites),
        "positions": cfg.components.positions,
        **scores,
        **diagnostics,
        "wall_s": wall_s,
        "forward_s": forward_s,
        "fwd_equiv": wall_s / forward_s if forward_s > 0 else None,
        "peak_mem_mb": peak_mb,
        **output.summary,
        **{k: v for k, v in ctx.cost.as_dict().items()},
        "clean_metric": truth.base_metric if cfg.direction == "noising" else truth.source_metric,
        "corrupt_metric": truth.source_metric if cfg.direction == "noising" else truth.base_metric,
        "n_components": len(components),
        "n_prompts": batch.n,
        "seq_len": batch.seq_len,
        "truth_key": truth.key,
        "truth_cached": truth.cached,
        "truth_wall_s": truth.cost.get("wall_s"),
        "model_fingerprint": loaded.fingerprint,
        "config_hash": key,
        "status": "ok",
        "config": container,
    }
    atomic_write_parquet(out_dir / "estimates.parquet", frame)
    if curve is not None:
        atomic_write_parquet(out_dir / "circuit_curve.parquet", curve)
    atomic_write_json(out_dir / "summary.json", summary)
    return RunRecord(summary=summary, estimates=frame, out_dir=out_dir)


def check_finite(method: str, values: Any, components: list) -> None:
    """Stop the job with a message naming the method and the first non-finite component."""
    for value, component in zip(values, components, strict=True):
        if not math.isfinite(float(value)):
            raise NumericalError(
                f"method {method!r} gave a non-finite estimate ({value}) for component "
                f"{component.id}"
            )


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise HarnessError(
            f"results directory {str(out_dir)!r} is not writable ({err.strerror})"
        ) from None


def format_summary(record: RunRecord, top: int = 5) -> str:
    """The short table printed at the end of a run."""
    s = record.summary
    topk_label = f"top{s['config']['topk']}_rec"
    lines = [
        f"{s['method']} vs activation patching | model={s['model']} task={s['task']} "
        f"metric={s['metric']} direction={s['direction']} dtype={s['dtype']}",
        f"  {s['n_components']} components x {s['n_prompts']} prompts; "
        f"clean metric {_num(s['clean_metric'], '.4f')}, "
        f"corrupt metric {_num(s['corrupt_metric'], '.4f')}",
        "",
        f"  {'mae':>9} {'rmse':>9} {'max_err':>9} {'rel_err':>9} {'spearman':>9} "
        f"{'kendall':>9} {'sign_agr':>9} {topk_label:>9} {'wall_s':>8}",
        "  "
        + " ".join(
            _num(s.get(key), "9.4f")
            for key in (
                "mae",
                "rmse",
                "max_abs_error",
                "rel_error",
                "spearman",
                "kendall",
                "sign_agreement",
                "topk_recall",
            )
        )
        + f" {_num(s['wall_s'], '8.3f')}",
        "",
        f"  largest true effects ({s['method']} estimate beside):",
    ]
    frame = record.estimates.reindex(
        record.estimates["truth"].abs().sort_values(ascending=False).index
    )
    for row in frame.head(top).itertuples():
        lines.append(
            f"    {row.component:<24} truth {row.truth:+9.4f}  estimate {row.estimate:+9.4f}  "
            f"error {row.abs_error:8.4f}"
        )
    lines.append(f"  written to {record.out_dir}")
    return "\n".join(lines)


def _num(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``; an undefined score (None or NaN) as 'n/a', padded to
    the width of ``spec``."""
    width = int(re.match(r"\d*", spec).group() or 0)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a".rjust(width)
    return format(value, spec)


SEMANTIC_EXCLUDE = ("progress", "results_dir", "cache_dir", "logger", "resume")
"""Top-level keys that do not change a job's results (left out of its config hash)."""


def config_hash(container: dict[str, Any]) -> str:
    """Hash of the resolved config minus keys that cannot change the results."""
    from harness.storage import content_hash

    return content_hash({k: v for k, v in container.items() if k not in SEMANTIC_EXCLUDE})[:16]


def finished_run(results_dir: Path, key: str) -> Path | None:
    """The run dir of a finished job with config hash ``key``, if its results are intact."""
    from harness.storage import read_hashed_json

    entry = read_hashed_json(results_dir / "index" / f"{key}.json")
    if entry is None:
        return None
    run_dir = Path(entry["run_dir"])
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if summary.get("config_hash") != key or not (run_dir / "estimates.parquet").is_file():
        return None
    return run_dir


def _job_info() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return {
        "multirun": multirun,
        "sweep": Path(hydra_cfg.sweep.dir).name if multirun else None,
        "overrides": list(hydra_cfg.overrides.task),
        "num": hydra_cfg.job.get("num", 0) if multirun else 0,
    }


def _task_function(cfg: Any) -> None:
    """One Hydra job: resume or run, write the record, log it, report one line or a table.

    A failing job writes ``failure.json``, marks its tracker run failed and, in a multirun,
    lets the other jobs go on (the sweep's exit status is still non-zero at the end).
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from harness.storage import atomic_write_json, write_hashed_json

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    job = _job_info()
    container = OmegaConf.to_container(cfg, resolve=True)
    key = config_hash(container)
    results_dir = Path(cfg.results_dir)
    label = " ".join(job["overrides"]) or "default job"
    if cfg.resume:
        previous = finished_run(results_dir, key)
        if previous is not None:
            print(
                f"[job {job['num']}] {label}: results exist for this config, skipped ({previous})"
            )
            return
    try:
        record = run_one(cfg, out_dir, key)
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through _interrupt
        signame = str(err) or "SIGINT"
        atomic_write_json(
            out_dir / "failure.json",
            {"error": f"interrupted by {signame}", "config_hash": key, "config": container},
        )
        raise
    except (HarnessError, Exception) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        user_error = isinstance(err, HarnessError)
        message = str(err) if user_error else f"{type(err).__name__}: {err}"
        message = message.splitlines()[0] if message else type(err).__name__
        atomic_write_json(
            out_dir / "failure.json", {"error": message, "config_hash": key, "config": container}
        )
        _log(out_dir, cfg, job, message)
        print(f"error: {message}", file=sys.stderr)
        if job["multirun"]:
            _FAILED_JOBS.append(label)
            return
        if not user_error:
            traceback.print_exc()
        sys.exit(2)
    write_hashed_json(results_dir / "index" / f"{key}.json", {"run_dir": str(out_dir)})
    _log(out_dir, cfg, job, None)
    if job["multirun"]:
        s = record.summary
        print(
            f"[job {job['num']}] {label}: spearman {_num(s['spearman'], '.3f')} "
            f"mae {_num(s['mae'], '.4g')} wall {s['wall_s']:.2f}s -> {out_dir}"
        )
    else:
        print(format_summary(record))


_FAILED_JOBS: list[str] = []


def _log(out_dir: Path, cfg: Any, job: dict[str, Any], error: str | None) -> None:
    """Hand the run record to the configured tracker (``logger=none``: nothing)."""
    from omegaconf import OmegaConf

    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    if logger_cfg.get("name", "none") == "none":
        return
    from harness import tracking

    if error is None:
        tracking.log_run(out_dir, logger_cfg, job)
    else:
        tracking.log_failure(out_dir, logger_cfg, job, error)


def check_group_choices(argv: list[str]) -> None:
    """Refuse an unknown ``group=choice`` override with one line (before Hydra composes)."""
    from harness.config_files import all_group_options, searchpath_dirs
    from harness.registry import unknown_choice

    extra_dirs = searchpath_dirs(argv)  # a user's own config folders (hydra.searchpath=...)
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.lstrip("+~").partition("=")
        if key in CONFIG_GROUPS:
            options = all_group_options(key, extra_dirs)
            for choice in value.split(","):
                if choice and choice not in options:
                    raise HarnessError(unknown_choice(key, choice, options))


def check_composes(argv: list[str]) -> None:
    """Compose the config before Hydra does, so a misspelt key (also one added with ``+``), a
    value of the wrong type or out of range, or a broken ``${...}`` interpolation is one line
    instead of Hydra's multi-line report or a traceback after the job started.

    In a multirun (``-m``) the first value of every sweep axis is composed together, and each
    other value of an axis with the first values of the rest (one job per listed value, not the
    whole grid)."""
    if any(
        a in ("--help", "-h", "--hydra-help", "--info", "-i")
        or a.startswith(("--cfg", "-c", "--resolve", "--package", "-p", "--config", "--exp"))
        for a in argv
    ):
        return
    overrides = [
        a
        for a in argv
        if not a.startswith("-")
        and (not a.startswith("hydra") or a.lstrip("+~").startswith("hydra.searchpath="))
    ]
    multirun = any(a in ("-m", "--multirun") for a in argv)
    for combination in sweep_samples(overrides) if multirun else [overrides]:
        _check_one_composition(combination)


def sweep_samples(overrides: list[str]) -> list[list[str]]:
    """Override lists that cover every value of every sweep axis of a multirun (``a=1,2``,
    ``range(...)``, ``choice(...)``): the first values together, then each further value of one
    axis with the first values of the others; an ``interval(...)`` (sampled by a sweeper plugin)
    is left out. Overrides Hydra cannot parse are returned as is (composing them gives Hydra's
    own error, turned into one line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: list[list[str]] = []
    try:
        for override in OverridesParser.create().parse_overrides(overrides):
            key = override.get_key_element()
            if override.is_sweep_override() and override.is_discrete_sweep():
                values = [f"{key}={value}" for value in override.sweep_string_iterator()]
                axes.append(values or [override.input_line])
            elif override.is_sweep_override():  # interval(): a sweeper plugin samples it
                continue
            else:
                axes.append([override.input_line])
    except Exception:  # noqa: BLE001 - e.g. glob(): composing reports any error in one line
        return [overrides]
    first = [axis[0] for axis in axes]
    samples = [first]
    for i, axis in enumerate(axes):
        samples += [[*first[:i], value, *first[i + 1 :]] for value in axis[1:]]
    return samples


def _check_one_composition(overrides: list[str]) -> None:
    """Compose, resolve and range-check the config of one job's overrides (one-line errors)."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from harness.config import check_names, check_ranges, unknown_keys
    from harness.methods.base import make_method
    from harness.tasks import make_task
    from harness.tracking import check_logger_config

    try:
        with initialize_config_module(config_module="harness.conf", version_base="1.3"):
            cfg = compose("config", overrides=overrides)
        container = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - every composition error becomes one line
        text = str(err.__cause__) if str(err).startswith("Error merging override") else str(err)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        match = re.match(r"Could not override '([^']+)'", lines[0] if lines else "")
        if match:
            raise HarnessError(_unknown_key(match.group(1))) from None
        key = next(
            (line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), ""
        )
        first = lines[0] if lines else type(err).__name__
        raise HarnessError(f"{key}: {first}" if key else first) from None
    assert isinstance(container, dict)
    extra = unknown_keys(container)
    if extra:
        raise HarnessError(_unknown_key(extra[0]))
    check_ranges(container)
    check_names(container)
    check_logger_config(container.get("logger"))
    make_method(container["method"])  # option names, types and ranges, before any job runs
    make_task(container["task"])


def _unknown_key(dotted: str) -> str:
    """'unknown config key ...' naming the keys accepted at that level."""
    from hydra import compose, initialize_config_module

    from harness.registry import unknown_choice

    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        node = compose("config")
    parent, _, leaf = dotted.rpartition(".")
    for part in parent.split(".") if parent else []:
        node = node.get(part) if hasattr(node, "get") else None
    accepted = sorted(str(k) for k in node.keys()) if hasattr(node, "keys") else []
    return unknown_choice(
        "config key", dotted, [f"{parent}.{k}" if parent else k for k in accepted]
    )


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so temporary files are removed on the way out."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console script ``harness``."""
    import hydra

    try:
        check_group_choices(sys.argv[1:])
        check_composes(sys.argv[1:])
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    app = hydra.main(config_path="pkg://harness.conf", config_name="config", version_base="1.3")(
        _task_function
    )
    _FAILED_JOBS.clear()  # main() may run more than once in a process (tests, notebooks)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        app()
    except KeyboardInterrupt as err:
        # files are written to a temporary name and renamed, so nothing half-written is left
        signame = str(err) or "SIGINT"
        print(
            f"error: interrupted by {signame}; finished results and cache entries are kept, "
            "re-run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(128 + getattr(signal, signame, signal.SIGINT))
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    if _FAILED_JOBS:
        print(
            f"error: {len(_FAILED_JOBS)} job(s) failed: {'; '.join(_FAILED_JOBS)}", file=sys.stderr
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
