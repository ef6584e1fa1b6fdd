"""Losses of the three stages (the paper's, with the original implementation's weights)."""
from __future__ import annotations

from typing import Callable, Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn


def lsgan(pred: torch.Tensor | Sequence, target_real: bool) -> torch.Tensor:
    """Least-squares GAN loss; ``pred`` is a score map or multi-scale lists of layer
    outputs (the last entry of each list is the score map)."""
    if isinstance(pred, torch.Tensor):
        target = torch.ones_like(pred) if target_real else torch.zeros_like(pred)
        return F.mse_loss(pred.float(), target.float())
    total = sum(lsgan(p[-1] if isinstance(p, (list, tuple)) else p, target_real) for p in pred)
    return cast(torch.Tensor, total) / len(pred)     # a tensor: an empty pred fails on the division


def feature_matching(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate layers on fake and (detached) real."""
    loss: torch.Tensor | float = 0.0
    n = 0
    for f_layers, r_layers in zip(fake, real):
        for f, r in zip(f_layers[:-1], r_layers[:-1]):
            loss = loss + F.l1_loss(f.float(), r.detach().float())
            n += 1
    # a tensor: every PatchGAN gives intermediate layers (0.0 only for discriminators without any)
    return cast(torch.Tensor, loss / max(1, n) * 1.0)


def gradient_l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 between the horizontal and vertical finite differences of two images."""
    f, r = fake.float(), real.float()
    dx = F.l1_loss(f[..., :, 1:] - f[..., :, :-1], r[..., :, 1:] - r[..., :, :-1])
    dy = F.l1_loss(f[..., 1:, :] - f[..., :-1, :], r[..., 1:, :] - r[..., :-1, :])
    return 0.5 * (dx + dy)


def masked_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the pixels where ``mask`` (N, 1, H, W) is 1; 0 without any."""
    m = mask.float().expand_as(fake)
    return ((fake.float() - real.float()).abs() * m).sum() / m.sum().clamp_min(1.0)


def kl_reduced(h: torch.Tensor) -> torch.Tensor:
    """KL term of the reduced VAE (unit variance): mean(h^2)."""
    return h.float().pow(2).mean()


class PerceptualLoss(nn.Module):
    """Weighted L1 between feature lists of a frozen feature network."""

    def __init__(self, features: Callable[[torch.Tensor], list[torch.Tensor]] | nn.Module,
                 weights: Sequence[float]) -> None:
        super().__init__()
        self.features = features
        self.weights = list(weights)

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fs = self.features(fake)
        with torch.no_grad():
            rs = self.features(real)
        ws = self.weights if len(self.weights) == len(fs) else [1.0] * len(fs)
        # a tensor: both feature networks give at least one map
        return cast(torch.Tensor, sum(w * F.l1_loss(f.float(), r.float()) for w, f, r in zip(ws, fs, rs)))


def encoder_features(encoder: nn.Module) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """Feature lists from a frozen VAE encoder (after each downsampling and at the end):
    the perceptual fallback when no VGG19 weights are available."""
    def run(x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for layer in cast(nn.Sequential, encoder.net):     # VAEEncoder's layers
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                outs.append(x)
        outs.append(x)
        return outs
    return run
