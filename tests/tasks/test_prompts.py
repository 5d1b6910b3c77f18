"""The prompts-file task (tasks/prompts/): reading, validation, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.tasks import load_task, make_task, task_config
from tests.helpers import GOOD, assert_one_line, write_lines
from tests.test_cli import local_args, run_cli

PROMPT_FILES = {
    "empty": ([], "empty.jsonl: empty file (no prompt pairs)"),
    "blank_lines_only": (["", "   "], "blank_lines_only.jsonl: empty file"),
    "bad_json": ([json.dumps(GOOD), "{not json"], "bad_json.jsonl:2: bad JSON"),
    "not_object": ([json.dumps(GOOD), "[1, 2]"], "not_object.jsonl:2: expected a JSON object"),
    "missing_field": (
        [json.dumps(GOOD), json.dumps({"clean": "w1", "corrupt": "w2", "answer": "w3"})],
        "missing_field.jsonl:2: missing field 'wrong' (needs clean, corrupt, answer, wrong)",
    ),
    "wrong_type": (
        [json.dumps({**GOOD, "answer": 9})],
        "wrong_type.jsonl:1: field 'answer' must be a string, got int",
    ),
    "length_mismatch": (
        [json.dumps(GOOD), json.dumps({**GOOD, "corrupt": "w5 w6 w7"})],
        "length_mismatch.jsonl:2: clean has 4 tokens but corrupt has 3",
    ),
    "multi_token_answer": (
        [json.dumps(GOOD), json.dumps({**GOOD, "answer": "w9 w10"})],
        "multi_token_answer.jsonl:2: answer 'w9 w10' is 2 tokens, must be exactly 1",
    ),
    "multi_token_wrong": (
        [json.dumps({**GOOD, "wrong": "w9 w10"})],
        "multi_token_wrong.jsonl:1: wrong answer 'w9 w10' is 2 tokens",
    ),
    "empty_prompt": (
        [json.dumps({**GOOD, "clean": " ", "corrupt": " "})],
        "empty_prompt.jsonl:1: clean prompt is empty",
    ),
    "not_utf8": (None, "not_utf8.jsonl: cannot read"),
}


@pytest.mark.parametrize("name", sorted(PROMPT_FILES))
def test_bad_prompts_file_is_one_line(name, tiny_gpt2, tmp_path, capsys):
    lines, message = PROMPT_FILES[name]
    path = tmp_path / f"{name}.jsonl"
    if lines is None:
        path.write_bytes(b'{"clean": "\xff\xfe"}\n')
    else:
        write_lines(path, lines)
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert_one_line(code, err, message)


def test_prompt_longer_than_context_is_one_line(tiny_gpt2, tmp_path, capsys):
    long = " ".join(["w1"] * 40)  # the tiny models have a 32-token context
    path = write_lines(
        tmp_path / "long.jsonl",
        [json.dumps({**GOOD, "clean": long, "corrupt": " ".join(["w2"] * 40)})],
    )
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert_one_line(code, err, "prompts are 40 tokens long", "context of 32 tokens")


def _write(tmp_path: Path, lines: list[str], name: str = "prompts.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _pair(clean: str, corrupt: str, answer: str = " Mary", wrong: str = " John") -> str:
    return json.dumps({"clean": clean, "corrupt": corrupt, "answer": answer, "wrong": wrong})


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
