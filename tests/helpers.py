"""Test helpers: contexts over tiny models with random prompt pairs, CLI arguments."""

from __future__ import annotations

from pathlib import Path

import torch

from harness.components import enumerate_components
from harness.context import AttributionContext
from harness.models.loader import load_model
from harness.types import PromptBatch


def random_batch(
    n: int,
    seq: int,
    seed: int,
    vocab: int = 64,
    lengths: list[int] | None = None,
    n_answers: int = 1,
) -> PromptBatch:
    """n random clean/corrupt pairs (ids 3..vocab-1); corrupt differs at about half the
    positions; optional per-row lengths (right-padded with 0)."""
    gen = torch.Generator().manual_seed(seed)
    clean = torch.randint(3, vocab, (n, seq), generator=gen)
    flip = torch.rand(n, seq, generator=gen) < 0.5
    corrupt = torch.where(flip, torch.randint(3, vocab, (n, seq), generator=gen), clean)
    clean[:, 0] = corrupt[:, 0] = 1  # BOS
    last = torch.full((n,), seq - 1)
    if lengths is not None:
        last = torch.tensor([length - 1 for length in lengths])
        for i, length in enumerate(lengths):
            clean[i, length:] = 0
            corrupt[i, length:] = 0
    answers = torch.randint(3, vocab, (n, n_answers), generator=gen)
    wrongs = torch.randint(3, vocab, (n, n_answers), generator=gen)
    mask = torch.ones(n, n_answers, dtype=torch.bool)
    return PromptBatch(clean, corrupt, last, answers, mask, wrongs, mask.clone())


def make_context(
    folder: Path,
    batch: PromptBatch,
    sites=("head",),
    positions="all",
    dtype="float64",
    metric="logit_diff",
    direction="noising",
    batch_size=64,
) -> tuple[AttributionContext, str]:
    loaded = load_model(
        {"name": folder.name, "source": "local", "path": str(folder)}, device="cpu", dtype=dtype
    )
    components = enumerate_components(loaded.adapter.shape, list(sites), positions, batch.seq_len)
    ctx = AttributionContext(
        model=loaded.adapter,
        batch=batch,
        components=components,
        metric=metric,
        direction=direction,
        batch_size=batch_size,
    )
    return ctx, loaded.fingerprint


def path_metric(ctx, component, source, base, t: float) -> float:
    """f_c(t) = L(base | a_c <- a_c + t (source_c - base_c)), only c moving (the path every
    second-order method and finite-difference check is about)."""
    from harness.components import hook_of, slice_index
    from harness.task_metric import per_prompt_metric

    index = (slice(None),) + slice_index(component)
    name = hook_of(component)

    def hook(act, hook):
        act = act.clone()
        act[index] = act[index] + t * (source[name][index] - base[name][index])
        return act

    logits = ctx.model.run(ctx.base_tokens, [(name, hook)])
    return per_prompt_metric(logits, ctx.batch, ctx.metric).mean().item()


def local_run_args(model: Path, pairs: Path, results: Path) -> list[str]:
    """CLI overrides of a run on a local model folder and a prompts file, writing to ``results``."""
    return [
        "model=local",
        f"model.path={model}",
        "task=prompts",
        f"task.path={pairs}",
        f"results_dir={results}",
    ]


REPO = Path(__file__).resolve().parents[1]


GOOD = {"clean": "w1 w2 w3 w4", "corrupt": "w5 w6 w7 w8", "answer": "w9", "wrong": "w10"}


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def assert_one_line(code: int, err: str, *needles: str) -> str:
    """Non-zero exit, exactly one line on stderr starting 'error: ', containing every needle."""
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def quadratic_path_context(tmp_path: Path, monkeypatch):
    """A float64 context whose every component's path f_c(t) is exactly quadratic in t: the
    heads and attention outputs of the last layer of a tiny Llama with a linear MLP activation
    (its gated MLP down(gate(x) * up(x)) is quadratic in x) and linear norms (a huge RMSNorm
    epsilon with weights scaled by sqrt(eps), computed in float64 here since HF's RMSNorm rounds
    through float32). Downstream of that attention there is one quadratic MLP and linear maps,
    so f(1) - f(0) = f'(0) + f''(0) / 2 while AtP misses the curvature."""
    from transformers import LlamaForCausalLM
    from transformers.models.llama import modeling_llama

    from tests.conftest import build_tiny_model

    def float64_rms_norm(self, x):
        return (
            self.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        )

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", float64_rms_norm)
    folder = build_tiny_model(tmp_path / "q", "llama", hidden_act="linear", rms_norm_eps=1e20)
    model = LlamaForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.mul_(1e10)
    model.save_pretrained(folder)
    ctx, _ = make_context(folder, random_batch(3, 6, seed=7), sites=("head", "attn_out"))
    ctx.components = [c for c in ctx.components if c.layer == 2]
    return ctx
