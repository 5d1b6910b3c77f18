"""The Hydra entry point: ``harness model=... task=... method=...``.

``run_one(cfg, out_dir)`` does one job in four stages, read top to bottom: the job spec (the
config validated once, :func:`harness.job.job_spec`), the context (:func:`build_context`: the
model, the prompts, the components), the evaluation (:func:`evaluate`: the cached ground truth,
the timed method, scores, diagnostics, circuits) and the record (:func:`write_record`:
``estimates.parquet`` and ``summary.json`` in ``out_dir``, the Hydra run directory). The run
record on disk is the source of truth; trackers and reports only read it.

Hydra composes the config once. Its :class:`CheckJobs` callback validates it (every value of every
sweep axis under ``-m``, each composed by Hydra's own config loader) before any run or sweep
folder exists, so bad input is one line; :func:`main` turns Hydra's composition errors into one
line too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from harness.config import register_schemas
from harness.errors import HarnessError, NumericalError
from harness.job import JobSpec, config_hash

register_schemas()

CONFIG_GROUPS = ("model", "task", "method", "logger", "experiment")


@dataclass
class RunRecord:
    """What one job wrote: the summary (identifiers, config, metrics) and the estimates."""

    summary: dict[str, Any]
    estimates: pd.DataFrame
    out_dir: Path
    files: dict[str, str]
    """SHA-256 of each file written into ``out_dir``, by name (checked when resuming)."""


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


def run_one(
    cfg: Any,
    out_dir: Path,
    key: str | None = None,
    inputs: dict[str, Any] | None = None,
    job_label: str = "",
) -> RunRecord:
    """Run one (model, task, method) job described by the composed config ``cfg``.

    ``key`` is the job's config hash and ``inputs`` its :func:`job_inputs` (both computed from
    ``cfg`` when not given). Four stages, in order: the job spec (the config validated once,
    :func:`harness.job.job_spec`), the attribution context (:func:`build_context`), the
    evaluation (:func:`evaluate`: truth, estimates, scores, diagnostics, circuits) and the
    record (:func:`write_record`: summary.json, the parquet files). ``job_label`` starts the
    label of every progress bar (``job 2/6`` under ``-m``)."""
    from harness.job import job_spec

    spec = job_spec(resolved_config(cfg), key)
    out_dir = Path(out_dir)
    _check_writable(out_dir)
    inputs = inputs or job_inputs(spec.config, spec.cache_dir)
    job = build_context(spec, job_label)
    evaluation = evaluate(spec, job)
    return write_record(spec, job, evaluation, inputs, out_dir)


def resolved_config(cfg: Any) -> dict[str, Any]:
    """A composed config (an OmegaConf node or a mapping) as a plain, resolved dict."""
    container = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
    assert isinstance(container, dict)
    return container


@dataclass
class JobContext:
    """The second stage: the loaded model, the prompt batch, the components and the context
    every method and the ground truth work on."""

    loaded: Any  # harness.models.loader.LoadedModel
    batch: Any  # harness.types.PromptBatch
    components: list[Any]
    ctx: Any  # harness.context.AttributionContext


def build_context(spec: JobSpec, job_label: str = "", loaded: Any = None) -> JobContext:
    """Seed, load the model (unless ``loaded``, a :class:`harness.models.loader.LoadedModel`,
    is given), make and tokenize the task's prompts, enumerate the components; the context's
    progress bars (:mod:`harness.progress`) are labelled with ``job_label``."""
    from harness.components import enumerate_components
    from harness.context import AttributionContext
    from harness.cost import reset_peak_memory
    from harness.models.loader import load_model
    from harness.progress import Progress, progress_enabled
    from harness.tasks import tokenize_pairs

    torch.manual_seed(spec.seed)
    reset_peak_memory()
    if loaded is None:
        loaded = load_model(
            spec.model,
            device=spec.device,
            dtype=spec.dtype,
            seed=spec.seed,
            cache_dir=spec.cache_dir,
        )
    pairs = spec.task.make_pairs(loaded.tokenizer, spec.n_prompts, spec.seed)
    batch = tokenize_pairs(pairs, loaded.tokenizer, prepend_bos=spec.task.prepend_bos)
    n_ctx = loaded.adapter.shape.n_ctx
    if n_ctx and batch.seq_len > n_ctx:
        raise HarnessError(
            f"prompts are {batch.seq_len} tokens long but model {spec.model['name']!r} has a "
            f"context of {n_ctx} tokens"
        )
    components = enumerate_components(
        loaded.adapter.shape, spec.sites, spec.positions, batch.seq_len
    )
    ctx = AttributionContext(
        model=loaded.adapter,
        batch=batch.to(loaded.adapter.device),
        components=components,
        metric=spec.metric,
        direction=spec.direction,
        batch_size=spec.batch_size,
        progress=Progress(progress_enabled(spec.progress), job_label),
        memory_bytes=memory_bytes(spec.memory_gb),
    )
    return JobContext(loaded=loaded, batch=batch, components=components, ctx=ctx)


@dataclass
class Evaluation:
    """The third stage: the ground truth, the method's estimates and every score of them."""

    truth: Any  # harness.ground_truth.GroundTruth
    scored: np.ndarray  # [n_components] bool: the components the truth was patched for
    truth_np: np.ndarray  # [n_components] float64, NaN where not scored
    output: Any  # harness.methods.base.MethodOutput
    estimates: np.ndarray  # [n_components] float64, NaN where the method estimated none
    cost: dict[str, Any]  # wall_s, forward_s, peak_mem_mb and the method's pass counts
    scores: dict[str, Any]
    diagnostics: dict[str, Any]
    frame: pd.DataFrame
    curve: pd.DataFrame | None


