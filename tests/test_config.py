"""The config schema's one range validator and its key check (issue 11, items 10 and 11), and
the checks that run before Hydra starts a job (bad input is one line, also under ``-m``)."""

from __future__ import annotations

import json
import math

import pytest

from harness.config import FlagConfig, Range, check_names, check_ranges, unknown_keys
from harness.errors import HarnessError
from harness.methods.base import make_method
from tests.helpers import GOOD, assert_one_line, write_lines
from tests.test_cli import local_args, run_cli

BAD_NUMBERS = [
    ({"unreliable": {"rel": math.nan}}, "unreliable.rel must be in [0, inf), got nan"),
    ({"unreliable": {"abs": -0.1}}, "unreliable.abs must be in [0, inf), got -0.1"),
    ({"unreliable": {"rel": math.inf}}, "unreliable.rel must be in [0, inf), got inf"),
    ({"flag": {"fraction": math.nan}}, "flag.fraction must be in (0, 1], got nan"),
    ({"flag": {"thresholds": {"delta_norm": -math.inf}}}, "flag.thresholds.delta_norm must be"),
    ({"seed": 99999999999999999999}, "seed must be an integer from 0 to 4294967295"),
    ({"seed": -1}, "seed must be an integer from 0 to 4294967295, got -1"),
    ({"topk": 2.5}, "topk must be an integer >= 1, got 2.5"),
    ({"batch_size": True}, "batch_size must be an integer >= 1, got True"),
    ({"n_prompts": 0}, "n_prompts must be an integer >= 1, got 0"),
]


