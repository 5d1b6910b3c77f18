"""The CLI's estimate, truth and diagnostics columns against an independent implementation.

The reference below uses plain Hugging Face transformers with PyTorch hooks (no TransformerLens):
a head's output ``hook_z`` is the input of the attention output projection (``c_proj``,
``dense`` or ``o_proj``), reshaped [batch, pos, head, d_head]. Activation patching replaces one
head's slice there; AtP multiplies the gradient of the metric with respect to that input by the
difference of the corrupt and clean inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_module
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from harness.run import run_one
from tests.conftest import FAMILIES


def out_projections(model) -> list[torch.nn.Module]:
    for layer_list, attn, proj in (
        ("transformer.h", "attn", "c_proj"),
        ("gpt_neox.layers", "attention", "dense"),
        ("model.layers", "self_attn", "o_proj"),
    ):
        try:
            layers = model.get_submodule(layer_list)
        except AttributeError:
            continue
        return [getattr(getattr(layer, attn), proj) for layer in layers]
    raise AssertionError(f"unknown architecture {type(model).__name__}")


class Reference:
    """Independent float64 AtP, AtP + 1/2 f''(0), the trapezoid (f'(0) + f'(1)) / 2, the cubic
    Hermite rule and activation patching of attention heads (noising). f'(t) and f''(t) are the
    derivatives of t -> metric(clean run with the head's input to the output projection moved
    by t * (corrupt - clean)), by double autograd in t."""

    def __init__(self, folder: Path, pairs: list[dict]):
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, torch_dtype=torch.float64, attn_implementation="eager"
        ).eval()
        tok = PreTrainedTokenizerFast.from_pretrained(folder)  # AutoTokenizer swaps qwen2's
        self.clean = torch.tensor([tok(p["clean"])["input_ids"] for p in pairs])
        self.corrupt = torch.tensor([tok(p["corrupt"])["input_ids"] for p in pairs])
        one = lambda s: tok(s, add_special_tokens=False)["input_ids"][0]  # noqa: E731
        self.answer = torch.tensor([one(p["answer"]) for p in pairs])
        self.wrong = torch.tensor([one(p["wrong"]) for p in pairs])
        self.proj = out_projections(self.model)
        self.n_heads = self.model.config.num_attention_heads

    def metric(self, logits):
        last = logits[:, -1]
        rows = torch.arange(len(last))
        return (last[rows, self.answer] - last[rows, self.wrong]).mean()

    def inputs(self, tokens):
        store = {}
        handles = [
            p.register_forward_pre_hook(
                lambda mod, args, i=i: store.__setitem__(i, args[0].detach())
            )
            for i, p in enumerate(self.proj)
        ]
        with torch.no_grad():
            logits = self.model(tokens).logits
        for h in handles:
            h.remove()
        return logits, store

    def copy_metrics(self, logits, copies):
        """[copies]: the metric of each of ``copies`` stacked copies of the prompts."""
        last = logits[:, -1]
        rows = torch.arange(len(last))
        diff = last[rows, self.answer.repeat(copies)] - last[rows, self.wrong.repeat(copies)]
        return diff.view(copies, -1).mean(dim=1)

    def head_directions(self, values):
        """[heads, n, seq, D]: copy h is ``values`` [n, seq, D] in head h's slice, 0 elsewhere."""
        d = values.shape[-1] // self.n_heads
        out = torch.zeros(self.n_heads, *values.shape, dtype=values.dtype)
        for head in range(self.n_heads):
            out[head, ..., head * d : (head + 1) * d] = values[..., head * d : (head + 1) * d]
        return out

    def patched(self, layer, source):
        """[heads]: the metric with head h's output-projection input from ``source``, one copy
        of the prompt batch per head, all in one forward."""
        heads = self.n_heads
        mask = self.head_directions(torch.ones_like(source)).reshape(-1, *source.shape[1:])
        values = source.repeat(heads, 1, 1)
        handle = self.proj[layer].register_forward_pre_hook(
            lambda m, a: (a[0] * (1 - mask) + values * mask,)  # exactly source in head h's slice
        )
        with torch.no_grad():
            values = self.copy_metrics(self.model(self.clean.repeat(heads, 1)).logits, heads)
        handle.remove()
        return values

    def path_derivatives(self, layer, delta, at: float):
        """([heads], [heads]): f_h'(at) and f_h''(at) for every head h of ``layer`` by double
        autograd in t_h (copy h depends on t_h alone, so the second backward of the summed
        first derivatives gives each)."""
        heads = self.n_heads
        v = self.head_directions(delta)
        t = torch.full((heads,), at, dtype=torch.float64, requires_grad=True)
        shape = (heads,) + (1,) * delta.dim()
        handle = self.proj[layer].register_forward_pre_hook(
            lambda m, a: (a[0] + (t.view(shape) * v).reshape(a[0].shape),)
        )
        with torch.enable_grad():
            values = self.copy_metrics(self.model(self.clean.repeat(heads, 1)).logits, heads)
            (first,) = torch.autograd.grad(values.sum(), t, create_graph=True)
            (second,) = torch.autograd.grad(first.sum(), t)
        handle.remove()
        return first.tolist(), second.tolist()

    def run(self, layers: list[int] | None = None):
        """Truth and estimates for every head of ``layers`` (default: all layers)."""
        clean_logits, clean_in = self.inputs(self.clean)
        _, corrupt_in = self.inputs(self.corrupt)
        base = self.metric(clean_logits)
        eps = {}

        def pre(mod, args, i):
            eps[i] = torch.zeros_like(args[0], requires_grad=True)
            return (args[0] + eps[i],)

        handles = [
            p.register_forward_pre_hook(lambda m, a, i=i: pre(m, a, i))
            for i, p in enumerate(self.proj)
        ]
        with torch.enable_grad():
            grads = torch.autograd.grad(
                self.metric(self.model(self.clean).logits), [eps[i] for i in range(len(self.proj))]
            )
        for h in handles:
            h.remove()
        truth, atp, hvp, trapezoid, hermite = {}, {}, {}, {}, {}
        for layer in range(len(self.proj)) if layers is None else layers:
            d = clean_in[layer].shape[-1] // self.n_heads
            delta = corrupt_in[layer] - clean_in[layer]
            patched = self.patched(layer, corrupt_in[layer])
            _, seconds = self.path_derivatives(layer, delta, at=0.0)
            ends, _ = self.path_derivatives(layer, delta, at=1.0)
            for head in range(self.n_heads):
                key, cut = (layer, head), slice(head * d, (head + 1) * d)
                first = (grads[layer][..., cut] * delta[..., cut]).sum().item()
                atp[key], truth[key] = first, (patched[head] - base).item()
                hvp[key] = first + 0.5 * seconds[head]
                trapezoid[key] = (first + ends[head]) / 2
                hermite[key] = hvp[key] + (ends[head] - first - seconds[head]) / 3
        methods = {"atp": atp, "hvp": hvp, "trapezoid": trapezoid, "hermite": hermite}
        return truth, methods


