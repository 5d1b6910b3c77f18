"""Tasks: the Task base class, the task registry, the helpers task generators share, and prompt
tokenization.

A task turns a tokenizer and a seed into clean/corrupt :class:`~harness.types.PromptPair` s. Each
standard task is a folder ``tasks/<slug>/`` (installed as ``harness.taskdefs.<slug>``) with its
README (source, citation, how corrupt prompts are made), its data and generator, and a config
``conf/task/<slug>.yaml``; the definitions import only from this package (the :class:`Task` base,
the sampling helpers below), never the other way round::

    name: ioi
    impl: harness.taskdefs.ioi:IOITask
    vocab: auto
    corruption: name_swap

:data:`TASKS` is filled lazily from those YAML files (only ``name`` and ``impl`` are read; nothing
is imported until a task is asked for). :func:`make_task` builds a task from a config mapping and
uses its ``impl``, so a user's own ``Task`` subclass works by import path.

:func:`tokenize_pairs` is the one place prompts become tensors: it checks that clean and corrupt
prompts have the same token length and that answers are single tokens, and right-pads both sides
identically (see :mod:`harness.types` for the batch conventions).
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from harness.config import POSITIVE_INT
from harness.errors import HarnessError
from harness.registry import Plugin, Registry, unknown_choice
from harness.types import PromptBatch, PromptPair, Token

DEFAULT_N = 32
"""Number of pairs a generated task makes when ``n`` is None."""

VOCABS: tuple[str, ...] = ("auto", "toy", "natural")

TOY_MARKER = "<toy>"
"""A vocabulary entry only the zoo's word-level tokenizer has (never in a prompt): a task's
``vocab: auto`` takes its toy version for a tokenizer that has it (:func:`tokenizer_is_toy`)."""


class Task(Plugin, ABC):
    """A source of clean/corrupt prompt pairs.

    ``Options``: a frozen dataclass of the task's options (the keys of its YAML file minus
    ``name`` and ``impl``; :mod:`harness.registry`), checked when the task is built; rules
    between options in :meth:`validate`. ``self.name``: the config's name.

    ``make_pairs(tokenizer, n, seed)`` must be deterministic given ``seed``: sampling uses only a
    private ``random.Random(seed)``, never global state. ``n=None`` means the task's default
    (:data:`DEFAULT_N` for generated tasks, every line for a file).
    """

    axis: ClassVar[str] = "task"
    toy_templates: ClassVar[tuple[str, ...]] = ()
    """The templates of the task's toy version: their words are in the zoo's vocabulary
    (:mod:`harness.models.toy_vocab`)."""
    toy_words: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """The word lists the toy version draws from, by name (in the zoo's vocabulary)."""

    @property
    def prepend_bos(self) -> bool:
        """The ``prepend_bos`` option (False for a task without it), passed to
        :func:`tokenize_pairs`."""
        return bool(getattr(self.options, "prepend_bos", False))

    @abstractmethod
    def make_pairs(self, tokenizer: Any, n: int | None, seed: int) -> list[PromptPair]:
        """Clean/corrupt pairs for ``tokenizer`` (``n=None``: the task's default count)."""

    def input_files(self) -> list[Path]:
        """The files the pairs are read from (a resumed job compares their content hashes).

        A generated task reads none: its pairs follow from its options, the seed and the
        tokenizer (all in the job's config and model fingerprint) and its code (covered by
        :data:`harness.COMPUTATION_VERSION`)."""
        return []

    def batch(self, tokenizer: Any, n: int | None = None, seed: int = 0) -> PromptBatch:
        """``make_pairs`` then :func:`tokenize_pairs` with this task's ``prepend_bos``."""
        pairs = self.make_pairs(tokenizer, n, seed)
        return tokenize_pairs(pairs, tokenizer, prepend_bos=self.prepend_bos)


# --------------------------------------------------------------------------------------------
# Registry

TASKS: Registry[Task] = Registry("task", "task", Task)
"""Task slug -> Task class, from ``conf/task/*.yaml`` (nothing imported until asked for)."""


def task_config(slug: str) -> dict[str, Any]:
    """The shipped config ``conf/task/<slug>.yaml`` as a dict (name, impl and option defaults)."""
    return TASKS.config(slug)


def make_task(task_cfg: Mapping[str, Any]) -> Task:
    """Build a task from its config: ``name``, ``impl`` (``package.module:Class``) and options.

    Without ``impl`` the class is looked up by ``name`` in :data:`TASKS`. An option the class
    does not declare is a :class:`HarnessError` naming it and the accepted ones.
    """
    return TASKS.build(task_cfg)


def load_task(slug: str, **overrides: Any) -> Task:
    """The shipped task ``slug`` with its YAML defaults, updated by ``overrides``."""
    cfg = task_config(slug)
    cfg.update(overrides)
    return make_task(cfg)


# --------------------------------------------------------------------------------------------
# Vocabulary detection


def tokenizer_is_toy(tokenizer: Any) -> bool:
    """True for the zoo's word-level tokenizer (the toy vocabulary), False otherwise.

    The zoo tokenizer's vocabulary holds the marker token :data:`TOY_MARKER` (which no real
    tokenizer has) and splits its own words, joined by spaces, into their ids. A tokenizer with
    the marker that does not is the zoo vocabulary wrapped in the wrong tokenizer class (e.g.
    ``AutoTokenizer`` rebuilding it as a BPE); that is an error, not a natural vocabulary.
    """
    vocab = tokenizer.get_vocab()
    if TOY_MARKER not in vocab:
        return False
    words = sorted((i, w) for w, i in vocab.items() if not (w.startswith("<") and w.endswith(">")))
    lines = [words[k : k + 16] for k in range(0, len(words), 16)]  # within any context length
    got = tokenizer([" ".join(w for _, w in line) for line in lines], add_special_tokens=False)
    if [list(ids) for ids in got["input_ids"]] != [[i for i, _ in line] for line in lines]:
        raise HarnessError(
            f"tokenizer {type(tokenizer).__name__} has the toy vocabulary but does not split "
            "words like the zoo tokenizer; load it with "
            "transformers.PreTrainedTokenizerFast.from_pretrained(folder)"
        )
    return True


def resolve_vocab(vocab: str, tokenizer: Any) -> str:
    """``"toy"`` or ``"natural"`` for a task's ``vocab`` option (``auto`` asks the tokenizer)."""
    if vocab not in VOCABS:
        raise HarnessError(unknown_choice("vocab", vocab, list(VOCABS)))
    is_toy = tokenizer_is_toy(tokenizer)
    if vocab == "auto":
        return "toy" if is_toy else "natural"
    if vocab == "toy" and not is_toy:
        raise HarnessError("vocab: toy needs the zoo's toy tokenizer; use vocab: auto or natural")
    return vocab


# --------------------------------------------------------------------------------------------
# Helpers for generated tasks (tasks/<slug>/generator.py): counts, options, vocabulary filters,
# seeded sampling

MAX_TRIES = 200
"""Resampling attempts per pair before a task gives up on a tokenizer."""


def count(n: int | None) -> int:
    """``n`` checked (None -> :data:`DEFAULT_N`)."""
    if n is None:
        return DEFAULT_N
    if not POSITIVE_INT.accepts(n):
        raise HarnessError(f"number of prompt pairs must be a positive integer, got {n!r}")
    return n


def choice(option: str, value: object, accepted: Iterable[str]) -> str:
    """``value`` if it is one of ``accepted``, else a one-line error naming the option."""
    accepted = list(accepted)
    if value not in accepted:
        raise HarnessError(unknown_choice(option, value, accepted))
    return str(value)


def n_tokens(tokenizer: Any, text: str) -> int:
    """Token count of ``text`` without special tokens."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def single_token_words(tokenizer: Any, words: Iterable[str], space: bool = True) -> list[str]:
    """The words that are one token (with a leading space when ``space``), order kept."""
    prefix = " " if space else ""
    return [w for w in words if n_tokens(tokenizer, prefix + w) == 1]


def need(words: list[str], k: int, what: str, tokenizer: Any) -> list[str]:
    """``words`` if it has at least ``k`` entries, else an error naming the tokenizer."""
    if len(words) < k:
        raise HarnessError(
            f"only {len(words)} {what} are single tokens for tokenizer "
            f"{type(tokenizer).__name__} (need {k})"
        )
    return words


def special_prefix(tokenizer: Any) -> list[int]:
    """The ids ``tokenizer(text)`` puts before the text's own tokens (e.g. ``[bos]``; often [])."""
    full = list(tokenizer("hello")["input_ids"])
    bare = list(tokenizer("hello", add_special_tokens=False)["input_ids"])
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start]
    return []