def evaluate(spec: JobSpec, job: JobContext) -> Evaluation:
    """Ground truth (cached, on ``truth.sample``'s subset), the timed method, the scores with
    their bootstrap intervals, the estimates frame, diagnostics and circuit recovery."""
    from harness.circuits import circuit_recovery
    from harness.context import CostCounter
    from harness.cost import peak_mem_mb, time_forward
    from harness.diagnostics import cached_path_ends
    from harness.evaluation import bootstrap_intervals, score_estimates
    from harness.ground_truth import ground_truth, sample_truth

    ctx, components, method = job.ctx, job.components, spec.method
    # truth.sample: only a stratified subset is patched, and every score is taken on it
    truth_index = sample_truth(components, spec.truth_sample, spec.seed)
    scored = np.ones(len(components), dtype=bool)
    truth_ctx = ctx
    if truth_index is not None:
        scored[:] = False
        scored[truth_index] = True
        truth_ctx = ctx.select_components(truth_index)
    method_index = method_sample(spec, truth_index)
    check_run_cost(spec, ctx, truth_index)
    stage = ctx.progress.stage  # one bar per stage on stderr (harness/progress.py)
    with stage("ground truth"):
        truth = ground_truth(truth_ctx, job.loaded.fingerprint, spec.cache_dir, universe=components)
    truth_np = np.full(len(components), np.nan)
    truth_np[scored] = truth.effects.numpy()
    ctx.truth = torch.from_numpy(truth_np)  # actpatch reads it

    # f'(0), f''(0), f'(1) an exact diagnostics run of this truth cached: the end-point methods
    # read them instead of taking them again (harness.methods.endpoint.end_points)
    diag_key = diagnostics_key(truth.key, truth_index)
    known = cached_path_ends(spec.cache_dir, diag_key, int(scored.sum()))
    if known is not None:
        ctx.path_ends = known.laid_out(np.flatnonzero(scored).tolist(), len(components))
    forward_s = time_forward(ctx)  # one clean forward of the prompt batch (after a warm-up)
    start = time.perf_counter()
    with stage(f"method {method.name}"):
        if method_index is None:
            output = method.estimate(ctx)
        else:
            output = method.estimate_sample(ctx, method_index)
    wall_s = time.perf_counter() - start
    method_cost = ctx.cost.as_dict()
    if output.summary.get("reads_truth"):  # actpatch: the method's cost is the truth's
        wall_s = float(truth.cost.get("wall_s", wall_s))
        method_cost = {k: int(truth.cost.get(k, 0)) for k in method_cost}
    cost = {
        "wall_s": wall_s,
        "forward_s": forward_s,
        "peak_mem_mb": peak_mem_mb(job.loaded.adapter.device),
        "method_cost": method_cost,
    }
    estimates = output.estimates.detach().double().cpu().numpy()
    computed = np.ones(len(components), bool)
    if output.computed is not None:
        computed = output.computed.cpu().numpy().astype(bool)
    check_finite(method.name, estimates, components, computed)
    scores = score_estimates(estimates[scored], truth_np[scored], topk=spec.topk)
    scores.update(
        bootstrap_intervals(
            estimates[scored],
            truth_np[scored],
            spec.topk,
            spec.bootstrap,
            spec.confidence,
            spec.seed,
        )
    )

    frame = estimates_frame(spec, components, estimates, truth_np, scored)
    diagnostics: dict[str, Any] = {}
    if spec.diagnostics != "off":
        scored_truth = truth_np[scored]
        lent = output.path_ends  # the method's path derivatives: not taken twice
        if lent is not None and truth_index is not None:
            lent = lent.select(truth_index.tolist())
        with stage("diagnostics"):
            columns, diagnostics = run_diagnostics(
                spec, truth, truth_ctx, scored_truth, truth_index, lent
            )
        for name, column in columns.items():
            frame[name] = on_all_components(column, scored)
    if spec.decomposition:  # where AtP's error comes from (harness/decomposition.py)
        from harness.decomposition import run_decomposition

        scored_truth = truth_np[scored]
        with stage("decomposition"):
            columns, extra = run_decomposition(
                spec, truth_ctx, truth.key, truth_index, scored_truth
            )
        diagnostics.update(extra)
        for name, column in columns.items():
            frame[name] = on_all_components(column, scored)
    for name, column in output.columns.items():
        frame[name] = column.detach().cpu().numpy()
    diagnostics["n_estimated"] = int(computed.sum())
    diagnostics["path_ends_cached"] = known is not None  # offered to the method from the cache
    curve = None
    if spec.circuits and not computed.all():  # a ranking of some components only
        diagnostics["circuits_skipped"] = (
            f"method {method.name!r} estimated {int(computed.sum())} of the {len(components)} "
            "components (truth.sample); circuit recovery needs a full ranking, which "
            "truth.method_on_sample=false computes"
        )
    elif spec.circuits:
        start = time.perf_counter()
        with stage("circuits"):
            circuit_scores, curve = circuit_recovery(ctx.with_cost(CostCounter()), estimates)
        diagnostics.update(circuit_scores)
        diagnostics["circuits_wall_s"] = time.perf_counter() - start
    return Evaluation(
        truth=truth,
        scored=scored,
        truth_np=truth_np,
        output=output,
        estimates=estimates,
        cost=cost,
        scores=scores,
        diagnostics=diagnostics,
        frame=frame,
        curve=curve,
    )


def estimates_frame(
    spec: JobSpec,
    components: list[Any],
    estimates: np.ndarray,
    truth_np: np.ndarray,
    scored: np.ndarray,
) -> pd.DataFrame:
    """The identifying columns of estimates.parquet, one row per component."""
    return pd.DataFrame(
        {
            "model": spec.model["name"],
            "task": spec.config["task"]["name"],
            "method": spec.method.name,
            "component": [c.id for c in components],
            "site": [c.site for c in components],
            "layer": [c.layer for c in components],
            "head": [c.head for c in components],
            "pos": [c.pos for c in components],
            "neuron": [c.neuron for c in components],
            "estimate": estimates,
            "truth": truth_np,
            "abs_error": abs(estimates - truth_np),
            "sampled": scored,
        }
    )


