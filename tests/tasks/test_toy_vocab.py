"""The toy vocabulary (harness/models/toy_vocab.py, assembled from the tasks' toy lists) and
telling a toy tokenizer from a natural one."""

from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.models import toy_vocab
from harness.tasks import load_task, tokenizer_is_toy


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
