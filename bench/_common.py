"""Shared pieces of the benchmark scripts: machine info, model and prompt set-up, timing."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch


def machine_info(device: str) -> str:
    """One line: CPU model, cores, torch version, device (GPU name on CUDA)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    dev = device
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = f"{device} ({torch.cuda.get_device_name(0)})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"machine: {cpu}; {cores} cores usable; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); device {dev}; load average {load:.2f}"
    )


def model_args(parser: argparse.ArgumentParser, layers: int | None = None) -> None:
    """Options choosing the model: a shipped hub architecture with random weights (shrinkable),
    or a zoo/local model by config name."""
    parser.add_argument("--model", default="gpt2", help="hub slug with a shipped architecture")
    parser.add_argument("--zoo", default=None, help="a zoo model slug instead (trained weights)")
    parser.add_argument("--layers", type=int, default=layers, help="override the layer count")
    parser.add_argument("--d-model", type=int, default=None, help="override the width")
    parser.add_argument("--heads", type=int, default=None, help="override the head count")
    parser.add_argument("--vocab", type=int, default=None, help="override the vocabulary size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)


_KEYS = {
    "gpt2": ("n_layer", "n_embd", "n_head", None),
    "gpt_neox": ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size"),
}
_DEFAULT_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")


def load(args: argparse.Namespace):
    """LoadedModel for the parsed options."""
    from harness.models.loader import load_model
    from harness.models.random_init import arch_config

    if args.zoo:
        cfg = {"name": args.zoo, "source": "zoo"}
        return load_model(cfg, device=args.device, dtype=args.dtype, seed=args.seed)
    base = arch_config(args.model)
    layer_key, width_key, head_key, mlp_key = _KEYS.get(base["model_type"], _DEFAULT_KEYS)
    overrides: dict[str, Any] = {}
    if args.layers:
        overrides[layer_key] = args.layers
    if args.d_model:
        overrides[width_key] = args.d_model
        if mlp_key:
            overrides[mlp_key] = 4 * args.d_model
    if args.heads:
        overrides[head_key] = args.heads
    if args.vocab:
        overrides["vocab_size"] = args.vocab
    if (args.d_model or args.heads) and "head_dim" in base:
        heads = args.heads or base[head_key]
        overrides["head_dim"] = (args.d_model or base[width_key]) // heads
        if "num_key_value_heads" in base:
            overrides["num_key_value_heads"] = heads
    cfg = {"name": args.model, "source": "hub", "random_init": True, "arch_overrides": overrides}
    return load_model(cfg, device=args.device, dtype=args.dtype, seed=args.seed)


def setup_benchmark(args: argparse.Namespace, detail: str):
    """Load the benchmark model, print the machine and model lines, and draw the random prompt
    batch; returns (loaded model, batch). ``detail`` ends the model line."""
    loaded = load(args)
    device = loaded.adapter.device
    shape = loaded.adapter.shape
    print(machine_info(str(device)))
    print(
        f"model: {args.zoo or args.model} (random_init={not args.zoo}) {shape.n_layers} layers, "
        f"d_model {shape.d_model}, {shape.n_heads} heads, {args.dtype}; {args.prompts} prompts x "
        f"{args.seq} tokens; {detail}"
    )
    vocab = min(len(loaded.tokenizer), 250)
    return loaded, random_batch(args.prompts, args.seq, args.seed, vocab, device)


def random_batch(n: int, seq: int, seed: int, vocab: int, device: torch.device):
    """n random clean/corrupt pairs of ``seq`` tokens (corrupt differs at about half the
    positions, BOS id 1 first), single-token answers; all on ``device``."""
    from harness.types import PromptBatch

    gen = torch.Generator().manual_seed(seed)
    low = 3
    clean = torch.randint(low, vocab, (n, seq), generator=gen)
    flip = torch.rand(n, seq, generator=gen) < 0.5
    corrupt = torch.where(flip, torch.randint(low, vocab, (n, seq), generator=gen), clean)
    clean[:, 0] = corrupt[:, 0] = 1
    last = torch.full((n,), seq - 1)
    answers = torch.randint(low, vocab, (n, 1), generator=gen)
    wrongs = torch.randint(low, vocab, (n, 1), generator=gen)
    mask = torch.ones(n, 1, dtype=torch.bool)
    batch = PromptBatch(clean, corrupt, last, answers, mask, wrongs, mask.clone())
    return batch.to(device)


def context(loaded, batch, sites, positions, batch_size=64, metric="logit_diff"):
    """An AttributionContext over ``batch`` (noising) for ``sites`` x ``positions``."""
    from harness.components import enumerate_components
    from harness.context import AttributionContext

    components = enumerate_components(loaded.adapter.shape, sites, positions, batch.seq_len)
    return AttributionContext(
        model=loaded.adapter,
        batch=batch,
        components=components,
        metric=metric,
        batch_size=batch_size,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int = 1) -> tuple[float, Any]:
    """(minimum seconds over ``repeats`` calls, the last call's result)."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), result


def median_time(fn: Callable[[], Any], device: torch.device, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def zoo_or_exit(names: list[str] | None = None) -> list[str]:
    """The zoo models present (``harness/models/zoo/toy-*``); prints one line and exits 0 when
    there are none."""
    from harness.models.loader import zoo_models

    present = [m for m in zoo_models() if m.startswith("toy-")]
    if names:
        present = [m for m in present if m in names]
    if not present:
        print("no zoo models under harness/models/zoo (toy-*): train them first (train_zoo)")
        raise SystemExit(0)
    return present
