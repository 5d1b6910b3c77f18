"""Shared fixtures: tiny HF model folders of each family, built offline in a temp dir."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from harness.taskdefs.factual_recall.data import FACTS
from harness.taskdefs.factual_recall.data import TEMPLATES as FACT_TEMPLATES
from harness.taskdefs.greater_than.data import NOUNS
from harness.taskdefs.ioi.data import ARENA_NAMES, BABA_TEMPLATES, FILLER_WORDS, WANG_NAMES

from harness.models import toy_vocab

WORDS = ["<pad>", "<bos>", "<unk>"] + [f"w{i}" for i in range(61)]

FAMILIES = ("gpt2", "neox", "llama", "gemma2", "qwen2")


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", pad_token="<pad>", unk_token="<unk>"
    )


def tiny_config(family: str, **overrides):
    import transformers as tf

    v = len(WORDS)
    common = dict(vocab_size=v, bos_token_id=1, eos_token_id=1, pad_token_id=0)
    if family == "gpt2":
        cfg = tf.GPT2Config(n_layer=3, n_embd=32, n_head=4, n_positions=32, **common)
        cls = tf.GPT2LMHeadModel
    elif family == "neox":
        cfg = tf.GPTNeoXConfig(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            max_position_embeddings=32,
            **common,
        )
        cls = tf.GPTNeoXForCausalLM
    elif family == "llama":
        cfg = tf.LlamaConfig(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32,
            **common,
        )
        cls = tf.LlamaForCausalLM
    elif family == "gemma2":
        cfg = tf.Gemma2Config(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
            max_position_embeddings=32,
            sliding_window=16,
            **common,
        )
        cls = tf.Gemma2ForCausalLM
    elif family == "qwen2":
        cfg = tf.Qwen2Config(
            num_hidden_layers=3,
            hidden_size=32,
            intermediate_size=64,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=32,
            **common,
        )
        cls = tf.Qwen2ForCausalLM
    else:
        raise ValueError(family)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg, cls


def build_tiny_model(folder: Path, family: str, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny model of ``family`` with a word-level tokenizer."""
    cfg, cls = tiny_config(family, **overrides)
    torch.manual_seed(seed)
    model = cls(cfg)
    with torch.no_grad():  # larger weights than the default init: effects well above noise
        for param in model.parameters():
            if param.dim() >= 2:
                param.mul_(3.0)
    model.save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny_model(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_models) -> Path:
    return tiny_models["gpt2"]


def _bpe_corpus() -> list[str]:
    rng = random.Random(0)
    names = sorted(set(WANG_NAMES) | set(ARENA_NAMES))
    lines: list[str] = []
    for i, template in enumerate(BABA_TEMPLATES):
        for j, name in enumerate(names):
            other = names[(i + j + 1) % len(names)]
            text = template.replace("[A]", name).replace("[B]", other)
            lines.append(text.replace("[PLACE]", "store").replace("[OBJECT]", "drink"))
    for noun in NOUNS:
        for xx in range(11, 18):
            lines.append(f"The {noun} lasted from the year {xx}{rng.randrange(2, 99):02d} to {xx}")
    lines += [" ".join(f"-{i:02d}" for i in range(100))] * 20  # two-digit tokens without space
    for subject, city in FACTS:
        for template in FACT_TEMPLATES:
            lines += [template.replace("[S]", subject) + " " + city] * 4
    lines += [" ".join(FILLER_WORDS)] * 10
    return lines


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A GPT-2-style byte-level BPE (no BOS added by default), trained offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        min_frequency=8,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_bpe_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>"
    )


@pytest.fixture(scope="module")
def toy_tokenizer():
    return toy_vocab.build_toy_tokenizer()


@pytest.fixture(params=["toy", "natural"])
def tokenizer(request, toy_tokenizer, bpe_tokenizer):
    return toy_tokenizer if request.param == "toy" else bpe_tokenizer
