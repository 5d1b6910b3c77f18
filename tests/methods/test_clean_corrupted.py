"""Clean-corrupted: the mean of AtP (the base run's gradient) and the source run's gradient
times the same d; AtP denoising takes that source gradient with d's sign flipped."""

from __future__ import annotations

import torch

from harness.methods.base import make_method
from tests.helpers import make_context, random_batch


def test_is_the_mean_of_atp_noising_and_minus_atp_denoising(tiny_gpt2):
    batch = random_batch(5, 6, seed=41)
    sites = ("head", "mlp_out", "resid_pre")
    noising, _ = make_context(tiny_gpt2, batch, sites=sites, batch_size=2)  # chunked
    denoising, _ = make_context(tiny_gpt2, batch, sites=sites, direction="denoising")
    out = make_method({"name": "clean_corrupted"}).estimate(noising)
    atp = make_method({"name": "atp"}).estimate(noising).estimates
    reverse = make_method({"name": "atp"}).estimate(denoising).estimates
    torch.testing.assert_close(out.columns["first_order"], atp, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.columns["first_order_source"], -reverse, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(out.estimates, (atp - reverse) / 2, rtol=1e-9, atol=1e-12)
    assert (atp + reverse).abs().max() > 1e-4  # the two gradients differ: the check has teeth
