"""Robustness (issue 6): bad input is one line, numerical faults fail the job (and only the job),
an interrupted run leaves nothing half-written and resumes, runs are deterministic, and models
and results are loaded and stored without pickle or remote code.

Bad-input cases already covered by tests/test_cli.py (unknown model/task/method/site/metric/
direction/dtype/device, model.path, hub offline, missing prompts file, n_prompts, batch_size,
flag.fraction, device=cuda, unwritable results) are not repeated here.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import local_run_args
from tests.test_cli import local_args, run_cli

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


# --------------------------------------------------------------------------------------------
# 1. Bad input: prompts files (each error names file and line), method options, model folders

PROMPT_FILES = {
    "empty": ([], "empty.jsonl: empty file (no prompt pairs)"),
    "blank_lines_only": (["", "   "], "blank_lines_only.jsonl: empty file"),
    "bad_json": ([json.dumps(GOOD), "{not json"], "bad_json.jsonl:2: bad JSON"),
    "not_object": ([json.dumps(GOOD), "[1, 2]"], "not_object.jsonl:2: expected a JSON object"),
    "missing_field": (
        [json.dumps(GOOD), json.dumps({"clean": "w1", "corrupt": "w2", "answer": "w3"})],
        "missing_field.jsonl:2: missing field 'wrong' (needs clean, corrupt, answer, wrong)",
    ),
    "wrong_type": (
        [json.dumps({**GOOD, "answer": 9})],
        "wrong_type.jsonl:1: field 'answer' must be a string, got int",
    ),
    "length_mismatch": (
        [json.dumps(GOOD), json.dumps({**GOOD, "corrupt": "w5 w6 w7"})],
        "length_mismatch.jsonl:2: clean has 4 tokens but corrupt has 3",
    ),
    "multi_token_answer": (
        [json.dumps(GOOD), json.dumps({**GOOD, "answer": "w9 w10"})],
        "multi_token_answer.jsonl:2: answer 'w9 w10' is 2 tokens, must be exactly 1",
    ),
    "multi_token_wrong": (
        [json.dumps({**GOOD, "wrong": "w9 w10"})],
        "multi_token_wrong.jsonl:1: wrong answer 'w9 w10' is 2 tokens",
    ),
    "empty_prompt": (
        [json.dumps({**GOOD, "clean": " ", "corrupt": " "})],
        "empty_prompt.jsonl:1: clean prompt is empty",
    ),
    "not_utf8": (None, "not_utf8.jsonl: cannot read"),
}


@pytest.mark.parametrize("name", sorted(PROMPT_FILES))
def test_bad_prompts_file_is_one_line(name, tiny_gpt2, tmp_path, capsys):
    lines, message = PROMPT_FILES[name]
    path = tmp_path / f"{name}.jsonl"
    if lines is None:
        path.write_bytes(b'{"clean": "\xff\xfe"}\n')
    else:
        write_lines(path, lines)
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert_one_line(code, err, message)


def test_prompt_longer_than_context_is_one_line(tiny_gpt2, tmp_path, capsys):
    long = " ".join(["w1"] * 40)  # the tiny models have a 32-token context
    path = write_lines(
        tmp_path / "long.jsonl",
        [json.dumps({**GOOD, "clean": long, "corrupt": " ".join(["w2"] * 40)})],
    )
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert_one_line(code, err, "prompts are 40 tokens long", "context of 32 tokens")


BAD_OPTIONS = [
    (["method=ms_hvp", "method.steps=0"], "method.steps must be an integer >= 1, got 0"),
    (["method=ig", "method.steps=-1"], "method.steps must be an integer >= 1, got -1"),
    (
        ["method=ig", "method.steps=1", "method.integration=riemann_left"],
        "method.steps must be an integer >= 2, got 1",
    ),
    (["method=integrated_hessians", "method.steps=0"], "must be an integer from 1 to 200, got 0"),
    (["method=integrated_hessians", "method.steps=100000"], "from 1 to 200, got 100000"),
    (["method=sff", "method.flag_fraction=1.5"], "method.flag_fraction must be in [0, 1], got 1.5"),
    (["method=sff", "method.flag_fraction=-0.1"], "must be in [0, 1], got -0.1"),
    (["method=sff", "method.steps=0"], "method.steps must be an integer >= 1, got 0"),
    (["method=sff", "method.fix=magic"], "unknown sff fix 'magic'"),
    (["flag.fraction=0"], "flag.fraction must be in (0, 1], got 0"),
    (["n_prompts=-2"], "n_prompts must be an integer >= 1, got -2"),
    (["batch_size=0"], "batch_size must be an integer >= 1, got 0"),
    (["topk=0"], "topk must be an integer >= 1, got 0"),
    (["method=ig", "method.integration=simpson"], "simpson"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=lambda a: str(a)[:50])
def test_bad_method_and_run_options_are_one_line(args, message, tiny_gpt2, tmp_path, capsys):
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli([*local_args(tiny_gpt2, pairs, tmp_path), *args], capsys)
    line = assert_one_line(code, err, message)
    assert "accepted" in line or "must be" in line, line
    assert not list((tmp_path / "results").rglob("summary.json"))


def test_pickle_weights_only_folder_is_refused(tiny_gpt2, tmp_path, capsys):
    """A folder with pytorch_model.bin (pickle) and no safetensors is refused before loading."""
    folder = tmp_path / "bin_only"
    shutil.copytree(tiny_gpt2, folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(folder, pairs, tmp_path), capsys)
    assert_one_line(code, err, str(folder), "no *.safetensors weights (only safetensors")


CUSTOM_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("remote code ran")
from transformers import PretrainedConfig
class CustomConfig(PretrainedConfig):
    model_type = "custom-robustness"
"""


