"""Atomic, pickle-free files: JSON (with a content hash) and parquet; cached file digests.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted job never leaves a half-written result or cache entry, and a failed write (a full
disk, a read-only folder) leaves the previous file as it was. Files get the mode an ordinary
``open`` would give them (0666 minus the umask), not ``mkstemp``'s 0600.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux ``/proc``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: the classic read-by-setting (restored at once)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` (disk full, quota, read-only, permission)
    into a one-line :class:`HarnessError` naming the file and the reason."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or os.strerror(err.errno or errno.EIO)
        hint = ""
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = "; files written before are kept: free space and re-run to resume"
        raise HarnessError(f"cannot write {str(path)!r}: {reason}{hint}") from None


def atomic_write_bytes(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` through a temporary file and a rename; returns the SHA-256
    of ``data`` (what :func:`file_sha256` of the written file gives)."""
    path = Path(path)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with write_errors(path):
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), 0o666 & ~current_umask())
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return hashlib.sha256(data).hexdigest()


def json_safe(payload: Any) -> Any:
    """``payload`` with every NaN or infinite float replaced by None (JSON ``null``: an
    undefined score), so the file is strict JSON that any reader accepts."""
    if isinstance(payload, float):
        return payload if math.isfinite(payload) else None
    if isinstance(payload, dict):
        return {key: json_safe(value) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [json_safe(value) for value in payload]
    return payload


def atomic_write_json(path: Path, payload: Any) -> str:
    """Write ``payload`` as strict JSON (non-finite floats as null, keys sorted), atomically;
    returns the file's SHA-256."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=True, allow_nan=False)
    return atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> str:
    """Write ``frame`` as parquet (no index); returns the file's SHA-256."""
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def content_hash(payload: Any) -> str:
    """SHA-256 of a JSON-serialisable payload (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_hashed_json(path: Path, payload: dict[str, Any]) -> str:
    """Write ``payload`` with its content hash, so a corrupted file is detected on read;
    returns the file's SHA-256."""
    payload = json_safe(payload)  # hashed as it is stored (NaN -> null)
    return atomic_write_json(path, {"sha256": content_hash(payload), "payload": payload})


def read_hashed_json(path: Path) -> dict[str, Any] | None:
    """The payload of a file written by :func:`write_hashed_json`; ``None`` if the file is
    missing, unreadable, truncated or its content hash does not match."""
    try:
        data = json.loads(Path(path).read_text())
        payload = data["payload"]
        if data["sha256"] != content_hash(payload):
            return None
        return payload
    except (OSError, ValueError, KeyError, TypeError):
        return None


RECORD_FILES = ("summary.json", "estimates.parquet")
"""The files every finished run folder holds."""

FILE_DIGESTS = "files.json"
"""The file in a run folder that records the SHA-256 of each other file it holds (name ->
digest, written by :func:`write_hashed_json` after them), so the folder can be verified on its
own."""


def mismatched_file(folder: Path, files: dict[str, str]) -> str | None:
    """The name of the first of :data:`RECORD_FILES` and ``files`` (names in ``folder``) that is
    missing or whose SHA-256 is not ``files[name]``; None when every one matches."""
    for name in dict.fromkeys([*RECORD_FILES, *sorted(files)]):
        try:
            digest = hashlib.sha256((Path(folder) / name).read_bytes()).hexdigest()
        except OSError:
            return name
        if digest != files.get(name):
            return name
    return None


def verify_run_folder(folder: Path) -> bool:
    """True when ``folder``'s :data:`FILE_DIGESTS` vouches for each of its files, False when the
    folder has no such record (written by an older harness: it cannot be checked);
    ``ValueError`` naming the file that is missing, edited or damaged."""
    path = Path(folder) / FILE_DIGESTS
    if not path.exists():
        return False
    files = read_hashed_json(path)
    if files is None:
        raise ValueError(f"{FILE_DIGESTS} is unreadable or damaged (its content hash differs)")
    name = mismatched_file(folder, files)
    if name is not None:
        raise ValueError(
            f"{name} is missing or differs from the SHA-256 recorded when it was written "
            "(edited or damaged)"
        )
    return True


_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a file's bytes, remembered by (resolved path, size, mtime, ctime, inode).

    The digest is kept in memory and, with ``cache_dir``, under ``cache_dir/file_hashes/``, so
    an unchanged multi-GB checkpoint is read once, not once per job. Any write to the file
    changes its mtime or ctime, so an edited file is hashed again."""
    real = Path(path).resolve()
    with _read_errors(path):
        stat = real.stat()
    stamp = (str(real), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
    if stamp in _DIGESTS:
        return _DIGESTS[stamp]
    memo = None
    if cache_dir is not None:
        memo = Path(cache_dir) / "file_hashes" / f"{content_hash(str(real))[:24]}.json"
        entry = read_hashed_json(memo)
        if entry is not None and entry.get("stamp") == list(stamp):
            _DIGESTS[stamp] = entry["sha256"]
            return entry["sha256"]
    digest = hashlib.sha256()
    with _read_errors(path), real.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    _DIGESTS[stamp] = digest.hexdigest()
    if memo is not None:
        write_hashed_json(memo, {"stamp": list(stamp), "sha256": _DIGESTS[stamp]})
    return _DIGESTS[stamp]


@contextlib.contextmanager
def _read_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        raise HarnessError(f"cannot read {str(path)!r}: {err.strerror}") from None


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be made (if absent) and written into (the OS's words), or None."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        return err.strerror or os.strerror(err.errno or errno.EIO)
    return None
