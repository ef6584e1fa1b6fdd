"""The learned fill stage: a small U-Net (oldphoto_model.archs.fill) learns to refine the
harmonic fill of a scan's defect pixels.

    samples  clean crop -> the unstructured ageing of ``degrade`` (the aged crop, the
             target) -> structured defects on top (the input), mask grown by 0..grow_max
             px, its pixels harmonically filled (training/data/dataset.py FillSamples)
    forward  filled + mask * net(filled, degraded, mask)      (the product's refine_fill)
    loss     L1 against the aged crop over the mask's pixels
    export   RUN_DIR/fill.pt (oldphoto_model.learned_fill.save_fill)

Runs in the shared loop (training/stages/loop.py): resumable, DDP, progress bar.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from oldphoto_model.archs.fill import FillConfig, FillNet
from oldphoto_model.learned_fill import load_fill, save_fill

from ..config import Config
from ..data.dataset import FillSamples
from ..dist import DistContext
from ..grow import grow_unet
from ..losses import masked_l1
from .common import SingleNetworkStage, autocast, trained_network


def fill_config(cfg: Config) -> FillConfig:
    return FillConfig(width=cfg.fill.width, levels=cfg.fill.levels, see_through=cfg.fill.see_through)


class FillStage(SingleNetworkStage):
    """The learned fill, its optimiser and schedule; the loop calls ``train_step`` and ``sample_rows``."""

    def __init__(self, cfg: Config, ctx: DistContext, log=print) -> None:
        f = cfg.fill
        fill_net = FillNet(fill_config(cfg))
        if f.init_from:
            start = load_fill(f.init_from)
            if start.config.see_through != f.see_through:
                raise ValueError(f"--fill.init_from {f.init_from}: see_through {start.config.see_through} "
                                 f"there, {f.see_through} here (the network's inputs differ)")
            grow_unet(start, fill_net)
            log(f"started from {f.init_from} (width {start.config.width}, levels {start.config.levels})")
        super().__init__(cfg, ctx, "fill", "fill", fill_net, f.lr, f.steps,
                         f"learned fill: width {f.width}, levels {f.levels}, crop {f.crop}", log)
        self.fill_net = fill_net          # self.net, typed: its inputs() and refine()

    def dataset(self) -> FillSamples:
        c = copy.deepcopy(self.cfg)
        c.data.crop = self.cfg.fill.crop
        return FillSamples(c)

    def train_step(self, batch: dict[str, torch.Tensor], amp) -> dict[str, float]:
        filled, x, m, target = batch["filled"], batch["degraded"], batch["mask"], batch["target"]
        with autocast(self.ctx.device, amp):
            out = filled + m * self.net_ddp(self.fill_net.inputs(filled, x, m))
        loss = masked_l1(out.float(), target, m)
        self.optimise(loss)
        with torch.no_grad():
            harmonic = masked_l1(filled, target, m)
        # "vs_harmonic" < 1: the network's fill beats the harmonic one it starts from
        return {"l1": float(loss.detach()), "vs_harmonic": float(loss.detach() / harmonic.clamp_min(1e-8))}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Degraded | mask | harmonic fill | learned fill | target, per sample (images in [-1, 1])."""
        filled, x, m, target = batch["filled"], batch["degraded"], batch["mask"], batch["target"]
        out = self.fill_net.refine(filled, x, m).clamp(-1, 1)
        return [[x[i], m[i].expand_as(x[i]) * 2 - 1, filled[i], out[i], target[i]] for i in range(min(4, len(x)))]


def export_fill(cfg: Config, out: str | Path | None = None) -> Path:
    """Write the trained network of ``RUN_DIR/fill/last.pt`` to ``out`` (default
    ``RUN_DIR/fill.pt``) and load it back through the product's loader."""
    run = Path(cfg.train.run_dir)
    net, step = trained_network(cfg, "fill", "fill", FillNet(fill_config(cfg)))
    metadata = {
        "purpose": "learned fill", "preset": cfg.preset, "steps": step, "batch_size": cfg.fill.batch_size,
        "crop": cfg.fill.crop, "defect_scale": list(cfg.fill.defect_scale), "lr": cfg.fill.lr,
        "training": "python -m training fill (synthetic defects of training/data/degradations.py)"}
    if cfg.fill.init_from:
        # the file this run was grown from, and what that file records of its own training
        # (when it is still there: a run may be exported long after it started)
        start = Path(cfg.fill.init_from)
        metadata["grown_from"] = {"file": start.name, **(
            getattr(load_fill(start), "weights_info").metadata if start.is_file() else {})}
    path = save_fill(net, Path(out or run / "fill.pt"), metadata=metadata)
    load_fill(path)
    return path
