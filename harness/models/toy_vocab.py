"""The zoo's vocabulary: the words of the toy tasks, and the word-level tokenizer over them.

The zoo models (``harness/models/zoo/``) use a word-level tokenizer over exactly these words, so
every toy prompt is a space-separated string of vocabulary words and every answer is one word.
Each task declares its own toy templates and word lists (``Task.toy_templates``,
``Task.toy_words``, in ``tasks/<slug>/data.py``); this module, part of the zoo's recipe
(:mod:`harness.models.train_zoo`), puts them together in id order: the specials (with the marker
:data:`harness.tasks.TOY_MARKER`), the words of every task's templates, then every task's word
lists, tasks in :data:`VOCAB_TASKS` order. Model loading never imports it: a loaded zoo model
brings its saved tokenizer.

Changing a list changes the zoo tokenizer: retrain the zoo afterwards
(``python -m harness.models.train_zoo``). A new toy task goes at the end of
:data:`VOCAB_TASKS`, so the ids of the existing words stay.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from harness.tasks import TOY_MARKER

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>", TOY_MARKER)
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"

VOCAB_TASKS: tuple[str, ...] = ("ioi", "greater_than", "factual_recall", "induction")
"""The tasks whose toy words the zoo knows, in the order their words were given ids."""


def _toy_tasks() -> dict[str, Any]:
    """Slug -> Task class, for each of :data:`VOCAB_TASKS`."""
    from harness.tasks import TASKS

    return {slug: TASKS.get(slug) for slug in VOCAB_TASKS}


def template_words() -> list[str]:
    """The words of every toy template (placeholders ``[X]`` left out), in order."""
    return [
        word
        for task in _toy_tasks().values()
        for template in task.toy_templates
        for word in template.split()
        if not word.startswith("[")
    ]


@cache
def words() -> tuple[str, ...]:
    """Every vocabulary entry, in id order (specials first), each once."""
    tasks = _toy_tasks().values()
    lists = [word for task in tasks for group in task.toy_words.values() for word in group]
    return tuple(dict.fromkeys([*SPECIALS, *template_words(), *lists]))


def vocab() -> dict[str, int]:
    """Word -> id."""
    return {word: i for i, word in enumerate(words())}


def build_toy_tokenizer(model_max_length: int = 64) -> Any:
    """The zoo's tokenizer: a ``tokenizers`` WordLevel model over :func:`words`.

    Pre-tokenizer ``WhitespaceSplit``; ``tokenizer(text)`` prepends ``<bos>`` (like Llama), and
    ``add_special_tokens=False`` does not. Returned wrapped in
    ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad/unk set; save it with
    ``save_pretrained`` beside a model.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    ids = vocab()
    tok = Tokenizer(models.WordLevel(ids, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, ids[BOS])]
    )
    special = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "unk_token": UNK}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, model_max_length=model_max_length, **special
    )


def check_vocab() -> None:
    """Sanity checks on the tasks' toy lists (run by the tests): no word in two lists (of one
    task or two), no spaces, no list word that is also a template word."""
    seen: dict[str, str] = {}
    for slug, task in _toy_tasks().items():
        for group, group_words in task.toy_words.items():
            label = f"{slug} {group}"
            for word in group_words:
                if word in seen and seen[word] != label:
                    raise AssertionError(f"toy word {word!r} is in both {seen[word]} and {label}")
                if " " in word:
                    raise AssertionError(f"toy word {word!r} contains a space")
                seen[word] = label
    template = set(template_words())
    for word, label in seen.items():
        if word in template:
            raise AssertionError(f"toy {label} word {word!r} is also a template word")
