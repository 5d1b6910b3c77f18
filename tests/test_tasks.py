"""Tests for harness.tasks and the standard task definitions (tasks/<slug>/).

Natural-vocabulary tests use a byte-level BPE tokenizer trained here, offline, on text made from
the task templates and word lists (no hub downloads), wrapped as PreTrainedTokenizerFast.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from harness.taskdefs.factual_recall.data import FACTS, TOY_LANDMARKS
from harness.taskdefs.factual_recall.data import TEMPLATES as FACT_TEMPLATES
from harness.taskdefs.greater_than.data import NOUNS
from harness.taskdefs.ioi.data import (
    ARENA_NAMES,
    BABA_TEMPLATES,
    FILLER_WORDS,
    TOY_NAMES,
    WANG_NAMES,
)

from harness.errors import HarnessError
from harness.models import toy_vocab
from harness.tasks import (
    TASKS,
    Task,
    load_task,
    make_task,
    task_config,
    tokenize_pairs,
    tokenizer_is_toy,
)
from harness.types import PromptPair

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


def _write(tmp_path: Path, lines: list[str], name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _pair(clean: str, corrupt: str, answer: str = " Mary", wrong: str = " John") -> str:
    return json.dumps({"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong})


# ---------------------------------------------------------------------------------------------
# Toy vocabulary and detection


def test_toy_vocab_is_consistent(toy_tokenizer):
    from harness.models.loader import ZOO_DIR, load_tokenizer

    toy_vocab.check_vocab()
    words = toy_vocab.words()
    assert 200 <= len(words) <= 300
    assert len(toy_tokenizer) == len(words)
    ids = toy_tokenizer(" ".join(words[5:]), add_special_tokens=False)["input_ids"]
    assert ids == list(range(5, len(words)))
    assert toy_tokenizer("Mary")["input_ids"] == [
        toy_tokenizer.bos_token_id,
        toy_vocab.vocab()["Mary"],
    ]
    # the tasks' toy lists, put together, give every shipped zoo model's ids
    for folder in sorted(ZOO_DIR.iterdir()):
        assert load_tokenizer(folder).get_vocab() == toy_vocab.vocab(), folder.name


def test_the_package_never_imports_the_task_definitions():
    """tasks/<slug>/ import from the package (harness.tasks), never the other way round: the
    package finds a task through its config's ``impl`` only."""
    import ast

    root = Path(__file__).resolve().parents[1] / "harness"
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            bad = [n for n in names if n == "harness.taskdefs" or n.startswith("harness.taskdefs.")]
            assert not bad, f"{path.relative_to(root.parent)} imports {bad[0]}"


def test_tokenizer_is_toy(toy_tokenizer, bpe_tokenizer, tmp_path):
    from transformers import AutoTokenizer

    assert tokenizer_is_toy(toy_tokenizer)
    assert not tokenizer_is_toy(bpe_tokenizer)
    toy_tokenizer.save_pretrained(tmp_path)
    assert tokenizer_is_toy(AutoTokenizer.from_pretrained(tmp_path))


def test_toy_vocab_with_wrong_tokenizer_class_is_an_error(toy_tokenizer):
    from transformers import Qwen2Tokenizer

    garbled = Qwen2Tokenizer(vocab=toy_vocab.vocab(), merges=[])
    with pytest.raises(HarnessError, match="toy vocabulary but does not split"):
        tokenizer_is_toy(garbled)


def test_vocab_option(bpe_tokenizer, toy_tokenizer):
    with pytest.raises(HarnessError, match="vocab: toy needs the zoo"):
        load_task("ioi", vocab="toy").make_pairs(bpe_tokenizer, 2, 0)
    with pytest.raises(HarnessError, match="unknown vocab 'toyy'.*did you mean 'toy'"):
        load_task("ioi", vocab="toyy").make_pairs(toy_tokenizer, 2, 0)
    # natural prompts work with the toy tokenizer only where words exist; auto picks toy
    pair = load_task("ioi", vocab="auto").make_pairs(toy_tokenizer, 1, 0)[0]
    assert all(w in toy_vocab.vocab() for w in str(pair.clean).split())


