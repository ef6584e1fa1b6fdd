"""The small U-Net the helper networks share (the scratch detector, the learned fill).

    C_in x H x W -> pixel unshuffle 2 -> U-Net at half resolution -> pixel shuffle 2 -> C_out x H x W

Layout (``width`` w, ``levels`` L; every conv 3x3, zero-padded, ReLU):

    in    pixel unshuffle 2: C_in x H x W -> 4 C_in x H/2 x W/2 (every pixel kept: a 1-px
          hairline stays visible, at a quarter of a full-resolution layer's cost)
    enc0  2 conv 4 C_in -> w
    enc_l maxpool 2, 2 conv (l = 1..L; channels doubled per level, at most 4 w)
    dec_l nearest x2, concat enc_l, 2 conv
    head  conv 1x1 w -> 4 C_out, pixel shuffle 2 -> C_out x H x W

No normalisation layer, so every output pixel depends on a bounded input window
(``receptive_radius``): tiled inference with that halo is exact (``oldphoto_model.tiles``).
Inputs must have sides that are multiples of ``unet_multiple(levels)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

ConfigT = TypeVar("ConfigT", bound="UNetConfig")


def unet_multiple(levels: int) -> int:
    """Input sides must be multiples of this (unshuffle 2, then ``levels`` poolings)."""
    return 2 ** (levels + 1)


def unet_receptive_radius(levels: int) -> int:
    """Input pixels on each side an output pixel can depend on (an upper bound).
    At half resolution: two 3x3 convs add 2 pixels of their level (2 * 2**l), a 2x2
    max pool and a nearest upsampling one pixel of the finer level each; the
    unshuffle doubles that and adds the other pixel of its 2x2 block."""
    r = 0
    for lvl in range(levels + 1):
        r += 2 * 2 ** lvl                                  # encoder (or middle) convs
        if lvl < levels:
            r += 2 * 2 ** lvl + 2 * 2 ** lvl               # decoder convs; pool down + upsample back
    return 2 * r + 1


@dataclass(frozen=True)
class UNetConfig:
    """Size of a ``SmallUNet`` (stored in a helper network's weight file)."""

    width: int = 16      # channels of the first (half-resolution) level; doubled per level, at most 4 * width
    levels: int = 2      # max-pool downsamplings after the unshuffle

    def __post_init__(self) -> None:
        # bounded before anything is built: a tiny weight file must not allocate a huge network
        if type(self.width) is not int or type(self.levels) is not int \
                or not 1 <= self.width <= 256 or not 1 <= self.levels <= 6:
            raise ValueError(f"{type(self).__name__}: width in 1..256 and levels in 1..6, got {self}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls: type[ConfigT], d: dict[str, Any]) -> ConfigT:
        return cls(**d)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return unet_multiple(self.levels)

    @property
    def receptive_radius(self) -> int:
        """Input pixels on each side an output pixel can depend on (an upper bound)."""
        return unet_receptive_radius(self.levels)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(inplace=True))


class SmallUNet(nn.Module):
    """The U-Net above; ``forward`` maps (N, in_channels, H, W) to (N, out_channels, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, levels: int) -> None:
        super().__init__()
        self.levels = levels
        chans = [min(width * 2 ** i, 4 * width) for i in range(levels + 1)]
        self.chans = chans
        self.enc = nn.ModuleList([_double_conv(4 * in_channels, chans[0])] +
                                 [_double_conv(chans[i - 1], chans[i]) for i in range(1, levels + 1)])
        # decoder level i takes the upsampled level i+1 and the skip of level i
        self.dec = nn.ModuleList([_double_conv(chans[i + 1] + chans[i], chans[i]) for i in range(levels)])
        self.head = nn.Conv2d(chans[0], 4 * out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = unet_multiple(self.levels)
        if x.shape[-2] % m or x.shape[-1] % m:
            raise ValueError(f"{type(self).__name__} input sides must be multiples of {m}, "
                             f"got {tuple(x.shape[-2:])}")
        x = F.pixel_unshuffle(x, 2)
        skips = []
        for i, enc in enumerate(self.enc):
            x = enc(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.levels)):
            x = self.dec[i](torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), skips[i]], 1))
        return F.pixel_shuffle(self.head(x), 2)
