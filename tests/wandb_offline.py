"""Read a W&B offline run file (``run-<id>.wandb``) back: what a dashboard would show.

The file is wandb's LevelDB-style log: a 7-byte header (":W&B", magic, version), then 32 KiB
blocks of chunks (crc32 4 bytes, length 2, type 1: full/first/middle/last) whose payloads
are protobuf ``Record`` messages (wandb.proto.wandb_internal_pb2). wandb 0.31 ships no reader.
"""
from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending, out = 7, b"", []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # the rest of a block is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            out.append(pending + payload)
        else:
            break  # zeros: the end of what was written
    return [wandb_internal_pb2.Record.FromString(b) for b in out]


def _items(update) -> dict:
    return {(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in update}


def finished_records(path: str | Path, wait: float = 60.0) -> list:
    """The run file's records once it is complete: wandb's service process writes the file, and
    after ``finish()`` returns it may still be writing the last records (seen here: a history row
    or an artifact missing when read at once); the run's ``exit`` record comes last."""
    deadline = time.monotonic() + wait
    while True:
        found = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def read_run(path: str | Path) -> dict:
    """{"config", "history" (a dict per step), "summary", "run_id", "group", "name", "artifacts"}."""
    run = {"config": {}, "history": [], "summary": {}, "run_id": None, "group": None, "name": None, "artifacts": []}
    for r in finished_records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            run["run_id"], run["group"], run["name"] = r.run.run_id, r.run.run_group, r.run.display_name
            run["config"].update(_items(r.run.config.update))
        elif kind == "config":
            run["config"].update(_items(r.config.update))
        elif kind == "history":
            run["history"].append(_items(r.history.item))
        elif kind == "summary":
            run["summary"].update(_items(r.summary.update))
        elif kind == "artifact":  # e.g. a table with images: path in the artifact -> staged local file
            run["artifacts"].append({c.path: c.local_path for c in r.artifact.manifest.contents})
    return run
