"""The toy vocabulary: whole words shared by the toy tasks and the zoo's tokenizer.

The zoo models (``harness/models/zoo/``) use a word-level tokenizer over exactly these words, so
every toy prompt is a space-separated string of vocabulary words and every answer is one word.
The tokenizer contains the marker token :data:`TOY_MARKER`; :func:`harness.tasks.tokenizer_is_toy`
uses it (plus a check that every toy word is present) to choose a task's toy version.

Changing these lists changes the zoo tokenizer: retrain the zoo afterwards
(``python -m harness.models.train_zoo``). Words are appended in a fixed order, so ids are stable.
"""

from __future__ import annotations

from typing import Any

from harness.taskdefs.ioi.data import OBJECTS as IOI_OBJECTS
from harness.taskdefs.ioi.data import PLACES as IOI_PLACES

TOY_MARKER = "<toy>"
"""A vocabulary entry only the zoo tokenizer has; it never appears in a prompt."""

SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>", TOY_MARKER)
PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"

# --- IOI (Wang et al. 2022): names, places, objects and the words of the toy templates.
NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Anna", "Kate", "Paul", "Sarah", "James", "Emma",
    "David", "Lucy", "Mark", "Laura", "Peter", "Rose", "Sam", "Jack", "Lisa", "Henry", "Clara",
    "Oscar", "Nina",
)  # fmt: skip
PLACES, OBJECTS = IOI_PLACES, IOI_OBJECTS  # the natural IOI lists are all single toy words
IOI_TEMPLATES: tuple[str, ...] = (
    "Then , [B] and [A] went to the [PLACE] . [B] gave a [OBJECT] to [A]",
    "After [B] and [A] went to the [PLACE] , [B] gave a [OBJECT] to [A]",
    "When [B] and [A] got a [OBJECT] at the [PLACE] , [B] decided to give it to [A]",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE] . [B] gave it to [A]",
)
"""Toy BABA templates (a subset of the 15 IOI templates, punctuation split off as words)."""

# --- Greater-Than (Hanna et al. 2023): two-digit year tokens, nouns, template words.
DIGITS: tuple[str, ...] = tuple(f"{i:02d}" for i in range(100))
CENTURIES: tuple[str, ...] = tuple(str(c) for c in range(11, 18))
YEAR_NOUNS: tuple[str, ...] = (
    "war", "reign", "trip", "study", "siege", "project", "journey", "treaty", "plague", "voyage",
    "trial", "tour",
)  # fmt: skip
GREATER_THAN_TEMPLATES: dict[str, str] = {
    "canonical": "The [NOUN] lasted from the year [XX] [YY] to the year [XX]",
    "acdc": "The [NOUN] lasted from the year [XX] [YY] to [XX]",
}

# --- Factual recall: a memorised table of one-word landmarks and their cities.
LANDMARKS: dict[str, str] = {
    "Eiffel": "Paris", "Louvre": "Paris",
    "Colosseum": "Rome", "Vatican": "Rome",
    "Westminster": "London", "Thames": "London",
    "Reichstag": "Berlin", "Brandenburg": "Berlin",
    "Kremlin": "Moscow", "Bolshoi": "Moscow",
    "Acropolis": "Athens", "Parthenon": "Athens",
    "Prado": "Madrid", "Retiro": "Madrid",
    "Pyramids": "Cairo", "Sphinx": "Cairo",
    "Shibuya": "Tokyo", "Ginza": "Tokyo",
    "Hofburg": "Vienna", "Belvedere": "Vienna",
}  # fmt: skip
CITIES: tuple[str, ...] = tuple(dict.fromkeys(LANDMARKS.values()))
FACT_TEMPLATES: tuple[str, ...] = (
    "The [S] is in the city of",
    "The [S] is located in",
    "Tourists visit the [S] in",
)

# --- Induction: a pool of words used only by the induction task.
INDUCTION_POOL: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white", "brown", "pink",
    "grey", "gold", "cat", "dog", "fox", "owl", "cow", "pig", "hen", "bee", "ant", "elk", "yak",
    "emu", "apple", "pear", "plum", "lime", "kiwi", "fig", "date", "grape", "lemon", "mango",
    "melon", "peach", "sun", "moon", "star", "rain", "snow", "wind", "fire", "ice", "rock",
    "sand", "tree", "leaf",
)  # fmt: skip


def _template_words() -> list[str]:
    words: list[str] = []
    templates = (*IOI_TEMPLATES, *GREATER_THAN_TEMPLATES.values(), *FACT_TEMPLATES)
    for template in templates:
        words.extend(w for w in template.split() if not w.startswith("["))
    return words


def _build_words() -> tuple[str, ...]:
    ordered = [
        *SPECIALS,
        *_template_words(),
        *NAMES,
        *PLACES,
        *OBJECTS,
        *DIGITS,
        *YEAR_NOUNS,
        *LANDMARKS,
        *CITIES,
        *INDUCTION_POOL,
    ]
    return tuple(dict.fromkeys(ordered))  # drop repeats, keep first occurrence


WORDS: tuple[str, ...] = _build_words()
"""Every vocabulary entry, in id order (specials first)."""

VOCAB: dict[str, int] = {word: i for i, word in enumerate(WORDS)}


def build_toy_tokenizer(model_max_length: int = 64) -> Any:
    """The zoo's tokenizer: a ``tokenizers`` WordLevel model over :data:`WORDS`.

    Pre-tokenizer ``WhitespaceSplit``; ``tokenizer(text)`` prepends ``<bos>`` (like Llama), and
    ``add_special_tokens=False`` does not. Returned wrapped in
    ``transformers.PreTrainedTokenizerFast`` with bos/eos/pad/unk set; save it with
    ``save_pretrained`` beside a model.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(dict(VOCAB), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, VOCAB[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
    )


def check_vocab() -> None:
    """Sanity checks on the lists (run by the tests)."""
    groups = {
        "names": NAMES,
        "places": PLACES,
        "objects": OBJECTS,
        "digits": DIGITS,
        "year nouns": YEAR_NOUNS,
        "landmarks": tuple(LANDMARKS),
        "cities": CITIES,
        "induction pool": INDUCTION_POOL,
    }
    seen: dict[str, str] = {}
    for group, words in groups.items():
        for word in words:
            if word in seen and seen[word] != group:
                raise AssertionError(f"toy word {word!r} is in both {seen[word]} and {group}")
            if " " in word:
                raise AssertionError(f"toy word {word!r} contains a space")
            seen[word] = group
    template = set(_template_words())
    for word, group in seen.items():
        if word in template:
            raise AssertionError(f"toy {group} word {word!r} is also a template word")
