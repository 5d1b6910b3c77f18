"""A reader for offline W&B run files, for the tests (the package only writes them).

:func:`read_offline_run` reads a ``.wandb`` file back without W&B's servers (wandb 0.31 no
longer ships a reader): a 7-byte header (``:W&B``, magic ``0xBEE1``, version), then LevelDB-log
blocks of 32 KiB made of records with a 7-byte header (CRC-32 of type byte + payload, little-endian
u32; payload length, u16; type, u8: 1 full, 2 first, 3 middle, 4 last). A block whose tail is
shorter than a record header is zero-padded. Each reassembled payload is one
``wandb.proto.wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import math
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_HEADER = struct.Struct("<4sHB")  # ident, magic, version
_RECORD_HEADER = struct.Struct("<IHB")  # crc32, length, type
_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(wandb_file: Path) -> Any:
    """Yield every ``wandb_internal_pb2.Record`` of an offline ``.wandb`` file, in order.

    Raises ``ValueError`` on a file that is not a W&B run file or on a corrupt record. A record
    cut short at the end of the file (a run still being written) ends the iteration.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(wandb_file).read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{wandb_file}: too short for a W&B run file")
    ident, magic, _version = _HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{wandb_file}: not a W&B run file (header {data[:7]!r})")
    pos = _HEADER.size
    pending: bytearray | None = None
    while pos < len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER.size:  # zero padding at a block's end
            pos += left_in_block
            continue
        if pos + _RECORD_HEADER.size > len(data):
            return
        crc, length, kind = _RECORD_HEADER.unpack_from(data, pos)
        if kind == 0 and length == 0:  # zero-filled remainder of a block
            pos += left_in_block
            continue
        start = pos + _RECORD_HEADER.size
        if start + length > len(data):
            return  # truncated tail
        payload = data[start : start + length]
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) != crc:
            raise ValueError(f"{wandb_file}: bad checksum in the record at offset {pos}")
        pos = start + length
        if kind == _FULL:
            chunk = payload
        elif kind == _FIRST:
            pending = bytearray(payload)
            continue
        elif kind in (_MIDDLE, _LAST):
            if pending is None:
                raise ValueError(f"{wandb_file}: record fragment without its start at {pos}")
            pending += payload
            if kind == _MIDDLE:
                continue
            chunk, pending = bytes(pending), None
        else:
            raise ValueError(f"{wandb_file}: unknown record type {kind} at offset {pos}")
        record = pb.Record()
        record.ParseFromString(chunk)
        yield record


def read_offline_run(wandb_file: Path, wait_s: float = 0.0) -> dict[str, Any]:
    """What an offline W&B run logged, read from its ``run-<id>.wandb`` file.

    W&B's service writes the file in the background and may still be flushing it for a moment
    after ``run.finish()`` returns: ``wait_s`` > 0 re-reads the file until it holds the run's
    exit record or that many seconds have passed (``exit_code`` None: not finished yet).

    Returns a dict with
    ``run`` (id, project, entity, group, job_type, name, tags),
    ``config`` (the logged config, W&B's internal ``_wandb`` key dropped),
    ``summary`` (the final run summary, nested keys as nested dicts; NaN was stored as None),
    ``history`` (one dict per logged step),
    ``exit_code`` (None if the run never finished), ``files`` (paths saved with the run) and
    ``record_counts`` (how many records of each type the file holds).
    """
    deadline = time.monotonic() + wait_s
    while True:
        result = _read_offline_run(wandb_file)
        if result["exit_code"] is not None or time.monotonic() >= deadline:
            return result
        time.sleep(0.05)


def _read_offline_run(wandb_file: Path) -> dict[str, Any]:
    run: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    files: list[str] = []
    counts: dict[str, int] = {}
    exit_code: int | None = None
    for record in iter_records(wandb_file):
        kind = record.WhichOneof("record_type")
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "run":
            r = record.run
            run = {
                "id": r.run_id,
                "project": r.project,
                "entity": r.entity,
                "group": r.run_group,
                "job_type": r.job_type,
                "name": r.display_name,
                "tags": list(r.tags),
            }
            _apply_items(config, r.config.update, r.config.remove)
            _apply_items(summary, r.summary.update, r.summary.remove)
        elif kind == "config":
            _apply_items(config, record.config.update, record.config.remove)
        elif kind == "summary":
            _apply_items(summary, record.summary.update, record.summary.remove)
        elif kind == "history":
            row: dict[str, Any] = {}
            _apply_items(row, record.history.item, ())
            if "_step" not in row and record.history.HasField("step"):
                row["_step"] = record.history.step.num
            history.append(row)
        elif kind == "files":
            files.extend(f.path for f in record.files.files)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    config.pop("_wandb", None)
    return {
        "run": run,
        "config": config,
        "summary": summary,
        "history": history,
        "exit_code": exit_code,
        "files": files,
        "record_counts": counts,
    }


def find_offline_runs(root: Path) -> list[Path]:
    """Every ``run-*.wandb`` file below ``root``, oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"), key=lambda p: p.parent.name)


def _apply_items(target: dict[str, Any], updates: Sequence[Any], removes: Sequence[Any]) -> None:
    for item in updates:
        path = list(item.nested_key) or [item.key]
        node = target
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        node[path[-1]] = _item_value(item)
    for item in removes:
        path = list(item.nested_key) or [item.key]
        node = target
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    field = item.WhichOneof("value") if "value" in item.DESCRIPTOR.oneofs_by_name else None
    if field is None or field == "none":
        return None
    value = getattr(item, field)
    return json.loads(value) if field == "json" else value


def same_value(a: Any, b: Any, rel: float = 1e-12) -> bool:
    """Equality for values read back from W&B: NaN matches NaN or None (W&B writes NaN as null)."""
    if isinstance(a, float) and math.isnan(a):
        return b is None or (isinstance(b, float) and math.isnan(b))
    if isinstance(b, float) and math.isnan(b):
        return a is None
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b
    return a == b
