"""A grid planned before it runs (``dry_run=true``): every job with its estimated cost.

The jobs are those the run or the ``-m`` grid would launch, in job order (the basic sweeper's
product of ``hydra.sweeper.params`` and the command line's overrides). Each job's cost in
forward equivalents comes from the cost model (:func:`harness.run.stage_costs`): the method on
the components it estimates and, once per ground truth (the jobs of a grid share its cache),
the ground truth with its diagnostics and the error decomposition; circuit recovery when the
method ranks every component. A ground truth already in the cache and a job whose results
exist (``resume``) cost nothing. A short probe calibrates the unit on this machine: each
distinct model is loaded once and one clean forward of each distinct prompt batch is timed
(:func:`harness.cost.time_forward`), and the ground truth and the path derivatives of 16
components are timed against it (:meth:`Probe.ratios_of`): the cost model's per-component part
is scaled by those ratios (the model is an upper bound; a patched copy starts at its component's
layer), and a job's wall time is its forward equivalents times that forward, plus the model's
load time. Nothing is written: no run folder, no cache entry (the probe loads models without
``cache_dir``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from harness.errors import HarnessError

AXES = ("model", "task", "method")
"""The config groups every job names (the table's own columns)."""

PROBE_COMPONENTS = 16
"""Components the calibration probe patches and differentiates (:meth:`Probe.ratios_of`)."""


@dataclass
class PlannedJob:
    """One job of the plan: its number and overrides, what it runs, its estimated forward
    equivalents and wall seconds on this machine, the device, and a note (cached truth,
    skipped, why the real run would fail)."""

    num: int
    overrides: list[str]
    model: str
    task: str
    method: str
    components: str
    fwd_equiv: float
    wall_s: float
    device: str
    note: str


def job_override_lists(master: Any) -> list[list[str]]:
    """The override list of every job of the multirun composed as ``master``, in job order:
    the basic sweeper's cartesian product of ``hydra.sweeper.params`` and the command line's
    task overrides (a later value of a key replaces an earlier one)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from harness.run import composition_error

    params = master.hydra.sweeper.get("params")
    params = {} if params is None else OmegaConf.to_container(params, resolve=False)
    lines = [f"{key}={value}" for key, value in params.items()]
    lines += [str(o) for o in OmegaConf.to_container(master.hydra.overrides.task)]
    loader = GlobalHydra.instance().config_loader()
    try:
        overrides = OverridesParser.create(config_loader=loader).parse_overrides(lines)
        (jobs,) = BasicSweeper.split_arguments(overrides, None)
    except Exception as err:  # noqa: BLE001 - e.g. an interval() only a sweeper plugin samples
        raise composition_error(err) from None
    return jobs


class Probe:
    """The calibration: each model loaded once (without ``cache_dir``: nothing written) and
    one clean forward timed once per model and prompt batch."""

    def __init__(self) -> None:
        self.models: dict[str, tuple[Any, float]] = {}
        self.forwards: dict[tuple[str, str], float] = {}
        self.ratios: dict[tuple[str, str], tuple[float, float]] = {}

    def load(self, spec: Any) -> tuple[Any, float, str]:
        """(the loaded model, its load seconds, its key) for the job ``spec``."""
        from harness.models.loader import load_model

        seed = spec.seed if spec.model.get("random_init") else None  # random weights: per seed
        key = json.dumps([spec.model, spec.device, spec.dtype, seed], sort_keys=True, default=str)
        if key not in self.models:
            start = time.perf_counter()
            loaded = load_model(spec.model, spec.device, spec.dtype, seed=spec.seed)
            self.models[key] = (loaded, time.perf_counter() - start)
        loaded, load_s = self.models[key]
        return loaded, load_s, key

    def ratios_of(self, model_key: str, ctx: Any) -> tuple[float, float]:
        """(patched copy, path point): the seconds of one component's patched forward in the
        ground-truth engine, and of one f'(t), f''(t) evaluation in the path-derivative engine
        per forward equivalent the cost model gives it, over one clean forward of ``ctx``'s
        prompt batch; timed once per model, prompt batch and component set on up to
        :data:`PROBE_COMPONENTS` components spread over the list. They turn the cost model's
        per-component part (an upper bound: a copy starts at its component's layer, ends at the
        last position's logits and runs batched) into this machine's."""
        from harness.cost import PER_PATH_POINT
        from harness.ground_truth import compute_ground_truth
        from harness.patching import collect_activations, site_names
        from harness.second_order import path_derivatives
        from harness.storage import content_hash

        components = ctx.components
        key = (model_key, content_hash([ctx.base_tokens.tolist(), [c.id for c in components]]))
        if key not in self.ratios:
            count = min(len(components), PROBE_COMPONENTS)
            picked = [round(i * (len(components) - 1) / max(count - 1, 1)) for i in range(count)]
            probe = ctx.select_components(picked)
            forward_s = self.forward_s(model_key, ctx)
            compute_ground_truth(probe)  # warm-up
            start = time.perf_counter()
            compute_ground_truth(probe)
            copy = (time.perf_counter() - start) / count / forward_s
            names = site_names(probe.components)
            _, base = collect_activations(probe, probe.base_tokens, names)
            _, source = collect_activations(probe, probe.source_tokens, names)
            start = time.perf_counter()
            path_derivatives(probe, probe.components, base, source, t=1.0)
            point = (time.perf_counter() - start) / count / forward_s / PER_PATH_POINT
            self.ratios[key] = (copy, point)
        return self.ratios[key]

    def forward_s(self, model_key: str, ctx: Any) -> float:
        """Seconds of one clean forward of ``ctx``'s prompt batch, timed once per batch."""
        from harness.cost import time_forward
        from harness.storage import content_hash

        batch = ctx.base_tokens
        tokens = content_hash([batch.tolist(), ctx.batch_size, ctx.direction])
        key = (model_key, tokens)
        if key not in self.forwards:
            self.forwards[key] = time_forward(ctx)
        return self.forwards[key]


def plan_job(
    num: int, overrides: list[str], config: Any, probe: Probe, truths: set[str]
) -> PlannedJob:
    """The :class:`PlannedJob` of one composed job config; ``truths``: the ground truths the
    plan's earlier jobs compute (this job's is added). A job the real run would refuse raises
    its :class:`HarnessError`."""
    from harness.circuits import circuit_cost
    from harness.cost import check_cost
    from harness.decomposition import decomposition_cost
    from harness.ground_truth import sample_truth, truth_cached, truth_key
    from harness.job import config_hash
    from harness.run import (
        build_context,
        check_composed,
        finished_run,
        job_inputs,
        method_sample,
        stage_costs,
    )

    spec = check_composed(config)
    container = spec.config
    names = tuple(str(container[k]["name"]) for k in AXES)
    if container["resume"]:
        try:
            inputs = job_inputs(container, None)  # no cache_dir: the digests are not written
        except HarnessError:
            inputs = None
        done, _ = finished_run(Path(container["results_dir"]), config_hash(container), inputs)
        if done is not None:
            return PlannedJob(num, overrides, *names, "-", 0.0, 0.0, "", f"skipped: in {done}")
    loaded, load_s, model_key = probe.load(spec)
    job = build_context(spec, loaded=loaded)
    ctx, components = job.ctx, job.components
    truth_index = sample_truth(components, spec.truth_sample, spec.seed)
    stages = stage_costs(spec, ctx, truth_index)
    for what, estimate, remedy in stages.values():
        check_cost(what, estimate, spec.max_fwd_equiv, remedy)
    expected = expected_costs(spec, ctx, truth_index, stages, probe.ratios_of(model_key, ctx))
    method_index = method_sample(spec, truth_index)
    counted = "" if method_index is None else f"{len(method_index)} of "
    fwd_equiv = expected["method"]
    notes = [] if stages["method"][1] else ["method cost unknown"]
    truth_ctx = ctx if truth_index is None else ctx.select_components(truth_index)
    key = truth_key(truth_ctx, loaded.fingerprint, components)
    if spec.cache_dir is not None and truth_cached(
        truth_ctx, loaded.fingerprint, spec.cache_dir, components
    ):
        notes.append("truth cached")
    elif key in truths:
        notes.append("truth shared")
    else:
        truths.add(key)
        fwd_equiv += expected["truth"]
        if spec.decomposition:
            n_layers = ctx.model.shape.n_layers
            decomposition = decomposition_cost(truth_ctx.components, n_layers)
            check_cost(
                f"the error decomposition of {len(truth_ctx.components)} components",
                decomposition,
                spec.max_fwd_equiv,
                "patch a sample (truth.sample=COUNT or a fraction) or set decomposition=false",
            )
            fwd_equiv += decomposition.fwd_equiv
    if spec.circuits and method_index is None:
        fwd_equiv += circuit_cost().fwd_equiv
    forward_s = probe.forward_s(model_key, ctx)
    return PlannedJob(
        num,
        overrides,
        *names,
        f"{counted}{len(components)}",
        fwd_equiv,
        fwd_equiv * forward_s + load_s,
        str(ctx.model.device.type),
        ", ".join(notes),
    )


def expected_costs(
    spec: Any, ctx: Any, truth_index: Any, stages: dict[str, Any], ratios: tuple[float, float]
) -> dict[str, float]:
    """Each stage's expected forward equivalents on this machine: the cost model's estimate
    (``stages``, :func:`harness.run.stage_costs`, an upper bound) with its per-component part
    scaled by the probe's ratio (:meth:`Probe.ratios_of`): the patched copy's for the ground
    truth, the path point's for the method and for the exact diagnostics, whose per-component
    part is path derivatives. The per-component part is what the estimate gains when every
    component is listed twice (the same sites and layers: per-site passes do not change)."""
    import numpy as np

    from harness.cost import run_cost
    from harness.run import stage_costs

    copy, point = ratios
    n = len(ctx.components)
    twice = ctx.select_components(list(range(n)) * 2)
    index = None if truth_index is None else np.concatenate([truth_index, truth_index + n])
    doubled = stage_costs(spec, twice, index)
    n_truth = n if truth_index is None else len(truth_index)
    truth_alone = run_cost(n_truth, "off").fwd_equiv - run_cost(0, "off").fwd_equiv
    out = {}
    for stage, (_, estimate, _) in stages.items():
        if estimate is None:
            out[stage] = 0.0
            continue
        per_component = doubled[stage][1].fwd_equiv - estimate.fwd_equiv
        if stage == "truth":  # its patched copies, then the diagnostics' path derivatives
            out[stage] = estimate.fwd_equiv + (copy - 1.0) * truth_alone
            out[stage] += (point - 1.0) * (per_component - truth_alone)
        else:
            out[stage] = estimate.fwd_equiv + (point - 1.0) * per_component
    return out


def plan(master: Any, multirun: bool) -> list[PlannedJob]:
    """Every job of the run (``multirun`` False: ``master`` itself) or of the grid composed as
    ``master``, planned. In a grid, a job the real run would refuse is kept with its error as
    the note (the others would still run); a single run's error is raised, as the run would."""
    from hydra.core.global_hydra import GlobalHydra

    from harness.run import composition_error

    probe, truths = Probe(), set()
    if not multirun:
        return [plan_job(0, [], master, probe, truths)]
    loader = GlobalHydra.instance().config_loader()
    jobs = []
    for num, overrides in enumerate(job_override_lists(master)):
        config = None
        try:
            try:
                config = loader.load_sweep_config(master, list(overrides))
            except Exception as err:  # noqa: BLE001 - every composition error becomes one line
                raise composition_error(err) from None
            jobs.append(plan_job(num, list(overrides), config, probe, truths))
        except HarnessError as err:
            names = [str(OmegaConf.select(config, f"{k}.name", default="?")) for k in AXES]
            note = f"fails: {err}"
            jobs.append(PlannedJob(num, list(overrides), *names, "-", 0.0, 0.0, "", note))
    return jobs


def duration(seconds: float) -> str:
    """``seconds`` in the largest fitting unit: '0.8 s', '12 min', '3.2 h', '4.1 days'."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.2g} s"


def format_plan(jobs: list[PlannedJob], threads: int | None = None) -> str:
    """The plan as a table, one row per job, and the total (forward equivalents, wall time one
    job at a time, core-hours on CPU at ``threads`` threads (default torch's), GPU-hours)."""
    threads = threads or torch.get_num_threads()
    axes = _varying(jobs)
    header = ["job", "model", "task", "method", "components", "fwd_equiv", "est. wall", "note"]
    rows = [
        [
            str(j.num),
            j.model,
            j.task,
            j.method,
            j.components,
            f"{j.fwd_equiv:.3g}",
            duration(j.wall_s),
            "; ".join(x for x in (_axes(j, axes), j.note) if x),
        ]
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "dry run: nothing is run or written. Forward equivalents from the cost model, its "
        f"per-component part scaled by a probe of the patching engines here ({PROBE_COMPONENTS} "
        "components' patched copies and path derivatives against one clean forward); wall time "
        "from that clean forward, timed here per model and prompt batch, plus the model load",
    ]
    for row in [header, *rows]:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    wall = sum(j.wall_s for j in jobs)
    cpu = sum(j.wall_s for j in jobs if j.device == "cpu")
    gpu = sum(j.wall_s for j in jobs if j.device == "cuda")
    hours = []
    if cpu:
        hours.append(f"{cpu * threads / 3600:.3g} core-hours at {threads} CPU threads")
    if gpu:
        hours.append(f"{gpu / 3600:.3g} GPU-hours")
    failing = sum(j.note.startswith("fails:") for j in jobs)
    lines.append(
        f"total: {len(jobs)} job(s), {sum(j.fwd_equiv for j in jobs):.3g} forward equivalents, "
        f"est. wall {duration(wall)} one job at a time"
        + (f" ({'; '.join(hours)})" if hours else "")
        + (f"; {failing} job(s) would fail" if failing else "")
    )
    return "\n".join(lines)


def _varying(jobs: list[PlannedJob]) -> list[str]:
    """The override keys (besides model, task and method) whose value differs between jobs."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1 and k not in AXES]


def _axes(job: PlannedJob, keys: list[str]) -> str:
    return " ".join(o for o in job.overrides if o.partition("=")[0] in keys)


def print_plan(master: Any, multirun: bool) -> None:
    """Print :func:`format_plan` of :func:`plan` on stdout."""
    print(format_plan(plan(master, multirun)))
