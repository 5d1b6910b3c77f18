"""The prompts-file parser never fails with anything but a one-line HarnessError."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from harness.taskdefs.prompts.loader import FIELDS, read_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)
rows = (
    st.fixed_dictionaries({}, optional={key: st.text(max_size=20) | json_values for key in FIELDS})
    | json_values
)


def check(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(data)
        try:
            pairs = read_pairs(path)
        except HarnessError as err:
            message = str(err)
            assert message and "\n" not in message and "\r" not in message, repr(message)
            assert str(path) in message
            return
        assert pairs
        for pair in pairs:
            assert all(isinstance(x, str) for x in (pair.clean, pair.corrupt))
            assert pair.source.startswith(f"{path}:")


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(data):
    check(data)


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    check(text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.lists(rows, max_size=6), st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
def test_arbitrary_json_lines(objects, newline):
    check(newline.join(json.dumps(obj) for obj in objects).encode())


@FUZZ
@given(st.lists(st.fixed_dictionaries({k: st.text(max_size=10) for k in FIELDS}), max_size=5))
def test_valid_rows_parse(objects):
    data = "\n".join(json.dumps(obj) for obj in objects).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(data)
        if not objects:
            try:
                read_pairs(path)
            except HarnessError:
                return
            raise AssertionError("an empty file parsed")
        pairs = read_pairs(path)
        assert [p.clean for p in pairs] == [o["clean"] for o in objects]
        assert [p.answers for p in pairs] == [(o["answer"],) for o in objects]


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries({k: st.text(min_size=1, max_size=10) for k in FIELDS}),
        min_size=1,
        max_size=5,
    ),
    st.sampled_from(["\n", "\r\n"]),
)
def test_unescaped_unicode_rows_parse(objects, newline):
    """Raw (not \\u-escaped) text, including line separators such as U+2028 or U+0085 inside a
    JSON string, stays on its line; lines end at \\n or \\r\\n."""
    data = newline.join(json.dumps(obj, ensure_ascii=False) for obj in objects).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_bytes(data)
        pairs = read_pairs(path)
        assert [p.clean for p in pairs] == [o["clean"] for o in objects]
        assert [p.source for p in pairs] == [f"{path}:{i}" for i in range(1, len(objects) + 1)]


def test_line_separator_inside_a_string():
    check_rows = [{"clean": "a\u2028b", "corrupt": "c\x85d", "answer": "e", "wrong": "f"}]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pairs.jsonl"
        path.write_text(json.dumps(check_rows[0], ensure_ascii=False) + "\n", encoding="utf-8")
        (pair,) = read_pairs(path)
        assert pair.clean == "a\u2028b" and pair.corrupt == "c\x85d"
