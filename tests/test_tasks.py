"""Tests for harness.tasks: the registry, make_task, tokenize_pairs and the contract every
generated task keeps. Each task's own tests are in tests/tasks/ (the tokenizer fixtures, a toy
one and a byte-level BPE trained offline on the tasks' word lists, are in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.models import toy_vocab
from harness.tasks import (
    TASKS,
    Task,
    load_task,
    make_task,
    task_config,
    tokenize_pairs,
)
from harness.types import PromptPair
from tests.helpers import REPO

GENERATED = ("ioi", "induction", "greater_than", "factual_recall")
VARIANTS = [
    ("ioi", {"corruption": "name_swap"}),
    ("ioi", {"corruption": "random_token"}),
    ("ioi", {"order": "abba", "names": "arena"}),
    ("induction", {}),
    ("induction", {"seq_len": 6, "query_len": 2}),
    ("greater_than", {"form": "canonical"}),
    ("greater_than", {"form": "acdc"}),
    ("factual_recall", {}),
]


# ---------------------------------------------------------------------------------------------
# Registry and make_task


def test_registry_lists_every_task():
    assert set(TASKS.names()) == {*GENERATED, "prompts"}
    for slug in GENERATED:
        cls = TASKS.get(slug)
        assert issubclass(cls, Task) and make_task(task_config(slug)).name == slug
        assert cls.__doc__ and "arXiv" in cls.__doc__


def test_the_package_never_imports_the_task_definitions():
    """tasks/<slug>/ import from the package (harness.tasks), never the other way round: the
    package finds a task through its config's ``impl`` only."""
    import ast

    root = REPO / "harness"
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            bad = [n for n in names if n == "harness.taskdefs" or n.startswith("harness.taskdefs.")]
            assert not bad, f"{path.relative_to(root.parent)} imports {bad[0]}"


def test_every_config_builds_and_has_readme():
    import harness.taskdefs

    root = Path(harness.taskdefs.__file__).parent
    for slug in GENERATED:
        cfg = task_config(slug)
        assert cfg["name"] == slug and cfg["vocab"] == "auto"
        assert isinstance(make_task(cfg), TASKS.get(slug))
        readme = (root / slug / "README.md").read_text()
        assert "Corrupt" in readme and "Toy" in readme and "Natural" in readme
    assert (root / "prompts" / "README.md").is_file()


def test_make_task_unknown_option():
    cfg = {**task_config("ioi"), "corruptoin": "name_swap"}
    with pytest.raises(HarnessError) as err:
        make_task(cfg)
    msg = str(err.value)
    assert "corruptoin" in msg and "did you mean 'corruption'" in msg and "names" in msg
    assert "\n" not in msg


def test_make_task_bad_values():
    with pytest.raises(HarnessError, match="unknown ioi corruption 'swap'"):
        load_task("ioi", corruption="swap")
    with pytest.raises(HarnessError, match="unknown task 'ioj'.*did you mean 'ioi'"):
        make_task({"name": "ioj"})
    with pytest.raises(HarnessError, match="not a Task subclass"):
        make_task({"name": "x", "impl": "harness.types:PromptPair"})
    with pytest.raises(HarnessError, match="seq_len"):
        load_task("induction", seq_len=0)


class EchoTask(Task):
    """A user's own task, used through its import path."""

    @dataclass(frozen=True)
    class Options:
        text: str = "Mary gave a ring to"

    def make_pairs(self, tokenizer, n, seed):
        text = self.options.text
        corrupt = text.replace("gave", "found")  # same length, a different prompt
        return [PromptPair(text, corrupt, (" John",), (" Mary",), "echo")]


def test_make_task_by_import_path(toy_tokenizer):
    task = make_task({"name": "echo", "impl": f"{__name__}:EchoTask", "text": "Bob gave a"})
    assert isinstance(task, EchoTask)
    assert task.batch(toy_tokenizer).clean.shape == (1, 4)
    with pytest.raises(HarnessError, match="'txt'.*accepted: text"):
        make_task({"name": "echo", "impl": f"{__name__}:EchoTask", "txt": "x"})


def test_make_task_accepts_omegaconf():
    from omegaconf import OmegaConf

    task = make_task(OmegaConf.create(task_config("greater_than")))
    assert task.centuries == [11, 12, 13, 14, 15, 16, 17]


# ---------------------------------------------------------------------------------------------
# Every generated task x vocabulary


@pytest.mark.parametrize(("slug", "options"), VARIANTS, ids=lambda v: str(v))
def test_generated_task_contract(slug, options, tokenizer):
    task = load_task(slug, **options)
    pairs = task.make_pairs(tokenizer, 24, seed=3)
    assert len(pairs) == 24
    batch = tokenize_pairs(pairs, tokenizer)  # validates lengths and single-token answers
    assert batch.n == 24 and batch.clean.shape == batch.corrupt.shape
    for i, pair in enumerate(pairs):
        assert pair.source == f"{slug}[{i}]"
        assert pair.clean != pair.corrupt
        real = int(batch.last[i]) + 1
        assert batch.clean[i, :real].tolist() != batch.corrupt[i, :real].tolist()
        answers = set(batch.answers[i][batch.answer_mask[i]].tolist())
        wrongs = set(batch.wrongs[i][batch.wrong_mask[i]].tolist())
        assert answers and wrongs and not answers & wrongs
    # determinism: same seed, same pairs; another seed, other pairs; prefix-stable
    assert task.make_pairs(tokenizer, 24, seed=3) == pairs
    assert task.make_pairs(tokenizer, 24, seed=4) != pairs
    assert task.make_pairs(tokenizer, 5, seed=3) == pairs[:5]
    assert len(task.make_pairs(tokenizer, None, seed=0)) == 32


