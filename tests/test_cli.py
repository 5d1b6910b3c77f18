"""The ``harness`` command: bad input is one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.run import main
from tests.helpers import assert_one_line, local_run_args


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run the console script in-process; returns (exit code, stdout, stderr)."""
    old = sys.argv
    sys.argv = ["harness", *args]
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    path = tmp_path / "pairs.jsonl"
    rows = [
        {"clean": "w1 w2 w3 w4", "corrupt": "w5 w6 w7 w8", "answer": "w9", "wrong": "w10"},
        {"clean": "w2 w3 w4 w5", "corrupt": "w6 w7 w8 w9", "answer": "w9", "wrong": "w11"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def local_args(folder: Path, pairs: Path, tmp_path: Path) -> list[str]:
    return [*local_run_args(folder, pairs, tmp_path / "results"), "diagnostics=false"]


def test_good_run_prints_table_and_writes_record(tiny_gpt2, pairs_file, tmp_path, capsys):
    code, out, err = run_cli(local_args(tiny_gpt2, pairs_file, tmp_path), capsys)
    assert code == 0, err
    assert "atp vs activation patching" in out and "spearman" in out
    runs = list((tmp_path / "results" / "runs").glob("*/*/summary.json"))
    assert len(runs) == 1
    summary = json.loads(runs[0].read_text())
    assert summary["n_prompts"] == 2 and summary["status"] == "ok"
    # the same config again is resumed, not recomputed
    code, out, _ = run_cli(local_args(tiny_gpt2, pairs_file, tmp_path), capsys)
    assert code == 0 and "skipped" in out
    assert len(list((tmp_path / "results" / "runs").glob("*/*/summary.json"))) == 1


def test_a_run_without_results_dir_lands_in_outputs(
    tiny_gpt2, pairs_file, tmp_path, capsys, monkeypatch
):
    """Issue 24, item 10: a user's run goes to the git-ignored outputs/, never to results/,
    whose published records a report of the default folder would mix with it."""
    from tests.helpers import REPO

    monkeypatch.chdir(tmp_path)
    args = [a for a in local_args(tiny_gpt2, pairs_file, tmp_path) if "results_dir=" not in a]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert len(list((tmp_path / "outputs" / "runs").glob("*/*/summary.json"))) == 1
    assert (tmp_path / "outputs" / "index").is_dir() and (tmp_path / "outputs" / "cache").is_dir()
    assert not (tmp_path / "results").exists()
    assert "outputs/" in (REPO / ".gitignore").read_text().split()
    assert "outputs" in (REPO / ".dockerignore").read_text().split()


BAD_BEFORE_MODEL = [
    (["model=toy-gtp2"], "unknown model 'toy-gtp2' (did you mean 'toy-gpt2'?)"),
    (["task=iio"], "unknown task 'iio'"),
    (["method=atp2"], "unknown method 'atp2'"),
    (["method=ig_fsat"], "unknown method 'ig_fsat' (did you mean 'ig_fast'?); accepted: act"),
    (["hydra/launcher=jblib"], "unknown hydra/launcher 'jblib' (did you mean 'joblib'?)"),
    (["components.sites=[head,mlp]"], "unknown site 'mlp'"),
    (["components.positions=some"], "unknown positions mode 'some'"),
    (["metric=kl"], "unknown metric 'kl'"),
    (["direction=sideways"], "unknown direction 'sideways'"),
    (["dtype=float16"], "unknown dtype 'float16'"),
    (["device=tpu"], "unknown device 'tpu'"),
    (["n_prompts=0"], "n_prompts must be an integer >= 1, got 0"),
    (["batch_size=-3"], "batch_size must be an integer >= 1, got -3"),
    (["batch_size=abc"], "batch_size: Value 'abc'"),
    (["n_prompt=3"], "unknown config key 'n_prompt' (did you mean 'n_prompts'?)"),
    (["flag.fraction=1.5"], "flag.fraction must be in (0, 1], got 1.5"),
    (["reliability=[curvature]"], "unknown reliability score 'curvature'"),
    (
        ["diagnostics=exakt"],
        "unknown diagnostics tier 'exakt' (did you mean 'exact'?); accepted: cheap, exact, off, "
        "true, false",
    ),
    (["reliability=[curvature_ratio]"], "'curvature_ratio' needs diagnostics=exact"),
    (["model=local"], "model=local needs model.path=DIR"),
    (["model=local", "model.path=/nonexistent/folder"], "is not a folder"),
    (["task=prompts"], "task prompts needs option 'path'"),
]


@pytest.mark.parametrize("args, message", BAD_BEFORE_MODEL, ids=lambda a: str(a)[:40])
def test_bad_input_is_one_line(args, message, tmp_path, capsys):
    code, _, err = run_cli([*args, f"results_dir={tmp_path}"], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert "Traceback" not in err


def test_bad_model_folders_and_files(tiny_gpt2, pairs_file, tmp_path, capsys):
    not_lm = tmp_path / "not_lm"
    not_lm.mkdir()
    (not_lm / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    cases = [
        (local_args(not_lm, pairs_file, tmp_path), "is not a causal-LM folder"),
        (local_args(tiny_gpt2, tmp_path / "missing.jsonl", tmp_path), "missing.jsonl"),
        ([*local_args(tiny_gpt2, pairs_file, tmp_path), "device=cuda"], "no CUDA GPU"),
    ]
    if os.geteuid() != 0:  # root can write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(
            (
                [
                    *local_args(tiny_gpt2, pairs_file, tmp_path),
                    f"results_dir={locked}",
                    f"hydra.run.dir={locked}/run",
                ],
                "not writable",
            )
        )
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        lines = err.strip().splitlines()
        assert code != 0 and len(lines) == 1 and message in lines[0], (args, err)


def test_hub_model_absent_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run_cli(["model=gpt2", f"results_dir={tmp_path}"], capsys)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1
    assert "hub model 'openai-community/gpt2' is not in the local Hugging Face cache" in lines[0]


def test_prompt_longer_than_context(tiny_gpt2, tmp_path, capsys):
    long = " ".join(["w1"] * 40)  # the tiny models have a 32-token context
    path = tmp_path / "long.jsonl"
    corrupt = " ".join(["w4"] * 40)
    path.write_text(json.dumps({"clean": long, "corrupt": corrupt, "answer": "w2", "wrong": "w3"}))
    code, _, err = run_cli(local_args(tiny_gpt2, path, tmp_path), capsys)
    assert code != 0 and "40 tokens long" in err and "context of 32" in err


def test_console_script_in_a_subprocess_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "harness", "metric=kl", f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: unknown metric 'kl'; accepted: logit_diff, logprob"
    ]


@pytest.mark.parametrize("user_value", [None, "1"])
def test_main_gives_back_the_users_hydra_full_error(user_value, tmp_path, capsys, monkeypatch):
    """main() sets HYDRA_FULL_ERROR while Hydra composes (so a composition error reaches it and
    is one line) and restores the user's own value afterwards."""
    if user_value is None:
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    else:
        monkeypatch.setenv("HYDRA_FULL_ERROR", user_value)
    code, _, err = run_cli(["model=toy-gtp2", f"results_dir={tmp_path}"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unknown model" in err
    assert os.environ.get("HYDRA_FULL_ERROR") == user_value


def test_help_lists_only_the_config_files_of_each_group(capsys):
    """``--help``'s choices of each group are its YAML files: no structured-config schema."""
    from harness.config_files import group_options
    from harness.run import CONFIG_GROUPS

    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    section = out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = dict(line.split(": ", 1) for line in section.splitlines() if ": " in line)
    for group in CONFIG_GROUPS:
        assert listed[group].split(", ") == group_options(group), group


def test_a_schema_is_an_unknown_model(tmp_path, capsys):
    code, _, err = run_cli(["model=model_schema", f"results_dir={tmp_path / 'results'}"], capsys)
    assert_one_line(code, err, "unknown model 'model_schema'", "accepted: gemma-2-2b, gemma-2-9b")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["model=local", "model.path=/tmp/my", "models/x"],
            ["cannot parse override 'models/x'", """e.g. 'model.path="/tmp/my models/x"'"""],
        ),
        (
            ["results_dir={tmp}/a", "b", "c", "seed=1"],
            ["cannot parse override 'b'", """e.g. 'results_dir="{tmp}/a b c"'"""],
        ),
        (
            ["task=prompts", "task.path=/data/bob's.jsonl"],
            ["""(unexpected character "'")""", '''e.g. "task.path=\\"/data/bob's.jsonl\\""'''],
        ),
    ],
    ids=["split-path", "split-results-dir", "apostrophe"],
)
def test_an_unparsable_override_hints_to_quote_it(args, needles, tmp_path, capsys):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    code, _, err = run_cli(args, capsys)
    assert_one_line(code, err, *(needle.replace("{tmp}", str(tmp_path)) for needle in needles))
    assert list(tmp_path.iterdir()) == []