def run_diagnostics(
    spec: JobSpec,
    truth: Any,
    truth_ctx: Any,
    scored_truth: np.ndarray,
    truth_index: Any,
    known: Any = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reliability scores, flags and bounds of the ``diagnostics`` tier on the scored components
    (``scored_truth``: their true effects), cached per ground truth and tier and shared by the
    methods of a grid: (per-scored-component columns, summary values, with the passes they
    made: ``diagnostics_n_forward``, ``_n_backward``, ``_n_hvp``; 0 when cached).
    ``known``: the scored components' path derivatives the method took
    (``MethodOutput.path_ends``)."""
    from harness.context import CostCounter
    from harness.diagnostics import DiagnosticSettings, cached_diagnostics

    start = time.perf_counter()
    diag_key = diagnostics_key(truth.key, truth_index)
    passes = CostCounter()
    columns, diagnostics = cached_diagnostics(
        spec.cache_dir,
        diag_key,
        truth_ctx.with_cost(passes),
        scored_truth,
        DiagnosticSettings(spec.reliability, spec.flag, spec.unreliable, spec.diagnostics),
        spec.method.error_bound(),
        known,
    )
    diagnostics["diagnostics_wall_s"] = time.perf_counter() - start
    for key in ("n_forward", "n_backward", "n_hvp"):
        diagnostics[f"diagnostics_{key}"] = getattr(passes, key)
    return columns, diagnostics


def diagnostics_key(truth_key: str, truth_index: np.ndarray | None) -> str:
    """The key the diagnostics of a ground truth are cached under: the sampled subset's own."""
    from harness.storage import content_hash

    if truth_index is None:
        return truth_key
    return content_hash({"truth": truth_key, "sample": truth_index.tolist()})[:24]


def write_record(
    spec: JobSpec,
    job: JobContext,
    evaluation: Evaluation,
    inputs: dict[str, Any],
    out_dir: Path,
) -> RunRecord:
    """The fourth stage: assemble ``summary.json`` and write it with ``estimates.parquet`` (and
    ``circuit_curve.parquet``) into ``out_dir``, each atomically, then ``files.json`` with their
    SHA-256s (:data:`harness.storage.FILE_DIGESTS`)."""
    from harness.cost import peak_mem_mb
    from harness.environment import environment
    from harness.storage import (
        FILE_DIGESTS,
        atomic_write_json,
        atomic_write_parquet,
        write_hashed_json,
    )
    from harness.task_metric import clean_task_scores

    ctx, truth, cost = job.ctx, evaluation.truth, evaluation.cost
    wall_s, forward_s = cost["wall_s"], cost["forward_s"]
    noising = spec.direction == "noising"
    summary: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12],
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "model": spec.model["name"],
        "task": spec.config["task"]["name"],
        "method": spec.method.name,
        "metric": spec.metric,
        "direction": spec.direction,
        "dtype": spec.dtype,
        "device": str(job.loaded.adapter.device),
        "environment": environment(str(job.loaded.adapter.device)),
        "seed": spec.seed,
        "sites": spec.sites,
        "positions": spec.positions,
        **evaluation.scores,
        **evaluation.diagnostics,
        "wall_s": wall_s,
        "forward_s": forward_s,
        "fwd_equiv": wall_s / forward_s if forward_s > 0 else None,
        "peak_mem_mb": cost["peak_mem_mb"],
        **evaluation.output.summary,
        **cost["method_cost"],
        "memory_budget_gb": ctx.memory_bytes / 2**30,
        "chunks": dict(ctx.chunks),
        "peak_mem_mb_run": peak_mem_mb(job.loaded.adapter.device),
        "clean_metric": truth.base_metric if noising else truth.source_metric,
        "corrupt_metric": truth.source_metric if noising else truth.base_metric,
        # clean_accuracy, chance_accuracy, clean_logit_diff, task_solved
        **clean_task_scores(ctx, spec.confidence),
        "n_components": len(job.components),
        "truth_sample": spec.truth_sample,
        "n_truth": int(evaluation.scored.sum()),
        "truth_confidence": spec.confidence,
        "n_prompts": job.batch.n,
        "seq_len": job.batch.seq_len,
        "truth_key": truth.key,
        "truth_cached": truth.cached,
        "truth_wall_s": truth.cost.get("wall_s"),
        "model_fingerprint": job.loaded.fingerprint,
        "config_hash": spec.key,
        "inputs": inputs,
        "status": "ok",
        "config": spec.config,
    }
    frame = evaluation.frame
    files = {"estimates.parquet": atomic_write_parquet(out_dir / "estimates.parquet", frame)}
    if evaluation.curve is not None:
        files["circuit_curve.parquet"] = atomic_write_parquet(
            out_dir / "circuit_curve.parquet", evaluation.curve
        )
    files["summary.json"] = atomic_write_json(out_dir / "summary.json", summary)
    files[FILE_DIGESTS] = write_hashed_json(out_dir / FILE_DIGESTS, files)
    return RunRecord(summary=summary, estimates=frame, out_dir=out_dir, files=files)


def method_sample(spec: JobSpec, truth_index: np.ndarray | None) -> np.ndarray | None:
    """The components the method estimates: ``truth_index`` (the sampled ones) when the method's
    cost grows with the number of components and ``truth.method_on_sample`` is on; None
    (every component) otherwise."""
    if truth_index is None or not spec.method_on_sample or not spec.method.cost_grows():
        return None
    return truth_index


def stage_costs(spec: JobSpec, ctx: Any, truth_index: np.ndarray | None) -> dict[str, Any]:
    """The estimated costs of a job's stages before any pass, by stage: ``method`` (on the
    components it estimates, :func:`method_sample`) and ``truth`` (the ground truth of
    ``truth_index``, None: every component, with its diagnostics), each a tuple (what,
    :class:`harness.cost.CostEstimate` or None, remedy) for :func:`harness.cost.check_cost`."""
    from harness.cost import run_cost

    method = spec.method
    count = len(ctx.components)
    n_truth = count if truth_index is None else len(truth_index)
    method_index = method_sample(spec, truth_index)
    remedy = "use fewer components (components.sites, components.positions)"
    if method_index is not None:
        estimate = method.sample_cost_estimate(ctx, method_index)
        what = f"method {method.name!r} on {len(method_index)} sampled of {count} components"
    else:
        estimate = method.cost_estimate(ctx)
        what = f"method {method.name!r} on {count} components"
        if method.cost_grows():
            remedy += (
                ", or estimate the sampled ones only (truth.method_on_sample=true)"
                if n_truth < count
                else ", or estimate a sample (truth.sample=COUNT or a fraction)"
            )
    tier = spec.diagnostics
    truth_what = "the ground truth" + (f" and diagnostics={tier}" if tier != "off" else "")
    truth_remedy = "patch a sample (truth.sample=COUNT or a fraction)"
    if tier == "exact":
        truth_remedy += " or set diagnostics=cheap (its cost does not grow with the components)"
    return {
        "method": (what, estimate, remedy),
        "truth": (
            f"{truth_what} of {n_truth} components",
            run_cost(n_truth, spec.diagnostics),
            truth_remedy,
        ),
    }


def check_run_cost(spec: JobSpec, ctx: Any, truth_index: np.ndarray | None) -> None:
    """Refuse, before any pass, a method or a ground truth (with its diagnostics) whose
    estimated cost (:func:`stage_costs`) exceeds ``max_fwd_equiv``."""
    from harness.cost import check_cost

    for what, estimate, remedy in stage_costs(spec, ctx, truth_index).values():
        check_cost(what, estimate, spec.max_fwd_equiv, remedy)


