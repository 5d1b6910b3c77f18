"""Induction word lists (data)."""

from __future__ import annotations

# --- The toy version (the zoo's word-level vocabulary, harness/models/toy_vocab.py): the words a
# random sequence is drawn from.
TOY_POOL: tuple[str, ...] = (
    "red", "blue", "green", "yellow", "purple", "orange", "black", "white", "brown", "pink",
    "grey", "gold", "cat", "dog", "fox", "owl", "cow", "pig", "hen", "bee", "ant", "elk", "yak",
    "emu", "apple", "pear", "plum", "lime", "kiwi", "fig", "date", "grape", "lemon", "mango",
    "melon", "peach", "sun", "moon", "star", "rain", "snow", "wind", "fire", "ice", "rock",
    "sand", "tree", "leaf",
)  # fmt: skip
