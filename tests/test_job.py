"""Tests for harness/job.py: the config hash that identifies a job's results."""

from __future__ import annotations

import json

import pytest

from harness.job import HASH_NEUTRAL_DEFAULTS, config_hash
from tests.helpers import REPO

PAPER_ZOO = REPO / "results" / "paper_zoo" / "multirun" / "paper_zoo"


def test_a_new_option_at_its_neutral_default_leaves_the_hash_alone():
    config = {"model": {"name": "toy-gpt2"}, "seed": 0, "diagnostics": True}
    for key, neutral in HASH_NEUTRAL_DEFAULTS.items():
        assert "." not in key  # a top-level key: set it on the config itself
        assert config_hash({**config, key: neutral}) == config_hash(config)
    assert config_hash({**config, "decomposition": False}) == config_hash(config)
    assert config_hash({**config, "decomposition": True}) != config_hash(config)


def test_a_tier_and_its_boolean_spelling_are_one_job():
    config = {"model": {"name": "toy-gpt2"}, "seed": 0}
    for tier, old in (("exact", True), ("off", False)):
        assert config_hash({**config, "diagnostics": tier}) == config_hash(
            {**config, "diagnostics": old}
        )
    cheap = config_hash({**config, "diagnostics": "cheap"})
    assert cheap not in {config_hash({**config, "diagnostics": v}) for v in (True, False)}


@pytest.mark.parametrize(
    "run", ["0_toy-gpt2_ioi_atp", "1_toy-gpt2_ioi_hvp", "4_toy-gpt2_ioi_ig_fast"]
)
def test_committed_records_keep_their_hash_with_the_newer_options_at_default(run):
    """A committed record (made before ``decomposition`` existed) has the hash its config gets
    now, with ``decomposition: false`` added: a resume finds it instead of recomputing it."""
    summary = json.loads((PAPER_ZOO / run / "summary.json").read_text(encoding="utf-8"))
    config = summary["config"]
    assert "decomposition" not in config
    assert config_hash(config) == summary["config_hash"]
    assert config_hash({**config, **HASH_NEUTRAL_DEFAULTS}) == summary["config_hash"]
