"""Atomic, pickle-free files: JSON (with a content hash) and parquet.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted job never leaves a half-written result or cache entry.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise HarnessError(f"cannot write to {str(path.parent)!r}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as strict JSON (non-finite floats as null), atomically."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=True, allow_nan=False)
    atomic_write_bytes(path, (text + "\n").encode())


def atomic_write_parquet(path: Path, frame: pd.DataFrame) -> None:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def content_hash(payload: Any) -> str:
    """SHA-256 of a JSON-serialisable payload (keys sorted)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def write_hashed_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with its content hash, so a corrupted file is detected on read."""
    payload = json_safe(payload)  # hashed as it is stored (NaN -> null)
    atomic_write_json(path, {"sha256": content_hash(payload), "payload": payload})


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
