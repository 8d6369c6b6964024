"""Atomic files and checkpoints that survive a kill at any instant.

Every file is written to a temporary name in the same directory and renamed over the old one, so a
reader sees the old file or the new one, never half of one. The previous checkpoint is kept as
``checkpoint.prev.pt`` until the new one is in place, so a damaged latest one can fall back to it.
A checkpoint ends with a SHA-256 of its bytes: a file that still unpickles after a flipped byte or a
changed tensor is damaged all the same, and is treated as unreadable. ``result.json`` carries a copy of
the history (so metrics.jsonl can always be rebuilt), the SHA-256 of metrics.jsonl's bytes and a
``digest`` over all of it, so an edited result or metrics file is found, not trusted. Files get the mode
a plain ``open`` would give them (0666 less the umask), so a group can read a shared run directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch

from .. import faults

RESULT = "result.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"
DIGEST_MAGIC = b"\nfggp-sha256:"
DIGEST_BYTES = len(DIGEST_MAGIC) + 32


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for an instant, in every thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _UMASK_AT_IMPORT


_UMASK_AT_IMPORT = os.umask(0o022)
os.umask(_UMASK_AT_IMPORT)


def check_out_dir(path, field: str = "out") -> Path:
    """``path`` as an absolute directory that exists or can be created, and is writable; else a one-line
    ValueError naming ``field``. Creates nothing, so it can run before any data loads."""
    if path is None or not str(path).strip():  # Path("") is ".": an empty --out would mean "here", unasked
        raise ValueError(f"{field}: {str(path)!r} is empty; give a directory, e.g. outputs")
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is a file; it must be a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{field}: {str(path)!r} is under {str(existing)!r}, which is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{field}: {str(existing)!r} is not writable (permissions or a read-only filesystem)")
    return path


def atomic_write(path: Path, write, fault_point: str | None = None) -> None:
    """Call ``write(file_object)`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide run files from the group
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if fault_point:
            faults.reach(fault_point)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(data, indent=2, sort_keys=True) + "\n").encode()))


def jsonl_bytes(rows) -> bytes:
    """The bytes write_jsonl writes for ``rows``: the same rows always give the same bytes."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()


def write_jsonl(path: Path, rows) -> None:
    atomic_write(path, lambda f: f.write(jsonl_bytes(rows)))


def read_result(run_dir: Path) -> dict | None:
    """A run's result.json, or None when it is missing or unreadable (then the run is not finished)."""
    try:
        return json.loads((Path(run_dir) / RESULT).read_text())
    except (OSError, ValueError):
        return None


def write_metrics(run_dir: Path, history: list[dict]) -> None:
    """metrics.jsonl from a checkpoint's history: one row per finished epoch, whatever was there before."""
    write_jsonl(Path(run_dir) / METRICS, history)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def result_digest(result: dict) -> str:
    """SHA-256 over everything in a result but its ``digest`` (canonical JSON: key order, spacing and a
    round trip through the file do not change it)."""
    body = {k: v for k, v in result.items() if k != "digest"}
    return _sha256(json.dumps(body, sort_keys=True).encode())


def write_result(run_dir: Path, result: dict, history: list[dict] | None = None) -> dict:
    """result.json with a copy of ``history``, the SHA-256 of the metrics.jsonl it renders to, and a
    ``digest`` over both and every other field; returns it as it reads back from the file."""
    result = json.loads(json.dumps(result))
    if history is not None:
        result["history"] = json.loads(json.dumps(history))
        result["metrics_sha256"] = _sha256(jsonl_bytes(result["history"]))
    result["digest"] = result_digest(result)
    write_json(Path(run_dir) / RESULT, result)
    return result


def result_problem(result: dict | None) -> str | None:
    """None when a result is whole (its digest matches) or predates digests (not checked: ``unverified``);
    else what is wrong with it, in words."""
    if not result or "digest" not in result:
        return None
    if result.get("digest") != result_digest(result):
        return "result.json does not match its digest (edited or damaged)"
    return None


def metrics_problem(run_dir: Path, result: dict) -> str | None:
    """None when metrics.jsonl is what ``result`` says it is: the bytes its ``metrics_sha256`` names, or,
    for a result made before digests, one row per epoch done. Else what is wrong with it, in words."""
    path = Path(run_dir) / METRICS
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return "metrics.jsonl is missing"
    except OSError as err:
        return f"metrics.jsonl cannot be read ({err.strerror})"
    if "metrics_sha256" in result:
        return None if _sha256(data) == result["metrics_sha256"] else \
            "metrics.jsonl does not match result.json's digest (edited or damaged)"
    rows = sum(1 for line in data.decode(errors="replace").splitlines() if line.strip())
    if result.get("epochs_done") is not None and rows != result["epochs_done"]:
        return f"metrics.jsonl has {rows} rows for {result['epochs_done']} epochs"
    return None


def epochs_done(run_dir: Path) -> int:
    """Epochs a run has finished, as its metrics.jsonl counts them (0 when there is none)."""
    try:
        return sum(1 for line in (Path(run_dir) / METRICS).read_text().splitlines() if line.strip())
    except OSError:
        return 0


def has_training(run_dir: Path) -> bool:
    """Whether a run directory holds any training: a finished epoch or a checkpoint (what tells an
    interrupted point from a pending one, and a run worth keeping from an empty folder)."""
    return epochs_done(run_dir) > 0 or (Path(run_dir) / CHECKPOINT).exists()


def save_checkpoint(run_dir: Path, state: dict) -> None:
    run_dir = Path(run_dir)
    latest = run_dir / CHECKPOINT
    if latest.exists():
        os.replace(latest, run_dir / PREVIOUS)
        faults.reach("checkpoint_rotate")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).digest()
    atomic_write(latest, lambda f: f.write(payload + DIGEST_MAGIC + digest), fault_point="checkpoint_write")


class CheckpointError(RuntimeError):
    pass


def _read(path: Path) -> dict:
    data = path.read_bytes()
    payload, magic, digest = data[:-DIGEST_BYTES], data[-DIGEST_BYTES:-32], data[-32:]
    if len(data) < DIGEST_BYTES or magic != DIGEST_MAGIC:
        raise CheckpointError(f"{path} is damaged (no content digest at its end)")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path} is damaged (its content does not match its digest)")
    try:
        state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated zip, a bad pickle, ...: all mean "this file is damaged"
        raise CheckpointError(f"{path} is damaged ({type(err).__name__})") from None
    if not isinstance(state, dict) or "epoch" not in state:
        raise CheckpointError(f"{path} is not an fggp checkpoint")
    return state


def load_checkpoint(run_dir: Path, log=print) -> dict | None:
    """The newest readable checkpoint of a run, or None; says which one it took and why.

    Temporary files a killed writer left behind are removed first: they were never renamed, so
    nothing refers to them.
    """
    run_dir = Path(run_dir)
    for stale in run_dir.glob(".*.tmp"):
        stale.unlink(missing_ok=True)
    for name in (CHECKPOINT, PREVIOUS):
        path = run_dir / name
        if not path.exists():
            continue
        try:
            state = _read(path)
        except CheckpointError as err:
            log(f"checkpoint: {err}; trying an older one")
            continue
        log(f"checkpoint: resuming from {path.name} (epoch {state['epoch']} done)")
        return state
    if (run_dir / CHECKPOINT).exists() or (run_dir / PREVIOUS).exists():
        log("checkpoint: no readable checkpoint left; starting afresh")
    return None
