"""A job's spec: the composed config, validated once, in one place.

:func:`job_spec` is the one validation stage a config passes before a job starts: the schema's
keys and ranges (:mod:`harness.config`), the names the file system must accept, the choices each
module owns (sites and positions, metric, direction, reliability scores, ``truth.sample``, the
logger) and the method's and task's own options (their plugins' option schemas). Every failure is
one :class:`~harness.errors.HarnessError` line. It runs in Hydra's callbacks before any run or
sweep folder exists (every value of every sweep axis under ``-m``) and again in
:func:`harness.run.run_one`, which works from the :class:`JobSpec` it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

SEMANTIC_EXCLUDE = (
    "progress",
    "dry_run",
    "results_dir",
    "cache_dir",
    "logger",
    "resume",
    "model.gated",
)
"""Keys (dotted: nested) that do not change a job's results (left out of its config hash)."""

HASH_NEUTRAL_DEFAULTS: dict[str, Any] = {
    "decomposition": False,
    "truth.method_on_sample": True,  # the committed sampled records are all of AtP (flat cost)
}
"""Keys (dotted: nested) added after records were committed, with the value that reproduces the
earlier results: a key at that value is left out of the config hash, so adding an option does
not turn every committed record into one to recompute on resume."""

HASH_ALIASES: dict[str, dict[str, Any]] = {"diagnostics": {"exact": True, "off": False}}
"""Keys (dotted: nested) whose value has a newer spelling of the same meaning: the newer one
hashes as the older (:data:`harness.config.DIAGNOSTICS_ALIASES`), so a committed record stays
the same job."""


def config_hash(container: Mapping[str, Any]) -> str:
    """Hash of the resolved config minus the keys that cannot change the results
    (:data:`SEMANTIC_EXCLUDE`) and the newer keys at their neutral default
    (:data:`HASH_NEUTRAL_DEFAULTS`), with values spelled as :data:`HASH_ALIASES` says."""
    from harness.storage import content_hash

    def dropped(key: str, value: Any) -> bool:
        if key in SEMANTIC_EXCLUDE:
            return True
        return key in HASH_NEUTRAL_DEFAULTS and value == HASH_NEUTRAL_DEFAULTS[key]

    def spelled(key: str, value: Any) -> Any:
        if isinstance(value, str):
            return HASH_ALIASES.get(key, {}).get(value, value)
        return value

    def kept(node: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        return {
            k: kept(v, f"{prefix}{k}.") if isinstance(v, Mapping) else spelled(f"{prefix}{k}", v)
            for k, v in node.items()
            if not dropped(f"{prefix}{k}", v)
        }

    return content_hash(kept(container, ""))[:16]


@dataclass(frozen=True)
class JobSpec:
    """One (model, task, method) job, validated: what :func:`harness.run.run_one` reads.

    ``config`` is the resolved config as written into ``summary.json``; ``key`` its
    :func:`config_hash`. ``method`` and ``task`` are the built plugins."""

    config: dict[str, Any]
    key: str
    method: Any  # harness.methods.base.Method
    task: Any  # harness.tasks.Task
    model: dict[str, Any]
    dtype: str
    device: str
    seed: int
    n_prompts: int | None
    batch_size: int
    memory_gb: float | None
    sites: list[str]
    positions: str
    metric: str
    direction: str
    topk: int
    diagnostics: str  # harness.config.DIAGNOSTICS_TIERS
    decomposition: bool
    circuits: bool
    reliability: list[str]  # the tier's scores when the config leaves it null
    flag: dict[str, Any]
    unreliable: dict[str, Any]
    truth_sample: int | float | None
    method_on_sample: bool
    bootstrap: int
    confidence: float
    max_fwd_equiv: float | None
    progress: bool | None  # None: auto (harness.progress.progress_enabled)
    cache_dir: Path | None


def job_spec(container: Mapping[str, Any], key: str | None = None) -> JobSpec:
    """Validate a resolved config (no ``hydra`` node) and return its :class:`JobSpec`.

    The first violation is a one-line :class:`HarnessError` naming the value and the accepted
    ones."""
    from harness.components import check_components
    from harness.config import check_names, check_ranges, diagnostics_tier, unknown_keys
    from harness.context import check_direction
    from harness.diagnostics import check_reliability_config
    from harness.ground_truth import check_truth_sample
    from harness.methods.base import make_method
    from harness.progress import check_progress
    from harness.task_metric import check_metric
    from harness.tasks import make_task
    from harness.tracking import check_logger_config

    cfg = dict(container)
    extra = unknown_keys(cfg)
    if extra:
        raise HarnessError(unknown_key(extra[0]))
    check_ranges(cfg)
    check_names(cfg)
    check_logger_config(cfg.get("logger"))
    components = cfg["components"]
    check_components(list(components["sites"]), str(components["positions"]))
    check_metric(cfg["metric"])
    check_direction(cfg["direction"])
    tier = diagnostics_tier(cfg["diagnostics"])
    reliability = check_reliability_config(
        {"scores": cfg["reliability"], "flag_fraction": cfg["flag"]["fraction"]}, tier
    )
    truth = cfg["truth"]
    check_truth_sample(truth["sample"])  # a count or a fraction; the other truth.* are ranges
    progress = check_progress(cfg["progress"])
    method = make_method(cfg["method"])
    task = make_task(cfg["task"])
    model = cfg["model"]
    cache_dir = cfg.get("cache_dir")
    return JobSpec(
        config=cfg,
        key=key or config_hash(cfg),
        method=method,
        task=task,
        model=dict(model),
        dtype=cfg["dtype"] or model.get("dtype") or "float32",
        device=cfg["device"] or model.get("device") or "auto",
        seed=cfg["seed"],
        n_prompts=cfg["n_prompts"],
        batch_size=cfg["batch_size"],
        memory_gb=cfg.get("memory_gb"),
        sites=list(components["sites"]),
        positions=str(components["positions"]),
        metric=cfg["metric"],
        direction=cfg["direction"],
        topk=cfg["topk"],
        diagnostics=tier,
        decomposition=bool(cfg["decomposition"]),
        circuits=bool(cfg["circuits"]),
        reliability=reliability,
        flag=dict(cfg["flag"]),
        unreliable=dict(cfg["unreliable"]),
        truth_sample=truth["sample"],
        method_on_sample=bool(truth["method_on_sample"]),
        bootstrap=truth["bootstrap"],
        confidence=truth["confidence"],
        max_fwd_equiv=cfg["max_fwd_equiv"],
        progress=progress,
        cache_dir=Path(cache_dir) if cache_dir else None,
    )


def unknown_key(dotted: str) -> str:
    """'unknown config key ...' naming the keys the default config accepts at that level."""
    from harness.registry import unknown_choice

    node: Any = default_config()
    parent, _, _leaf = dotted.rpartition(".")
    for part in parent.split(".") if parent else []:
        node = node.get(part) if isinstance(node, Mapping) else None
    accepted = sorted(str(k) for k in node) if isinstance(node, Mapping) else []
    return unknown_choice(
        "config key", dotted, [f"{parent}.{k}" if parent else k for k in accepted]
    )


def default_config() -> dict[str, Any]:
    """The default config (no overrides) as a plain dict, unresolved, without its hydra node."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if GlobalHydra.instance().is_initialized():  # inside a run: Hydra's own config loader
        from hydra.types import RunMode

        loader = GlobalHydra.instance().config_loader()
        cfg = loader.load_configuration("config", [], RunMode.RUN)
    else:
        with initialize_config_module(config_module="harness.conf", version_base="1.3"):
            cfg = compose("config")
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    return container
