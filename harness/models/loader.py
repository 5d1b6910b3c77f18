"""One loader for every model: the shipped toy zoo, hub names, and any local HF folder.

A model config (``conf/model/<slug>.yaml``) has ``name`` (the slug), ``source`` (``zoo``, ``hub``
or ``local``), ``path`` (the hub id, or the folder or ``.gguf`` file for ``local``; the zoo
resolves its own folder), and defaults for ``dtype`` and ``device``; the run's top-level
``dtype``/``device`` override them when set. A GGUF file is converted once to a cached
safetensors folder (:mod:`harness.models.gguf`); a hub model with an ``offline`` source falls
back to its fetched copy when the hub cannot serve it (:mod:`harness.models.fetch`). Weights
are read from safetensors only; ``trust_remote_code`` stays off
unless the model config sets it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.adapter import ModelAdapter, boot_bridge
from harness.config import DEVICES
from harness.config import DTYPES as DTYPE_NAMES
from harness.errors import HarnessError
from harness.models import gguf
from harness.registry import unknown_choice

ZOO_DIR = Path(__file__).parent / "zoo"
DTYPES: dict[str, torch.dtype] = {name: getattr(torch, name) for name in DTYPE_NAMES}
SOURCES = ("zoo", "hub", "local")
_HUB_FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "tokenizer*"]


@dataclass
class LoadedModel:
    """A booted model with its own tokenizer (``AutoTokenizer`` defaults, not the bridge's)."""

    adapter: ModelAdapter
    tokenizer: Any
    folder: Path
    fingerprint: str


def resolve_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise HarnessError(unknown_choice("dtype", name, list(DTYPES)))
    return DTYPES[name]


def resolve_device(name: str) -> str:
    if name not in DEVICES:
        raise HarnessError(unknown_choice("device", name, list(DEVICES)))
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise HarnessError(
            "device 'cuda' was asked for but no CUDA GPU is available; accepted here: cpu, auto"
        )
    return name


def zoo_models() -> list[str]:
    """Slugs of the shipped toy models (folders under ``harness/models/zoo``)."""
    if not ZOO_DIR.is_dir():
        return []
    return sorted(p.name for p in ZOO_DIR.iterdir() if (p / "config.json").is_file())


def model_folder(model_cfg: Mapping[str, Any]) -> Path:
    """The local folder holding the model's config, weights and tokenizer."""
    source = model_cfg.get("source", "local")
    name = str(model_cfg.get("name"))
    if source not in SOURCES:
        raise HarnessError(unknown_choice("model source", source, list(SOURCES)))
    if source == "zoo":
        folder = ZOO_DIR / name
        if not (folder / "config.json").is_file():
            raise HarnessError(unknown_choice("zoo model", name, zoo_models()))
        return folder
    if source == "local":
        path = model_cfg.get("path")
        if not path:
            raise HarnessError(
                "model=local needs model.path=DIR (a Hugging Face causal-LM folder) or FILE.gguf"
            )
        if gguf.is_gguf_path(str(path)):
            return gguf.gguf_folder(str(path))  # dequantized once, cached as safetensors
        folder = Path(str(path)).expanduser()
        check_causal_lm_folder(folder)
        return folder
    repo_id = str(model_cfg.get("path") or name)
    folder = hub_or_offline_snapshot(model_cfg, repo_id)
    if not model_cfg.get("random_init") and not any(folder.glob("*.safetensors")):
        raise HarnessError(
            f"hub model {repo_id!r} has no *.safetensors weights (only safetensors are loaded)"
        )
    return folder


def hub_or_offline_snapshot(model_cfg: Mapping[str, Any], repo_id: str) -> Path:
    """The hub snapshot of ``repo_id``; when the hub cannot serve it and the model config names
    an ``offline`` source, its fetched copy (:mod:`harness.models.fetch`), or a one-line error
    naming the ``harness-fetch`` command when that is not fetched either."""
    try:
        return hub_snapshot(repo_id, model_cfg.get("revision"), bool(model_cfg.get("gated")))
    except HarnessError as err:
        if not model_cfg.get("offline"):
            raise
        from harness.models import fetch

        folder = fetch.offline_folder(model_cfg)
        if folder is None:
            raise HarnessError(
                f"{err}; its offline copy is not fetched either: run "
                f"`{fetch.fetch_command(str(model_cfg.get('name')))}`"
            ) from None
        return folder


def check_causal_lm_folder(folder: Path) -> None:
    """A folder with config.json naming a causal-LM architecture, safetensors weights and a
    tokenizer; anything else is a one-line error."""
    if not folder.is_dir():
        raise HarnessError(f"model.path {str(folder)!r} is not a folder")
    config = folder / "config.json"
    if not config.is_file():
        raise HarnessError(f"model.path {str(folder)!r} has no config.json (not a HF model folder)")
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError) as err:
        raise HarnessError(f"{config}: not valid JSON ({err})") from err
    if not any(
        str(a).endswith("ForCausalLM") or str(a).endswith("LMHeadModel") for a in architectures
    ):
        raise HarnessError(
            f"model.path {str(folder)!r} is not a causal-LM folder: config.json architectures "
            f"{architectures} (accepted: a *ForCausalLM or *LMHeadModel architecture)"
        )
    if not any(folder.glob("*.safetensors")):
        raise HarnessError(
            f"model.path {str(folder)!r} has no *.safetensors weights (only safetensors are loaded)"
        )
    if not any(folder.glob("tokenizer*")):
        raise HarnessError(f"model.path {str(folder)!r} has no tokenizer files beside the weights")


