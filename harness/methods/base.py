"""The method interface and registry.

A method is a class registered under its slug, configured by ``conf/method/<slug>.yaml``
(``name``, ``impl: package.module:Class`` and its options). ``estimate(ctx)`` returns one estimate
per component of ``ctx.components`` (same order, same sign convention as the true effect:
L(patched) - L(unpatched), see :mod:`harness.context`), plus optional per-component columns and
summary values. A method defined in the user's own module plugs in by naming it in ``impl``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from harness.config import Range
from harness.config_files import lazy_registry
from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.errors import HarnessError
from harness.registry import Registry, import_object


@dataclass
class MethodOutput:
    """``estimates`` [n_components] (float64); ``columns``: extra per-component values written to
    estimates.parquet (each [n_components]); ``summary``: extra scalar values for summary.json."""

    estimates: torch.Tensor
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)


class Method(ABC):
    """Base class of attribution methods. Options are the YAML keys besides name/impl."""

    slug: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    """Accepted options and their defaults."""
    ranges: ClassVar[dict[str, Range]] = {}
    """The accepted range of each numeric option (checked before :meth:`validate`; None passes
    where the default is None)."""
    bound: ClassVar[str | None] = None
    """Which error bound of :mod:`harness.diagnostics` brackets this method's estimate:
    ``"atp"`` (the estimate is f'(0)), ``"hvp"`` (f'(0) + f''(0) / 2) or None (neither). Every
    method declares it in its own class body; :meth:`error_bound` refines it by option.
    tests/methods/test_contract.py checks both against each method's estimates."""

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(sorted(self.options)) or "none"
            raise HarnessError(
                f"unknown option {unknown[0]!r} for method {self.slug!r}; accepted: {accepted}"
            )
        self.config = {**self.options, **options}
        for key, rng in self.ranges.items():
            if self.config[key] is not None or self.options.get(key) is not None:
                rng.check(f"method.{key}", self.config[key])
        self.validate()

    def error_bound(self) -> str | None:
        """The bound that brackets the estimate under this instance's options (default:
        :attr:`bound`); the diagnostics report its ``bound_coverage`` and ``bound_width``."""
        return self.bound

    def validate(self) -> None:  # noqa: B027 - optional override
        """Check option values; raise HarnessError with a one-line message."""

    @abstractmethod
    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        """Estimate every component's effect."""

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate | None:
        """The estimated cost of :meth:`estimate` on ``ctx`` before running it, in forward
        equivalents (:mod:`harness.cost`), checked against ``max_fwd_equiv``; None: unknown."""
        return None


METHODS: Registry[Method] = lazy_registry("method", "method", Method)


def make_method(method_cfg: Mapping[str, Any]) -> Method:
    """Instantiate the method named by a method config (its ``impl`` wins over the registry, so a
    user's own class works by import path)."""
    cfg = dict(method_cfg)
    slug = str(cfg.pop("name", ""))
    impl = cfg.pop("impl", None)
    if impl:
        cls = import_object(str(impl))
        if not (isinstance(cls, type) and issubclass(cls, Method)):
            raise HarnessError(f"method impl {impl!r} is not a harness Method subclass")
        cls.slug = cls.slug or slug
    else:
        cls = METHODS.get(slug)
    instance = cls(**cfg)
    instance.name = slug or cls.slug
    return instance
