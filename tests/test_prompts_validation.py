"""Prompt pairs that would be scored silently wrong are refused in one line naming file and line
(issue 11, items 8, 9 and 12): text outside the vocabulary (it would become ``<unk>``),
answer == wrong, clean == corrupt, a key given twice in one JSONL line, and ``n_prompts`` larger
than the file."""

from __future__ import annotations

import json

import pytest

from tests.helpers import GOOD, assert_one_line, write_lines
from tests.test_cli import local_args, run_cli

BAD_PAIRS = {
    "oov_clean": (
        [json.dumps(GOOD), json.dumps({**GOOD, "clean": "w1 zebra w3 w4"})],
        "oov_clean.jsonl:2: clean prompt has text outside the vocabulary",
        "('zebra')",
    ),
    "oov_corrupt": (
        [json.dumps({**GOOD, "corrupt": "w5 w6 w7 okapi"})],
        "oov_corrupt.jsonl:1: corrupt prompt has text outside the vocabulary",
        "'<unk>'",
    ),
    "oov_answer": (
        [json.dumps({**GOOD, "answer": "giraffe"})],
        "oov_answer.jsonl:1: answer has text outside the vocabulary",
        "('giraffe')",
    ),
    "oov_wrong": (
        [json.dumps(GOOD), "", json.dumps({**GOOD, "wrong": "lemur"})],
        "oov_wrong.jsonl:3: wrong answer has text outside the vocabulary",
        "('lemur')",
    ),
    "answer_is_wrong": (
        [json.dumps({**GOOD, "wrong": GOOD["answer"]})],
        "answer_is_wrong.jsonl:1: answer and wrong answer share token 'w9'",
        "0 by construction",
    ),
    "clean_is_corrupt": (
        [json.dumps(GOOD), json.dumps({**GOOD, "corrupt": GOOD["clean"]})],
        "clean_is_corrupt.jsonl:2: clean and corrupt prompts are the same tokens",
        "every patching effect is 0",
    ),
    "clean_is_corrupt_up_to_spaces": (
        [json.dumps({**GOOD, "corrupt": "  w1  w2 w3 w4 "})],
        "clean_is_corrupt_up_to_spaces.jsonl:1: clean and corrupt prompts are the same tokens",
        "",
    ),
    "duplicate_key": (
        [json.dumps(GOOD), json.dumps(GOOD)[:-1] + ', "answer": "w11"}'],
        "duplicate_key.jsonl:2: duplicate key 'answer' in one JSON object",
        "",
    ),
    "duplicate_nested_key": (
        [json.dumps(GOOD)[:-1] + ', "meta": {"a": 1, "a": 2}}'],
        "duplicate_nested_key.jsonl:1: duplicate key 'a'",
        "",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PAIRS))
def test_degenerate_or_unknown_pairs_are_refused(name, tiny_gpt2, tmp_path, capsys):
    lines, message, detail = BAD_PAIRS[name]
    path = write_lines(tmp_path / f"{name}.jsonl", lines)
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert_one_line(code, err, message, detail)
    assert not list((tmp_path / "results").rglob("summary.json"))


def test_n_prompts_beyond_the_file_is_refused(tiny_gpt2, tmp_path, capsys):
    path = write_lines(tmp_path / "three.jsonl", [json.dumps(GOOD)] * 3)
    code, _, err = run_cli([*local_args(tiny_gpt2, path, tmp_path), "n_prompts=5"], capsys)
    assert_one_line(code, err, "n_prompts=5 but prompts file", "three.jsonl' has only 3 pairs")


def test_unknown_token_of_a_tokenizer_without_one_is_not_checked():
    """Byte-level BPE (GPT-2) has no unknown token of its own: its unk is <|endoftext|>, which
    doubles as BOS/EOS, so nothing is refused on its account."""
    from harness.tasks import unknown_token_id
    from tests.conftest import word_tokenizer

    class ByteLevel:
        unk_token_id = bos_token_id = eos_token_id = 50256
        pad_token_id = None

    assert unknown_token_id(ByteLevel()) is None
    assert unknown_token_id(word_tokenizer()) == 2
