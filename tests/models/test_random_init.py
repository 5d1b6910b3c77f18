"""``model.random_init=true``: the shipped hub architectures with random weights, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from harness.errors import HarnessError
from harness.models import random_init
from harness.models.loader import load_model
from harness.tasks import tokenizer_is_toy

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
HUB = sorted(
    p.stem for p in CONF.glob("*.yaml") if yaml.safe_load(p.read_text()).get("source") == "hub"
)

SMALL = {
    "gpt2": {"n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 300},
    "llama-3.2-1b": {
        "num_hidden_layers": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "vocab_size": 300,
    },
}


def hub_cfg(name: str, **extra) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg.pop("defaults", None)
    return {**cfg, "random_init": True, **extra}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_every_hub_model_ships_its_architecture():
    assert HUB, "no hub model configs found"
    for name in HUB:
        arch = json.loads((random_init.ARCH_DIR / f"{name}.json").read_text())
        assert arch["_name_or_path"] == hub_cfg(name)["path"]
        assert arch["architectures"][0].endswith(("ForCausalLM", "LMHeadModel"))
        random_init.hf_config(arch)  # transformers accepts it


@pytest.mark.parametrize("name", sorted(SMALL))
def test_random_init_builds_offline_and_is_seeded(name):
    cfg = hub_cfg(name, arch_overrides=SMALL[name])
    a = load_model(cfg, device="cpu", dtype="float32", seed=0)
    b = load_model(cfg, device="cpu", dtype="float32", seed=0)
    c = load_model(cfg, device="cpu", dtype="float32", seed=1)
    assert a.adapter.shape.n_layers == 2 and a.adapter.shape.d_model == 32
    assert tokenizer_is_toy(a.tokenizer)  # no hub tokenizer in the cache here
    tokens = a.tokenizer("Mary and John went", return_tensors="pt").input_ids
    logits = a.adapter.run(tokens)
    assert logits.shape == (1, tokens.shape[1], 300) and torch.isfinite(logits).all()
    assert torch.equal(logits, b.adapter.run(tokens))
    assert not torch.equal(logits, c.adapter.run(tokens))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.fingerprint.startswith("random:")


def test_arch_overrides_cannot_change_the_family():
    with pytest.raises(HarnessError, match="model_type"):
        random_init.arch_config("gpt2", {"model_type": "llama"})


def test_cli_run_on_a_shrunken_random_gpt2(tmp_path, capsys):
    from tests.test_cli import run_cli

    code, out, err = run_cli(
        [
            "model=gpt2",
            "model.random_init=true",
            "model.device=cpu",
            "+model.arch_overrides.n_layer=2",
            "+model.arch_overrides.n_embd=32",
            "+model.arch_overrides.n_head=4",
            "task=ioi",
            "n_prompts=2",
            "diagnostics=false",
            "circuits=false",
            f"results_dir={tmp_path / 'results'}",
        ],
        capsys,
    )
    assert code == 0, err
    (path,) = (tmp_path / "results" / "runs").glob("*/*/summary.json")
    summary = json.loads(path.read_text())
    assert summary["model_fingerprint"].startswith("random:")
    assert summary["n_components"] == 8
