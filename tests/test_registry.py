"""The one plugin mechanism (harness/registry.py): methods and tasks declare their options as a
frozen dataclass, are found by scanning their config group, and building one writes nothing to
its class."""

from __future__ import annotations

import dataclasses

import pytest

from harness.errors import HarnessError
from harness.methods.base import METHODS, Method, make_method
from harness.registry import Registry
from harness.tasks import TASKS, Task, make_task

PLUGINS = [(METHODS, Method, make_method), (TASKS, Task, make_task)]


@pytest.mark.parametrize("registry, base, build", PLUGINS, ids=["method", "task"])
def test_every_shipped_plugin_declares_frozen_options_with_defaults(registry, base, build):
    for slug in registry.names():
        cls = registry.get(slug)
        assert issubclass(cls, base) and dataclasses.is_dataclass(cls.Options), slug
        assert cls.Options.__dataclass_params__.frozen, slug
        cfg = registry.config(slug)
        options = {k: v for k, v in cfg.items() if k not in ("name", "impl")}
        if slug == "prompts":
            options["path"] = "pairs.jsonl"  # its one required option
        plugin = build({**cfg, **options})
        assert plugin.name == slug and plugin.config == {**plugin.config, **options}
        assert set(plugin.config) == {f.name for f in dataclasses.fields(cls.Options)}


def test_building_a_plugin_writes_nothing_to_its_class():
    """The slug a plugin runs under is its instance's: building hvp's class as hvp_shared first
    leaves 'hvp' in the next error (it used to stick to the class)."""
    cls = METHODS.get("hvp")
    before = dict(vars(cls))
    shared = make_method({**METHODS.config("hvp"), "name": "hvp_shared", "mode": "shared"})
    assert shared.name == "hvp_shared" and dict(vars(cls)) == before
    with pytest.raises(HarnessError, match=r"^unknown hvp mode 'bogus'"):
        make_method({**METHODS.config("hvp"), "mode": "bogus"})
    task_cls = TASKS.get("ioi")
    before = dict(vars(task_cls))
    make_task({**TASKS.config("ioi"), "name": "my_ioi"})
    assert dict(vars(task_cls)) == before


@pytest.mark.parametrize(
    "cfg, message",
    [
        (
            {"name": "atp_star", "qk_fx": True},
            "unknown option 'qk_fx' for method 'atp_star'; "
            "accepted: graddrop, qk_fix (did you mean 'qk_fix'?)",
        ),
        (
            {"name": "atp_star", "graddrop": "no"},
            "option graddrop of method 'atp_star' must be true or false, got 'no'",
        ),
        ({"name": "sff", "fix": "hvpp"}, "unknown sff fix 'hvpp' (did you mean 'hvp'?)"),
        ({"name": "sff", "steps": 0}, "method.steps must be an integer >= 1, got 0"),
    ],
)
def test_option_errors_are_one_line(cfg, message):
    with pytest.raises(HarnessError) as info:
        make_method(cfg)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_config_group_file_without_impl_is_refused(tmp_path, monkeypatch):
    import harness.config_files as config_files

    monkeypatch.setattr(
        config_files, "group_configs", lambda group: {"x": {"name": "x", "steps": 3}}
    )
    with pytest.raises(HarnessError, match=r"conf/method/x.yaml: needs 'impl"):
        Registry("method", "method", Method).names()