def hub_snapshot(repo_id: str, revision: str | None = None, gated: bool = False) -> Path:
    """The local snapshot of a hub model (downloaded when online; safetensors and tokenizer
    files only). Offline and not cached: a one-line error naming the model, and for a gated
    repo (``gated`` in its model config, or the hub answering so) what downloading it needs."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    try:
        folder = snapshot_download(
            repo_id, revision=revision, allow_patterns=_HUB_FILES, local_files_only=offline
        )
    except Exception as err:  # noqa: BLE001 - every hub failure becomes one line
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        if gated or isinstance(err, GatedRepoError):
            raise HarnessError(
                f"hub model {repo_id!r} is gated and not in the local Hugging Face cache: accept "
                f"its licence on https://huggingface.co/{repo_id} and log in with a Hugging Face "
                f"token (`hf auth login` or HF_TOKEN) on a machine that can reach the hub, then "
                f"run again ({type(err).__name__}: {reason[:160]})"
            ) from None
        raise HarnessError(
            f"hub model {repo_id!r} is not in the local Hugging Face cache and could not be "
            f"downloaded ({type(err).__name__}: {reason[:160]})"
        ) from None
    return Path(folder)


def fingerprint_folder(folder: Path, cache_dir: Path | None = None) -> str:
    """A content fingerprint of a model folder: the name and SHA-256 of every file in it
    (config, weights, tokenizer, anything else the loader may read; hidden files excepted).

    File digests are cached by (path, size, mtime, ctime, inode) in memory and under
    ``cache_dir`` (:func:`harness.storage.file_sha256`), so a multi-GB checkpoint is read in
    full once, and an edited file is always hashed again."""
    from harness.storage import file_sha256

    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    digests = {p.name: file_sha256(p, cache_dir) for p in files}
    return hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()[:16]


def model_fingerprint(model_cfg: Mapping[str, Any], cache_dir: Path | None = None) -> str:
    """The content fingerprint of the files the model is built from, without loading it (what
    a resumed job compares): the folder's files, or for ``random_init`` on a hub model with a
    shipped architecture, that architecture's config file (the seed and ``arch_overrides``
    are in the job's config)."""
    if model_cfg.get("random_init") and model_cfg.get("source") == "hub":
        from harness.models import random_init as rand
        from harness.storage import file_sha256

        arch = rand.ARCH_DIR / f"{model_cfg.get('name')}.json"
        if arch.is_file():
            return "random:" + file_sha256(arch, cache_dir)[:16]
    return fingerprint_folder(model_folder(model_cfg), cache_dir)


def load_tokenizer(folder: Path, trust_remote_code: bool = False) -> Any:
    """The folder's tokenizer as ``AutoTokenizer`` loads it (its own defaults).

    One exception: transformers replaces the declared class of a few model types (e.g. qwen2) by
    their hub tokenizer class. When the folder declares the generic fast tokenizer
    (``PreTrainedTokenizerFast``/``TokenizersBackend``) and that replacement cannot encode the
    folder's own vocabulary (a word-level tokenizer, as in the toy zoo), the declared
    ``tokenizer.json`` is loaded as is.
    """
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    config_file, json_file = folder / "tokenizer_config.json", folder / "tokenizer.json"
    if not (config_file.is_file() and json_file.is_file()):
        return tokenizer
    declared = json.loads(config_file.read_text()).get("tokenizer_class")
    if declared not in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        return tokenizer
    if isinstance(tokenizer, PreTrainedTokenizerFast) and type(tokenizer).__name__ == declared:
        return tokenizer
    exact = PreTrainedTokenizerFast.from_pretrained(str(folder))
    special = set(exact.all_special_tokens)
    probe = next((w for w in exact.get_vocab() if w not in special), None)
    if (
        probe is not None
        and tokenizer(probe, add_special_tokens=False)["input_ids"]
        != exact(probe, add_special_tokens=False)["input_ids"]
    ):
        return exact
    return tokenizer