def same_length(tokenizer: Any, clean: str, corrupt: str) -> bool:
    """Whether two text prompts tokenize (with the tokenizer's defaults) to the same length."""
    return len(tokenizer(clean)["input_ids"]) == len(tokenizer(corrupt)["input_ids"])


def sample_pairs(
    n: int,
    seed: int,
    make_one: Callable[[random.Random], PromptPair],
    accept: Callable[[PromptPair], bool] | None = None,
    what: str = "task",
) -> list[PromptPair]:
    """``n`` pairs from ``make_one(rng)`` with one ``random.Random(seed)``.

    Pairs are made one after another, so the first ``k`` pairs for ``n >= k`` are the same.
    A pair ``accept`` rejects (e.g. clean and corrupt differ in token length for a natural
    tokenizer) is drawn again, up to :data:`MAX_TRIES` times.
    """
    rng = random.Random(seed)
    pairs: list[PromptPair] = []
    for i in range(n):
        for _ in range(MAX_TRIES):
            pair = make_one(rng)
            if accept is None or accept(pair):
                break
        else:
            raise HarnessError(
                f"{what}: no valid prompt pair after {MAX_TRIES} tries "
                "(clean and corrupt keep tokenizing to different lengths)"
            )
        pairs.append(
            PromptPair(pair.clean, pair.corrupt, pair.answers, pair.wrongs, f"{what}[{i}]")
        )
    return pairs