def write_pairs(path: Path, n: int, seed: int) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    words = lambda: " ".join(f"w{i}" for i in torch.randint(0, 61, (7,), generator=gen).tolist())  # noqa: E731
    pairs = [
        {"clean": words(), "corrupt": words(), "answer": "w3", "wrong": "w4"} for _ in range(n)
    ]
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return pairs


def run_cli(tiny_models, tmp_path: Path, family: str, method: str, *extra: str):
    """One run of ``method`` on 6 random prompts in float64 (``extra``: more overrides): its
    pairs and estimates frame."""
    pairs = write_pairs(tmp_path / "pairs.jsonl", 6, seed=11)
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "model=local",
                f"model.path={tiny_models[family]}",
                "task=prompts",
                f"task.path={tmp_path / 'pairs.jsonl'}",
                f"method={method}",
                *(["method.mode=exact"] if method == "hvp" else []),
                "components.sites=[head]",
                "components.positions=all",
                "dtype=float64",
                "logger=none",
                f"results_dir={tmp_path}",
                *extra,
            ],
        )
    run_one(cfg, tmp_path / "run")
    return pairs, pd.read_parquet(tmp_path / "run" / "estimates.parquet")


@pytest.mark.parametrize(
    "family,method,sample",
    [(family, "atp", None) for family in FAMILIES]
    + [("gpt2", "hvp", None), ("llama", "hvp", None), ("gpt2", "hvp", 5)]
    + [("gpt2", "trapezoid", None), ("llama", "trapezoid", 5), ("qwen2", "hermite", None)],
)
def test_cli_matches_independent_float64_implementation(
    tiny_models, tmp_path, family, method, sample
):
    """Every estimate and truth within 1e-6 of the reference; under ``truth.sample`` a method
    whose cost grows with the heads estimates the sampled ones only (NaN elsewhere), to the same
    tolerance."""
    extra = [f"truth.sample={sample}"] if sample else []
    pairs, frame = run_cli(tiny_models, tmp_path, family, method, "diagnostics=off", *extra)
    truth, estimates = Reference(tiny_models[family], pairs).run()
    expected = estimates[method]
    assert len(frame) == len(truth)
    scale = max(abs(v) for v in truth.values())
    assert scale > 1e-3
    assert frame["sampled"].sum() == (sample or len(truth))
    assert frame["estimate"].notna().tolist() == frame["sampled"].tolist()
    for row in frame[frame["sampled"]].itertuples():
        assert row.truth == pytest.approx(truth[(row.layer, row.head)], abs=1e-6 * max(1, scale))
        assert row.estimate == pytest.approx(
            expected[(row.layer, row.head)], abs=1e-6 * max(1, scale)
        )
    if method != "atp":  # the correction is not negligible here, so the check has teeth
        atp = estimates["atp"]
        assert max(abs(expected[k] - atp[k]) for k in atp) > 1e-4 * scale


@pytest.mark.parametrize("tier", ["cheap", "exact"])
def test_every_diagnostics_tier_matches_independent_float64_implementation(
    tiny_models, tmp_path, tier
):
    """The tier's |AtP| score, its labels and (exact) the HVP interval's centre against the
    reference's AtP, HVP and truth; the estimates and truth are the ones checked above."""
    labels = ["unreliable.abs=0.001", "unreliable.rel=0.1"]  # the toy's effects are small
    pairs, frame = run_cli(tiny_models, tmp_path, "gpt2", "atp", f"diagnostics={tier}", *labels)
    truth, estimates = Reference(tiny_models["gpt2"], pairs).run()
    scale = max(abs(v) for v in truth.values())
    tol = 1e-6 * max(1, scale)
    for row in frame.itertuples():
        key = (row.layer, row.head)
        assert row.estimate == pytest.approx(estimates["atp"][key], abs=tol)
        assert row.reliability_abs_atp == pytest.approx(abs(estimates["atp"][key]), abs=tol)
        error = abs(estimates["atp"][key] - truth[key])
        assert row.unreliable == (error > 0.001 + 0.1 * abs(truth[key]))
        assert row.unreliable_rel == (error > 0.1 * abs(truth[key]))
        if tier == "exact":
            centre = (row.hvp_bound_lo + row.hvp_bound_hi) / 2
            assert centre == pytest.approx(estimates["hvp"][key], abs=tol)
    assert frame["unreliable_rel"].sum() > frame["unreliable"].sum() > 0  # both labels bite
    assert ("hvp_bound_lo" in frame) == (tier == "exact")
