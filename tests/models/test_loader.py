"""A model folder whose parts disagree is refused in one line before anything runs (issue 11,
item 7 and the vocab_size / tokenizer.json cases): weights config.json does not declare (they
would be dropped), declared weights with no data (they would be random), weights of another
shape, a tokenizer with more tokens than the embedding, and a missing tokenizer.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models.loader import ZOO_DIR, check_weights, check_weights_once, load_model, zoo_models
from tests.helpers import GOOD, assert_one_line, write_lines
from tests.test_cli import local_args, run_cli


def edited_copy(source: Path, folder: Path, **config: object) -> Path:
    shutil.copytree(source, folder)
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    return folder


@pytest.mark.parametrize(
    "config, needles",
    [
        ({"n_layer": 2}, ["11 checkpoint weights config.json does not declare", "transformer.h.2"]),
        ({"n_layer": 4}, ["12 declared weights missing from the checkpoint", "transformer.h.3"]),
        ({"vocab_size": 100}, ["vocab_size 100 in config.json, 64 rows in the weights"]),
        ({"n_embd": 48}, ["weights of another shape", "in the checkpoint but"]),
    ],
    ids=["extra_weights", "missing_weights", "vocab_size", "width"],
)
def test_config_that_disagrees_with_weights_is_one_line(
    config, needles, tiny_gpt2, tmp_path, capsys
):
    folder = edited_copy(tiny_gpt2, tmp_path / "model", **config)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"clean": "w1 w2", "corrupt": "w3 w4", "answer": "w5", "wrong": "w6"})
    )
    code, _, err = run_cli(local_args(folder, pairs, tmp_path), capsys)
    assert_one_line(code, err, "config.json does not match the weights", *needles)


def test_a_passed_weights_check_is_remembered_per_content(tiny_gpt2, tmp_path, monkeypatch):
    import harness.models.loader as loader

    folder, cache = edited_copy(tiny_gpt2, tmp_path / "model"), tmp_path / "cache"
    calls: list[Path] = []
    real = loader.check_weights
    monkeypatch.setattr(loader, "check_weights", lambda f, t=False: (calls.append(f), real(f, t)))
    check_weights_once(folder, False, cache)
    check_weights_once(folder, False, cache)
    assert len(calls) == 1 and len(list((cache / "weights_checked").glob("*.json"))) == 1
    path = folder / "config.json"  # an edit after a passed check is checked (and refused)
    path.write_text(json.dumps({**json.loads(path.read_text()), "n_layer": 2}))
    with pytest.raises(HarnessError, match="config.json does not match the weights"):
        check_weights_once(folder, False, cache)
    assert len(calls) == 2
    with pytest.raises(HarnessError):  # without a cache it always checks
        check_weights_once(folder, False, None)
    assert len(calls) == 3


def test_tokenizer_larger_than_the_vocabulary_is_one_line(tiny_gpt2, tmp_path):
    from transformers import PreTrainedTokenizerFast

    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2, folder)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    tokenizer.add_tokens(["w100", "w101"])
    tokenizer.save_pretrained(folder)
    with pytest.raises(
        HarnessError, match="the tokenizer has 66 tokens but the model's vocab_size is 64"
    ):
        load_model({"name": "m", "source": "local", "path": str(folder)}, "cpu", "float32")


def test_missing_tokenizer_json_message_is_complete(tiny_gpt2, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(HarnessError) as info:
        load_model({"name": "m", "source": "local", "path": str(folder)}, "cpu", "float32")
    message = str(info.value)
    assert "\n" not in message and "(the folder has no tokenizer.json)" in message
    assert "(1) a `tokenizers` library serialization file" in message  # not cut off
    assert message.rstrip().endswith("to a fast one.")


def renamed_copy(source: Path, folder: Path, rename) -> Path:
    """A copy of ``source`` whose safetensors keys are renamed by ``rename`` (None: dropped)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, folder)
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    renamed = {rename(k): v.contiguous() for k, v in tensors.items() if rename(k) is not None}
    save_file(renamed, str(path), metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize(
    "family, rename",
    [
        ("gpt2", lambda k: k.removeprefix("transformer.")),  # saved from the base model
        (
            "gpt2",
            lambda k: k.replace("ln_f.weight", "ln_f.gamma").replace("ln_f.bias", "ln_f.beta"),
        ),
        ("gemma2", lambda k: None if k == "lm_head.weight" else k),  # tied to the embedding
        ("llama", lambda k: k),
    ],
    ids=["base_model_prefix", "legacy_gamma_beta", "tied_head_absent", "as_saved"],
)
def test_names_transformers_maps_are_not_refused(
    family, rename, tiny_models, tmp_path, monkeypatch
):
    """Renamed keys and tied weights that transformers' own loading resolves pass the check, and
    a folder whose names and shapes match is checked from the file headers alone."""
    import transformers

    folder = renamed_copy(tiny_models[family], tmp_path / "model", rename)
    check_weights(folder)
    if family == "llama":  # an exact match never loads the weights

        def refuse(*args, **kwargs):
            raise AssertionError("from_pretrained read the weights of a matching folder")

        monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
        check_weights(folder)


def test_dropped_weight_is_refused_by_name(tiny_gpt2, tmp_path):
    folder = renamed_copy(
        tiny_gpt2, tmp_path / "model", lambda k: None if "h.1.mlp.c_fc.bias" in k else k
    )
    with pytest.raises(HarnessError, match="1 declared weights missing.*h.1.mlp.c_fc.bias"):
        check_weights(folder)


@pytest.mark.parametrize("slug", zoo_models())
def test_every_shipped_zoo_model_matches_its_config(slug):
    check_weights(ZOO_DIR / slug)  # raises on any missing, unexpected or reshaped weight


def test_random_init_does_not_compare_weights(tiny_gpt2, tmp_path):
    """model.random_init=true builds the architecture of config.json with random weights, so
    weights that do not match it are not an error."""
    folder = edited_copy(tiny_gpt2, tmp_path / "model", n_layer=4)
    cfg = {"name": "m", "source": "local", "path": str(folder), "random_init": True}
    assert load_model(cfg, "cpu", "float32").adapter.shape.n_layers == 4


@pytest.mark.parametrize("model", ["gemma-2-2b", "llama-3.2-1b"])
def test_gated_hub_model_missing_offline_says_what_it_needs(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run_cli([f"model={model}", f"results_dir={tmp_path}"], capsys)
    assert_one_line(code, err, "is gated and not in the local Hugging Face cache", "licence")
    assert "token" in err


def test_gated_flag_leaves_the_config_hash_alone():
    from harness.job import config_hash

    config = {"model": {"name": "gemma-2-2b", "path": "google/gemma-2-2b"}, "seed": 0}
    gated = {**config, "model": {**config["model"], "gated": True}}
    assert config_hash(gated) == config_hash(config)
    assert config_hash({**config, "seed": 1}) != config_hash(config)


def test_pickle_weights_only_folder_is_refused(tiny_gpt2, tmp_path, capsys):
    """A folder with pytorch_model.bin (pickle) and no safetensors is refused before loading."""
    folder = tmp_path / "bin_only"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(folder, pairs, tmp_path), capsys)
    assert_one_line(code, err, str(folder), "no *.safetensors weights (only safetensors")


CUSTOM_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import PretrainedConfig
class CustomConfig(PretrainedConfig):
    model_type = "custom-robustness"
"""


def test_remote_code_runs_only_with_trust_remote_code(tiny_gpt2, tmp_path, capsys):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_gpt2, folder)
    marker = tmp_path / "EXECUTED"
    config = json.loads((folder / "config.json").read_text())
    config.update(
        architectures=["CustomForCausalLM"],
        model_type="custom-robustness",
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "configuration_custom.CustomConfig",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    args = local_args(folder, pairs, tmp_path)

    code, _, err = run_cli(args, capsys)
    assert_one_line(code, err, "needs its own Python code", "model.trust_remote_code=true")
    assert not marker.exists()  # the folder's code never ran

    code, _, _ = run_cli([*args, "model.trust_remote_code=true"], capsys)
    assert code != 0  # not a supported architecture, but the flag reached transformers
    assert marker.exists()