def on_all_components(column: Any, scored: np.ndarray) -> Any:
    """A per-scored-component column [scored.sum()] laid out over every component [len(scored)]:
    NaN where not scored (None in a boolean column: parquet's null, which W&B tables accept)."""
    column = np.asarray(column)
    if scored.all():
        return column
    if column.dtype == bool:
        out = np.full(len(scored), None, dtype=object)
        out[scored] = column
        return out
    out = np.full(len(scored), np.nan)
    out[scored] = column
    return out


def memory_bytes(memory_gb: Any) -> int | None:
    """The ``memory_gb`` setting (its range checked by the config schema) in bytes (None: the
    default of :mod:`harness.budget`)."""
    from harness.budget import GB

    return None if memory_gb is None else int(memory_gb * GB)


def check_finite(method: str, values: Any, components: list, computed: Any = None) -> None:
    """Stop the job with a message naming the method and the first non-finite component among
    those it estimated (``computed``, bool [n_components]; None: every one; the others are NaN
    by design)."""
    computed = [True] * len(components) if computed is None else computed
    for value, component, estimated in zip(values, components, computed, strict=True):
        if estimated and not math.isfinite(float(value)):
            raise NumericalError(
                f"method {method!r} gave a non-finite estimate ({value}) for component "
                f"{component.id}"
            )


def _check_writable(out_dir: Path) -> None:
    from harness.storage import unwritable_reason

    reason = unwritable_reason(out_dir)
    if reason is not None:
        raise HarnessError(f"results directory {str(out_dir)!r} is not writable ({reason})")


def _task_line(s: dict[str, Any]) -> list[str]:
    """The clean-accuracy line of the printed table (absent in records written before it)."""
    if "clean_accuracy" not in s:
        return []
    if s["task_solved"] is None:
        verdict = (
            f"  -- too few prompts to tell whether the task is solved (all {s['n_prompts']} "
            f"correct would not beat chance at {_percent(s['truth_confidence'])} confidence)"
        )
    elif s["task_solved"]:
        verdict = ""
    elif s["clean_logit_diff"] <= 0:
        verdict = "  -- TASK NOT SOLVED: clean logit diff not positive"
    else:
        verdict = "  -- TASK NOT SOLVED: accuracy not above chance"
    return [
        f"  clean accuracy {s['clean_accuracy']:.3f} (chance {s['chance_accuracy']:.3f}), "
        f"clean logit diff {s['clean_logit_diff']:.4f}{verdict}"
    ]


def ranking_verdict(s: dict[str, Any]) -> str:
    """One sentence on how the method ranks the scored components against activation patching,
    read from the summary's Spearman correlation and its bootstrap interval: no better than
    chance when the interval holds 0, better (worse) when it lies above (below) 0."""
    method, n = s["method"], s.get("n_truth", s["n_components"])
    rho, lo, hi = (s.get(key) for key in ("spearman", "spearman_ci_lo", "spearman_ci_hi"))
    if not _finite(rho):
        return (
            f"{method}'s ranking of the {n} scored components cannot be scored: its Spearman "
            "correlation with activation patching is undefined (fewer than two components, or "
            "the estimates or the true effects all equal)."
        )
    spearman = f"Spearman {rho:+.2f} with activation patching"
    if not (_finite(lo) and _finite(hi)):
        return (
            f"{method} cannot be told from chance at ranking the {n} scored components: "
            f"{spearman}, with no interval (truth.bootstrap=0 or too few components)."
        )
    if lo > 0:
        how, where = "better than chance", "above 0"
    elif hi < 0:
        how, where = "worse than chance (against the true order)", "below 0"
    else:
        how, where = "no better than chance", "includes 0"
    ci = f"{_percent(s['truth_confidence'])} CI [{lo:+.2f}, {hi:+.2f}]"
    return f"{method} ranks the {n} scored components {how}: {spearman}, {ci} {where}."


COMPARED_WITH = {"atp": "atp (first-order AtP)", "hvp": "hvp (AtP plus its second-order term)"}
"""The methods the printed table proposes to run beside any run's own method."""


def comparison_command(s: dict[str, Any], overrides: Sequence[str]) -> str:
    """The lines naming the sweep that runs this job's method beside atp and hvp (this job's
    other overrides kept, ``method`` options dropped as another method may lack them), and the
    report that tables them: ``harness -m ... method=M,atp,hvp && harness-report RESULTS_DIR``.
    The report reads the whole results folder: a job of the sweep already done is skipped, its
    record left where it was."""
    others = [m for m in COMPARED_WITH if m != s["method"]]
    kept = [o for o in overrides if o.lstrip("+~").split("=")[0].split(".")[0] != "method"]
    sweep = ["harness", "-m", *kept, f"method={','.join([s['method'], *others])}"]
    report = ["harness-report", s["config"]["results_dir"]]
    return (
        f"  to compare with {' and '.join(COMPARED_WITH[m] for m in others)}, run:\n"
        f"    {shlex.join(sweep)} && {shlex.join(report)}"
    )


def format_summary(record: RunRecord, top: int = 5, overrides: Sequence[str] | None = None) -> str:
    """The short table printed at the end of a run, a sentence on the method's ranking and,
    given the job's command-line ``overrides``, the command comparing it with atp and hvp."""
    s = record.summary
    lo, hi = s.get("spearman_ci_lo"), s.get("spearman_ci_hi")
    confidence = s.get("truth_confidence")
    ci_label = "spearman CI" if confidence is None else f"spearman {_percent(confidence)} CI"
    ci = "n/a" if not (_finite(lo) and _finite(hi)) else f"[{lo:+.3f}, {hi:+.3f}]"
    truth_n = s.get("n_truth", s["n_components"])
    sampled = f" (truth patched on a sample of {truth_n})" if truth_n < s["n_components"] else ""
    topk_label = f"top{s['config']['topk']}_rec"
    lines = [
        f"{s['method']} vs activation patching | model={s['model']} task={s['task']} "
        f"metric={s['metric']} direction={s['direction']} dtype={s['dtype']}",
        f"  {s['n_components']} components{sampled} x {s['n_prompts']} prompts; "
        f"clean metric {_num(s['clean_metric'], '.4f')}, "
        f"corrupt metric {_num(s['corrupt_metric'], '.4f')}",
        *_task_line(s),
        "",
        f"  {'mae':>9} {'rmse':>9} {'max_err':>9} {'rel_err':>9} {'spearman':>9} "
        f"{ci_label:>17} {'kendall':>9} {'sign_agr':>9} {topk_label:>9} {'wall_s':>8}",
        "  "
        + " ".join(
            _num(s.get(key), "9.4f")
            for key in ("mae", "rmse", "max_abs_error", "rel_error", "spearman")
        )
        + f" {ci:>17} "
        + " ".join(_num(s.get(key), "9.4f") for key in ("kendall", "sign_agreement", "topk_recall"))
        + f" {_num(s['wall_s'], '8.3f')}",
        "",
        "  " + ranking_verdict(s),
        *([] if overrides is None else [comparison_command(s, overrides)]),
        "",
        f"  largest true effects ({s['method']} estimate beside):",
    ]
    scored = record.estimates[record.estimates["truth"].notna()]
    frame = scored.reindex(scored["truth"].abs().sort_values(ascending=False).index)
    for row in frame.head(top).itertuples():
        lines.append(
            f"    {row.component:<24} truth {row.truth:+9.4f}  estimate {row.estimate:+9.4f}  "
            f"error {row.abs_error:8.4f}"
        )
    lines.append(f"  written to {record.out_dir}")
    return "\n".join(lines)