def fill(template: str, slots: dict[str, str]) -> str:
    """Replace ``[KEY]`` placeholders; ``slots`` maps a key to its text."""
    for key, value in slots.items():
        template = template.replace(f"[{key}]", value)
    return template


# --------------------------------------------------------------------------------------------
# Tokenization


def tokenize_pairs(
    pairs: Sequence[PromptPair], tokenizer: Any, prepend_bos: bool = False
) -> PromptBatch:
    """Tokenize and right-pad prompt pairs into a :class:`PromptBatch`.

    Text prompts are tokenized with ``tokenizer(text)["input_ids"]`` (the tokenizer's own
    special-token defaults); token-id lists are used as is. ``prepend_bos`` prepends
    ``tokenizer.bos_token_id`` where the prompt does not already start with it. Answers and wrong
    answers given as strings must tokenize (``add_special_tokens=False``) to exactly one token.
    Clean and corrupt prompts must have the same length; both are right-padded with
    ``pad_token_id`` (0 if the tokenizer has none). Every error is a one-line
    :class:`HarnessError` naming the pair's ``source``.
    """
    pairs = list(pairs)
    if not pairs:
        raise HarnessError("no prompt pairs to tokenize")
    vocab_size = len(tokenizer)
    bos = tokenizer.bos_token_id if prepend_bos else None
    if prepend_bos and bos is None:
        raise HarnessError(
            f"prepend_bos is set but tokenizer {type(tokenizer).__name__} has no BOS token"
        )
    cleans: list[list[int]] = []
    corrupts: list[list[int]] = []
    answers: list[list[int]] = []
    wrongs: list[list[int]] = []
    cache: dict[str, list[int]] = {}  # answer string -> its token ids
    unk = unknown_token_id(tokenizer)
    for i, pair in enumerate(pairs):
        src = pair.source or f"pair {i}"
        clean = _prompt_ids(pair.clean, tokenizer, vocab_size, src, "clean", unk)
        corrupt = _prompt_ids(pair.corrupt, tokenizer, vocab_size, src, "corrupt", unk)
        if bos is not None:
            clean = clean if clean[:1] == [bos] else [bos, *clean]
            corrupt = corrupt if corrupt[:1] == [bos] else [bos, *corrupt]
        if len(clean) != len(corrupt):
            raise HarnessError(
                f"{src}: clean has {len(clean)} tokens but corrupt has {len(corrupt)}"
            )
        if clean == corrupt:
            raise HarnessError(
                f"{src}: clean and corrupt prompts are the same tokens, so every patching effect "
                "is 0; make the corrupt prompt differ"
            )
        answer = _answer_ids(pair.answers, tokenizer, vocab_size, src, "answer", cache, unk)
        wrong = _answer_ids(pair.wrongs, tokenizer, vocab_size, src, "wrong answer", cache, unk)
        same = sorted(set(answer) & set(wrong))
        if same:
            raise HarnessError(
                f"{src}: answer and wrong answer share token {_token_text(tokenizer, same[0])} "
                "(the logit difference would be 0 by construction); make them differ"
            )
        cleans.append(clean)
        corrupts.append(corrupt)
        answers.append(answer)
        wrongs.append(wrong)

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    clean_t = _pad(cleans, pad)
    ans_t, ans_mask = _pad_mask(answers)
    wrong_t, wrong_mask = _pad_mask(wrongs)
    return PromptBatch(
        clean=clean_t,
        corrupt=_pad(corrupts, pad),
        last=torch.tensor([len(c) - 1 for c in cleans], dtype=torch.long),
        answers=ans_t,
        answer_mask=ans_mask,
        wrongs=wrong_t,
        wrong_mask=wrong_mask,
        texts=pairs,
    )


