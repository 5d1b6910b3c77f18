"""Tests for harness/job.py: the config hash that identifies a job's results."""

from __future__ import annotations

import json

import pytest

from harness.job import HASH_NEUTRAL_DEFAULTS, config_hash
from tests.helpers import REPO

PAPER_ZOO = REPO / "results" / "paper_zoo" / "multirun" / "paper_zoo"


def with_option(config: dict, dotted: str, value: object) -> dict:
    """A copy of ``config`` with the (dotted: nested) key set to ``value``."""
    out = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def with_neutral_defaults(config: dict) -> dict:
    """``config`` with every neutral default set whose group it has (records older than the
    ``truth`` group have none)."""
    for key, neutral in HASH_NEUTRAL_DEFAULTS.items():
        parent = key.rpartition(".")[0]
        if not parent or parent in config:
            config = with_option(config, key, neutral)
    return config


def test_a_new_option_at_its_neutral_default_leaves_the_hash_alone():
    config = {"model": {"name": "toy-gpt2"}, "seed": 0, "diagnostics": True, "truth": {}}
    for key, neutral in HASH_NEUTRAL_DEFAULTS.items():
        assert config_hash(with_option(config, key, neutral)) == config_hash(config)
    assert config_hash(with_option(config, "decomposition", True)) != config_hash(config)
    changed = with_option(config, "truth.method_on_sample", False)
    assert config_hash(changed) != config_hash(config)


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
    assert config_hash(with_neutral_defaults(config)) == summary["config_hash"]


def test_committed_sampled_records_keep_their_hash_with_method_on_sample_at_default():
    """The committed truth.sample records (AtP, whose cost is flat) were computed on every
    component, as ``truth.method_on_sample: true`` computes AtP now: the same hash."""
    path = REPO / "results" / "site_types" / "multirun" / "site_types" / "0_toy-gpt2_ioi_atp"
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    config = summary["config"]
    assert config["truth"]["sample"] and "method_on_sample" not in config["truth"]
    new = with_option(config, "truth.method_on_sample", True)
    assert config_hash(new) == config_hash(config) == summary["config_hash"]
