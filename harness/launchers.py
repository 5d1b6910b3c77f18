"""The Hydra launchers a sweep can name (``harness -m hydra/launcher=...``): Hydra's own
``basic``, those the launcher plugins add (``pip install ".[launchers]"``) and the files of
``conf/hydra/launcher/`` built on one of them (``slurm`` on ``submitit_slurm``).

Without the plugins Hydra knows neither their launchers nor those built on them;
:func:`launcher_error` turns its composition error into one line that names the install command
and the launchers that work.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable

from harness.config_files import group_configs, group_options
from harness.registry import unknown_choice

GROUP = "hydra/launcher"
INSTALL = 'pip install ".[launchers]"'
PLUGINS = {
    "joblib": "hydra_plugins.hydra_joblib_launcher",
    "submitit_local": "hydra_plugins.hydra_submitit_launcher",
    "submitit_slurm": "hydra_plugins.hydra_submitit_launcher",
}
"""The launchers of the launcher extras, by the plugin module that provides each."""


def plugin_launcher(choice: str) -> str | None:
    """The plugin launcher ``choice`` is or builds on (a ``defaults`` entry of its conf file);
    None for Hydra's own launchers."""
    if choice in PLUGINS:
        return choice
    defaults = group_configs(GROUP).get(choice, {}).get("defaults") or []
    return next((entry for entry in defaults if entry in PLUGINS), None)


def available(choice: str) -> bool:
    """Whether the plugin that launcher ``choice`` needs, if any, can be imported."""
    plugin = plugin_launcher(choice)
    if plugin is None:
        return True
    try:
        return importlib.util.find_spec(PLUGINS[plugin]) is not None
    except ImportError:  # no hydra_plugins package at all
        return False


def launcher_error(missing_cfg_file: str, message: str, options: Iterable[str]) -> str | None:
    """One line for Hydra's error on a launcher it could not load: ``missing_cfg_file`` (e.g.
    ``hydra/launcher/joblib``), Hydra's ``message`` and the group's ``options`` it found. A
    launcher of the plugins, or one built on it, asks for :data:`INSTALL` when they are missing;
    any other is an unknown choice. Both name the launchers that work. None for another group."""
    group, _, name = missing_cfg_file.rpartition("/")
    if group != GROUP:
        return None
    known = sorted({"basic", *map(str, options), *group_options(GROUP), *PLUGINS})
    accepted = [launcher for launcher in known if available(launcher)]
    needing = [launcher for launcher in known if launcher not in accepted]
    within = re.match(rf"In '{GROUP}/([^']+)'", message)  # slurm.yaml's defaults: submitit_slurm
    chosen = within.group(1) if within else name
    if chosen in needing:
        return (
            f"hydra/launcher={chosen} needs the launcher plugins: {INSTALL}; accepted without "
            f"them: {', '.join(accepted)}"
        )
    line = unknown_choice(GROUP, name, accepted)
    return f"{line} ({', '.join(needing)} need {INSTALL})" if needing else line
