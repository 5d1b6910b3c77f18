"""Where the Hydra config groups live, and registries filled from them.

The repository's ``conf/`` is installed as the package ``harness.conf``, so the console script
finds it after ``pip install .`` as well as in an editable install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from harness.registry import Registry


def conf_dir() -> Path:
    """The folder of the Hydra configs (``conf/`` in the repository)."""
    return Path(str(resources.files("harness.conf")))


def group_options(group: str) -> list[str]:
    """Choices available in a config group: YAML file names without extension, with their
    subfolder for nested ones (``fast/ig`` for ``conf/method/fast/ig.yaml``)."""
    folder = conf_dir() / group
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def lazy_registry(axis: str, group: str, base: type) -> Registry:
    """A registry with one lazy ``impl`` entry per YAML file of the config group."""
    import yaml

    registry: Registry = Registry(axis, base)
    for slug in group_options(group):
        data = yaml.safe_load((conf_dir() / group / f"{slug}.yaml").read_text()) or {}
        impl = data.get("impl")
        if impl:
            registry.add(slug, str(impl))
    return registry
