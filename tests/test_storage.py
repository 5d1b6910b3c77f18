"""Storage (issue 11): files get the umask's mode, a failed write (disk full, read-only) is one
line and loses nothing, file digests are cached but never stale, and a bad ``results_dir``
(empty, a file, read-only, full) is one line before anything is created.

Disk-full and read-only volumes are real: a small or read-only tmpfs mounted in a private
user+mount namespace (``unshare -rm``); those tests are skipped where namespaces are not allowed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness import storage
from harness.errors import HarnessError
from tests.helpers import GOOD, assert_one_line, write_lines
from tests.test_cli import local_args, run_cli

REPO = Path(__file__).resolve().parents[1]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


needs_tmpfs = pytest.mark.skipif(
    not _can_mount_tmpfs(), reason="needs unshare -rm to mount a private tmpfs"
)


def in_tmpfs(mount: Path, options: str, script: str, timeout: int = 300):
    """Run the shell ``script`` with a private tmpfs (mount ``options``) at ``mount``."""
    mount.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o {options} tmpfs {mount} && {script}"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )


# --------------------------------------------------------------------------------------------
# File modes


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        storage.atomic_write_json(tmp_path / "a.json", {"x": 1})
        storage.atomic_write_parquet(tmp_path / "b.parquet", pd.DataFrame({"x": [1.0]}))
        storage.write_hashed_json(tmp_path / "cache" / "c.json", {"x": 1})
        expected = 0o666 & ~umask
        for name in ("a.json", "b.parquet", "cache/c.json"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, (name, oct(umask))
        assert stat.S_IMODE((tmp_path / "cache").stat().st_mode) == 0o777 & ~umask
    finally:
        os.umask(old)


def test_a_run_writes_results_a_host_user_can_read(tiny_gpt2, tmp_path):
    """The README's Docker command: results written under umask 022 are 0644, not 0600."""
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    proc = subprocess.run(
        [sys.executable, "-m", "harness", *local_args(tiny_gpt2, pairs, tmp_path)],
        capture_output=True,
        text=True,
        umask=0o022,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"summary.json", "estimates.parquet"} <= names
    assert any(p.parent.name == "truth" for p in files) and any(
        p.parent.name == "index" for p in files
    )
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o644"}, modes


# --------------------------------------------------------------------------------------------
# Failed writes


def test_a_write_that_fails_with_enospc_is_one_line(tmp_path):
    """/dev/full is a real device whose writes fail with ENOSPC."""
    with pytest.raises(HarnessError) as err:
        with storage.write_errors(tmp_path / "summary.json"), open("/dev/full", "wb") as full:
            full.write(b"x" * 100)
    message = str(err.value)
    assert len(message.splitlines()) == 1
    assert "summary.json" in message and "No space left on device" in message
    assert "files written before are kept" in message


@needs_tmpfs
def test_disk_full_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """A 16 KiB tmpfs: a small file fits, a large one does not; the failed write is a
    one-line HarnessError, the small file is intact and no temporary file is left."""
    mount = tmp_path / "full"
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from harness import storage\n"
        "from harness.errors import HarnessError\n"
        f"target = Path({str(mount)!r}) / 'summary.json'\n"
        "storage.atomic_write_json(target, {'kept': 1})\n"
        "try:\n"
        "    storage.atomic_write_bytes(target, b'x' * (64 << 10))\n"
        "except HarnessError as err:\n"
        "    print('ERROR', err)\n"
        "print('FILES', sorted(p.name for p in target.parent.iterdir()))\n"
        "print('KEPT', target.read_text().strip().replace(chr(10), ' '))\n"
    )
    proc = in_tmpfs(mount, "size=16k", f"{sys.executable} -c {_quote(script)}")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert "No space left on device" in lines["ERROR"] and "summary.json" in lines["ERROR"]
    assert lines["FILES"] == "['summary.json']"  # no .tmp left behind
    assert json.loads(lines["KEPT"]) == {"kept": 1}


