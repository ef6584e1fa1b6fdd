"""What the restored photo keeps of the scan: a two-band merge of the network's result
and the (pre-filled) photo.

The network is trusted with what it does well here: to a chosen degree, the photo's
tone and colour. Its latent is a quarter of the photo's resolution, so its fine
structure is softer than the scan's; the merge therefore splits both images at
``radius`` into a low band (tone, colour, shading) and a high band (edges, texture,
grain):

    out = low(y) * tone + low(x) * (1 - tone)
        + high(x) * g * (1 + sharpen * g) * detail + high(y) * (1 - detail)   (outside the defects)

with ``g`` = max(0, 1 - (k sigma)^2 / local energy of high(x)), a Wiener gain: sigma
is the scan's noise level (robust, from its finest band); edges and texture, which
stand well above the noise, pass (and are steepened by ``sharpen``: the scan came
in blurred); flat areas' grain and noise are attenuated. ``tone = 1``, ``detail = 0``
give the network's result unchanged.

On the defects the pre-filled scan (its harmonic fill, ``fill.harmonic_fill``)
stands, shifted by the smooth change the merge made around them
(``fill.smooth_offset``), so a fill continues the tone it is set in. Measured on the
evaluation set it is closer to the lost pixels than the network's own fill
(docs/MODEL.md): whatever texture a fill invents is, pixel for pixel, a guess.

Plain tensor maths, O(pixels).
"""
from __future__ import annotations

from typing import Optional

import torch

from .archs.nonlocal_block import dilate
from .fill import box_blur, smooth_offset

#: Split between the low and the high band: a double (2r+1)^2 box, about a Gaussian
#: of sigma 2.8 px (the network's softening reaches about this far).
BAND_RADIUS = 3
#: Noise multiple below which the scan's high band counts as noise (measured on the
#: evaluation set, docs/MODEL.md).
NOISE_MULTIPLE = 1.5
#: Default steepening of the scan's strong edges (the ``sharpen`` of ``merge``): the
#: round value that made the result as sharp as the scan it came from on the evaluation
#: set (0.66; with the black-point correction on top, 0.69: docs/MODEL.md).
SHARPEN = 0.4
#: Width of the soft edge between the defects' fill (and the network's result right
#: next to them) and the merged photo.
EDGE_RADIUS = 2


def low_pass(x: torch.Tensor, radius: int = BAND_RADIUS) -> torch.Tensor:
    """Double box blur (close to a Gaussian of sigma ~ 0.8 * radius + 0.4)."""
    return box_blur(box_blur(x, radius), radius)


def noise_sigma(x: torch.Tensor) -> float:
    """Robust noise level of an image: 1.4826 * median |x - 3x3 double box blur|
    (over every pixel up to 4 MP, over a regular sample of them beyond)."""
    d = (x - low_pass(x, 1)).abs()
    step = max(1, int((d[0, 0].numel() / 4e6) ** 0.5 + 0.999))
    return 1.4826 * float(d[..., ::step, ::step].flatten().median())


def wiener_gain(high: torch.Tensor, sigma: float, multiple: float = NOISE_MULTIPLE) -> torch.Tensor:
    """Per-pixel gain in [0, 1] of a band: 1 where its local energy stands far above
    (multiple * sigma)^2, 0 where it does not exceed it."""
    energy = low_pass(high * high, EDGE_RADIUS)
    return (1 - (multiple * sigma) ** 2 / energy.clamp_min(1e-12)).clamp_min(0)


def photo_weight(defect: Optional[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """(1, 1, H, W): 1 where the scan is intact, 0 on and next to defects (a scratch's
    soft edge is no detail), with a soft edge of ``EDGE_RADIUS`` px in between."""
    if defect is None:
        return torch.ones(1, 1, *shape[-2:])
    near = dilate(defect[0, 0] > 0.5, EDGE_RADIUS).to(torch.float32)[None, None]
    return 1 - box_blur(near, EDGE_RADIUS).clamp(0, 1)


def merge(x: torch.Tensor, y: torch.Tensor, defect: Optional[torch.Tensor], tone: float, detail: float,
          sharpen: float = SHARPEN, radius: int = BAND_RADIUS, multiple: float = NOISE_MULTIPLE) -> torch.Tensor:
    """The two-band merge (module docstring).

    x: the scan with its defects pre-filled; y: the network's result; defect:
    (N, 1, H, W), 1 on defects, or None; tone and detail in [0, 1]; sharpen >= 0.
    x and y (N, C, H, W) float in the same range.
    """
    if tone >= 1 and detail <= 0:
        return y
    low_x, low_y = low_pass(x, radius), low_pass(y, radius)
    high_x = x - low_x
    toned = y + (1 - tone) * (low_x - low_y)
    out = toned
    if detail > 0:
        g = wiener_gain(high_x, noise_sigma(x), multiple)
        out = out + detail * (high_x * g * (1 + sharpen * g) - (y - low_y))
    if defect is None or not bool((defect > 0.5).any()):
        return out
    photo = photo_weight(defect, x.shape)
    # next to a defect (a scratch's soft edge is no detail) the network's result
    # stands, on it the pre-filled scan; each shifted by a smooth offset measured around
    # them, so both continue the merged surroundings' tone
    intact = (photo >= 1).to(y.dtype)
    fill = torch.where(defect > 0.5, x + smooth_offset(out, x, intact), toned + smooth_offset(out, toned, intact))
    return fill + (out - fill) * photo
