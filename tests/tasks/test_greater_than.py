"""The greater-than task (tasks/greater_than/)."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.tasks import load_task


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
