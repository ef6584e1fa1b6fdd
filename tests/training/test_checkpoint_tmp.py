"""Checkpoint saves clean up after saves that were killed (issue 11, item 8)."""
from __future__ import annotations

import os
import time

import torch

from training.checkpoint import latest_checkpoint, read_checkpoint, save_checkpoint


def _leftover(folder, tag: str, age_s: float):
    """A temporary file as atomic_write names it, last written ``age_s`` seconds ago."""
    p = folder / f".last.pt.{tag}.tmp"
    p.write_bytes(b"half a checkpoint")
    t = time.time() - age_s
    os.utime(p, (t, t))
    return p


def _save(folder, step: int):
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    return save_checkpoint(folder / "last.pt", step=step, modules={"g": net}, optimizers={"g": opt},
                           schedulers={})


def test_a_save_removes_the_temporaries_of_killed_saves_but_not_a_live_writers(tmp_path):
    killed = _leftover(tmp_path, "k1llEd", age_s=3600)     # SIGKILL during a save of an earlier run
    live = _leftover(tmp_path, "l1ve00", age_s=0)          # another process's save in progress
    other = tmp_path / ".best.pt.x.tmp"                      # not this file's
    other.write_bytes(b"x")
    os.utime(other, (0, 0))
    _save(tmp_path, 5)
    assert not killed.exists()
    assert live.exists() and other.exists()
    assert read_checkpoint(tmp_path / "last.pt")["step"] == 5


def test_a_stage_start_removes_them(tmp_path):
    _save(tmp_path, 1)
    killed = _leftover(tmp_path, "k2llEd", age_s=3600)
    assert latest_checkpoint(tmp_path) == tmp_path / "last.pt"
    assert not killed.exists()
    assert latest_checkpoint(tmp_path / "none") is None      # a stage that never ran
