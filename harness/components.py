"""Enumerate components and slice them out of activation tensors.

Activation layouts (TransformerLens hook shapes): ``head`` sites are [batch, pos, head, d_head]
(``hook_z``); ``neuron`` sites are [batch, pos, d_mlp] (``mlp.hook_post``); ``attn_out``,
``mlp_out`` and ``resid_pre`` are [batch, pos, d_model].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from harness.adapter import ModelShape, site_hook_name
from harness.errors import HarnessError
from harness.registry import unknown_choice
from harness.types import POSITION_MODES, SITES, Component

SITE_ORDER = {"resid_pre": 0, "head": 1, "attn_out": 2, "neuron": 3, "mlp_out": 4}
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
    missing = [site for site in sites if shape.sites and site not in shape.sites]
    if missing:
        why = " (the model has no MLP)" if missing[0] == "neuron" else ""
        raise HarnessError(
            f"site {missing[0]!r} does not exist in this model{why}; accepted: "
            f"{', '.join(shape.sites)}"
        )
    pos_values = [-1] if positions == "all" else list(range(seq_len))
    components = []
    for layer in range(shape.n_layers):
        for site in sorted(sites, key=SITE_ORDER.__getitem__):
            units = range(shape.n_heads if site == "head" else shape.d_mlp)
            for unit in units if site in ("head", "neuron") else [-1]:
                head, neuron = (unit, -1) if site == "head" else (-1, unit)
                for pos in pos_values:
                    components.append(Component(site, layer, head, pos, neuron))
    return components


def hook_of(component: Component) -> str:
    return site_hook_name(component.site, component.layer)


def slice_index(component: Component) -> tuple:
    """Index of the component in an activation tensor without its batch dimension."""
    pos = slice(None) if component.pos < 0 else component.pos
    if component.site == "head":
        return (pos, component.head)
    if component.site == "neuron":
        return (pos, component.neuron)
    return (pos,)


def unit_of(component: Component) -> int:
    """Index of the component's unit along its site's unit axis (head, neuron; 0 otherwise)."""
    return max(component.head, component.neuron, 0)


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
    groups = group_by_hook(components)
    first = next(iter(per_hook.values()))
    out = torch.zeros(len(components), dtype=first.dtype, device=first.device)
    for name, members in groups.items():
        tensor = per_hook[name].sum(dim=0)  # [pos, ...]
        site = components[members[0]].site
        if site == "head":  # [pos, head, d_head] -> [pos, head]
            units = tensor.flatten(2).sum(dim=-1)
        elif site == "neuron":  # [pos, d_mlp]
            units = tensor
        else:  # [pos, d_model] -> [pos, 1]
            units = tensor.flatten(1).sum(dim=-1, keepdim=True)
        unit = torch.tensor([unit_of(components[i]) for i in members], device=units.device)
        pos = torch.tensor([components[i].pos for i in members], device=units.device)
        at_pos = units[pos.clamp(min=0), unit]
        over_all = units.sum(dim=0)[unit]
        index = torch.tensor(members, device=out.device)
        out[index] = torch.where(pos < 0, over_all, at_pos).to(out.dtype)
    return out
