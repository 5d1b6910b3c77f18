"""Component enumeration and ids."""

from __future__ import annotations

import pytest

from harness.adapter import ModelShape
from harness.components import enumerate_components
from harness.errors import HarnessError
from harness.types import Component

SHAPE = ModelShape(n_layers=2, n_heads=3, d_head=4, d_model=12, n_ctx=16)


def test_counts_and_order():
    heads = enumerate_components(SHAPE, ["head"], "all", 5)
    assert len(heads) == 6 and heads[0] == Component("head", 0, 0, -1)
    each = enumerate_components(SHAPE, ["mlp_out", "resid_pre", "head"], "each", 5)
    assert len(each) == 2 * (3 + 1 + 1) * 5
    assert [c.site for c in each[:7:5]] == ["resid_pre", "head"]  # forward order in a block
    assert each == sorted(
        each,
        key=lambda c: (
            c.layer,
            ["resid_pre", "head", "attn_out", "mlp_out"].index(c.site),
            c.head,
            c.pos,
        ),
    )


def test_ids():
    assert Component("head", 1, 3).id == "head.L1.H3"
    assert Component("resid_pre", 0, -1, 5).id == "resid_pre.L0.P5"


@pytest.mark.parametrize(
    "sites, positions, message",
    [
        (["heads"], "all", "unknown site 'heads' \\(did you mean 'head'\\?\\); accepted: head"),
        (["head"], "every", "unknown positions mode 'every'.*accepted: all, each"),
        ([], "all", "components.sites is empty"),
    ],
)
def test_bad_input_is_one_line(sites, positions, message):
    with pytest.raises(HarnessError, match=message):
        enumerate_components(SHAPE, sites, positions, 5)
