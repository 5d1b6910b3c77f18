"""Multi-step HVP: one step is the HVP correction; the error against activation patching falls
as the number of steps grows; nothing moves when base == source."""

from __future__ import annotations

import json

import pytest
import torch

from harness.errors import HarnessError
from harness.methods.base import make_method
from harness.models.loader import ZOO_DIR
from tests.helpers import make_context, random_batch

STEPS = (4, 16, 64)


def errors_by_steps(ctx, cfg: dict, truth: torch.Tensor, steps=STEPS) -> list[float]:
    """Largest absolute error against ``truth`` (activation patching) for each step count."""
    out = []
    for k in steps:
        estimates = make_method({**cfg, "steps": k}).estimate(ctx).estimates
        out.append((estimates - truth).abs().max().item())
    return out


def truth_of(ctx) -> torch.Tensor:
    return make_method({"name": "actpatch"}).estimate(ctx).estimates


def test_one_step_is_the_hvp_correction(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=21), sites=("head", "resid_pre"))
    one = make_method({"name": "ms_hvp", "steps": 1}).estimate(ctx).estimates
    hvp = make_method({"name": "hvp"}).estimate(ctx).estimates
    torch.testing.assert_close(one, hvp, rtol=1e-12, atol=1e-14)


def test_error_falls_with_steps(tiny_gpt2):
    ctx, _ = make_context(tiny_gpt2, random_batch(3, 6, seed=22), sites=("head",), batch_size=1024)
    ctx.components = [c for c in ctx.components if c.layer == 0]  # most network downstream
    errors = errors_by_steps(ctx, {"name": "ms_hvp"}, truth_of(ctx))
    print("ms_hvp max |error| at steps", dict(zip(STEPS, errors, strict=True)))
    assert errors[0] > 1e-6, "AtP-like error too small for a meaningful check"
    # Each step errs by O(h^3), K steps by O(K^-2): 16x fewer steps, far more than 4x less error.
    assert errors[1] < errors[0] / 4 and errors[2] < errors[1] / 4


@pytest.mark.skipif(
    not (ZOO_DIR / "toy-gpt2" / "config.json").exists(), reason="zoo model not trained yet"
)
def test_error_falls_with_steps_on_zoo_model():
    folder = ZOO_DIR / "toy-gpt2"
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    batch = random_batch(3, 8, seed=23, vocab=min(vocab, 64))
    ctx, _ = make_context(folder, batch, sites=("head",), batch_size=1024)
    ctx.components = [c for c in ctx.components if c.layer == 0]
    errors = errors_by_steps(ctx, {"name": "ms_hvp"}, truth_of(ctx))
    print("zoo ms_hvp max |error| at steps", dict(zip(STEPS, errors, strict=True)))
    assert errors[1] < errors[0] and errors[2] < errors[1]


def test_patching_own_activations_gives_zero(tiny_gpt2):
    batch = random_batch(3, 6, seed=24)
    batch.corrupt = batch.clean.clone()
    ctx, _ = make_context(tiny_gpt2, batch, sites=("head", "mlp_out"), batch_size=1024)
    assert make_method({"name": "ms_hvp", "steps": 2}).estimate(ctx).estimates.abs().max() == 0


@pytest.mark.parametrize("steps", [0, -3, 2.5, "8", True])
def test_bad_steps_is_a_one_line_error(steps):
    with pytest.raises(HarnessError) as info:
        make_method({"name": "ms_hvp", "steps": steps})
    message = str(info.value)
    assert "\n" not in message and repr(steps) in message and "integer >= 1" in message