@needs_tmpfs
def test_disk_full_during_a_run_is_one_line_and_loses_nothing(tiny_gpt2, tmp_path):
    """A volume fills up: the first run caches its ground truth on it; a filler leaves less
    than a page. The next run, which needs a new cache entry there, fails with one line naming
    the file and the reason, and the first run's cache entry and results are unchanged. A run
    whose results_dir is on the full volume is one line before anything is written."""
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    mount = tmp_path / "volume"
    first = " ".join([*local_args(tiny_gpt2, pairs, tmp_path), f"cache_dir={mount}"])
    second = f"{first} dtype=float64"  # another ground truth: a new cache entry to write
    third = f"{first} results_dir={mount / 'results'}"
    harness = f"{sys.executable} -m harness"
    script = (
        f"{harness} {first} >/dev/null && "
        f"cp -r {mount} {tmp_path / 'before'} && "  # leave less than one page free:
        f"head -c $(( $(stat -f -c '%a*%S' {mount}) - 512 )) /dev/zero > {mount}/filler; "
        f"{harness} {second} 2>{tmp_path / 'err2'}; echo rc2=$?; "
        f"{harness} {third} 2>{tmp_path / 'err3'}; echo rc3=$?; "
        f"rm {mount}/filler; cp -r {mount} {tmp_path / 'after'}"
    )
    proc = in_tmpfs(mount, "size=256k", script)
    assert "rc2=2" in proc.stdout and "rc3=2" in proc.stdout, proc.stdout + proc.stderr
    err2, err3 = (tmp_path / "err2").read_text(), (tmp_path / "err3").read_text()
    assert_one_line(2, err2, "cannot write", "No space left on device", str(mount))
    assert_one_line(2, err3, f"results_dir {str(mount / 'results')!r}", "No space left on device")
    before = {
        p.relative_to(tmp_path / "before"): p.read_bytes() for p in _files(tmp_path / "before")
    }
    after = {p.relative_to(tmp_path / "after"): p.read_bytes() for p in _files(tmp_path / "after")}
    assert before and all(after.get(name) == data for name, data in before.items())
    assert not [p for p in after if p.name.endswith(".tmp") or "probe" in p.name]
    results = tmp_path / "results"
    assert len(list(results.rglob("summary.json"))) == 1  # the first run's record
    (failure,) = results.rglob("failure.json")  # the second run says why it failed
    assert "No space left on device" in json.loads(failure.read_text())["error"]


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------------------------
# Cached file digests


def test_file_digest_is_cached_across_processes_but_never_stale(tmp_path):
    import hashlib

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"a" * 4096)
    cache = tmp_path / "cache"
    first = storage.file_sha256(path, cache)
    assert first == hashlib.sha256(path.read_bytes()).hexdigest()
    (memo,) = (cache / "file_hashes").glob("*.json")
    assert storage.read_hashed_json(memo)["sha256"] == first
    # the same size, other bytes: hashed again (in this process and from the on-disk memo)
    path.write_bytes(b"b" * 4096)
    assert storage.file_sha256(path, cache) == hashlib.sha256(b"b" * 4096).hexdigest()
    storage._DIGESTS.clear()
    assert storage.file_sha256(path, cache) == hashlib.sha256(b"b" * 4096).hexdigest()


# --------------------------------------------------------------------------------------------
# A bad results_dir: one line, nothing created


def test_empty_results_dir_is_refused(tiny_gpt2, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where a relative index/ would land
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    roots = {p: p.exists() for p in (Path("/runs"), Path("/cache"), Path("/multirun"))}
    for extra in ([], ["-m", "method=atp,actpatch"]):
        args = [*extra, *local_args(tiny_gpt2, pairs, tmp_path), "results_dir="]
        code, _, err = run_cli(args, capsys)
        assert_one_line(code, err, "results_dir is empty")
    assert {p: p.exists() for p in roots} == roots  # nothing at the filesystem root
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_results_dir_that_is_a_file_is_one_line(tiny_gpt2, tmp_path, capsys):
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder\n")
    for results in (blocker, blocker / "sub"):
        for extra in ([], ["-m", "method=atp,actpatch"]):
            args = [*extra, *local_args(tiny_gpt2, pairs, tmp_path), f"results_dir={results}"]
            code, _, err = run_cli(args, capsys)
            assert_one_line(code, err, f"results_dir {str(results)!r}")
    assert blocker.read_text() == "not a folder\n"


@needs_tmpfs
def test_read_only_results_dir_is_one_line(tiny_gpt2, tmp_path):
    pairs = write_lines(tmp_path / "pairs.jsonl", [json.dumps(GOOD)])
    mount = tmp_path / "ro"
    args = " ".join(local_args(tiny_gpt2, pairs, tmp_path)[:-2])  # no results_dir, diagnostics
    harness = f"{sys.executable} -m harness"
    rest = f"{args} diagnostics=false results_dir={mount}"
    script = f"{harness} {rest}; echo rc=$?; {harness} -m {rest} method=atp,hvp"
    proc = in_tmpfs(mount, "ro,size=64k", script)
    assert "rc=2" in proc.stdout, proc.stdout + proc.stderr
    single, multi = proc.stderr.strip().splitlines()
    for line in (single, multi):
        assert_one_line(2, line, f"results_dir {str(mount)!r} is not writable", "Read-only")
    assert proc.returncode == 2


def test_atomic_write_leaves_no_temp_file_when_interrupted(tmp_path, monkeypatch):
    from harness import storage

    target = tmp_path / "out" / "summary.json"
    storage.atomic_write_json(target, {"a": 1})

    def interrupted(*_args):
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(storage.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        storage.atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1}  # the old file is intact
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]
