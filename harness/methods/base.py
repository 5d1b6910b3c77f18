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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from harness.context import AttributionContext
from harness.cost import CostEstimate
from harness.registry import Plugin, Registry
from harness.types import PathEnds, laid_out


@dataclass
class MethodOutput:
    """``estimates`` [n_components] (float64); ``columns``: extra per-component values written to
    estimates.parquet (each [n_components]); ``summary``: extra scalar values for summary.json;
    ``path_ends``: the path derivatives (f_c'(0), f_c''(0), f_c'(1)) the method took from
    :func:`harness.second_order.path_derivatives` (the diagnostics then reuse them instead of
    taking them again)."""

    estimates: torch.Tensor
    columns: dict[str, torch.Tensor] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    path_ends: PathEnds | None = None
    computed: torch.Tensor | None = None
    """bool [n_components]: the components the method estimated (its estimates are NaN
    elsewhere, :meth:`Method.estimate_sample`); None: every component."""

    def laid_out(self, index: Sequence[int], n_components: int) -> MethodOutput:
        """This output of the components ``index`` only, laid out over ``n_components``:
        estimates, columns and ``path_ends`` float64 with NaN elsewhere, ``computed`` marking
        ``index``."""

        def spread(values: torch.Tensor) -> torch.Tensor:
            return laid_out(values, list(index), n_components)

        ends = self.path_ends
        computed = torch.zeros(n_components, dtype=torch.bool)
        computed[list(index)] = True
        return MethodOutput(
            estimates=spread(self.estimates),
            columns={name: spread(column) for name, column in self.columns.items()},
            summary=dict(self.summary),
            path_ends=ends and ends.laid_out(list(index), n_components),
            computed=computed,
        )


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

    grows_with_components: ClassVar[bool] = False
    """True when the cost of :meth:`estimate` grows with the number of components (passes or
    patched copies per component, :meth:`cost_estimate`). Under ``truth.sample`` such a method
    estimates only the sampled components (:meth:`estimate_sample`), unless
    ``truth.method_on_sample=false``. Every method declares it in its own class body;
    :meth:`cost_grows` refines it by option. tests/test_cost.py checks both against
    :meth:`cost_estimate`."""

    def cost_grows(self) -> bool:
        """Whether this instance's cost grows with the number of components (default:
        :attr:`grows_with_components`)."""
        return self.grows_with_components

    def estimate_sample(self, ctx: AttributionContext, index: Sequence[int]) -> MethodOutput:
        """The estimates of the components ``index`` (sorted indices into ``ctx.components``),
        laid out over every component, NaN elsewhere (:meth:`MethodOutput.laid_out`). The
        default estimates ``ctx.select_components(index)``: one component's estimate does not
        depend on which others are estimated."""
        output = self.estimate(ctx.select_components(index))
        return output.laid_out(index, len(ctx.components))

    def sample_cost_estimate(
        self, ctx: AttributionContext, index: Sequence[int]
    ) -> CostEstimate | None:
        """:meth:`cost_estimate` of :meth:`estimate_sample` on ``index``."""
        return self.cost_estimate(ctx.select_components(index))

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
