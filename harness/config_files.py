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
    subfolder for nested ones (``sub/name`` for ``conf/<group>/sub/name.yaml``)."""
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


def searchpath_dirs(argv: list[str]) -> list[Path]:
    """Folders added by a ``hydra.searchpath=[file://DIR,...]`` override (``pkg://`` entries
    are left out): more config group options, e.g. a user's own ``method/<slug>.yaml``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    dirs: list[Path] = []
    for arg in argv:
        if not arg.lstrip("+~").startswith("hydra.searchpath="):
            continue
        try:
            value = OverridesParser.create().parse_overrides([arg.lstrip("+~")])[0].value()
        except Exception:  # noqa: BLE001 - Hydra reports a malformed override itself
            continue
        for entry in value if isinstance(value, list) else [value]:
            entry = str(entry)
            if entry.startswith("file://"):
                dirs.append(Path(entry[len("file://") :]))
            elif "://" not in entry:
                dirs.append(Path(entry))
    return dirs


def all_group_options(group: str, extra_dirs: list[Path]) -> list[str]:
    """:func:`group_options` plus the options of ``group`` in each of ``extra_dirs``."""
    options = set(group_options(group))
    for root in extra_dirs:
        folder = root / group
        if folder.is_dir():
            options.update(
                p.relative_to(folder).with_suffix("").as_posix() for p in folder.rglob("*.yaml")
            )
    return sorted(options)