# ---------------------------------------------------------------------------------------------
# Registry and make_task


def test_registry_lists_every_task():
    assert set(TASKS.names()) == {*GENERATED, "prompts"}
    for slug in GENERATED:
        cls = TASKS.get(slug)
        assert issubclass(cls, Task) and make_task(task_config(slug)).name == slug
        assert cls.__doc__ and "arXiv" in cls.__doc__


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


def test_ioi_structure(tokenizer):
    toy = tokenizer_is_toy(tokenizer)
    for pair in load_task("ioi", corruption="name_swap").make_pairs(tokenizer, 40, seed=1):
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        clean, corrupt = str(pair.clean).split(), str(pair.corrupt).split()
        clean_names = [w.strip(",.") for w in clean]
        assert clean_names.count(io) == 1 and clean_names.count(s) == 2
        fresh = {w.strip(",.") for w in corrupt} - {w.strip(",.") for w in clean}
        assert len(fresh) == 3 and not fresh & {io, s}
        if toy:
            assert fresh <= set(TOY_NAMES)
    for pair in load_task("ioi", corruption="random_token").make_pairs(tokenizer, 40, seed=1):
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        corrupt = [w.strip(",.") for w in str(pair.corrupt).split()]
        assert corrupt.count(io) == 1 and corrupt.count(s) == 1
        assert len(set(str(pair.clean).split()) ^ set(str(pair.corrupt).split())) == 1


def test_ioi_orders(toy_tokenizer):
    for pair in load_task("ioi", order="abba").make_pairs(toy_tokenizer, 10, 0):
        words = str(pair.clean).split()
        io, s = pair.answers[0].strip(), pair.wrongs[0].strip()
        assert words.index(io) < words.index(s)
    for pair in load_task("ioi", order="baba").make_pairs(toy_tokenizer, 10, 0):
        words = str(pair.clean).split()
        assert words.index(pair.answers[0].strip()) > words.index(pair.wrongs[0].strip())


def test_ioi_natural_filters_names(bpe_tokenizer):
    pairs = load_task("ioi", names=["Mary", "John", "Zyxwvutq", "Anna", "Kevin", "Laura"])
    used = set()
    for pair in pairs.make_pairs(bpe_tokenizer, 30, 0):
        used |= {pair.answers[0].strip(), pair.wrongs[0].strip()}
    assert "Zyxwvutq" not in used  # not a single token
    with pytest.raises(HarnessError, match="only 1 IOI names are single tokens"):
        load_task("ioi", names=["Mary", "Zyxwvutq"]).make_pairs(bpe_tokenizer, 2, 0)


def test_induction_structure(tokenizer):
    task = load_task("induction", seq_len=8, query_len=3)
    for pair in task.make_pairs(tokenizer, 20, seed=2):
        if tokenizer_is_toy(tokenizer):
            clean, corrupt = str(pair.clean).split(), str(pair.corrupt).split()
            answer, wrong = pair.answers[0].strip(), pair.wrongs[0].strip()
        else:
            clean, corrupt = list(pair.clean), list(pair.corrupt)
            answer, wrong = pair.answers[0], pair.wrongs[0]
        r, r2 = clean[:8], corrupt[:8]
        assert clean[8:] == r[:3] == corrupt[8:]
        assert len(set(r)) == 8 and not set(r) & set(r2)
        assert answer == r[3] and wrong == r2[3]


def test_induction_natural_ids(bpe_tokenizer):
    pairs = load_task("induction").make_pairs(bpe_tokenizer, 10, 0)
    ids = {t for p in pairs for t in p.clean}
    assert all(1000 <= t < len(bpe_tokenizer) for t in ids)
    small = load_task("induction", id_range=[5, 20], seq_len=4)
    ids = {t for p in small.make_pairs(bpe_tokenizer, 10, 0) for t in p.clean}
    assert ids <= set(range(len(bpe_tokenizer))) - set(bpe_tokenizer.all_special_ids)