def one_line(err: BaseException) -> str:
    """An exception's whole message on one line (whitespace runs collapsed)."""
    return " ".join(str(err).split())


def checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor name in the folder's safetensors files with its shape, read from the files'
    headers (no weight data is read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def skeleton_mismatch(folder: Path, trust_remote_code: bool) -> bool:
    """Whether the checkpoint's tensor names and shapes differ from the model that
    ``config.json`` declares, built with ``from_config`` on the meta device (no memory, no
    weight data). Tied weights count as present when any name of the tie is; a checkpoint saved
    from the base model (no ``base_model_prefix``) and the legacy LayerNorm names ``gamma`` and
    ``beta`` are matched as transformers matches them. ``True`` means only that this plain
    comparison cannot vouch for the folder: :func:`check_weights` then asks transformers."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    tensors = {
        **dict(model.named_parameters(remove_duplicate=False)),
        **dict(model.named_buffers(remove_duplicate=False)),
    }
    declared = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ties: dict[int, set[str]] = {}
    for key in declared:
        if key in tensors:
            ties.setdefault(id(tensors[key]), set()).add(key)
    prefix = f"{model.base_model_prefix}." if model.base_model_prefix else ""

    def declared_name(key: str) -> str:
        key = re.sub(r"\.gamma$", ".weight", re.sub(r"\.beta$", ".bias", key))
        if prefix and key not in declared and prefix + key in declared:
            return prefix + key
        return key

    stored = {declared_name(k): shape for k, shape in checkpoint_shapes(folder).items()}
    ignored = [
        re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or [])
    ]
    if any(k not in declared and not any(p.search(k) for p in ignored) for k in stored):
        return True
    optional = [
        re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_missing", None) or [])
    ]
    for key, shape in declared.items():
        if key in stored:
            if stored[key] != shape:
                return True
            continue
        tied = ties.get(id(tensors.get(key)), {key})
        if not any(k in stored for k in tied) and not any(p.search(key) for p in optional):
            return True
    return False


def check_weights(folder: Path, trust_remote_code: bool = False) -> None:
    """Refuse a checkpoint that disagrees with its ``config.json``: declared weights missing
    from the safetensors files (they would be randomly initialised), weights no declared module
    takes (they would be dropped), or weights of another shape (e.g. ``vocab_size``).

    The names and shapes in the files' headers are compared with a skeleton built on the meta
    device (:func:`skeleton_mismatch`), which reads no weight data. Only where that comparison
    finds a difference does transformers load the checkpoint on the CPU by its own rules
    (renamed or converted keys, tied weights) and name what disagrees; a difference its rules
    resolve is no error. A folder without safetensors files has nothing to compare here."""
    if not any(folder.glob("*.safetensors")):
        return
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the same news comes back below as one line
    hf_logging.disable_progress_bar()
    try:
        if not skeleton_mismatch(folder, trust_remote_code):
            return
        _, info = AutoModelForCausalLM.from_pretrained(
            str(folder),
            device_map="cpu",
            output_loading_info=True,
            ignore_mismatched_sizes=True,
            trust_remote_code=trust_remote_code,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    where = f"model folder {str(folder)!r}: config.json does not match the weights"
    for kind, what in (
        ("missing_keys", "declared weights missing from the checkpoint (would be random)"),
        ("unexpected_keys", "checkpoint weights config.json does not declare (would be dropped)"),
    ):
        keys = sorted(info.get(kind) or [])
        if keys:
            shown = ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")
            raise HarnessError(f"{where}: {len(keys)} {what}: {shown}")
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda m: str(m[0]))
    if mismatched:
        key, stored, declared = mismatched[0]
        config = json.loads((folder / "config.json").read_text())
        vocab = config.get("vocab_size")
        hint = (
            f" (vocab_size {vocab} in config.json, {stored[0]} rows in the weights)"
            if vocab is not None and declared[0] == vocab and stored[0] != vocab
            else ""
        )
        raise HarnessError(
            f"{where}: {len(mismatched)} weights of another shape, first {key} "
            f"{list(stored)} in the checkpoint but {list(declared)} by config.json{hint}"
        )


def check_weights_once(folder: Path, trust_remote_code: bool, cache_dir: Path | None) -> None:
    """:func:`check_weights`, remembered per content: a folder whose files (every byte, see
    :func:`fingerprint_folder`) passed the check under this transformers version is not built
    again on the meta device (seconds of every run's start-up); an edited file is checked anew.
    Without ``cache_dir`` it always checks."""
    import transformers

    from harness.storage import content_hash, read_hashed_json, write_hashed_json

    if cache_dir is None:
        check_weights(folder, trust_remote_code)
        return
    passed = {
        "fingerprint": fingerprint_folder(folder, cache_dir),
        "transformers": transformers.__version__,
        "trust_remote_code": trust_remote_code,
    }
    marker = Path(cache_dir) / "weights_checked" / f"{content_hash(passed)[:24]}.json"
    if read_hashed_json(marker) == passed:
        return
    check_weights(folder, trust_remote_code)
    try:
        write_hashed_json(marker, passed)
    except HarnessError:
        pass  # a cache that cannot be written only means checking again next time


def check_vocab(name: Any, folder: Path, tokenizer: Any, bridge: Any) -> None:
    """Refuse a tokenizer with more tokens than the model's embedding has rows (its larger
    ids would index outside the embedding); fewer is common (padded embeddings) and fine."""
    rows = int(getattr(bridge.cfg, "d_vocab", 0) or 0)
    if rows and len(tokenizer) > rows:
        raise HarnessError(
            f"model {name!r} at {str(folder)!r}: the tokenizer has {len(tokenizer)} tokens but "
            f"the model's vocab_size is {rows}; they must match the same vocabulary"
        )


def load_model(
    model_cfg: Mapping[str, Any],
    device: str,
    dtype: str,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Boot the model named by ``model_cfg`` on ``device`` in ``dtype`` (names as in the CLI).

    ``cache_dir`` keeps the file digests of :func:`fingerprint_folder` across processes.

    ``random_init`` on a hub model with a shipped architecture (``harness/models/arch``) builds
    it offline with random weights seeded by ``seed`` (:mod:`harness.models.random_init`).
    """
    torch_dtype = resolve_dtype(dtype)
    torch_device = resolve_device(device)
    random_init = bool(model_cfg.get("random_init", False))
    if random_init and model_cfg.get("source") == "hub":
        from harness.models import random_init as rand

        if rand.has_arch(str(model_cfg.get("name"))):
            bridge, tokenizer, fingerprint = rand.build_random_model(
                model_cfg, torch_device, torch_dtype, seed
            )
            adapter = ModelAdapter(bridge, name=str(model_cfg.get("name")))
            return LoadedModel(adapter, tokenizer, rand.ARCH_DIR, fingerprint)
    folder = model_folder(model_cfg)
    trust = bool(model_cfg.get("trust_remote_code", False))
    name = model_cfg.get("name")
    try:
        tokenizer = load_tokenizer(folder, trust_remote_code=trust)
    except Exception as err:  # noqa: BLE001 - a tokenizer transformers cannot load
        absent = (
            "" if (folder / "tokenizer.json").is_file() else " (the folder has no tokenizer.json)"
        )
        raise HarnessError(
            f"cannot load the tokenizer of model {name!r} from {str(folder)!r}{absent}: "
            f"{type(err).__name__}: {one_line(err)}"
        ) from None
    try:
        if not random_init:
            check_weights_once(folder, trust, cache_dir)
        bridge = boot_bridge(str(folder), torch_device, torch_dtype, trust, random_init)
    except HarnessError:
        raise
    except Exception as err:  # noqa: BLE001 - a folder transformers cannot load
        first = one_line(err)
        if not trust and "custom code" in first:
            raise HarnessError(
                f"model {model_cfg.get('name')!r} at {str(folder)!r} needs its own Python code "
                "(auto_map in config.json), which is not run unless model.trust_remote_code=true"
            ) from None
        raise HarnessError(
            f"cannot load model {model_cfg.get('name')!r} from {str(folder)!r}: "
            f"{type(err).__name__}: {first}"
        ) from None
    check_vocab(name, folder, tokenizer, bridge)
    fingerprint = fingerprint_folder(folder, cache_dir) + (f":random:{seed}" if random_init else "")
    adapter = ModelAdapter(bridge, name=str(model_cfg.get("name")))
    return LoadedModel(adapter=adapter, tokenizer=tokenizer, folder=folder, fingerprint=fingerprint)
