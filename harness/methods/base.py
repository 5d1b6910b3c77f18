"""The method interface and registry.

A method is a class registered under its slug, configured by ``conf/method/<slug>.yaml``
(``name``, ``impl: package.module:Class`` and its options, declared by the class's ``Options``
dataclass; :mod:`harness.registry`). ``estimate(ctx)`` returns one estimate
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

from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.registry import Plugin, Registry


@dataclass
class MethodOutput:
    """``estimates`` [n_components] (float64); ``columns``: extra per-component values written to
    estimates.parquet (each [n_components]); ``summary``: extra scalar values for summary.json;
    ``at_zero``: (f_c'(0), f_c''(0)) of every component's path (float64 [n_components] each),
    when the method took them from :func:`harness.second_order.path_derivatives` at t = 0 (the
    diagnostics then reuse them instead of computing them again)."""

    estimates: torch.Tensor
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    at_zero: tuple[torch.Tensor, torch.Tensor] | None = None


class Method(Plugin, ABC):
    """Base class of attribution methods. ``Options``: a frozen dataclass of the options (the
    YAML keys besides name/impl, :mod:`harness.registry`); ``self.name``: the config's name."""

    axis: ClassVar[str] = "method"
    bound: ClassVar[str | None] = None
    """Which error bound of :mod:`harness.diagnostics` brackets this method's estimate:
    ``"atp"`` (the estimate is f'(0)), ``"hvp"`` (f'(0) + f''(0) / 2) or None (neither). Every
    method declares it in its own class body; :meth:`error_bound` refines it by option.
    tests/methods/test_contract.py checks both against each method's estimates."""

    def error_bound(self) -> str | None:
        """The bound that brackets the estimate under this instance's options (default:
        :attr:`bound`); the diagnostics report its ``bound_coverage`` and ``bound_width``."""
        return self.bound

    @abstractmethod
    def estimate(self, ctx: AttributionContext) -> MethodOutput:
        """Estimate every component's effect."""

    def cost_estimate(self, ctx: AttributionContext) -> CostEstimate | None:
        """The estimated cost of :meth:`estimate` on ``ctx`` before running it, in forward
        equivalents (:mod:`harness.cost`), checked against ``max_fwd_equiv``; None: unknown."""
        return None


METHODS: Registry[Method] = Registry("method", "method", Method)
"""Method slug -> class, from ``conf/method/*.yaml``."""


def make_method(method_cfg: Mapping[str, Any]) -> Method:
    """Instantiate the method named by a method config (its ``impl`` wins over the registry, so a
    user's own class works by import path)."""
    return METHODS.build(method_cfg)
