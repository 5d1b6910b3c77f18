"""Ground truth: computed once, cached under a content key, recomputed when corrupted."""

from __future__ import annotations

import json

import torch

from harness.ground_truth import compute_ground_truth, ground_truth
from tests.helpers import make_context, random_batch


def test_cache_hit_miss_and_corruption(tiny_gpt2, tmp_path):
    ctx, fingerprint = make_context(tiny_gpt2, random_batch(4, 6, seed=7))
    first = ground_truth(ctx, fingerprint, tmp_path)
    assert not first.cached
    second = ground_truth(ctx, fingerprint, tmp_path)
    assert second.cached and second.key == first.key
    assert torch.equal(first.effects, second.effects)

    entry = tmp_path / "truth" / f"{first.key}.json"
    data = json.loads(entry.read_text())
    data["payload"]["effects"][0] += 1.0  # silent corruption: the content hash no longer matches
    entry.write_text(json.dumps(data))
    third = ground_truth(ctx, fingerprint, tmp_path)
    assert not third.cached and torch.equal(third.effects, first.effects)

    entry.write_text(entry.read_text()[:50])  # truncated file
    fourth = ground_truth(ctx, fingerprint, tmp_path)
    assert not fourth.cached and torch.equal(fourth.effects, first.effects)


def test_key_depends_on_what_truth_depends_on(tiny_gpt2, tmp_path):
    ctx, fingerprint = make_context(tiny_gpt2, random_batch(4, 6, seed=7))
    key = ground_truth(ctx, fingerprint, tmp_path).key
    other_prompts, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=8))
    other_metric, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), metric="logprob")
    other_direction, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), direction="denoising")
    other_sites, _ = make_context(tiny_gpt2, random_batch(4, 6, seed=7), sites=("mlp_out",))
    keys = {
        ground_truth(c, fingerprint, tmp_path).key
        for c in (other_prompts, other_metric, other_direction, other_sites)
    }
    assert key not in keys and len(keys) == 4
    assert ground_truth(ctx, "another-model", tmp_path).key != key


def test_noising_and_denoising_truths_differ_and_metrics_swap(tiny_gpt2):
    batch = random_batch(4, 6, seed=9)
    noising, _ = make_context(tiny_gpt2, batch, direction="noising")
    denoising, _ = make_context(tiny_gpt2, batch, direction="denoising")
    effects_n, base_n, source_n = compute_ground_truth(noising)
    effects_d, base_d, source_d = compute_ground_truth(denoising)
    assert base_n == source_d and source_n == base_d
    assert not torch.allclose(effects_n, effects_d)
