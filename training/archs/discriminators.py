"""LSGAN discriminators: multi-scale PatchGAN on images, a small one on latents."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PatchDiscriminator(nn.Module):
    """pix2pixHD's NLayerDiscriminator: 4x4 convs, instance norm, LeakyReLU 0.2.

    ``forward`` returns every layer's output: the last is the patch score map,
    the others feed the feature-matching loss.
    """

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        seqs = [nn.Sequential(nn.Conv2d(in_channels, ndf, 4, 2, 2), nn.LeakyReLU(0.2, True))]
        nf = ndf
        for n in range(1, n_layers + 1):
            prev, nf = nf, min(nf * 2, 512)
            stride = 2 if n < n_layers else 1
            seqs.append(nn.Sequential(nn.Conv2d(prev, nf, 4, stride, 2), nn.InstanceNorm2d(nf),
                                      nn.LeakyReLU(0.2, True)))
        seqs.append(nn.Sequential(nn.Conv2d(nf, 1, 4, 1, 2)))
        self.layers = nn.ModuleList(seqs)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """``num_d`` PatchGANs on the image and its 2x, 4x... average-pooled versions."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, num_d: int = 2) -> None:
        super().__init__()
        self.ds = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers) for _ in range(num_d))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, d in enumerate(self.ds):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs


class LatentDiscriminator(nn.Module):
    """Tells real-old (R) latents from synthetic (X) ones, per latent patch."""

    def __init__(self, channels: int = 64, ndf: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ndf, 3, 1, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1), nn.InstanceNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, ndf * 2, 3, 1, 1), nn.InstanceNorm2d(ndf * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 3, 1, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
