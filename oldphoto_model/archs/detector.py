"""The scratch detector: a small U-Net (``archs.unet``) that marks structured defects
(scratches, cracks, dust, spots, holes) of an old photo.

    RGB in [-1, 1] (gray photos as three equal channels) -> 1-channel logit map, same size

``width`` w = 16, ``levels`` 2 by default (the shipped file: 3). A first full-resolution
version (3 levels at full size) took 20 s for 1024^2 on the development CPU; the
unshuffled one does the same job at about a sixth of the arithmetic. Every output pixel
depends on a bounded input window (``receptive_radius``), so tiled inference with that
halo is exact (oldphoto_model.detect).
"""
from __future__ import annotations

from dataclasses import dataclass

from .unet import SmallUNet, UNetConfig


@dataclass(frozen=True)
class DetectorConfig(UNetConfig):
    """Architecture of the scratch detector (stored in its weight file): width 16, 2 levels
    by default (``archs.unet``)."""


class ScratchDetector(SmallUNet):
    """U-Net scratch detector (``archs.unet``, RGB in, one channel out); ``forward``
    returns logits (N, 1, H, W)."""

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        super().__init__(3, 1, config.width, config.levels)
        self.config = config
