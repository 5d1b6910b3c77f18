"""Resume (issue 11): a stored result is reused only when it was computed from the same config,
the same inputs (the prompts file's content, the model's files, ``COMPUTATION_VERSION``) and
its files are intact; otherwise the job is computed again and the index points to the new run.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import harness
from harness.models.loader import fingerprint_folder
from tests.test_cli import local_args, run_cli
from tests.test_report import write_pairs

FAST = ["circuits=false"]


def run(args: list[str], capsys) -> str:
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    return out


def index_entry(results: Path) -> dict:
    (path,) = (results / "index").glob("*.json")
    return json.loads(path.read_text())["payload"]


def summaries(results: Path) -> list[dict]:
    paths = sorted(results.rglob("summary.json"), key=lambda p: p.stat().st_mtime_ns)
    return [json.loads(p.read_text()) for p in paths]


def test_editing_the_prompts_file_recomputes(tiny_gpt2, tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3, seed=0)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(args, capsys)
    write_pairs(pairs, n=3, seed=1)  # other pairs under the same path: the same config
    out = run(args, capsys)
    assert "skipped" not in out and "the prompts file changed" in out, out
    first, second = summaries(results)
    assert first["config_hash"] == second["config_hash"]
    assert first["inputs"]["prompts"] != second["inputs"]["prompts"]
    assert first["clean_metric"] != second["clean_metric"]  # the new prompts' numbers
    stored = Path(index_entry(results)["run_dir"]) / "summary.json"
    assert json.loads(stored.read_text())["run_id"] == second["run_id"]
    assert "skipped" in run(args, capsys)  # unchanged now: reused


def test_a_recomputed_run_supersedes_the_old_one_in_reports(tiny_gpt2, tmp_path, capsys):
    from harness.report import collect

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3, seed=0)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(args, capsys)
    write_pairs(pairs, n=3, seed=1)
    run(args, capsys)
    first, second = summaries(results)
    collected = collect(results)
    assert collected.results["run_id"].tolist() == [second["run_id"]]  # the stale one is left out
    assert any("superseded by" in why for _, why in collected.skipped)
    assert len(list(results.rglob("summary.json"))) == 2  # nothing written is lost


def _edit_weights(folder: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if k.endswith("ln_f.weight"))
    weights[name] = weights[name] * 2  # the same size on disk, other numbers
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def _edit_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["layer_norm_epsilon"] = 0.5
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _edit_tokenizer(folder: Path) -> None:
    data = json.loads((folder / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    vocab["w3"], vocab["w4"] = vocab["w4"], vocab["w3"]  # two words swap ids
    (folder / "tokenizer.json").write_text(json.dumps(data))


EDITS = {"weights": _edit_weights, "config": _edit_config, "tokenizer": _edit_tokenizer}


@pytest.mark.parametrize("edit", list(EDITS))
def test_editing_the_model_files_recomputes(edit, tiny_gpt2, tmp_path, capsys):
    model = shutil.copytree(tiny_gpt2, tmp_path / "model")
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = [*local_args(model, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(args, capsys)
    EDITS[edit](model)
    out = run(args, capsys)
    assert "skipped" not in out and "the model files changed" in out, out
    first, second = summaries(results)
    assert first["inputs"]["model"] != second["inputs"]["model"]
    assert second["truth_cached"] is False  # the ground-truth key covers the files too
    assert first["truth_key"] != second["truth_key"]
    assert index_entry(results)["inputs"] == second["inputs"]


def test_a_new_computation_version_recomputes(tiny_gpt2, tmp_path, capsys, monkeypatch):
    from harness import ground_truth

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    run(args, capsys)
    monkeypatch.setattr(harness, "COMPUTATION_VERSION", harness.COMPUTATION_VERSION + 1)
    monkeypatch.setattr(ground_truth, "COMPUTATION_VERSION", harness.COMPUTATION_VERSION)
    out = run(args, capsys)
    assert "skipped" not in out and "the code (COMPUTATION_VERSION) changed" in out, out
    first, second = summaries(tmp_path / "results")
    assert second["truth_cached"] is False and first["truth_key"] != second["truth_key"]


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _alter_summary(path: Path) -> None:
    summary = json.loads(path.read_text())
    summary["spearman"] = 1.0  # still valid JSON, no longer what was computed
    path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")


@pytest.mark.parametrize(
    "damage",
    [("estimates.parquet", _truncate), ("summary.json", _alter_summary)],
    ids=["truncated_estimates", "altered_summary"],
)
def test_a_damaged_result_is_recomputed(damage, tiny_gpt2, tmp_path, capsys):
    name, how = damage
    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(args, capsys)
    stored = Path(index_entry(results)["run_dir"])
    how(stored / name)
    out = run(args, capsys)
    assert "skipped" not in out and f"{stored / name} is missing or damaged" in out, out
    rerun = Path(index_entry(results)["run_dir"])
    assert rerun != stored
    frame = pd.read_parquet(rerun / "estimates.parquet")  # readable again
    assert len(frame) == json.loads((rerun / "summary.json").read_text())["n_components"]
    assert "skipped" in run(args, capsys)


def test_model_fingerprint_covers_every_byte_and_the_tokenizer(tiny_gpt2, tmp_path):
    """The previous fingerprint read config.json and the first and last MiB of the weights."""
    folder = shutil.copytree(tiny_gpt2, tmp_path / "model")
    big = folder / "extra.safetensors"
    big.write_bytes(bytes(5 << 20))
    base = fingerprint_folder(folder)
    data = bytearray(big.read_bytes())
    data[len(data) // 2] = 1  # one byte in the middle of a 5 MiB file
    big.write_bytes(bytes(data))
    middle = fingerprint_folder(folder)
    _edit_tokenizer(folder)
    tokenizer = fingerprint_folder(folder)
    assert len({base, middle, tokenizer}) == 3


def test_a_result_stored_without_its_inputs_is_recomputed(tiny_gpt2, tmp_path, capsys):
    """An index entry as the previous harness wrote it (only the run folder): its inputs and
    files cannot be checked, so the job runs again once."""
    from harness.storage import write_hashed_json

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(args, capsys)
    (path,) = (results / "index").glob("*.json")
    old = Path(index_entry(results)["run_dir"])
    write_hashed_json(path, {"run_dir": str(old)})
    out = run(args, capsys)
    assert "skipped" not in out and "stored without its inputs" in out, out
    assert Path(index_entry(results)["run_dir"]) != old
    assert "skipped" in run(args, capsys)


def paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_a_skipped_run_creates_nothing(tiny_gpt2, tmp_path, capsys):
    """Issue 24, item 11: a resumed run leaves no folder behind (reports warned about each empty
    one), nor the date folder it would have been made in."""
    from harness.report import collect

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = [*local_args(tiny_gpt2, pairs, tmp_path), *FAST]
    results = tmp_path / "results"
    run(["-m", *args], capsys)  # the record is in a sweep's folder
    before = paths(results)
    assert "skipped" in run(args, capsys)
    assert paths(results) == before  # no runs/<date>/<time>_... nor runs/<date>/
    run(["resume=false", *args], capsys)  # a record in runs/<date>/ too
    before = paths(results)
    assert "skipped" in run(args, capsys)
    assert paths(results) == before
    reasons = [why for _, why in collect(results).skipped]
    assert all("superseded by" in why for why in reasons), reasons  # the resume=false rerun's


def test_a_skipped_sweep_job_creates_nothing(tiny_gpt2, tmp_path, capsys):
    """Issue 24, item 11 under -m: the second sweep's folder holds its own record (multirun.yaml,
    the job statuses) and no job folder."""
    from harness.report import collect

    pairs = write_pairs(tmp_path / "pairs.jsonl", n=3)
    args = ["-m", *local_args(tiny_gpt2, pairs, tmp_path), *FAST, "method=atp,actpatch"]
    results = tmp_path / "results"
    run(args, capsys)
    before = {p.parent for p in results.rglob("multirun.yaml")}
    assert run(args, capsys).count("results exist for this config, skipped") == 2
    (second,) = {p.parent for p in results.rglob("multirun.yaml")} - before
    assert {p.name for p in second.iterdir()} == {"multirun.yaml", ".jobs"}
    assert len(collect(results).results) == 2 and not collect(results).skipped