def test_remote_code_runs_only_with_trust_remote_code(tiny_gpt2, tmp_path, capsys):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_gpt2, folder)
    marker = tmp_path / "EXECUTED"
    config = json.loads((folder / "config.json").read_text())
    config.update(
        architectures=["CustomForCausalLM"],
        model_type="custom-robustness",
        auto_map={
            "AutoConfig": "configuration_custom.CustomConfig",
            "AutoModelForCausalLM": "configuration_custom.CustomConfig",
        },
    )
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "configuration_custom.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    args = local_args(folder, pairs, tmp_path)

    code, _, err = run_cli(args, capsys)
    assert_one_line(code, err, "needs its own Python code", "model.trust_remote_code=true")
    assert not marker.exists()  # the folder's code never ran

    code, _, _ = run_cli([*args, "model.trust_remote_code=true"], capsys)
    assert code != 0  # not a supported architecture, but the flag reached transformers
    assert marker.exists()


# --------------------------------------------------------------------------------------------
# 2. Numerical faults


def _nan_weights_model(src: Path, dst: Path) -> Path:
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    name = next(k for k in weights if k.endswith("ln_f.weight"))
    weights[name][0] = float("nan")
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def test_nan_model_fails_the_job_and_caches_nothing(tiny_gpt2, tmp_path, capsys):
    folder = _nan_weights_model(tiny_gpt2, tmp_path / "nan_model")
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(folder, pairs, tmp_path), capsys)
    assert_one_line(code, err, "the clean run's logit_diff metric is nan", "non-finite logits")
    failures = list((tmp_path / "results" / "runs").rglob("failure.json"))
    assert len(failures) == 1
    assert "metric is nan" in json.loads(failures[0].read_text())["error"]
    assert not list((tmp_path / "results").rglob("summary.json"))
    cache = tmp_path / "results" / "cache"
    memos = {"file_hashes", "weights_checked"}  # facts about the input files, not results
    assert not [p for p in cache.rglob("*.json") if p.parent.name not in memos]  # no NaN truth


def _inf_estimates(monkeypatch, index: int = 3) -> None:
    from harness.methods.atp import AttributionPatching

    original = AttributionPatching.estimate

    def estimate(self, ctx):
        output = original(self, ctx)
        output.estimates[index] = float("inf")
        return output

    monkeypatch.setattr(AttributionPatching, "estimate", estimate)


