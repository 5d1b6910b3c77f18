"""Enumerate components and slice them out of activation tensors.

Activation layouts (TransformerLens hook shapes): ``head`` sites are [batch, pos, head, d_head]
(``hook_z``); ``attn_out``, ``mlp_out`` and ``resid_pre`` are [batch, pos, d_model].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.adapter import ModelShape, site_hook_name
from harness.errors import HarnessError
from harness.registry import unknown_choice
from harness.types import POSITION_MODES, SITES, Component

SITE_ORDER = {"resid_pre": 0, "head": 1, "attn_out": 2, "mlp_out": 3}
"""Order of sites inside one block, following the forward pass."""


def check_components(sites: Sequence[str] | str, positions: str) -> list[str]:
    """The distinct sites, after one-line errors for unknown sites or position modes."""
    if isinstance(sites, str):
        sites = [sites]
    sites = list(dict.fromkeys(sites))
    if not sites:
        raise HarnessError(f"components.sites is empty; accepted: {', '.join(SITES)}")
    for site in sites:
        if site not in SITES:
            raise HarnessError(unknown_choice("site", site, list(SITES)))
    if positions not in POSITION_MODES:
        raise HarnessError(unknown_choice("positions mode", positions, list(POSITION_MODES)))
    return sites


def enumerate_components(
    shape: ModelShape, sites: Sequence[str], positions: str, seq_len: int
) -> list[Component]:
    """Every component of ``sites`` in forward order (layer, then site, head, position).

    ``positions="all"``: one component per site slice, summed over positions (``pos=-1``);
    ``positions="each"``: one per position ``0..seq_len-1``.
    """
    sites = check_components(sites, positions)
    pos_values = [-1] if positions == "all" else list(range(seq_len))
    components = []
    for layer in range(shape.n_layers):
        for site in sorted(sites, key=SITE_ORDER.__getitem__):
            heads = range(shape.n_heads) if site == "head" else [-1]
            for head in heads:
                for pos in pos_values:
                    components.append(Component(site, layer, head, pos))
    return components


def hook_of(component: Component) -> str:
    return site_hook_name(component.site, component.layer)


def slice_index(component: Component) -> tuple:
    """Index of the component in an activation tensor without its batch dimension."""
    pos = slice(None) if component.pos < 0 else component.pos
    if component.site == "head":
        return (pos, component.head)
    return (pos,)


def group_by_hook(components: Sequence[Component]) -> dict[str, list[int]]:
    """Hook name -> indices (into ``components``) of the components at that hook."""
    groups: dict[str, list[int]] = {}
    for index, component in enumerate(components):
        groups.setdefault(hook_of(component), []).append(index)
    return groups


def reduce_per_component(
    per_hook: dict[str, torch.Tensor], components: Sequence[Component]
) -> torch.Tensor:
    """Sum an elementwise quantity over each component's slice and over the batch.

    ``per_hook[name]`` has the hook's activation shape [batch, pos, ...]; the result is
    [n_components] with entry c = sum over batch and c's slice of ``per_hook[hook_of(c)]``.
    """
    summed = {name: tensor.sum(dim=0) for name, tensor in per_hook.items()}
    out = []
    for component in components:
        value = summed[hook_of(component)][slice_index(component)].sum()
        out.append(value)
    return torch.stack(out)
