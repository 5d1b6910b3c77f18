"""The install goes through the lock: the README's two set-up commands, ``.ci/run`` and the
Dockerfile install with ``-c requirements/lock-cpu.txt``, and the lock pins every dependency
the project declares, with the command that wrote it at its top."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO

LOCK = REPO / "requirements" / "lock-cpu.txt"


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    setup = text[text.index("## Set-up") : text.index("## The command line")]
    return re.findall(r"```bash\n(.+?)\n```", setup)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_readme_ci_and_docker_install_through_the_lock():
    first, tests = readme_commands()
    assert first.endswith("&& harness") and tests.endswith("&& pytest -q")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests  # .ci/run is exactly the README's test command
    for command in (first, tests):
        installs = [part for part in command.split("&&") if "pip install" in part]
        assert installs and all("-c requirements/lock-cpu.txt" in p for p in installs), command
    docker = (REPO / "Dockerfile").read_text()
    assert 'pip install -c requirements/lock-cpu.txt ".[launchers]"' in docker
    assert "COPY requirements ./requirements" in docker


def test_the_lock_pins_every_declared_dependency():
    tomllib = pytest.importorskip("tomllib")  # python >= 3.11, the lock's python
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in ("test", "launchers"):
        declared += project["optional-dependencies"][extra]
    lines = LOCK.read_text().splitlines()
    assert lines[1].strip("# ").startswith("uv pip compile pyproject.toml")
    pinned = {
        normalized(m.group(1)): m.group(2)
        for m in (re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line) for line in lines)
        if m
    }
    for requirement in declared:
        name = normalized(re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0))
        assert name in pinned, f"{name} is not pinned in {LOCK.name}"
    assert pinned["torch"] == "2.13.0"  # the CPU pin of the README's commands
