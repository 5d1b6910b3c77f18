"""Where the Hydra config groups live, and what their files hold.

The repository's ``conf/`` is installed as the package ``harness.conf``, so the console script
finds it after ``pip install .`` as well as in an editable install.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def conf_dir() -> Path:
    """The folder of the Hydra configs (``conf/`` in the repository)."""
    return Path(str(resources.files("harness.conf")))


def group_options(group: str) -> list[str]:
    """Choices available in a config group: YAML file names without extension, with their
    subfolder for nested ones (``sub/name`` for ``conf/<group>/sub/name.yaml``)."""
    folder = conf_dir() / group
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml"))


def group_configs(group: str) -> dict[str, dict[str, Any]]:
    """Every YAML file of a config group as a dict, by option name (:func:`group_options`)."""
    import yaml

    configs = {}
    for slug in group_options(group):
        path = conf_dir() / group / f"{slug}.yaml"
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise HarnessError(f"conf/{group}/{slug}.yaml: expected a mapping")
        configs[slug] = data
    return configs
