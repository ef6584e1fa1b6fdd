"""The "reduced" VAE of the paper: one class per direction, used for both domains.

Domain A (old and synthetic photos) and domain B (clean photos) each get an
encoder/decoder pair of this shape. The encoder outputs the latent mean only;
sampling (h + N(0, I)) happens in training, never at inference.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import VAEConfig
from .blocks import ResBlock, conv_norm_relu, norm_relu


class VAEEncoder(nn.Module):
    """Image in [-1, 1] (N, C, H, W) -> latent (N, channels, H/s, W/s)."""

    def __init__(self, cfg: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        c, nm = cfg.channels, cfg.norm == "instance"
        layers = conv_norm_relu(cfg.in_channels, c, kernel=7, normalize=nm)
        for _ in range(cfg.n_downsample):
            layers += [nn.Conv2d(c, c, 4, stride=2, padding=1)] + norm_relu(c, nm)
        layers += [ResBlock(c, normalize=nm) for _ in range(cfg.n_res_blocks)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class VAEDecoder(nn.Module):
    """Latent -> image in [-1, 1]; mirrors the encoder with transposed convs."""

    def __init__(self, cfg: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        c, nm = cfg.channels, cfg.norm == "instance"
        layers: list[nn.Module] = [ResBlock(c, normalize=nm) for _ in range(cfg.n_res_blocks)]
        for _ in range(cfg.n_downsample):
            layers += [nn.ConvTranspose2d(c, c, 4, stride=2, padding=1)] + norm_relu(c, nm)
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(c, cfg.in_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
