"""The shipped toy zoo: every model loads offline through TransformerBridge and solves every
toy task on held-out prompts (made by the harness's own generators and tokenize_pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.tasks import load_task, tokenize_pairs, tokenizer_is_toy

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


@pytest.fixture(scope="module", params=sorted(MODELS))
def zoo_model(request):
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import AutoTokenizer

    folder = ZOO / request.param
    assert (folder / "model.safetensors").is_file(), f"{folder} is missing; run train_zoo"
    bridge = TransformerBridge.boot_transformers(str(folder), device="cpu", dtype=torch.float32)
    bridge.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return request.param, bridge, tokenizer


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


def test_zoo_model_solves_toy_tasks(zoo_model):
    slug, bridge, tokenizer = zoo_model
    assert tokenizer_is_toy(tokenizer), f"{slug}: AutoTokenizer did not give the toy tokenizer"
    failures = []
    for task_slug in TASKS:
        task = load_task(task_slug)  # vocab: auto -> toy
        batch = tokenize_pairs(task.make_pairs(tokenizer, N_EVAL, EVAL_SEED), tokenizer)
        with torch.no_grad():
            logits = bridge(batch.clean)
        top = logits[torch.arange(batch.n), batch.last].argmax(-1)
        if task_slug == "greater_than":
            hit = ((batch.answers == top[:, None]) & batch.answer_mask).any(-1)
        else:
            hit = top == batch.answers[:, 0]
        acc = hit.float().mean().item()
        if acc < MIN_ACCURACY:
            failures.append(f"{task_slug}: {acc:.3f}")
    assert not failures, f"{slug} below {MIN_ACCURACY}: {', '.join(failures)}"
