"""The learned fill: a small U-Net (``archs.unet``) that refines the harmonic fill of a
photo's defect pixels.

    in   the scan with its defects harmonically filled (3), the scan as it is (3: a
         semi-transparent scratch or stain still shows the photo under it; without
         ``see_through`` the filled scan again), the defect mask as -1 / 1 (1); all in [-1, 1]
    out  filled + mask * residual: only the defect pixels change, and with the head's
         zero initialisation an untrained network returns the harmonic fill exactly

It works in the scan's own tone (its training target is the aged photo without its
defects), so the same fill serves "only the selection changes", where the fill must
match the untouched scan, and the whole-photo restore, which shifts it to the restored
tone (oldphoto_model.bands).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .unet import SmallUNet, UNetConfig


@dataclass(frozen=True)
class FillConfig(UNetConfig):
    """Architecture of the learned fill (stored in its weight file)."""

    width: int = 24
    levels: int = 3
    # the network sees the defect pixels as scanned (a faint stain still shows the photo
    # under it); False hides them (the scan's channels carry the filled scan), so nothing
    # that covered the photo, such as a watermark's letters, can come back as a ghost
    see_through: bool = True


class FillNet(SmallUNet):
    """``forward(inputs)`` with inputs = cat(filled, scan, 2 * mask - 1) (N, 7, H, W) returns
    the residual (N, 3, H, W); ``refine`` applies it to the defect pixels."""

    IN_CHANNELS = 7

    def __init__(self, config: FillConfig = FillConfig()) -> None:
        super().__init__(self.IN_CHANNELS, 3, config.width, config.levels)
        self.config = config
        # an untrained network is the harmonic fill, and training starts from it
        head: nn.Conv2d = self.head
        nn.init.zeros_(head.weight)
        if head.bias is not None:
            nn.init.zeros_(head.bias)

    def inputs(self, filled: torch.Tensor, scan: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The network's input: filled and scan (N, 3, H, W) in [-1, 1], mask (N, 1, H, W) in
        {0, 1}; without ``config.see_through`` the filled scan stands in for the scan."""
        return torch.cat([filled, scan if self.config.see_through else filled, mask * 2 - 1], 1)

    def refine(self, filled: torch.Tensor, scan: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """filled + mask * residual (one untiled pass; sides multiples of ``config.multiple``)."""
        return filled + mask * self(self.inputs(filled, scan, mask))
