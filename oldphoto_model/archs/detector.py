"""The scratch detector: a small U-Net that marks structured defects (scratches, cracks,
dust, spots, holes) of an old photo.

    RGB in [-1, 1] (gray photos as three equal channels) -> 1-channel logit map, same size

Layout (``width`` w = 16, ``levels`` 2 by default; every conv 3x3, zero-padded, ReLU):

    in    pixel unshuffle 2: 3 x H x W -> 12 x H/2 x W/2 (every pixel kept: a 1-px
          hairline stays visible, at a quarter of a full-resolution layer's cost)
    enc0  2 conv 12 -> w
    enc1  maxpool 2, 2 conv w -> 2w
    mid   maxpool 2, 2 conv 2w -> 4w
    dec1  nearest x2, concat enc1, 2 conv 6w -> 2w
    dec0  nearest x2, concat enc0, 2 conv 3w -> w
    head  conv 1x1 w -> 4, pixel shuffle 2 -> 1 x H x W

A first full-resolution version (3 levels at full size) took 20 s for 1024^2 on the
development CPU; this one does the same job at about a sixth of the arithmetic.

No normalisation layer, so every output pixel depends on a bounded input window
(``receptive_radius``): tiled inference with that halo is exact (oldphoto_model.detect).
Inputs must have sides that are multiples of ``2 ** levels`` (the tiler pads).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture of the scratch detector (stored in its weight file)."""

    width: int = 16      # channels of the first (half-resolution) level; doubled per level, at most 4 * width
    levels: int = 2      # max-pool downsamplings after the unshuffle

    def __post_init__(self) -> None:
        if self.width < 1 or not 1 <= self.levels <= 6:
            raise ValueError(f"DetectorConfig: width >= 1 and levels in 1..6, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DetectorConfig":
        return cls(**d)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this (unshuffle 2, then ``levels`` poolings)."""
        return 2 ** (self.levels + 1)

    @property
    def receptive_radius(self) -> int:
        """Input pixels on each side an output pixel can depend on (an upper bound).
        At half resolution: two 3x3 convs add 2 pixels of their level (2 * 2**l), a 2x2
        max pool and a nearest upsampling one pixel of the finer level each; the
        unshuffle doubles that and adds the other pixel of its 2x2 block."""
        r = 0
        for lvl in range(self.levels + 1):
            r += 2 * 2 ** lvl                                  # encoder (or middle) convs
            if lvl < self.levels:
                r += 2 * 2 ** lvl + 2 * 2 ** lvl               # decoder convs; pool down + upsample back
        return 2 * r + 1


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class ScratchDetector(nn.Module):
    """U-Net scratch detector; ``forward`` returns logits (N, 1, H, W)."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        super().__init__()
        self.config = config
        w = config.width
        chans = [min(w * 2 ** i, 4 * w) for i in range(config.levels + 1)]
        self.chans = chans
        self.enc = nn.ModuleList([_double_conv(12, chans[0])] +
                                 [_double_conv(chans[i - 1], chans[i]) for i in range(1, config.levels + 1)])
        # decoder level i takes the upsampled level i+1 and the skip of level i
        self.dec = nn.ModuleList([_double_conv(chans[i + 1] + chans[i], chans[i])
                                  for i in range(config.levels)])
        self.head = nn.Conv2d(chans[0], 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.config.multiple
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"detector input sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        x = F.pixel_unshuffle(x, 2)
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.config.levels)):
            x = self.dec[i](torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips[i]], 1))
        return F.pixel_shuffle(self.head(x), 2)