def test_greater_than_sets(tokenizer):
    for pair in load_task("greater_than").make_pairs(tokenizer, 20, seed=5):
        text = str(pair.clean)
        yy = int(text.split("the year ")[1].split(" to")[0].replace(" ", "")[-2:])
        assert str(pair.corrupt) == text.replace(f"{yy:02d} to", "01 to")
        assert sorted(int(a) for a in pair.answers) == list(range(yy + 1, 100))
        assert sorted(int(w) for w in pair.wrongs) == list(range(0, yy + 1))
        assert 2 <= yy <= 98


def test_greater_than_natural_year_filter(bpe_tokenizer):
    from harness.taskdefs.greater_than.generator import valid_years

    years = valid_years(bpe_tokenizer, [17])
    assert years
    for xx, yy in years:
        toks = bpe_tokenizer.tokenize(f" {xx}{yy:02d}")
        assert toks == [f"Ġ{xx}", f"{yy:02d}"]


def _digit_tokenizer(chunk: int):
    """A word-level tokenizer that splits numbers into chunks of up to ``chunk`` digits (1:
    Qwen-2 / Gemma-2 / SmolLM2 style; 3: Llama-3 style); words outside its vocabulary are [UNK]."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    numbers = [str(i) for i in range(10)] + [f"{i:0{k}d}" for k in (2, 3) for i in range(10**k)]
    words = ["[UNK]", *dict.fromkeys(n for n in numbers if len(n) <= chunk), "The", "year"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex(rf"\d{{1,{chunk}}}"), behavior="isolated"),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def test_greater_than_two_digit_form_needs_two_digit_tokens():
    with pytest.raises(HarnessError, match="no year ' XXYY' tokenizes"):
        load_task("greater_than", year_tokens="two_digit").make_pairs(_digit_tokenizer(1), 2, 0)


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("form", ["canonical", "acdc"])
def test_greater_than_next_token_form_on_digit_tokenizers(chunk, form):
    """Tokenizers that split numbers (one digit, or Llama-3's three) get the next-token form:
    the prompt stops where the end years part, the answers are the next tokens that can only
    start a later year, the wrong answers those that can only start an earlier or equal one."""
    tok = _digit_tokenizer(chunk)
    pairs = load_task("greater_than", form=form).make_pairs(tok, 12, seed=1)
    for pair in pairs:
        clean = tok.convert_ids_to_tokens(pair.clean)
        corrupt = tok.convert_ids_to_tokens(pair.corrupt)
        digits = "".join(t for t in clean if t.isdigit())
        year, shown = int(digits[:4]), digits[4:]  # start year; end-year digits in the prompt
        century = year // 100
        assert len(corrupt) == len(clean)
        assert "".join(t for t in corrupt if t.isdigit()) == f"{century}01{shown}"
        answers = set(tok.convert_ids_to_tokens(list(pair.answers)))
        wrongs = set(tok.convert_ids_to_tokens(list(pair.wrongs)))
        assert answers and wrongs and not answers & wrongs
        seen = set()
        for end in range(century * 100, century * 100 + 100):
            toks = tok.tokenize(str(end))
            k = next(k for k in range(len(toks) + 1) if "".join(toks[:k]) == shown)
            nxt = toks[k]
            seen.add(nxt)
            if nxt in answers:
                assert end > year, (end, year, sorted(answers))
            if nxt in wrongs:
                assert end <= year, (end, year, sorted(wrongs))
        assert answers | wrongs <= seen


def test_factual_recall_structure(tokenizer):
    toy = tokenizer_is_toy(tokenizer)
    table = TOY_LANDMARKS if toy else {s: c for s, c in FACTS}
    for pair in load_task("factual_recall").make_pairs(tokenizer, 30, seed=0):
        city, other = pair.answers[0].strip(), pair.wrongs[0].strip()
        assert city != other
        found = [s for s in table if s in str(pair.clean) or s[:1].upper() + s[1:] in pair.clean]
        assert table[max(found, key=len)] == city


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
# The prompts task (JSONL)


def test_prompts_file(tmp_path, toy_tokenizer):
    path = _write(
        tmp_path,
        [
            _pair("Mary gave a ring to", "John gave a ring to"),
            "",
            _pair("Bob gave a", "Tom gave a", " kiss", " ring"),
            "   ",
            _pair("Anna went to the", "Kate went to the", " store", " house"),
        ],
    )
    task = make_task({**task_config("prompts"), "path": str(path)})
    pairs = task.make_pairs(toy_tokenizer, None, 0)
    assert [p.source for p in pairs] == [f"{path}:1", f"{path}:3", f"{path}:5"]
    assert pairs[1].answers == (" kiss",) and pairs[1].wrongs == (" ring",)
    assert task.make_pairs(toy_tokenizer, 2, 9) == pairs[:2]
    assert task.batch(toy_tokenizer).n == 3
    bos = load_task("prompts", path=str(path), prepend_bos=True)
    assert bos.prepend_bos and bos.batch(toy_tokenizer).clean[0, 0] == toy_tokenizer.bos_token_id


def test_prompts_requires_path():
    with pytest.raises(HarnessError, match="task prompts needs option 'path'"):
        make_task(task_config("prompts"))


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        ([], r"^{p}: empty file \(no prompt pairs\)$"),
        (["", "  "], r"^{p}: empty file \(no prompt pairs\)$"),
        ([_pair("a", "b"), "{not json"], r"^{p}:2: bad JSON: .*\(column 2\)$"),
        ([_pair("a", "b"), "", "[1, 2]"], r"^{p}:3: expected a JSON object, got list$"),
        (['"text"'], r"^{p}:1: expected a JSON object, got str$"),
        (['{"clean": "a", "corrupt": "b", "answer": "c"}'],
         r"^{p}:1: missing field 'wrong' \(needs clean, corrupt, answer, wrong\)$"),
        (['{"clean": "a", "corrupt": "b", "answer": 3, "wrong": "d"}'],
         r"^{p}:1: field 'answer' must be a string, got int$"),
        (['{"clean": null, "corrupt": "b", "answer": "c", "wrong": "d"}'],
         r"^{p}:1: field 'clean' must be a string, got NoneType$"),
    ],
)  # fmt: skip
def test_prompts_file_errors(tmp_path, toy_tokenizer, lines, match):
    path = _write(tmp_path, lines)
    task = load_task("prompts", path=str(path))
    with pytest.raises(HarnessError, match=match.format(p=str(path).replace(".", r"\."))):
        task.make_pairs(toy_tokenizer, None, 0)


def test_prompts_token_errors_name_file_and_line(tmp_path, toy_tokenizer):
    path = _write(
        tmp_path,
        [_pair("Mary gave a", "John gave a"), _pair("Mary gave a ring", "John gave a")],
    )
    task = load_task("prompts", path=str(path))
    with pytest.raises(HarnessError, match=rf"^{path}:2: clean has 5 tokens but corrupt has 4$"):
        task.batch(toy_tokenizer)
    path = _write(tmp_path, [_pair("Mary gave a", "John gave a", " Mary John")], "two.jsonl")
    with pytest.raises(HarnessError, match=rf"^{path}:1: answer ' Mary John' is 2 tokens"):
        load_task("prompts", path=str(path)).batch(toy_tokenizer)


def test_prompts_missing_file(tmp_path, toy_tokenizer):
    task = load_task("prompts", path=str(tmp_path / "nope.jsonl"))
    with pytest.raises(HarnessError, match=r"prompts file '.*nope\.jsonl' not found"):
        task.make_pairs(toy_tokenizer, None, 0)
    with pytest.raises(HarnessError, match="a directory"):
        load_task("prompts", path=str(tmp_path)).make_pairs(toy_tokenizer, None, 0)


def test_prompts_bad_json_message_is_one_line(tmp_path, toy_tokenizer):
    path = _write(tmp_path, ['{"clean": "a",\t"corrupt": }'])
    with pytest.raises(HarnessError) as err:
        load_task("prompts", path=str(path)).make_pairs(toy_tokenizer, None, 0)
    assert "\n" not in str(err.value) and str(err.value).startswith(f"{path}:1: bad JSON")
