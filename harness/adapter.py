"""The one module that talks to TransformerLens.

Everything else in the harness sees a :class:`ModelAdapter`: hook names for component sites, a
forward pass with hooks, and a cache of activations. A new TransformerLens major version is a
change to this file alone.

Hook semantics (TransformerLens): a forward hook ``fn(activation, hook)`` that returns a tensor
replaces the activation for everything downstream. To take gradients with respect to an
activation the hook returns ``activation + eps`` with ``eps`` a zero tensor that requires grad;
the activation is never detached, so gradients reach it through every downstream path.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from harness.errors import HarnessError

HookFn = Callable[[torch.Tensor, object], torch.Tensor | None]

_SITE_HOOKS: dict[str, str] = {
    "head": "blocks.{layer}.attn.hook_z",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
}


def site_hook_name(site: str, layer: int) -> str:
    """TransformerLens hook name of a component site at a layer."""
    return _SITE_HOOKS[site].format(layer=layer)


def boot_bridge(
    name_or_path: str,
    device: str,
    dtype: torch.dtype,
    trust_remote_code: bool = False,
    random_init: bool = False,
):
    """Boot a TransformerBridge from a hub name or a local HF folder (weights + tokenizer).

    ``random_init`` builds the architecture from its config with random weights (no weight
    download), for benchmarks of full-size shapes.
    """
    from transformer_lens.model_bridge import TransformerBridge

    logging.getLogger("transformers").setLevel(logging.ERROR)
    _quiet_transformers()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            name_or_path,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            load_weights=not random_init,
        )
    if random_init:
        bridge = bridge.to(device=device, dtype=dtype)
    bridge.eval()
    for param in bridge.parameters():
        param.requires_grad_(False)
    return bridge


def _quiet_transformers() -> None:
    """No weight-loading progress bars or advisory warnings from transformers on stderr."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass


@dataclass
class ModelShape:
    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    n_ctx: int


class ModelAdapter:
    """A booted model behind the harness's small interface.

    ``run(tokens, hooks)`` returns logits [batch, pos, vocab]; ``cache(tokens, names)`` returns
    the named activations of one forward pass.
    """

    def __init__(self, bridge, name: str) -> None:
        self.bridge = bridge
        self.name = name
        cfg = bridge.cfg
        self.shape = ModelShape(
            n_layers=int(cfg.n_layers),
            n_heads=int(cfg.n_heads),
            d_head=int(cfg.d_head),
            d_model=int(cfg.d_model),
            n_ctx=int(getattr(cfg, "n_ctx", 0) or 0),
        )
        self._hook_names = set(bridge.hook_dict)

    @property
    def device(self) -> torch.device:
        return next(self.bridge.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.bridge.parameters()).dtype

    def hook_name(self, site: str, layer: int) -> str:
        name = site_hook_name(site, layer)
        if name not in self._hook_names:
            raise HarnessError(f"model {self.name!r} has no hook {name!r} for site {site!r}")
        return name

    def hook_point(self, name: str) -> torch.nn.Module:
        """The hook-point module of ``name`` (for libraries that hook modules, e.g. captum)."""
        if name not in self._hook_names:
            raise HarnessError(f"model {self.name!r} has no hook {name!r}")
        return self.bridge.hook_dict[name]

    def run(self, tokens: torch.Tensor, hooks: Sequence[tuple[str, HookFn]] = ()) -> torch.Tensor:
        """Logits [batch, pos, vocab] of one forward pass with ``hooks`` applied."""
        if hooks:
            return self.bridge.run_with_hooks(tokens, fwd_hooks=list(hooks))
        return self.bridge(tokens)

    def cache(
        self, tokens: torch.Tensor, names: Iterable[str], hooks: Sequence[tuple[str, HookFn]] = ()
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and the activations at ``names`` (after any hook on them) of one pass."""
        store: dict[str, torch.Tensor] = {}

        def keep(name: str) -> HookFn:
            def hook(act: torch.Tensor, hook: object) -> None:
                store[name] = act.detach()

            return hook

        all_hooks = list(hooks) + [(name, keep(name)) for name in names]
        with torch.no_grad():
            logits = self.run(tokens, all_hooks)
        return logits, store