@pytest.mark.parametrize("cfg, message", BAD_NUMBERS, ids=lambda a: str(a)[:40])
def test_check_ranges_names_key_value_and_range(cfg, message):
    with pytest.raises(HarnessError) as info:
        check_ranges(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_check_ranges_accepts_the_defaults_and_nulls():
    check_ranges({"seed": 0, "n_prompts": None, "flag": {"thresholds": {"delta_norm": None}}})
    check_ranges({"fraction": 1.0}, FlagConfig, "flag.")


def test_range_describes_itself():
    assert Range(lo=0, hi=1).describe() == "in [0, 1]"
    assert Range(lo=0, hi=1, lo_open=True).describe() == "in (0, 1]"
    assert Range(lo=1, hi=200, integer=True).describe() == "an integer from 1 to 200"
    assert not Range(lo=0).accepts(math.nan) and not Range().accepts("1")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"name": "sff", "threshold": math.nan}, "method.threshold must be a finite number"),
        ({"name": "sff", "flag_fraction": math.inf}, "method.flag_fraction must be in [0, 1]"),
        ({"name": "ms_hvp", "steps": 2.0}, "method.steps must be an integer >= 1, got 2.0"),
        ({"name": "integrated_hessians", "steps": 201}, "an integer from 1 to 200, got 201"),
    ],
)
def test_method_options_go_through_the_same_validator(options, message):
    with pytest.raises(HarnessError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_method(options)


def test_unknown_keys_finds_added_keys_at_every_schema_level():
    cfg = {"n_prompt": 4, "seed": 0, "flag": {"fracton": 1}, "model": {"name": "m", "x": 1}}
    assert unknown_keys(cfg) == ["n_prompt", "flag.fracton", "model.x"]
    assert unknown_keys({"seed": 0, "hydra": {}, "task": {"anything": 1}}) == []


def test_check_names_refuses_names_the_file_system_refuses():
    with pytest.raises(HarnessError, match=r"model.path has a name of 300 bytes"):
        check_names({"model": {"path": "/tmp/" + "a" * 300}})
    with pytest.raises(HarnessError, match=r"task.name is 100 characters long"):
        check_names({"task": {"name": "t" * 100}})
    check_names({"model": {"path": "/tmp/" + "a" * 255, "name": "toy-gpt2"}})


# --------------------------------------------------------------------------------------------
# The CLI: each is one line before any job starts (nothing written)

LONG = "a" * 300
BFLOAT16 = "(did you mean 'bfloat16'?); accepted: float32, float64, bfloat16"
BEFORE_ANY_JOB = [
    (["+n_prompt=4"], "unknown config key 'n_prompt' (did you mean 'n_prompts'?); accepted:"),
    (["+flag.fracton=0.5"], "unknown config key 'flag.fracton'"),
    (["seed=99999999999999999999"], "seed must be an integer from 0 to 4294967295"),
    (["unreliable.rel=nan"], "unreliable.rel must be in [0, inf), got nan"),
    (["unreliable.abs=-1"], "unreliable.abs must be in [0, inf), got -1"),
    (["flag.fraction=nan"], "flag.fraction must be in (0, 1], got nan"),
    (["task.path=${nowhere}"], "task.path: Interpolation key 'nowhere' not found"),
    (["model.path=/tmp/${oc.env:NO_SUCH_VAR_11}"], "model.path:"),
    (["logger=wandb", "logger.mode=bogus"], "unknown logger.mode 'bogus'"),
    (["logger=wandb", "+logger.projet=x"], "unknown config key 'logger.projet' (did you mean"),
    ([f"model.path=/tmp/{LONG}"], "model.path has a name of 300 bytes"),
    ([f"task.path=/tmp/{LONG}.jsonl"], "task.path has a name of 306 bytes"),
    ([f"model.name={LONG}"], "model.name is 300 characters long"),
    (["-m", "+n_prompt=4,8"], "unknown config key 'n_prompt' (did you mean 'n_prompts'?)"),
    (["-m", "n_promts=4,8"], "unknown config key 'n_promts'"),
    (["-m", "n_prompts=4,x"], "n_prompts: Value 'x' of type 'str' could not be converted"),
    (["-m", "seed=1,2", "topk=5,0"], "topk must be an integer >= 1, got 0"),
    (["-m", "method=atp,ms_hvp", "+method.steps=0"], "unknown option 'steps' for method"),
    (["-m", "method=ms_hvp,sff", "method.steps=4,0"], "method.steps must be an integer >= 1"),
    (["-m", "method=ig", "method.integration=gausslegendre,simpsn"], "unknown ig integration"),
    (["-m", "logger=wandb", "logger.mode=offline,bogus"], "unknown logger.mode 'bogus'"),
    (["dtype=float16"], f"unknown dtype 'float16' {BFLOAT16}"),
    (["model.dtype=float16"], f"unknown model.dtype 'float16' {BFLOAT16}"),
    (["-m", "dtype=float32,float16"], f"unknown dtype 'float16' {BFLOAT16}"),
    (["device=tpu"], "unknown device 'tpu' (did you mean 'cpu'?); accepted: cpu, cuda, auto"),
    (
        ["-m", "device=cpu,tpu"],
        "unknown device 'tpu' (did you mean 'cpu'?); accepted: cpu, cuda, auto",
    ),
    (
        ["model.device=tpu"],
        "unknown model.device 'tpu' (did you mean 'cpu'?); accepted: cpu, cuda, auto",
    ),
]


@pytest.mark.parametrize("args, message", BEFORE_ANY_JOB, ids=lambda a: str(a)[:40])
def test_bad_config_is_one_line_before_any_job(args, message, tmp_path, capsys):
    base = ["model=local", f"model.path={tmp_path}", "task=prompts", f"task.path={tmp_path}/p"]
    flags = [a for a in args if a.startswith("-")]  # Hydra's parser wants -m before overrides
    overrides = [a for a in args if not a.startswith("-")]
    argv = [*flags, *base, f"results_dir={tmp_path / 'results'}", *overrides]
    code, out, err = run_cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and message in lines[0], lines[0]
    assert not (tmp_path / "results").exists()  # refused before Hydra made a folder


@pytest.mark.parametrize(
    "slug, options, message",
    [
        ("induction", {"seq_len": 0}, "task.seq_len must be an integer >= 1, got 0"),
        ("induction", {"query_len": math.nan}, "task.query_len must be an integer >= 1, got nan"),
        ("greater_than", {"centuries": [11, 100]}, "task.centuries[1] must be an integer from 10"),
    ],
)
def test_task_options_go_through_the_same_validator(slug, options, message):
    from harness.tasks import load_task

    with pytest.raises(HarnessError) as info:
        load_task(slug, **options)
    assert message in str(info.value)


def test_sweep_samples_cover_every_value_without_the_whole_grid():
    from harness.run import sweep_samples

    samples = sweep_samples(["method=atp,ig,hvp", "seed=range(0,3)", "topk=5"])
    assert samples[0] == ["method=atp", "seed=0", "topk=5"]
    assert len(samples) == 1 + 2 + 2  # not 3 x 3
    covered = {item for sample in samples for item in sample}
    assert {"method=ig", "method=hvp", "seed=1", "seed=2"} <= covered


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "method=atp,ig", "seed=0,1", "n_prompts=4"],
        ["-m", "experiment=smoke"],
        ["-m", "method=ms_hvp,sff", "method.steps=2,4", "unreliable.rel=0,0.5"],
        ["logger=wandb", "logger.mode=disabled", "flag.thresholds.delta_norm=0.3"],
    ],
)
def test_good_configs_pass_the_checks(argv):
    """The checks Hydra's callback runs before a sweep (:func:`harness.run.check_sweep`), on the
    master config Hydra composes for ``-m`` and each job config its config loader composes."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from harness.run import check_sweep

    overrides = [a for a in argv if a != "-m"]
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        check_sweep(loader.load_configuration("config", overrides, RunMode.MULTIRUN))


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
