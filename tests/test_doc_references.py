"""Every repository path that the package's docstrings and comments cite exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP = ("tests", "harness", "bench", "docs", "conf", "tasks", "results")
CITED = re.compile(r"(?<![\w./=-])((?:\.\./)+[\w./-]+|(?:" + "|".join(TOP) + r")/[\w./-]*)")
"""A cited path: a top-level folder of the repository and what follows up to the first
character that is not part of a path (so ``conf/method/<slug>.yaml`` cites ``conf/method/``),
or any path that climbs out with ``../``. A value after ``=`` (``results_dir=results/x``) is
an output, not a citation."""
USER_FOLDERS = {"conf/local/"}
"""Folders the repository leaves to the user (git-ignored), cited as places to put files."""


def cited_paths() -> list[tuple[str, str]]:
    """(file:line, path) of every repository path cited in the package's and tasks' sources
    and the Hydra configs."""
    files = [*REPO.glob("harness/**/*.py"), *REPO.glob("tasks/**/*.py")]
    files += [*REPO.glob("conf/**/*.yaml"), *REPO.glob("tasks/**/*.md")]
    found = []
    for file in sorted(files):
        for number, line in enumerate(file.read_text().splitlines(), 1):
            for match in CITED.finditer(line):
                path = match.group(1).rstrip(".")
                found.append((f"{file.relative_to(REPO)}:{number}", path))
    return found


def test_the_scan_finds_the_method_proofs():
    paths = {path for _, path in cited_paths()}
    assert {"tests/methods/test_atp.py", "tests/methods/test_hvp.py"} <= paths


def test_every_cited_repository_path_exists():
    missing = [
        f"{where}: {path}"
        for where, path in cited_paths()
        if path.startswith("../") or not ((REPO / path).exists() or path in USER_FOLDERS)
    ]
    assert not missing, "cited paths outside the repository or missing:\n" + "\n".join(missing)
