"""Checkpoints: atomic writes and a resume that restores everything a step depends on.

A checkpoint holds the networks, optimisers, schedulers, the step and the RNG
states. Data and noise are drawn from generators seeded by (seed, step, rank), so
a resumed run sees the same batches and the same noise as an uninterrupted one.
"""
from __future__ import annotations

import io
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from oldphoto_model.atomic import atomic_write_bytes
from oldphoto_model.weights import read_payload

__all__ = ["atomic_write_bytes", "save_checkpoint", "load_checkpoint", "read_checkpoint",
           "latest_checkpoint", "remove_stale_temporaries", "rng_state", "set_rng_state"]

#: When this process started using checkpoints. A temporary file of an atomic write
#: older than this belongs to a process that died during a save (SIGKILL leaves one);
#: a newer one may be another live process's save in progress and is left alone.
_STARTED = time.time()


def rng_state() -> dict[str, Any]:
    # numpy's state as a tensor + plain values, so checkpoints load with weights_only=True
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)      # the legacy form: the global generator is MT19937
    name, keys, pos, has_gauss, cached = np_state
    state = {"torch": torch.get_rng_state(),
             "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, step: int, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], schedulers: dict[str, Any],
                    extra: dict[str, Any] | None = None) -> Path:
    """Atomically write one checkpoint file."""
    payload = {
        "step": step,
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
        "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
        "rng": rng_state(),
        "extra": extra or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    remove_stale_temporaries(path)
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, *, modules: dict[str, torch.nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer] | None = None,
                    schedulers: dict[str, Any] | None = None, restore_rng: bool = True,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint into the given objects; returns the payload (``step``, ``extra``)."""
    payload = read_checkpoint(path, map_location)
    for k, m in modules.items():
        m.load_state_dict(payload["modules"][k])
    for k, o in (optimizers or {}).items():
        o.load_state_dict(payload["optimizers"][k])
    for k, s in (schedulers or {}).items():
        s.load_state_dict(payload["schedulers"][k])
    if restore_rng:
        set_rng_state(payload["rng"])
    return payload


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw payload of a checkpoint; plain types and tensors only (``weights_only=True``).
    An unreadable file is a WeightsError naming it."""
    return read_payload(path, map_location)


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """``last.pt`` in ``directory`` when present (a stage calls this when it starts, so
    the temporary files of saves killed in an earlier run are removed here too)."""
    p = Path(directory) / "last.pt"
    remove_stale_temporaries(p)
    return p if p.is_file() else None


def remove_stale_temporaries(path: str | os.PathLike, before: float | None = None) -> list[Path]:
    """Delete the temporary files (``.NAME.*.tmp``) that atomic writes of ``path`` left
    when their process was killed, i.e. those last modified before ``before`` (default:
    this process's start). Returns what was removed."""
    path = Path(path)
    cutoff = _STARTED if before is None else before
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.is_file() and not tmp.is_symlink() and tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:     # another rank or process removed it first
            pass
    return removed