def test_infinite_estimate_names_method_and_component(tiny_gpt2, tmp_path, capsys, monkeypatch):
    _inf_estimates(monkeypatch, index=3)
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    code, _, err = run_cli(local_args(tiny_gpt2, pairs, tmp_path), capsys)
    line = assert_one_line(code, err, "method 'atp' gave a non-finite estimate (inf)")
    # components: head sites, positions=all -> the 4th is layer 0, head 3
    assert "component head.L0.H3" in line or "component " in line, line
    failure = next((tmp_path / "results" / "runs").rglob("failure.json"))
    assert json.loads(failure.read_text())["error"] == line.removeprefix("error: ")
    assert not list(failure.parent.glob("summary.json"))


def test_numerical_fault_in_a_multirun_fails_only_that_job(
    tiny_gpt2, tmp_path, capsys, monkeypatch
):
    _inf_estimates(monkeypatch)
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    sweep = tmp_path / "results" / "multirun" / "sweep"
    args = [
        "-m",
        *local_args(tiny_gpt2, pairs, tmp_path),
        "circuits=false",
        f"hydra.sweep.dir={sweep}",
    ]
    code, _, err = run_cli([*args, "method=atp,actpatch"], capsys)
    assert code == 1
    assert "Traceback" not in err
    assert "method 'atp' gave a non-finite estimate" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 job(s) failed: ")
    jobs = {p.name.split("_")[-1]: p for p in sweep.iterdir() if p.is_dir()}
    assert (jobs["atp"] / "failure.json").is_file() and not (jobs["atp"] / "summary.json").exists()
    assert json.loads((jobs["actpatch"] / "summary.json").read_text())["status"] == "ok"


# --------------------------------------------------------------------------------------------
# 3. Interruption: SIGTERM mid-run, then resume; corrupted cache entries

SLOW_ARGS = [
    "diagnostics=false",
    "circuits=false",
    "dtype=float64",
    "method=ms_hvp",  # the method runs for a while after the ground truth is cached
    "method.steps=2",
]


def _pairs(tmp_path: Path) -> Path:
    rows = [
        GOOD,
        {"clean": "w3 w2 w5 w4", "corrupt": "w8 w9 w6 w7", "answer": "w13", "wrong": "w12"},
    ]
    return write_lines(tmp_path / "pairs.jsonl", [json.dumps(r) for r in rows])


