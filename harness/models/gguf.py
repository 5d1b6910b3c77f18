"""GGUF checkpoints as a model source: checked, dequantized once to float32, cached as safetensors.

``model=local model.path=FILE.gguf`` (and the offline route of ``model=smollm2-135m``) go through
:func:`gguf_folder`. The file is checked first (:func:`inspect_gguf`): GGUF magic bytes, a header
and tensor table that parse and fit inside the file, every tensor type one that ``gguf``'s
``dequantize`` reads, and an architecture that both transformers' GGUF loader and
TransformerBridge support. Any failure is a one-line :class:`HarnessError`; nothing is written.

A good file is dequantized by transformers' GGUF loader to float32 and saved as a plain Hugging
Face folder (``config.json``, ``model.safetensors``, tokenizer files, and ``gguf_source.json``
recording where it came from) under ``<cache>/gguf/<sha256 of the file>``. The folder is written
to a temporary sibling and renamed into place in one step, so a killed conversion leaves no
half-written folder, and a second run with the same file reuses it. The harness then reads only
that safetensors folder, as for any other model.

Caveat: a quantized GGUF (e.g. Q4_1) is not the original checkpoint; 4-bit quantization moved
the weights a little. The converted model is the quantized network, written in float32.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError

GGUF_MAGIC = b"GGUF"
_QUANTIZED_PREFIXES = ("Q", "IQ", "TQ", "MXFP")  # GGML types that quantize (not F32/F16/BF16)


def quant_caveat(tensor_types: tuple[str, ...] | list[str]) -> str:
    """The one-line caveat of a converted GGUF: in the folder's ``gguf_source.json``, and on
    stderr once per process that uses the folder (``harness``, ``harness-fetch``)."""
    quantized = [t for t in tensor_types if t.startswith(_QUANTIZED_PREFIXES)]
    if not quantized:
        return "converted from GGUF (unquantized tensors: the weights are the file's own)"
    return (
        f"dequantized to float32 from a GGUF quantized as {', '.join(quantized)}: quantization "
        "moved the weights a little, so this is not the original checkpoint"
    )


def cache_root() -> Path:
    """Where fetched and converted models live: ``$HARNESS_CACHE``, else
    ``$XDG_CACHE_HOME/attribution-harness``, else ``~/.cache/attribution-harness``."""
    env = os.environ.get("HARNESS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "attribution-harness"


@dataclass(frozen=True)
class GGUFInfo:
    """What :func:`inspect_gguf` learned about a GGUF file."""

    path: Path
    sha256: str
    gguf_architecture: str  # general.architecture, e.g. "llama"
    architecture: str  # the transformers class it becomes, e.g. "LlamaForCausalLM"
    tensor_types: tuple[str, ...]  # GGML types present, e.g. ("F32", "Q4_1", "Q8_0")


def file_sha256(path: Path) -> str:
    """SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def is_gguf_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``model.path`` names a GGUF file (by suffix, or a file with GGUF magic bytes)."""
    p = Path(path).expanduser()
    if p.suffix.lower() == ".gguf":
        return True
    if not p.is_file():
        return False
    with p.open("rb") as handle:
        return handle.read(4) == GGUF_MAGIC


def check_magic(path: Path) -> None:
    """A one-line error unless ``path`` is a file starting with the GGUF magic bytes."""
    if not path.is_file():
        raise HarnessError(f"model.path {str(path)!r}: no such GGUF file")
    with path.open("rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise HarnessError(
            f"model.path {str(path)!r} is not a GGUF file (starts with {magic!r}, expected "
            f"{GGUF_MAGIC!r}); accepted: a .gguf file or a Hugging Face model folder"
        )


def inspect_gguf(path: Path, sha256: str | None = None) -> GGUFInfo:
    """Check a GGUF file without converting it; one-line :class:`HarnessError` on any problem:
    missing, not a GGUF, truncated or damaged, a tensor type ``gguf`` cannot dequantize, or an
    architecture transformers' GGUF loader or TransformerBridge does not support. ``sha256``:
    the file's digest when already known. Takes seconds (the header holds the vocabulary)."""
    import gguf

    check_magic(path)

    size = path.stat().st_size
    try:
        reader = gguf.GGUFReader(str(path))
        arch_field = reader.fields.get("general.architecture")
        gguf_arch = bytes(arch_field.parts[-1]).decode() if arch_field is not None else ""
        ends = [int(t.data_offset) + int(t.n_bytes) for t in reader.tensors]
    except Exception as err:  # noqa: BLE001 - any parse failure is a damaged file
        raise HarnessError(
            f"GGUF file {str(path)!r} is truncated or damaged ({type(err).__name__}: "
            f"{str(err).splitlines()[0][:120] if str(err) else 'unreadable'}); fetch it again"
        ) from None
    if not reader.tensors or max(ends) > size:
        raise HarnessError(
            f"GGUF file {str(path)!r} is truncated: its tensors need {max(ends, default=0)} "
            f"bytes, the file has {size}; fetch it again"
        )
    types = sorted({t.tensor_type for t in reader.tensors}, key=int)
    bad = [t for t in types if not _dequantizable(t)]
    if bad:
        readable = [t.name for t in gguf.GGMLQuantizationType if _dequantizable(t)]
        raise HarnessError(
            f"GGUF file {str(path)!r} has tensors quantized as {bad[0].name}, which the GGUF "
            f"loader cannot dequantize; accepted types: {', '.join(readable)}"
        )
    architecture = _transformers_architecture(path, gguf_arch)
    return GGUFInfo(
        path=path,
        sha256=sha256 or file_sha256(path),
        gguf_architecture=gguf_arch,
        architecture=architecture,
        tensor_types=tuple(t.name for t in types),
    )