def unknown_token_id(tokenizer: Any) -> int | None:
    """The id text outside the vocabulary becomes (``<unk>`` of a word-level tokenizer), or
    None when the tokenizer has none or its unknown token doubles as BOS/EOS/padding (GPT-2's
    ``<|endoftext|>``: byte-level BPE never produces it for text)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    others = {getattr(tokenizer, f"{k}_token_id", None) for k in ("bos", "eos", "pad")}
    return None if unk is None or unk in others else int(unk)


def _unknown_words(text: str, tokenizer: Any, unk: int) -> list[str]:
    """The pieces of ``text`` that tokenize to ``unk`` (by the fast tokenizer's offsets)."""
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except (NotImplementedError, TypeError, ValueError):  # a slow tokenizer has no offsets
        return []
    offsets = enc.get("offset_mapping") or []
    return [text[a:b] for t, (a, b) in zip(enc["input_ids"], offsets, strict=False) if t == unk]


def _check_known(ids: list[int], text: str, tokenizer: Any, unk: int | None, where: str) -> None:
    """Refuse text that maps to the unknown token: it would be scored as if it were ``<unk>``."""
    if unk is None or unk not in ids:
        return
    words = _unknown_words(text, tokenizer, unk)
    named = f" ({', '.join(repr(w) for w in words[:3])})" if words else ""
    raise HarnessError(
        f"{where} has text outside the vocabulary of the model's tokenizer{named}, which would "
        f"become {_token_text(tokenizer, unk)}; use words of the vocabulary"
    )


def _token_text(tokenizer: Any, token_id: int) -> str:
    try:
        return repr(tokenizer.convert_ids_to_tokens(int(token_id)))
    except Exception:  # noqa: BLE001 - naming the token is best effort
        return f"id {token_id}"


def _prompt_ids(
    prompt: object, tokenizer: Any, vocab_size: int, src: str, what: str, unk: int | None = None
) -> list[int]:
    if isinstance(prompt, str):
        if not prompt.strip():
            raise HarnessError(f"{src}: {what} prompt is empty")
        ids = list(tokenizer(prompt)["input_ids"])
        _check_known(ids, prompt, tokenizer, unk, f"{src}: {what} prompt")
    elif isinstance(prompt, (list, tuple)) or (
        isinstance(prompt, torch.Tensor) and prompt.dim() == 1
    ):
        ids = [int(t) for t in prompt]
        if any(not 0 <= t < vocab_size for t in ids):
            raise HarnessError(
                f"{src}: {what} has token ids outside the vocabulary (0..{vocab_size - 1})"
            )
    else:
        raise HarnessError(
            f"{src}: {what} prompt must be text or a list of token ids, got {type(prompt).__name__}"
        )
    if not ids:
        raise HarnessError(f"{src}: {what} prompt has no tokens")
    return ids


def _answer_ids(
    tokens: Sequence[Token],
    tokenizer: Any,
    vocab_size: int,
    src: str,
    what: str,
    cache: dict[str, list[int]],
    unk: int | None = None,
) -> list[int]:
    if isinstance(tokens, (str, int)):  # a bare token instead of a tuple
        tokens = (tokens,)
    if not tokens:
        raise HarnessError(f"{src}: no {what}s")
    ids: list[int] = []
    for token in tokens:
        if isinstance(token, bool) or not isinstance(token, (str, int)):
            raise HarnessError(f"{src}: {what} {token!r} must be a string or a token id")
        if isinstance(token, int):
            if not 0 <= token < vocab_size:
                raise HarnessError(f"{src}: {what} id {token} is outside the vocabulary")
            ids.append(token)
            continue
        got = cache.get(token)
        if got is None:
            got = cache[token] = list(tokenizer(token, add_special_tokens=False)["input_ids"])
        if len(got) != 1:
            raise HarnessError(f"{src}: {what} {token!r} is {len(got)} tokens, must be exactly 1")
        _check_known(got, token, tokenizer, unk, f"{src}: {what}")
        ids.append(got[0])
    return ids


def _pad(rows: list[list[int]], pad: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def _pad_mask(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask
