"""The shipped toy zoo: every model loads offline through TransformerBridge and solves the toy
tasks on held-out prompts (made by the harness's own generators and tokenize_pairs); the
training code is deterministic."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

from harness.models import train_zoo
from harness.tasks import load_task, tokenizer_is_toy

ZOO = Path(__file__).resolve().parents[2] / "harness" / "models" / "zoo"
MODELS = {
    "toy-gpt2": "GPT2LMHeadModel",
    "toy-pythia": "GPTNeoXForCausalLM",
    "toy-llama": "LlamaForCausalLM",
    "toy-gemma2": "Gemma2ForCausalLM",
    "toy-qwen2": "Qwen2ForCausalLM",
}
TASKS = ("ioi", "induction", "greater_than", "factual_recall")
N_EVAL = 200
EVAL_SEED = 1  # training prompts use seeds >= 10_000_000 (harness.models.train_zoo)
MIN_ACCURACY = 0.95


@functools.cache
def load_zoo_model(slug: str):
    """The zoo model booted offline through TransformerBridge, with its own tokenizer."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    folder = ZOO / slug
    assert (folder / "model.safetensors").is_file(), f"{folder} is missing; run train_zoo"
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu", dtype=torch.float32)
    bridge.eval()
    return bridge, AutoTokenizer.from_pretrained(str(folder))


def test_zoo_folder_contents():
    assert sorted(p.name for p in ZOO.iterdir() if p.is_dir()) == sorted(MODELS)
    total = sum(f.stat().st_size for f in ZOO.rglob("*") if f.is_file())
    assert total < 10 * 2**20
    for slug, arch in MODELS.items():
        cfg = json.loads((ZOO / slug / "config.json").read_text())
        assert cfg["architectures"] == [arch]
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            assert 0 <= cfg[key] < cfg["vocab_size"]
    llama = json.loads((ZOO / "toy-llama" / "config.json").read_text())
    assert llama["num_key_value_heads"] < llama["num_attention_heads"]


@pytest.mark.parametrize("task_slug", TASKS)
@pytest.mark.parametrize("slug", sorted(MODELS))
def test_zoo_model_solves_toy_tasks(slug, task_slug):
    bridge, tokenizer = load_zoo_model(slug)
    assert tokenizer_is_toy(tokenizer), f"{slug}: AutoTokenizer did not give the toy tokenizer"
    task = load_task(task_slug)  # vocab: auto -> toy
    accuracy = train_zoo.accuracy(bridge, task_slug, task, tokenizer, N_EVAL, EVAL_SEED)
    assert accuracy >= MIN_ACCURACY, f"{slug} {task_slug}: {accuracy:.3f} < {MIN_ACCURACY}"


def test_training_is_deterministic(tmp_path):
    """Two short trainings from the same seeds write byte-identical weights."""
    from harness.models.train_zoo import TrainConfig, train_one

    cfg = TrainConfig(steps=3, batch_per_task=2)
    quiet = lambda *a: None  # noqa: E731
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        for out in ("a", "b"):
            train_one("toy-llama", tmp_path / out, cfg, log=quiet, eval_n=8)
    finally:  # train_one sets these process-wide
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    a, b = (tmp_path / o / "toy-llama" / "model.safetensors" for o in ("a", "b"))
    assert a.read_bytes() == b.read_bytes()


def test_another_depth_is_saved_beside_the_zoo_name(tmp_path):
    """--layers N trains the same recipe at depth N into <slug>-<N>l (the depth series)."""
    import json

    from harness.models.train_zoo import TrainConfig, train_one

    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    try:
        cfg = TrainConfig(steps=1, batch_per_task=2, layers=2)
        train_one("toy-llama", tmp_path, cfg, log=lambda *a: None, eval_n=4)
    finally:  # train_one sets these process-wide
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    config = json.loads((tmp_path / "toy-llama-2l" / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    assert not (tmp_path / "toy-llama").exists()
