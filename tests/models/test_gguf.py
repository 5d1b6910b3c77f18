"""GGUF checkpoints: the real SmolLM2 file converts once to a safetensors folder; truncated,
non-GGUF, unreadable-quantization and unsupported-architecture files made from it are one-line
errors that write nothing (no cache entry, no result); the offline route of model=smollm2-135m
names its fetch command when nothing is fetched."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.models import gguf as gg
from harness.models.fetch import model_config
from harness.models.loader import load_tokenizer, model_folder
from tests.test_cli import run_cli


def _copy(src: Path, dst: Path, size: int | None = None) -> Path:
    with src.open("rb") as fin, dst.open("wb") as fout:
        if size is None:
            shutil.copyfileobj(fin, fout)
        else:
            fout.write(fin.read(size))
    return dst


def _patch(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def _first_tensor_type_offset(path: Path, qtype_name: str) -> int:
    """File offset of the type field of the first tensor quantized as ``qtype_name``."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    tensor = next(t for t in reader.tensors if t.tensor_type.name == qtype_name)
    name_len = len(tensor.name.encode())
    return int(tensor.field.offset) + 8 + name_len + 4 + 8 * len(tensor.shape)


def test_gguf_converts_once_to_a_float32_safetensors_folder(smollm2_gguf, smollm2_folder):
    source = json.loads((smollm2_folder / "gguf_source.json").read_text())
    assert source["sha256"] == gg.file_sha256(smollm2_gguf)
    assert source["architecture"] == "LlamaForCausalLM" and "Q4_1" in source["tensor_types"]
    assert "quantized as Q4_1, Q8_0: quantization moved the weights" in source["caveat"]
    config = json.loads((smollm2_folder / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (30, 576)
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (9, 3)
    assert (smollm2_folder / "model.safetensors").is_file()
    assert not any(smollm2_folder.glob("*.bin"))
    # model=local model.path=FILE.gguf resolves to the same cached folder, without converting
    assert model_folder({"name": "local", "source": "local", "path": str(smollm2_gguf)}) == (
        smollm2_folder
    )
    tokenizer = load_tokenizer(smollm2_folder)
    assert len(tokenizer) == 49152
    assert len(tokenizer(" Mary", add_special_tokens=False)["input_ids"]) == 1


def test_converted_weights_are_the_dequantized_gguf(smollm2_gguf, smollm2_folder):
    """One tensor of the folder equals gguf's own dequantization of the file's tensor."""
    import gguf
    from safetensors import safe_open

    reader = gguf.GGUFReader(str(smollm2_gguf))
    tensor = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    assert tensor.tensor_type.name == "Q4_1"
    expected = torch.from_numpy(gguf.dequantize(tensor.data, tensor.tensor_type).copy())
    with safe_open(str(smollm2_folder / "model.safetensors"), "pt") as weights:
        got = weights.get_tensor("model.layers.3.mlp.down_proj.weight")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected.reshape(got.shape), rtol=0, atol=0)


def _bad_files(src: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    size = src.stat().st_size
    garbage = folder / "garbage.gguf"
    garbage.write_bytes(bytes(range(256)) * 64)
    quant = _copy(src, folder / "quant.gguf")
    _patch(quant, _first_tensor_type_offset(quant, "Q4_1"), struct.pack("<I", 9))  # Q8_1
    arch = _copy(src, folder / "arch.gguf")
    with arch.open("rb") as handle:
        head = handle.read(1 << 16)
    key = head.index(b"general.architecture")
    _patch(arch, head.index(b"llama", key), b"rwkv6")  # same length, no offsets move
    return {
        "truncated": (_copy(src, folder / "half.gguf", size // 2), "is truncated"),
        "header only": (_copy(src, folder / "head.gguf", 4096), "truncated or damaged"),
        "not gguf": (garbage, "is not a GGUF file"),
        "quantization": (quant, "quantized as Q8_1, which the GGUF loader cannot dequantize"),
        "architecture": (arch, "architecture 'rwkv6'"),
    }


def test_bad_gguf_files_are_one_line_errors_and_write_nothing(smollm2_gguf, tmp_path):
    cache = tmp_path / "cache"
    for case, (path, message) in _bad_files(smollm2_gguf, tmp_path).items():
        with pytest.raises(HarnessError) as err:
            gg.gguf_folder(path, root=cache)
        assert message in str(err.value), (case, str(err.value))
        assert "\n" not in str(err.value) and str(path) in str(err.value), case
        assert not cache.exists() or not any(cache.rglob("*")), case


def test_bad_gguf_through_the_cli_keeps_earlier_results(smollm2_gguf, tmp_path, capsys):
    results = tmp_path / "results"
    earlier = results / "runs" / "earlier" / "summary.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"status": "ok"}')
    bad = _copy(smollm2_gguf, tmp_path / "half.gguf", 1 << 20)
    cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_CACHE", str(cache))
        code, _, err = run_cli(
            ["model=local", f"model.path={bad}", f"results_dir={results}", "logger=none"], capsys
        )
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "half.gguf" in lines[0] and "truncated" in lines[0]
    assert earlier.read_text() == '{"status": "ok"}'
    written = [p for p in results.rglob("*") if p.name in ("summary.json", "estimates.parquet")]
    assert written == [earlier]
    assert not cache.exists() or not any(cache.rglob("*"))


def test_killed_conversion_leaves_no_folder(smollm2_gguf, tmp_path, monkeypatch):
    """An interrupted conversion (here: KeyboardInterrupt while writing) leaves neither a
    half-written folder nor its temporary sibling; the next call converts afresh."""

    def interrupted(info, out):
        (out / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(gg, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gg.gguf_folder(smollm2_gguf, root=tmp_path)
    assert list((tmp_path / "gguf").iterdir()) == []


def test_offline_model_without_fetch_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "empty"))
    with pytest.raises(HarnessError) as err:
        model_folder(model_config("smollm2-135m"))
    message = str(err.value)
    assert "\n" not in message
    assert "HuggingFaceTB/SmolLM2-135M-Instruct" in message
    assert "run `harness-fetch smollm2-135m`" in message


def test_offline_model_uses_the_fetched_copy(smollm2_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert model_folder(model_config("smollm2-135m")) == smollm2_folder


def test_fetch_rejects_a_model_without_offline_source(capsys):
    from harness.models.fetch import main

    with pytest.raises(SystemExit) as exit_:
        main(["gpt2"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: unknown model to fetch 'gpt2'; accepted: smollm2-135m"
    )


def test_fetch_prints_the_quantization_caveat_once(smollm2_folder):
    """``harness-fetch`` in its own process (the caveat is printed once per process)."""
    proc = subprocess.run(
        [sys.executable, "-c", "from harness.models.fetch import main; main(['smollm2-135m'])"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    caveat = json.loads((smollm2_folder / "gguf_source.json").read_text())["caveat"]
    assert "quantization moved the weights" in caveat
    assert (proc.stdout + proc.stderr).count(caveat) == 1, proc.stdout + proc.stderr