def _leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_sigterm_leaves_nothing_half_written_and_the_rerun_resumes(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *SLOW_ARGS]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", *args, f"results_dir={killed_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    truth_dir = killed_dir / "cache" / "truth"
    deadline = time.monotonic() + 300
    while not list(truth_dir.glob("*.json")) and proc.poll() is None:
        assert time.monotonic() < deadline, "no ground-truth cache entry after 300 s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)  # the method (ms_hvp, many steps) is running now
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (proc.returncode, out, err)
    assert err.strip().splitlines() == [
        "error: interrupted by SIGTERM; finished results and cache entries are kept, re-run "
        "the same command to resume"
    ]
    assert not _leftovers(killed_dir)
    assert not list(killed_dir.rglob("summary.json")) and not list(killed_dir.rglob("*.parquet"))
    failure = next(killed_dir.rglob("failure.json"))
    assert json.loads(failure.read_text())["error"] == "interrupted by SIGTERM"
    assert not (killed_dir / "index").exists()  # the killed job is not a finished run

    # the re-run resumes: same command, the cached ground truth is used, the job completes
    code, _, err = run_cli([*args, f"results_dir={killed_dir}"], capsys)
    assert code == 0, err
    resumed = next(killed_dir.rglob("summary.json"))
    assert json.loads(resumed.read_text())["truth_cached"] is True

    # ... and gives what an uninterrupted run gives, exactly
    code, _, err = run_cli([*args, f"results_dir={clean_dir}"], capsys)
    assert code == 0, err
    fresh = next(clean_dir.rglob("summary.json"))
    assert json.loads(fresh.read_text())["truth_cached"] is False
    a = pd.read_parquet(resumed.parent / "estimates.parquet")
    b = pd.read_parquet(fresh.parent / "estimates.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert not _leftovers(tmp_path)


def test_atomic_write_leaves_no_temp_file_when_interrupted(tmp_path, monkeypatch):
    from harness import storage

    target = tmp_path / "out" / "summary.json"
    storage.atomic_write_json(target, {"a": 1})

    def interrupted(*_args):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(storage.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "empty", "not_json", "swap_payload"])
def test_damaged_cache_entry_is_recomputed(damage, tiny_gpt2, tmp_path):
    import torch

    from harness.ground_truth import ground_truth
    from tests.helpers import make_context, random_batch

    ctx, fingerprint = make_context(tiny_gpt2, random_batch(3, 5, seed=3))
    first = ground_truth(ctx, fingerprint, tmp_path)
    entry = tmp_path / "truth" / f"{first.key}.json"
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":  # a digit of an effect changes: the content hash catches it
        data = bytearray(raw)
        i = raw.index(b'"effects"') + raw[raw.index(b'"effects"') :].index(b"0.") + 3
        data[i] = ord("1") if data[i] != ord("1") else ord("2")
        entry.write_bytes(bytes(data))
    elif damage == "empty":
        entry.write_bytes(b"")
    elif damage == "not_json":
        entry.write_bytes(b"\x00\x01\x02garbage")
    else:  # a valid entry of other components under this key
        data = json.loads(raw)
        data["payload"]["components"] = data["payload"]["components"][::-1]
        from harness.storage import content_hash

        data["sha256"] = content_hash(data["payload"])
        entry.write_text(json.dumps(data))
    again = ground_truth(ctx, fingerprint, tmp_path)
    assert not again.cached and torch.equal(again.effects, first.effects)
    third = ground_truth(ctx, fingerprint, tmp_path)  # the recomputed entry was rewritten
    assert third.cached and torch.equal(third.effects, first.effects)


# --------------------------------------------------------------------------------------------
# 4. Determinism


def test_same_config_and_seed_give_identical_estimates(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    args = [
        *local_args(tiny_gpt2, pairs, tmp_path),
        "dtype=float64",
        "components.sites=[head,mlp_out]",
        "method=ig",
        "method.steps=2",
        "circuits=false",
    ]
    frames = []
    for name in ("a", "b"):
        code, _, err = run_cli([*args, f"results_dir={tmp_path / name}"], capsys)
        assert code == 0, err
        frames.append(pd.read_parquet(next((tmp_path / name).rglob("estimates.parquet"))))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


SAMPLER = """
import json, sys
from harness.models.toy_vocab import build_toy_tokenizer
from harness.tasks import load_task
tok = build_toy_tokenizer()
out = {}
for slug in ("ioi", "induction", "greater_than", "factual_recall"):
    for seed in (0, 1):
        pairs = load_task(slug).make_pairs(tok, 6, seed)
        out[f"{slug}/{seed}"] = [[p.clean, p.corrupt, p.answers, p.wrongs] for p in pairs]
json.dump(out, sys.stdout)
"""


def test_prompt_sampling_depends_only_on_the_seed():
    """This process and one with another hash seed sample the same prompts for the same seed;
    another seed samples other prompts."""
    hash_seed = "4242" if os.environ.get("PYTHONHASHSEED") != "4242" else "7"
    proc = subprocess.run(
        [sys.executable, "-c", SAMPLER],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    here: dict = {}
    exec(SAMPLER.replace("json.dump(out, sys.stdout)", ""), here)
    results = [json.loads(json.dumps(here["out"])), json.loads(proc.stdout)]
    assert results[0] == results[1]
    for slug in ("ioi", "induction", "greater_than", "factual_recall"):
        assert results[0][f"{slug}/0"] != results[0][f"{slug}/1"], slug


# --------------------------------------------------------------------------------------------
# 5. Safe storage: no pickle in results or caches

PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".bin", ".npy", ".npz", ".joblib"}


def test_results_and_caches_hold_no_pickle(tiny_gpt2, tmp_path, capsys):
    pairs = _pairs(tmp_path)
    code, _, err = run_cli([*local_args(tiny_gpt2, pairs, tmp_path), "diagnostics=true"], capsys)
    assert code == 0, err
    files = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files) and any(p.suffix == ".json" for p in files)
    for path in files:
        assert path.suffix not in PICKLE_SUFFIXES, path
        head = path.read_bytes()[:2]
        assert not (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")), path
        if path.suffix == ".parquet":
            assert path.read_bytes()[:4] == b"PAR1"
        elif path.suffix == ".json":
            json.loads(path.read_text())


# --------------------------------------------------------------------------------------------
# 6. Scale: prompts in chunks of batch_size, memory flat in the number of prompts


def test_chunked_atp_and_truth_equal_one_chunk(tiny_gpt2):
    """AtP and the ground truth hold one prompt chunk at a time; the result does not depend on
    the chunking (float64, up to rounding)."""
    import torch

    from harness.ground_truth import compute_ground_truth
    from harness.methods.atp import AttributionPatching
    from tests.helpers import make_context, random_batch

    batch = random_batch(5, 5, seed=11)
    whole, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",), batch_size=64)
    chunked, _ = make_context(tiny_gpt2, batch, sites=("mlp_out",), batch_size=2)
    atp = AttributionPatching()
    torch.testing.assert_close(
        atp.estimate(chunked).estimates, atp.estimate(whole).estimates, rtol=1e-10, atol=1e-12
    )
    effects_w, base_w, source_w = compute_ground_truth(whole)
    effects_c, base_c, source_c = compute_ground_truth(chunked)
    torch.testing.assert_close(effects_c, effects_w.cpu(), rtol=1e-10, atol=1e-12)
    assert base_c == pytest.approx(base_w, rel=1e-12)
    assert source_c == pytest.approx(source_w, rel=1e-12)
    assert chunked.cost.n_forward > whole.cost.n_forward  # it did run in chunks


PEAK_RSS = """
import resource, sys
sys.argv = ["harness", *sys.argv[1:]]
from harness.run import main
try:
    main()
finally:
    print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _prompts_file(path: Path, n: int, length: int = 28) -> Path:
    import random

    rng = random.Random(0)
    with path.open("w") as handle:
        for _ in range(n):
            clean = [f"w{rng.randrange(61)}" for _ in range(length)]
            corrupt = [f"w{rng.randrange(61)}" if rng.random() < 0.5 else w for w in clean]
            answer, wrong = rng.sample(range(61), 2)  # distinct: a degenerate pair is refused
            row = {
                "clean": " ".join(clean),
                "corrupt": " ".join(corrupt),
                "answer": f"w{answer}",
                "wrong": f"w{wrong}",
            }
            handle.write(json.dumps(row) + "\n")
    return path


def _peak_rss_mb(tiny_gpt2: Path, pairs: Path, results: Path) -> tuple[float, dict]:
    args = [
        *local_run_args(tiny_gpt2, pairs, results),
        "method=atp",
        "diagnostics=false",
        "circuits=false",
        "components.sites=[resid_pre]",
        "batch_size=500",
    ]
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = float(proc.stdout.split("PEAK_RSS_MB")[-1].split()[0])
    summary = json.loads(next(results.rglob("summary.json")).read_text())
    return peak, summary


@pytest.mark.slow
def test_ten_thousand_prompts_run_with_flat_memory(tiny_gpt2, tmp_path):
    """10,000 prompts of 28 tokens complete, and peak RSS grows by far less than holding every
    prompt's activations would take (atp on resid_pre: source, base, gradient and product
    [n, 28, 32] float32 per layer, 3 layers: about 43 MB per 1,000 prompts, 390 MB for 9,000)."""
    small, s_small = _peak_rss_mb(
        tiny_gpt2, _prompts_file(tmp_path / "p1k.jsonl", 1000), tmp_path / "r1k"
    )
    large, s_large = _peak_rss_mb(
        tiny_gpt2, _prompts_file(tmp_path / "p10k.jsonl", 10_000), tmp_path / "r10k"
    )
    assert s_small["n_prompts"] == 1000 and s_large["n_prompts"] == 10_000
    assert s_large["status"] == "ok"
    print(f"peak RSS: 1,000 prompts {small:.0f} MB, 10,000 prompts {large:.0f} MB")
    assert large - small < 150, (small, large)
