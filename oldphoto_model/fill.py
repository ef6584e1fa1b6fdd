"""Smooth hole filling by a masked image pyramid ("push-pull").

Two uses in the restore contract, both plain tensor maths with no learned part:

- **Pre-fill** (``fill_holes``): before the encoder sees a photo, the defect pixels
  (white scratch lines, dust, holes) are replaced by a smooth interpolation of the
  intact pixels around them. The encoder then never sees the scratch's own colour,
  the network starts from a plausible fill and only has to add what a smooth fill
  lacks (texture, edges, the restored tone). Training does the same, so the
  network learns exactly that refinement.
- **Tone matching** (``smooth_offset``): with "only the selected area changes" the
  fill must continue the *unrestored* surroundings. The low-frequency difference
  between the original and the restored photo, measured outside the selection and
  interpolated across it, is added to the restored pixels inside.

Cost is O(pixels): each pyramid level is a quarter of the one below.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def fill_holes(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill the pixels where ``known`` is 0 from the pixels where it is 1.

    x: (N, C, H, W) float; known: (N, 1, H, W) in [0, 1] (1 = intact). Known pixels
    are returned unchanged; each unknown pixel gets the mask-weighted average of the
    intact pixels of the finest pyramid level whose cell around it holds any,
    bilinearly blended across levels (so fills are smooth, without block edges).
    An image without any intact pixel is returned as it is.
    """
    known = known.to(x.dtype).clamp(0, 1)
    levels = []
    v, k = x * known, known
    while True:
        levels.append((v, k))
        if max(v.shape[-2:]) <= 1:
            break
        v = F.avg_pool2d(v, 2, ceil_mode=True)
        k = F.avg_pool2d(k, 2, ceil_mode=True)
    v, k = levels[-1]
    colour = v / k.clamp_min(_EPS)
    for v, k in reversed(levels[:-1]):
        up = F.interpolate(colour, size=v.shape[-2:], mode="bilinear", align_corners=False)
        # a cell's own average counts as much as the share of it that is known
        colour = torch.where(k > _EPS, v / k.clamp_min(_EPS), up) * k + up * (1 - k)
    nothing = (known.flatten(1).amax(1) <= 0).view(-1, 1, 1, 1)
    return torch.where((known >= 1) | nothing, x, colour)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable box filter of side 2 * radius + 1 with replicated borders."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.avg_pool2d(x, (1, k), stride=1)
    return F.avg_pool2d(x, (k, 1), stride=1)


def smooth_offset(target: torch.Tensor, source: torch.Tensor, known: torch.Tensor,
                  radius: int = 4) -> torch.Tensor:
    """The low-frequency correction that makes ``source`` match ``target`` where
    ``known`` is 1, interpolated smoothly where it is 0.

    target, source: (N, C, H, W); known: (N, 1, H, W) in {0, 1}. The difference is
    averaged over intact pixels in a (2r+1)² box (normalised convolution, so noise
    and grain do not carry into the offset), then hole-filled with ``fill_holes``.
    """
    known = known.to(target.dtype)
    diff = (target - source) * known
    num, den = box_blur(diff, radius), box_blur(known, radius)
    have = den > 1e-3
    local = num / den.clamp_min(1e-3)
    return fill_holes(torch.where(have, local, torch.zeros_like(local)), have.to(target.dtype))