def _percent(fraction: float) -> str:
    """0.95 -> '95%', 0.975 -> '97.5%'."""
    return f"{fraction * 100:g}%"


def _finite(value: Any) -> bool:
    """A defined score: not None, not NaN or infinite."""
    return value is not None and math.isfinite(value)


def _num(value: Any, spec: str) -> str:
    """``value`` formatted with ``spec``; an undefined score (None or NaN) as 'n/a', padded to
    the width of ``spec``."""
    width = int(re.match(r"\d*", spec).group() or 0)
    if not _finite(value):
        return "n/a".rjust(width)
    return format(value, spec)


def job_inputs(container: dict[str, Any], cache_dir: Path | None) -> dict[str, Any]:
    """What a job's numbers depend on besides its config, computed without loading the model:
    :data:`harness.COMPUTATION_VERSION`, the content fingerprint of the model's files (weights,
    config, tokenizer) and the SHA-256 of each file the task reads (a prompts file). A stored
    result is reused only when these are unchanged. File digests are cached by (path, size,
    mtime), so this is cheap after the first job on a model."""
    from harness import COMPUTATION_VERSION
    from harness.models.loader import model_fingerprint
    from harness.storage import file_sha256
    from harness.tasks import make_task

    task = make_task(container["task"])
    return {
        "computation": COMPUTATION_VERSION,
        "model": model_fingerprint(container["model"], cache_dir),
        "prompts": [file_sha256(path) for path in task.input_files()],
    }


INPUT_NAMES = {
    "computation": "the code (COMPUTATION_VERSION)",
    "model": "the model files",
    "prompts": "the prompts file",
}


def finished_run(
    results_dir: Path, key: str, inputs: dict[str, Any] | None
) -> tuple[Path | None, str]:
    """(the run dir of a finished job with config hash ``key``, "") when it was computed from
    the same ``inputs`` and every file it wrote still has its recorded SHA-256; otherwise
    (None, why not: "" when there is no record)."""
    from harness.storage import mismatched_file, read_hashed_json

    entry = read_hashed_json(results_dir / "index" / f"{key}.json")
    if entry is None:
        return None, ""
    run_dir = Path(entry["run_dir"])
    if "inputs" not in entry:
        return None, f"the result in {run_dir} was stored without its inputs (an older harness)"
    stored, now = entry["inputs"], inputs or {}
    changed = [what for key_, what in INPUT_NAMES.items() if stored.get(key_) != now.get(key_)]
    if inputs is None or changed:
        return None, f"{' and '.join(changed)} changed since the result in {run_dir}"
    damaged = mismatched_file(run_dir, entry.get("files") or {})
    if damaged is not None:
        return None, f"{run_dir / damaged} is missing or damaged"
    return run_dir, ""


def _job_info() -> dict[str, Any]:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    return {
        "multirun": multirun,
        "sweep": Path(hydra_cfg.sweep.dir).name if multirun else None,
        "sweep_dir": Path(hydra_cfg.sweep.dir) if multirun else None,
        "overrides": list(hydra_cfg.overrides.task),
        "num": hydra_cfg.job.get("num", 0) if multirun else 0,
        "count": sweep_job_count(Path(hydra_cfg.sweep.dir)) if multirun else None,
    }


def progress_label(job: dict[str, Any]) -> str:
    """The label that starts a multirun job's progress bars: ``job i/n`` (i from 1; Hydra's
    job num + 1), ``job i`` when the sweep's job count is unknown; "" outside a multirun."""
    if not job["multirun"]:
        return ""
    count = f"/{job['count']}" if job.get("count") else ""
    return f"job {job['num'] + 1}{count}"


def _task_function(cfg: Any) -> None:
    """One Hydra job: resume or run, write the record, log it, report one line or a table.

    A failing job writes ``failure.json``, marks its tracker run failed and, in a multirun,
    lets the other jobs go on. In a multirun every job also records its status in the sweep
    folder (:func:`sweep_failures`), so the sweep's exit status counts the failed jobs under
    every launcher, even those that run jobs in other processes. A tracker that fails to log a
    finished job is its ``logger_status``: exit 1 for a single run, counted by the sweep; the
    record stays as written.
    """
    from hydra.core.hydra_config import HydraConfig

    from harness.storage import read_hashed_json, write_hashed_json

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    job = _job_info()
    container = OmegaConf.to_container(cfg, resolve=True)
    key = config_hash(container)
    results_dir = Path(cfg.results_dir)
    label = " ".join(job["overrides"]) or "default job"
    failure = {"config_hash": key, "config": container}
    _job_status(job, "running", label=label, out_dir=str(out_dir), **failure)
    inputs, why_not = None, "" if cfg.resume else "resume=false"
    if cfg.resume:
        try:
            inputs = job_inputs(container, Path(cfg.cache_dir) if cfg.cache_dir else None)
        except HarnessError:
            pass  # not resumable; run_one reports the error
        previous, why_not = finished_run(results_dir, key, inputs)
        if previous is not None:
            print(
                f"[job {job['num']}] {label}: results exist for this config, skipped ({previous})"
            )
            _job_status(job, "skipped", label=label)
            discard_job_dir(out_dir, results_dir)
            return
        if why_not and inputs is not None:
            print(f"[job {job['num']}] {label}: {why_not}; recomputing")
    try:
        record = run_one(cfg, out_dir, key, inputs, progress_label(job))
        entry = {"run_dir": str(out_dir), "inputs": record.summary["inputs"], "files": record.files}
        index_path = results_dir / "index" / f"{key}.json"
        replaced = read_hashed_json(index_path)
        write_hashed_json(index_path, entry)
        if replaced and Path(replaced["run_dir"]) != out_dir:
            mark_superseded(Path(replaced["run_dir"]), out_dir, why_not or "recomputed")
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through _interrupt
        _write_failure(out_dir, {"error": f"interrupted by {str(err) or 'SIGINT'}", **failure})
        raise
    except (HarnessError, Exception) as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        user_error = isinstance(err, HarnessError)
        message = str(err) if user_error else f"{type(err).__name__}: {err}"
        message = message.splitlines()[0] if message else type(err).__name__
        _write_failure(out_dir, {"error": message, **failure})
        _job_status(job, "failed", label=label, error=message)
        _log(out_dir, cfg, job, "failed", message)
        print(f"error: {message}", file=sys.stderr)
        if job["multirun"]:
            return
        if not user_error:
            traceback.print_exc()
        sys.exit(2)
    (out_dir / "failure.json").unlink(missing_ok=True)  # of an earlier try in this folder
    _job_status(job, "ok", label=label)
    logging_failed = _log(out_dir, cfg, job, "ok", None)
    if job["multirun"]:
        s = record.summary
        print(
            f"[job {job['num']}] {label}: spearman {_num(s['spearman'], '.3f')} "
            f"mae {_num(s['mae'], '.4g')} wall {s['wall_s']:.2f}s -> {out_dir}"
        )
    else:
        print(format_summary(record, overrides=job["overrides"]))
        if logging_failed:  # a multirun counts it in sweep_failures
            sys.exit(1)


