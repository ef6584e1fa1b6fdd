"""A stage trained straight through and one stopped after a step and resumed end with
the same weights (bit for bit on CPU)."""
from pathlib import Path

import torch

from training.stages import train_stage


def train_and_check_resume(cfg, tmp_path: Path, stage: str, key: str) -> Path:
    """Train ``stage`` in cfg's run folder, check its outputs, then stop-and-resume it in
    another folder (which cfg points at afterwards) and compare module ``key``."""
    ckpt = train_stage(cfg, stage)
    out = Path(cfg.train.run_dir) / stage
    assert ckpt.is_file() and (out / "log.csv").is_file() and list((out / "samples").glob("*.png"))
    full = torch.load(ckpt, map_location="cpu", weights_only=True)["modules"][key]
    cfg.train.run_dir = str(tmp_path / "resumed")
    train_stage(cfg, stage, stop_after=1)
    again = train_stage(cfg, stage)
    for k, v in torch.load(again, map_location="cpu", weights_only=True)["modules"][key].items():
        torch.testing.assert_close(v, full[k], rtol=0, atol=0)
    return ckpt