# ---------------------------------------------------------------------------------------------
# tokenize_pairs


def test_tokenize_pairs_padding(toy_tokenizer):
    pairs = [
        PromptPair("Mary gave a ring to", "John gave a ring to", (" John",), (" Mary",), "a"),
        PromptPair("Bob gave", "Tom gave", ("a",), (" Mary", 7), "b"),
        PromptPair([1, 34, 12], [1, 35, 12], (13,), ("Mary",), "c"),
    ]
    b = tokenize_pairs(pairs, toy_tokenizer)
    assert b.clean.shape == (3, 6) and b.last.tolist() == [5, 2, 2]
    assert (b.clean[1:, 3:] == toy_tokenizer.pad_token_id).all()
    assert (b.clean == toy_tokenizer.pad_token_id).eq(b.corrupt == toy_tokenizer.pad_token_id).all()
    assert b.wrongs.shape == (3, 2) and b.wrong_mask.tolist() == [[1, 0], [1, 1], [1, 0]]
    assert b.wrongs[1].tolist() == [toy_vocab.vocab()["Mary"], 7]
    assert b.answers[2, 0] == 13 and b.texts == pairs
    assert b.clean.dtype == torch.long


def test_tokenize_pairs_prepend_bos(bpe_tokenizer, toy_tokenizer):
    pair = PromptPair("Then, Mary", "Then, John", (" Mary",), (" John",), "x")
    plain = tokenize_pairs([pair], bpe_tokenizer)
    bos = tokenize_pairs([pair], bpe_tokenizer, prepend_bos=True)
    assert bos.clean[0, 0] == bpe_tokenizer.bos_token_id
    assert bos.clean[0, 1:].tolist() == plain.clean[0].tolist() and bos.last[0] == plain.last[0] + 1
    # the toy tokenizer already adds BOS: not added twice
    toy = PromptPair("Mary gave", "John gave", (" a",), (" Mary",), "t")
    assert tokenize_pairs([toy], toy_tokenizer, prepend_bos=True).clean.shape == (1, 3)
    from transformers import PreTrainedTokenizerFast

    no_bos = PreTrainedTokenizerFast(tokenizer_object=bpe_tokenizer.backend_tokenizer)
    with pytest.raises(HarnessError, match="prepend_bos is set but tokenizer .* has no BOS"):
        tokenize_pairs([pair], no_bos, prepend_bos=True)


@pytest.mark.parametrize(
    ("pair", "match"),
    [
        (PromptPair("Mary gave a", "Mary gave", (" a",), (" b",), "f.jsonl:3"),
         r"^f.jsonl:3: clean has 4 tokens but corrupt has 3$"),
        (PromptPair("Mary gave", "John gave", ("Mary John",), ("a",), "s"),
         r"^s: answer 'Mary John' is 2 tokens, must be exactly 1$"),
        (PromptPair("Mary gave", "John gave", (" a",), ("",), "s"),
         r"^s: wrong answer '' is 0 tokens, must be exactly 1$"),
        (PromptPair("Mary gave", "John gave", (), (" a",), "s"), r"^s: no answers$"),
        (PromptPair("  ", "  ", (" a",), (" b",), "s"), r"^s: clean prompt is empty$"),
        (PromptPair([], [], (" a",), (" b",), "s"), r"^s: clean prompt has no tokens$"),
        (PromptPair([1, 99999], [1, 2], (" a",), (" b",), "s"), "outside the vocabulary"),
        (PromptPair("Mary gave", "John gave", (99999,), (" b",), "s"), "id 99999 is outside"),
        (PromptPair("Mary gave", "John gave", (" a",), (" Mary",)), r"^pair 0: .*"),
    ],
)  # fmt: skip
def test_tokenize_pairs_errors(toy_tokenizer, pair, match):
    if pair.source:
        with pytest.raises(HarnessError, match=match):
            tokenize_pairs([pair], toy_tokenizer)
    else:  # a valid pair without a source: errors fall back to "pair <i>"
        bad = PromptPair("Mary gave a", "Mary", pair.answers, pair.wrongs)
        with pytest.raises(HarnessError, match=r"^pair 1: clean has 4 tokens but corrupt has 2$"):
            tokenize_pairs([pair, bad], toy_tokenizer)
    with pytest.raises(HarnessError, match="no prompt pairs"):
        tokenize_pairs([], toy_tokenizer)


# ---------------------------------------------------------------------------------------------
# Sampling prompt pairs


SAMPLER = """
import json, sys
from harness.models.toy_vocab import build_toy_tokenizer
from harness.tasks import load_task
tok = build_toy_tokenizer()
out = {}
for slug in ("ioi", "induction", "greater_than", "factual_recall"):
    for seed in (0, 1):
        pairs = load_task(slug).make_pairs(tok, 6, seed)
        out[f"{slug}/{seed}"] = [[p.clean, p.corrupt, p.answers, p.wrongs] for p in pairs]
json.dump(out, sys.stdout)
"""


def test_prompt_sampling_depends_only_on_the_seed():
    """This process and one with another hash seed sample the same prompts for the same seed;
    another seed samples other prompts."""
    hash_seed = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "7"
    proc = subprocess.run(
        [sys.executable, "-c", SAMPLER],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    here: dict = {}
    exec(SAMPLER.replace("json.dump(out, sys.stdout)", ""), here)
    results = [json.loads(json.dumps(here["out"])), json.loads(proc.stdout)]
    assert results[0] == results[1]
    for slug in ("ioi", "induction", "greater_than", "factual_recall"):
        assert results[0][f"{slug}/0"] != results[0][f"{slug}/1"], slug