def discard_job_dir(out_dir: Path, results_dir: Path) -> None:
    """Remove the folder Hydra made for a job that wrote nothing (a skipped one), when it holds
    only what Hydra wrote for this job: its config files (``.hydra/``) and an empty job log;
    then its parents left empty, up to ``results_dir``. A folder holding anything else, or a
    non-empty log, is kept whole."""
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    config_dir = out_dir / str(hydra_cfg.output_subdir or "")
    log = out_dir / f"{hydra_cfg.job.name}.log"
    try:
        configs = list(config_dir.iterdir()) if config_dir != out_dir else []
        if (
            {p.name for p in configs} - {"config.yaml", "hydra.yaml", "overrides.yaml"}
            or set(out_dir.iterdir()) - {config_dir, log}
            or (log.exists() and log.stat().st_size)
        ):
            return
        for path in configs:
            path.unlink()
        if config_dir != out_dir:
            config_dir.rmdir()
        log.unlink(missing_ok=True)
        out_dir.rmdir()
        root = Path(os.path.abspath(results_dir))
        for parent in out_dir.parents:
            if parent == root or root not in parent.parents:
                break
            parent.rmdir()  # only an empty one; a run claiming in it re-creates it
    except OSError:
        pass  # something else is there (or appeared meanwhile): kept


SUPERSEDED = "superseded.json"
"""Marker in a run folder whose config was recomputed into another folder (inputs changed,
damaged files, ``resume=false``): the old record stays, and reports skip it."""


def mark_superseded(old_dir: Path, new_dir: Path, reason: str) -> None:
    """Write :data:`SUPERSEDED` into ``old_dir`` (when it still exists) naming ``new_dir``."""
    from harness.storage import atomic_write_json

    if old_dir.is_dir():
        with contextlib.suppress(HarnessError):
            atomic_write_json(old_dir / SUPERSEDED, {"by": str(new_dir), "reason": reason})


def _write_failure(out_dir: Path, payload: dict[str, Any]) -> None:
    """``failure.json`` in the job's folder, when it can be written (not on a full disk)."""
    from harness.storage import atomic_write_json

    try:
        atomic_write_json(out_dir / "failure.json", payload)
    except HarnessError:
        pass


JOBS_DIR = ".jobs"
"""Folder in a sweep folder where each job records its status (``<num>.json``)."""

JOB_COUNT = "count.json"
"""File in :data:`JOBS_DIR`: the number of jobs of the sweep (:func:`sweep_job_count`)."""


def _job_status(job: dict[str, Any], status: str, **fields: Any) -> None:
    """Record a multirun job's status (running, skipped, ok, failed) in the sweep folder."""
    from harness.storage import atomic_write_json

    if not job["multirun"]:
        return
    path = job["sweep_dir"] / JOBS_DIR / f"{job['num']}.json"
    try:
        previous = json.loads(path.read_text()) if status != "running" else {}
    except (OSError, ValueError):
        previous = {}
    try:
        atomic_write_json(path, {**previous, **fields, "num": job["num"], "status": status})
    except HarnessError:
        pass  # a full disk: the job stays 'running', which counts as not finished


def sweep_failures(sweep_dir: Path | None) -> list[str]:
    """The labels of the sweep's jobs that failed, never finished or whose tracker logging
    failed (their results are kept), in job order."""
    from harness.tracking import FAILED

    if sweep_dir is None:
        return []
    failed = []
    for num, record in sorted(_job_records(sweep_dir).items()):
        label = record.get("label", f"job {num}")
        if record.get("status") == "failed":
            failed.append(label)
        elif record.get("status") == "running":
            failed.append(f"{label} (did not finish)")
        elif str(record.get("logger_status", "")).startswith(FAILED):
            failed.append(f"{label} (W&B logging {record['logger_status']})")
    return failed


def _job_records(sweep_dir: Path) -> dict[int, dict[str, Any]]:
    records = {}
    for path in (sweep_dir / JOBS_DIR).glob("[0-9]*.json"):  # not JOB_COUNT
        try:
            records[int(path.stem)] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return records


def mark_interrupted(sweep_dir: Path | None, signame: str) -> None:
    """After an interrupted sweep: a ``failure.json`` for every job that was still running
    (a worker process may have been stopped before it could write its own)."""
    if sweep_dir is None:
        return
    for record in _job_records(sweep_dir).values():
        out_dir = Path(record.get("out_dir", ""))
        if record.get("status") != "running" or not out_dir.is_dir():
            continue
        if not (out_dir / "failure.json").exists() and not (out_dir / "summary.json").exists():
            payload = {k: record.get(k) for k in ("config_hash", "config")}
            _write_failure(out_dir, {"error": f"interrupted by {signame}", **payload})


_SWEEP: dict[str, Path] = {}
"""The current sweep folder in the main process (set by :class:`SweepStatus`)."""


