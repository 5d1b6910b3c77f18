"""``model.random_init=true`` for hub models: their architecture with random weights, offline.

The harness ships the ``config.json`` of each hub model it names in ``conf/model`` under
``harness/models/arch/<slug>.json``. :func:`build_random_model` builds that architecture (with
``model.arch_overrides`` applied on top, e.g. fewer layers for a quick test) with transformers'
own initialisation, seeded from the run's seed, directly on the target device and in the target
dtype (an 8B model never passes through CPU memory in float32), and boots it through the loader's
:func:`harness.adapter.boot_bridge`, handing it the built model.

Tokenizer: the hub model's own tokenizer from the local Hugging Face cache when it is there,
otherwise the zoo's toy word-level tokenizer (the one every zoo model ships,
:mod:`harness.models.toy_vocab`); a log line says which.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError

log = logging.getLogger(__name__)

ARCH_DIR = Path(__file__).parent / "arch"


def shipped_archs() -> list[str]:
    """Slugs with a shipped architecture config."""
    return sorted(p.stem for p in ARCH_DIR.glob("*.json"))


def has_arch(name: str) -> bool:
    return (ARCH_DIR / f"{name}.json").is_file()


def arch_config(name: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The shipped config.json content of ``name`` with ``overrides`` applied."""
    path = ARCH_DIR / f"{name}.json"
    if not path.is_file():
        from harness.registry import unknown_choice

        raise HarnessError(unknown_choice("architecture", name, shipped_archs()))
    config = json.loads(path.read_text())
    for key, value in (overrides or {}).items():
        if key in ("model_type", "architectures"):
            raise HarnessError(f"model.arch_overrides cannot change {key!r}")
        config[key] = value
    return config


def hf_config(config: Mapping[str, Any]):
    """A transformers ``PretrainedConfig`` of the right class from a config.json dict."""
    from transformers import AutoConfig

    body = {k: v for k, v in config.items() if k not in ("model_type", "_name_or_path")}
    return AutoConfig.for_model(str(config["model_type"]), **body)


def random_fingerprint(config: Mapping[str, Any], seed: int, tokenizer_kind: str) -> str:
    """What the random weights depend on: the config, the seed and the tokenizer."""
    text = json.dumps({"config": config, "seed": seed, "tok": tokenizer_kind}, sort_keys=True)
    return "random:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_hub_tokenizer(repo_id: str | None) -> Any | None:
    """The hub tokenizer from the local HF cache (never downloaded), or None."""
    if not repo_id:
        return None
    from transformers import AutoTokenizer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return AutoTokenizer.from_pretrained(repo_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (or unreadable): use the toy tokenizer
        return None


def build_random_model(
    model_cfg: Mapping[str, Any], device: str, dtype: torch.dtype, seed: int = 0
) -> tuple[Any, Any, str]:
    """(bridge, tokenizer, fingerprint) of the slug's architecture with random weights.

    ``device`` is a resolved device name (``cpu``/``cuda``). The weights are transformers'
    own initialisation of the architecture under ``torch.manual_seed(seed)`` (the global RNG
    state is restored afterwards).
    """
    name = str(model_cfg.get("name"))
    overrides = dict(model_cfg.get("arch_overrides") or {})
    config = arch_config(name, overrides)
    repo_id = model_cfg.get("path") or config.get("_name_or_path")
    tokenizer = cached_hub_tokenizer(repo_id)
    if tokenizer is not None:
        kind = f"hub:{repo_id}"
        log.info("random_init %s: tokenizer of %s from the local HF cache", name, repo_id)
    else:
        tokenizer = _toy_tokenizer()
        kind = "toy"
        log.info(
            "random_init %s: hub tokenizer %s not in the local HF cache; using the toy "
            "word-level tokenizer",
            name,
            repo_id,
        )
    if kind == "toy" and len(tokenizer) > int(config.get("vocab_size") or 0):
        raise HarnessError(
            f"random_init {name}: vocab_size {config.get('vocab_size')} is smaller than the "
            f"toy tokenizer's {len(tokenizer)} tokens"
        )
    bridge = _boot(config, repo_id or name, device, dtype, seed, tokenizer)
    return bridge, tokenizer, random_fingerprint(config, seed, kind)


def _toy_tokenizer() -> Any:
    """The zoo's toy tokenizer (every zoo model ships the same one), loaded as the loader loads
    zoo models."""
    from harness.models.loader import ZOO_DIR, load_tokenizer

    return load_tokenizer(ZOO_DIR / "toy-gpt2")


def _boot(
    config: Mapping[str, Any], name: str, device: str, dtype: torch.dtype, seed: int, tokenizer
):
    """Build the HF model of ``config`` on ``device`` in ``dtype`` and boot a bridge on it."""
    from transformers import AutoModelForCausalLM

    from harness.adapter import boot_bridge, quiet_transformers

    hf_cfg = hf_config(config)
    hf_cfg.output_attentions = True  # as boot_transformers loads configs
    logging.getLogger("transformers").setLevel(logging.ERROR)
    quiet_transformers()
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed)
        with torch.device(device), contextlib.redirect_stdout(None):
            hf_model = AutoModelForCausalLM.from_config(
                hf_cfg, dtype=dtype, attn_implementation="eager"
            )
        hf_model.eval()
        return boot_bridge(str(name), device, dtype, hf_model=hf_model, tokenizer=tokenizer)
