"""The scratch detector stage: a small U-Net (oldphoto_model.archs.detector) learns the
exact defect masks of the synthetic degradation.

    samples  clean crop -> degrade() (the mapping stage's chain: blur, noise, JPEG, fading,
             grain, paper, halftone, and with probability degrade.p_defects structured
             defects) -> (degraded x, mask m). The other samples carry no structured
             defect at all, so grain, texture, eyes, hair and lettering are seen unmarked;
             ``detect.pristine`` of them are the clean crop itself (sharp edges, highlights);
             ``detect.real`` of them are real old photos with synthetic defects drawn on.
    loss     BCE(logits, m; defect pixels weighted pos_weight) + dice * soft dice over the batch
    export   RUN_DIR/detector.pt (oldphoto_model.detect.save_detector)

Runs in the shared loop (training/stages/loop.py): resumable, DDP, progress bar.
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F

from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
from oldphoto_model.detect import load_detector, save_detector

from ..config import Config
from ..data.dataset import DetectSamples, RealPool
from ..dist import DistContext
from ..grow import grow_unet
from .common import SingleNetworkStage, autocast, trained_network, unwrap


def detector_config(cfg: Config) -> DetectorConfig:
    return DetectorConfig(width=cfg.detect.width, levels=cfg.detect.levels)


def soft_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - Dice of the probabilities over the whole batch (a batch without defects still
    pays for every pixel it marks)."""
    p = torch.sigmoid(logits)
    return 1 - (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)


def detection_loss(logits: torch.Tensor, target: torch.Tensor, pos_weight: float, dice: float
                   ) -> dict[str, torch.Tensor]:
    """{"bce", "dice", "total"} of float32 logits against a 0/1 target."""
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight,
                                                                                     device=logits.device))
    d = soft_dice(logits, target)
    return {"bce": bce, "dice": d, "total": bce + dice * d}


def with_pristine(batch: dict[str, torch.Tensor], share: float, overexposed: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, target) of a batch: each sample, with probability ``share``, is replaced by its
    clean crop and an empty mask; of those, a share ``overexposed`` is brightened by a gain
    of 1.3-2.5 (highlights clipped to flat white, like a blown sky or sunlit pavement, which
    must not pass for a hole). Drawn from torch's generator, which the loop seeds per step
    (so a resumed run draws the same)."""
    x, mask = batch["degraded"], batch["mask"]
    if share <= 0:
        return x, mask
    n = x.shape[0]
    pick = (torch.rand(n) < share).to(x.device).view(-1, 1, 1, 1)
    clean = batch["clean"]
    if overexposed > 0:
        bright = (torch.rand(n) < overexposed).to(x.device).view(-1, 1, 1, 1)
        gain = (1.3 + 1.2 * torch.rand(n)).to(x.device).view(-1, 1, 1, 1)
        clean = torch.where(bright, ((clean + 1) * gain - 1).clamp(-1, 1), clean)
    return torch.where(pick, clean, x), torch.where(pick, torch.zeros_like(mask), mask)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (N, C, H, W) blurred by a Gaussian of ``sigma`` px, edges mirrored."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def as_scanned(x: torch.Tensor, noise: float, blur: float = 0.0) -> torch.Tensor:
    """``x`` (images in [-1, 1]) as a scanner sees the damaged print: softened by a per-sample
    mix (weight uniform in [0, 1]) of it and its Gaussian blur of ``blur`` px, then Gaussian
    noise of a per-sample sigma uniform in [0, ``noise``] levels of 255, the same in every
    channel, clipped to [-1, 1]. Drawn from torch's generator, which the loop seeds per step."""
    n, _, h, w = x.shape
    if blur > 0:
        mix = torch.rand(n).view(-1, 1, 1, 1).to(x.device, x.dtype)
        x = x + mix * (gaussian_blur(x, blur) - x)
    if noise > 0:
        sigma = (torch.rand(n) * (noise * 2 / 255)).view(-1, 1, 1, 1)
        x = (x + (torch.randn(n, 1, h, w) * sigma).to(x.device, x.dtype)).clamp(-1, 1)
    return x


class DetectStage(SingleNetworkStage):
    """The detector, its optimiser and schedule; the loop calls ``train_step`` and ``sample_rows``."""

    def __init__(self, cfg: Config, ctx: DistContext, log=print) -> None:
        d = cfg.detect
        net = ScratchDetector(detector_config(cfg))
        if d.init_from:
            start = load_detector(d.init_from)
            grow_unet(start, net)
            log(f"started from {d.init_from} (width {start.config.width}, levels {start.config.levels})")
        super().__init__(cfg, ctx, "detect", "detector", net, d.lr, d.steps,
                         f"detector: width {d.width}, levels {d.levels}, crop {d.crop}", log)

    def dataset(self) -> DetectSamples:
        """The mapping stage's samples (with defects) at the detector's own crop size, a
        share ``detect.real`` of them cut from real old photos."""
        c = copy.deepcopy(self.cfg)
        c.data.crop = self.cfg.detect.crop
        lo, hi = self.cfg.detect.defect_scale
        return DetectSamples(c, self.cfg.detect.real, tuple(self.cfg.detect.real_holdout), (lo, hi),
                             tuple(self.cfg.detect.scaled_kinds), self.cfg.detect.scene_lines)

    def train_step(self, batch: dict[str, torch.Tensor], amp) -> dict[str, float]:
        x, mask = with_pristine(batch, self.cfg.detect.pristine, self.cfg.detect.overexposed)
        x = as_scanned(x, self.cfg.detect.scan_noise, self.cfg.detect.scan_blur)
        with autocast(self.ctx.device, amp):
            logits = self.net_ddp(x)
        losses = detection_loss(logits.float(), mask, self.cfg.detect.pos_weight, self.cfg.detect.dice)
        self.optimise(losses["total"])
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Degraded | true mask | predicted probability, per sample (images in [-1, 1])."""
        x, m = batch["degraded"], batch["mask"]
        p = torch.sigmoid(unwrap(self.net)(x).float())
        return [[x[i], m[i].expand_as(x[i]) * 2 - 1, p[i].expand_as(x[i]) * 2 - 1] for i in range(min(4, len(x)))]


def real_trained_on(cfg: Config) -> list[str]:
    """File stems of the real old photos the detector's samples were cut from (``detect.real``
    > 0): ``eval-detect`` leaves them out of its real-photo false alarms."""
    if cfg.detect.real <= 0:
        return []
    pool = RealPool.of(cfg.data, cfg.detect.crop, tuple(cfg.detect.real_holdout))
    return sorted(Path(p).stem for p in pool.paths) if pool is not None else []


def export_detector(cfg: Config, out: str | Path | None = None) -> Path:
    """Write the trained detector of ``RUN_DIR/detect/last.pt`` to ``out`` (default
    ``RUN_DIR/detector.pt``) and load it back through the product's loader."""
    run = Path(cfg.train.run_dir)
    net, step = trained_network(cfg, "detect", "detector", ScratchDetector(detector_config(cfg)))
    path = save_detector(net, Path(out or run / "detector.pt"), metadata={
        "purpose": "scratch detector", "preset": cfg.preset, "steps": step,
        "batch_size": cfg.detect.batch_size, "crop": cfg.detect.crop, "threshold": cfg.detect.threshold,
        "training": "python -m training detect (synthetic defects of training/data/degradations.py)",
        "real_trained_on": real_trained_on(cfg)})
    load_detector(path)
    return path