def _dequantizable(qtype: object) -> bool:
    """Whether ``gguf.dequantize`` (what transformers' loader calls) reads this GGML type: it
    dequantizes one zero block of it."""
    import gguf
    import numpy as np

    try:
        block = gguf.GGML_QUANT_SIZES[qtype][1]
        gguf.dequantize(np.zeros(block, dtype=np.uint8), qtype)
    except Exception:  # noqa: BLE001 - NotImplementedError, or a type with no block size
        return False
    return True


def _transformers_architecture(path: Path, gguf_arch: str) -> str:
    """The ``*ForCausalLM`` class a GGUF architecture becomes, checked against transformers' GGUF
    loader and TransformerBridge's adapters (one-line error naming the architecture)."""
    from transformers.modeling_gguf_pytorch_utils import (
        GGUF_SUPPORTED_ARCHITECTURES,
        load_gguf_checkpoint,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    from harness.adapter import bridge_architectures

    bridge_archs = bridge_architectures()
    try:
        parsed = load_gguf_checkpoint(str(path), return_tensors=False)
    except ValueError as err:
        if "not supported" in str(err):
            raise HarnessError(
                f"GGUF file {str(path)!r} has architecture {gguf_arch!r}, which transformers' "
                f"GGUF loader does not support (accepted: "
                f"{', '.join(GGUF_SUPPORTED_ARCHITECTURES)})"
            ) from None
        raise HarnessError(
            f"GGUF file {str(path)!r} (architecture {gguf_arch!r}) cannot be read: {err}"
        ) from None
    except Exception as err:  # noqa: BLE001
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise HarnessError(
            f"GGUF file {str(path)!r} (architecture {gguf_arch!r}) cannot be read: {first}"
        ) from None
    model_type = str(parsed.get("config", {}).get("model_type", gguf_arch))
    cls = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    if cls is None or cls not in bridge_archs:
        accepted = sorted(
            a
            for t, a in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()
            if t in GGUF_SUPPORTED_ARCHITECTURES and a in bridge_archs
        )
        raise HarnessError(
            f"GGUF file {str(path)!r} has architecture {gguf_arch!r} ({cls or model_type}), "
            f"which TransformerBridge does not support as a causal LM (accepted: "
            f"{', '.join(accepted)})"
        )
    return cls


def gguf_folder(path: str | os.PathLike[str], root: Path | None = None) -> Path:
    """The cached float32 safetensors folder for the GGUF file at ``path`` (converted on first
    use, see the module docstring). ``root`` defaults to :func:`cache_root`."""
    file = Path(path).expanduser().resolve()
    check_magic(file)
    sha256 = file_sha256(file)
    base = (root or cache_root()) / "gguf"
    folder = base / sha256[:32]
    if (folder / "gguf_source.json").is_file():  # written last: the folder is complete
        _note(folder)
        return folder
    info = inspect_gguf(file, sha256)
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=base))
    try:
        _convert(info, tmp)
        _chmod_umask(tmp)
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / "gguf_source.json").is_file():  # not a finished concurrent copy
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _note(folder)
    return folder


_NOTED: set[Path] = set()


def _note(folder: Path) -> None:
    """Print the folder's quantization caveat on stderr, once per process."""
    if folder in _NOTED:
        return
    _NOTED.add(folder)
    record = json.loads((folder / "gguf_source.json").read_text())
    print(f"note: model {record['file']}: {record['caveat']}", file=sys.stderr)


def _chmod_umask(folder: Path) -> None:
    """Give ``folder`` and its files the modes the umask allows (mkdtemp makes them private)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~umask)


def _convert(info: GGUFInfo, out: Path) -> None:
    """Dequantize ``info.path`` with transformers' GGUF loader and save a float32 HF folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.adapter import quiet_transformers

    quiet_transformers()
    where, name = str(info.path.parent), info.path.name
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the GGUF loader's own progress bar
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
            loaded = AutoModelForCausalLM.from_pretrained(
                where, gguf_file=name, dtype=torch.float32
            )
    except Exception as err:  # noqa: BLE001 - the checks above passed; report what failed
        first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise HarnessError(
            f"cannot convert GGUF file {str(info.path)!r} ({info.gguf_architecture}): "
            f"{type(err).__name__}: {first}"
        ) from None
    # A fresh model of the same config holds the dequantized weights without the GGUF
    # quantizer, which transformers refuses to serialize.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.config.architectures = [info.architecture]
    fresh.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    record = {
        "file": info.path.name,
        "sha256": info.sha256,
        "gguf_architecture": info.gguf_architecture,
        "architecture": info.architecture,
        "tensor_types": list(info.tensor_types),
        "dtype": "float32",
        "caveat": quant_caveat(info.tensor_types),
    }
    (out / "gguf_source.json").write_text(json.dumps(record, indent=2) + "\n")