class SweepStatus(Callback):
    """Hydra callback (``hydra.callbacks`` in conf/config.yaml), run in the main process: at
    the start of a multirun it notes the sweep folder and clears the job statuses an earlier
    sweep left there, so :func:`main` can read every job's status whichever launcher ran it."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from harness.storage import atomic_write_json

        sweep_dir = Path(str(config.hydra.sweep.dir))
        shutil.rmtree(sweep_dir / JOBS_DIR, ignore_errors=True)
        _SWEEP["dir"] = sweep_dir
        count = count_sweep_jobs(config)
        if count is not None:  # read by every job, whichever process the launcher runs it in
            with contextlib.suppress(HarnessError):
                atomic_write_json(sweep_dir / JOBS_DIR / JOB_COUNT, {"jobs": count})


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def count_sweep_jobs(config: Any) -> int | None:
    """The number of jobs Hydra's basic sweeper launches for the multirun ``config`` (its
    ``hydra.sweeper.params`` and the command line's overrides, expanded by the sweeper's own
    :meth:`split_arguments`); None under another sweeper or when the overrides cannot be
    parsed here."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    params = [f"{key}={value}" for key, value in (sweeper.get("params") or {}).items()]
    overrides = [*params, *(str(o) for o in config.hydra.overrides.task)]
    try:
        loader = GlobalHydra.instance().config_loader()
        parsed = OverridesParser.create(config_loader=loader).parse_overrides(overrides)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # noqa: BLE001 - the sweep reports its own errors; the count is cosmetic
        return None
    return sum(len(batch) for batch in batches)


def sweep_job_count(sweep_dir: Path) -> int | None:
    """The sweep's job count recorded by :class:`SweepStatus` (None when it is not)."""
    try:
        return int(json.loads((sweep_dir / JOBS_DIR / JOB_COUNT).read_text())["jobs"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def claim_output_dir(results_dir: Any, rest: str) -> str:
    """Create ``results_dir/rest`` and return it; when that name is taken (another job or sweep
    started in the same instant), ``rest-1``, ``rest-2``, ... The creation is an exclusive
    ``mkdir``, so two processes never share a folder.

    This is the ``unique_dir`` resolver of ``hydra.run.dir`` and ``hydra.sweep.dir``; OmegaConf
    caches its value per config, so every job of a sweep (in any worker process) sees the one
    folder. A bad ``results_dir`` (empty, a file, read-only) is one line on stderr and exit 2:
    Hydra would turn an exception here into a multi-line report."""
    try:
        return str(_claim_dir(results_dir, rest))
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _claim_dir(results_dir: Any, rest: str) -> Path:
    text = "" if results_dir is None else str(results_dir)
    if not text.strip():
        raise HarnessError(
            "results_dir is empty; give a folder, e.g. results_dir=outputs (the default) "
            "(an empty one would write to /runs and /cache at the filesystem root)"
        )
    root = Path(text)
    if root.exists() and not root.is_dir():
        raise HarnessError(f"results_dir {text!r} is a file, not a folder")
    target = root / rest
    taken, parent_made = 0, 0
    try:
        while True:
            candidate = target.with_name(f"{target.name}-{taken}") if taken else target
            try:
                candidate.mkdir()
                break
            except FileExistsError:
                taken += 1
            except FileNotFoundError:
                # no parent yet, or discard_job_dir removed it empty meanwhile: make it, again
                if parent_made == 3:
                    raise
                parent_made += 1
                target.parent.mkdir(parents=True, exist_ok=True)
        _probe_space(candidate)
    except OSError as err:
        raise HarnessError(
            f"results_dir {text!r} is not writable: cannot create {str(target)!r} ({err.strerror})"
        ) from None
    return candidate


def _probe_space(folder: Path, size: int = 16 << 10) -> None:
    """Write and remove ``size`` bytes in the new ``folder``: a full disk is found here, before
    Hydra writes its own files into it (which would end in a traceback). The empty folder is
    removed again when the write fails."""
    probe = folder / f".space-probe-{os.getpid()}"
    try:
        probe.write_bytes(bytes(size))
    except OSError:
        probe.unlink(missing_ok=True)
        folder.rmdir()
        raise
    probe.unlink()


OmegaConf.register_new_resolver("unique_dir", claim_output_dir, use_cache=True, replace=True)


def _log(out_dir: Path, cfg: Any, job: dict[str, Any], status: str, error: str | None) -> bool:
    """Hand the run record (or the job's ``error``) to the configured tracker (``logger=none``:
    nothing) and add its ``logger_status`` to the job's ``status`` in the sweep folder. True when
    logging failed, printed as one error line; the record on disk is left as it is."""
    from omegaconf import OmegaConf

    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    if logger_cfg.get("name", "none") == "none":
        return False
    from harness import tracking

    if error is None:
        logger_status = tracking.log_run(out_dir, logger_cfg, job)
    else:
        logger_status = tracking.log_failure(out_dir, logger_cfg, job, error)
    if logger_status is None:
        return False
    _job_status(job, status, logger_status=logger_status)
    if not logger_status.startswith(tracking.FAILED):
        return False
    print(f"error: W&B logging {logger_status} (the record in {out_dir} is kept)", file=sys.stderr)
    return True


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


def check_composed(config: Any) -> JobSpec:
    """Validate the config Hydra composed for a run (:func:`harness.job.job_spec`), its ``hydra``
    node left out; a broken ``${...}`` interpolation is one line too."""
    import copy

    from omegaconf import open_dict, read_write

    from harness.job import job_spec

    job_cfg = copy.deepcopy(config)
    with read_write(job_cfg), open_dict(job_cfg):
        job_cfg.pop("hydra", None)
    try:
        container = OmegaConf.to_container(job_cfg, resolve=True)
    except Exception as err:  # noqa: BLE001 - every resolution error becomes one line
        raise composition_error(err) from None
    return job_spec(container)


def check_sweep(master: Any) -> None:
    """Validate every job of a multirun before the sweep starts: the config of each override
    list of :func:`sweep_samples` over the sweep's task overrides, composed by Hydra's own config
    loader as the launcher will compose it (every value of every axis, not the whole grid)."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    overrides = OmegaConf.to_container(master.hydra.overrides.task, resolve=False)
    assert isinstance(overrides, list)
    for sample in sweep_samples([str(o) for o in overrides]):
        try:
            config = loader.load_sweep_config(master, sample)
        except Exception as err:  # noqa: BLE001 - every composition error becomes one line
            raise composition_error(err) from None
        check_composed(config)


def composition_error(err: Exception) -> HarnessError:
    """Hydra's or OmegaConf's multi-line error (an unknown group choice, a misspelt key, a value
    of the wrong type, a broken interpolation) as one :class:`HarnessError` line."""
    from hydra.errors import MissingConfigException, OverrideParseException

    from harness.config_files import group_options
    from harness.job import unknown_key
    from harness.launchers import launcher_error
    from harness.registry import unknown_choice

    if isinstance(err, HarnessError):
        return err
    if isinstance(err, OverrideParseException):  # e.g. a path with spaces the shell split
        return HarnessError(override_parse_error(err, sys.argv[1:]))
    missing = getattr(err, "missing_cfg_file", None) or ""
    launcher = launcher_error(missing, str(err), getattr(err, "options", None) or [])
    if launcher is not None:  # hydra/launcher=joblib without the launcher extras, or a typo
        return HarnessError(launcher)
    top = missing.split("/", 1)[0]
    if isinstance(err, MissingConfigException) and top in CONFIG_GROUPS:
        found = [str(o) for o in err.options or []]  # with hydra.searchpath's
        accepted = sorted(set(found) | set(group_options(top)))  # nested ones as sub/name
        return HarnessError(unknown_choice(top, missing[len(top) + 1 :], accepted))
    if isinstance(err, MissingConfigException) and err.options:  # a nested group's choice
        group, _, choice = missing.rpartition("/")
        accepted = sorted({str(o) for o in err.options} | set(group_options(group)))
        return HarnessError(unknown_choice(group, choice, accepted))
    text = str(err.__cause__) if str(err).startswith("Error merging override") else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    match = re.match(r"Could not override '([^']+)'", lines[0] if lines else "")
    if match:
        return HarnessError(unknown_key(match.group(1)))
    key = next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("full_key:")), ""
    )
    first = lines[0] if lines else type(err).__name__
    return HarnessError(f"{key}: {first}" if key else first)


def override_parse_error(err: Any, argv: list[str]) -> str:
    """One line for an override Hydra cannot parse (``err.override``, from the command line
    ``argv``): the override, Hydra's reason and the override quoted as Hydra reads it. Words
    after a ``key=value`` that hold no ``=`` are the rest of a value with spaces the shell split
    (``model.path=/tmp/my models/x``), joined back in the quoted example."""
    bad = str(err.override)
    lines = [line for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Error parsing", "See https"))]
    reason = (reasons or lines or ["unreadable"])[0]
    lexer = "LexerNoViableAltException: "
    if reason.startswith(lexer) and len(reasons) > 1 and "^" in reasons[1]:  # a caret line
        column = reasons[1].index("^") - len(lexer)
        reason = f"unexpected character {bad[column : column + 1]!r}"

    def value_word(i: int) -> bool:
        return 0 <= i < len(argv) and "=" not in argv[i] and not argv[i].startswith("-")

    start = end = argv.index(bad) if bad in argv else -1
    while value_word(start) and start > 0 and not argv[start - 1].startswith("-"):
        start -= 1
    while value_word(end + 1):
        end += 1
    words = argv[start : end + 1] if start >= 0 else [bad]
    key, equals, value = " ".join(words).partition("=")
    if not equals:
        return f"cannot parse override {bad!r} ({reason}); an override is key=value"
    quoted = f"{key}='{value}'" if '"' in value else f'{key}="{value}"'
    shell = '"' + quoted.replace('"', '\\"') + '"' if "'" in quoted else f"'{quoted}'"
    return (
        f"cannot parse override {bad!r} ({reason}); quote a value with spaces or special "
        f"characters, e.g. {shell}"
    )


_FULL_ERROR: dict[str, str | None] = {}
"""The user's own ``HYDRA_FULL_ERROR`` while :func:`main` sets it to let composition errors
reach it (restored by :class:`CheckJobs` before any job runs, and when :func:`main` ends)."""


def _restore_full_error() -> None:
    if "user" not in _FULL_ERROR:
        return
    user = _FULL_ERROR.pop("user")
    if user is None:
        os.environ.pop("HYDRA_FULL_ERROR", None)
    else:
        os.environ["HYDRA_FULL_ERROR"] = user


class CheckJobs(Callback):
    """Hydra callback, first in ``hydra.callbacks`` (conf/config.yaml): validates the composed
    config of a run, or of every value of every sweep axis of a multirun, before any run or
    sweep folder exists. A bad value is one line on stderr and exit 2."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        _restore_full_error()
        _exit_on_error(check_composed, config)
        _dry_run(config, multirun=False)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        _restore_full_error()
        _exit_on_error(check_sweep, config)
        _dry_run(config, multirun=True)


def _dry_run(config: Any, multirun: bool) -> None:
    """With ``dry_run=true``: print the plan of every job (:mod:`harness.plan`) and exit 0
    before any run or sweep folder exists; any error is one line and exit 2 (Hydra would only
    warn about an exception raised in a callback, and go on to run the grid)."""
    if not config.get("dry_run"):
        return
    from harness.plan import print_plan

    try:
        print_plan(config, multirun)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as err:  # noqa: BLE001 - a dry run never falls through to the real run
        print(f"error: the dry run failed: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(0)


def _exit_on_error(check: Any, config: Any) -> None:
    """``check(config)``; a :class:`HarnessError` is one line on stderr and exit 2 (Hydra would
    turn an exception raised in a callback into a multi-line report)."""
    try:
        check(config)
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM handler: unwind like Ctrl-C, so temporary files are removed on the way out."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main() -> None:
    """Console script ``harness``."""
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    app = hydra.main(config_path="pkg://harness.conf", config_name="config", version_base="1.3")(
        _task_function
    )
    _SWEEP.clear()  # main() may run more than once in a process (tests, notebooks)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    # Hydra composes the config once; HYDRA_FULL_ERROR lets its composition error (an unknown
    # group choice, a misspelt key, a value of the wrong type) reach us, to be one line
    _FULL_ERROR["user"] = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        app()
    except (HydraException, OmegaConfBaseException) as err:
        print(f"error: {composition_error(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as err:
        # files are written to a temporary name and renamed, so nothing half-written is left
        signame = str(err) or "SIGINT"
        mark_interrupted(_SWEEP.get("dir"), signame)
        print(
            f"error: interrupted by {signame}; finished results and cache entries are kept, "
            "re-run the same command to resume",
            file=sys.stderr,
        )
        sys.exit(128 + getattr(signal, signame, signal.SIGINT))
    finally:
        _restore_full_error()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)
    failed = sweep_failures(_SWEEP.get("dir"))
    if failed:
        print(f"error: {len(failed)} job(s) failed: {'; '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
