"""Automatic tone: the tone estimator (``archs.tone``) applied to a whole photo.

``estimate_matrix`` takes the scan's tone statistics on a thumbnail made of its intact
pixels only (a scratch's white or a hole's colour is no tone of the photo) and returns
the 3 x 4 colour matrix; ``correct_tone`` applies ``strength`` of it (0 = the scan as
it is, 1 = the full correction). The restore contract runs it on the whole photo,
never with "only the selected area changes", where the fill must keep the scan's
own tone (docs/MODEL.md).

Weight file (``netfile`` layout): format "oldphoto-tone-weights", version 1, the
network under "tone"; the shipped one is ``weights/tone.pt``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from .archs.tone import ToneConfig, ToneEstimator, apply_colour_matrix
from .fill import fill_holes
from .netfile import HelperFile

DEFAULT_TONE = Path(__file__).resolve().parent / "weights" / "tone.pt"
TONE_FILE: HelperFile[ToneEstimator] = HelperFile(
    "oldphoto-tone-weights", 1, "tone", "tone-estimator", DEFAULT_TONE,
    "no tone-estimator weights in this installation: reinstall the package or train them with "
    "`python -m training tone` (restoring works without them, with the scan's own tone)",
    lambda d: ToneEstimator(ToneConfig.from_dict(d)))
save_tone = TONE_FILE.save        # (net, path, metadata=None) -> Path
load_tone = TONE_FILE.load        # (path=None: the shipped weights/tone.pt, map_location="cpu")
shipped_tone = TONE_FILE.shipped  # () -> the shipped estimator or None


def thumbnail(x: torch.Tensor, known: Optional[torch.Tensor], side: int) -> torch.Tensor:
    """(N, C, side, side): the mean of each cell's intact pixels (``known`` (N, 1, H, W),
    1 = intact, or None); cells without any take the push-pull fill of the others."""
    if known is None:
        return F.adaptive_avg_pool2d(x, side)
    k = F.adaptive_avg_pool2d(known.to(x.dtype), side)
    t = F.adaptive_avg_pool2d(x * known, side) / k.clamp_min(1e-6)
    return fill_holes(t, (k > 1e-6).to(x.dtype))


@torch.inference_mode()
def estimate_matrix(x: torch.Tensor, known: Optional[torch.Tensor], net: ToneEstimator) -> torch.Tensor:
    """(3, 4) colour matrix, acting on [0, 1] values, for a (1, 3, H, W) photo in [-1, 1]."""
    dev = next(net.parameters()).device
    t = thumbnail(x.float(), None if known is None else known.float(), net.config.thumb)
    return net(((t + 1) / 2).to(dev).clamp(0, 1))[0].cpu()


def correct_tone(x: torch.Tensor, known: Optional[torch.Tensor], net: ToneEstimator,
                 strength: float) -> torch.Tensor:
    """x (1, 3, H, W) in [-1, 1] with ``strength`` (0..1) of the estimated correction."""
    if strength <= 0:
        return x
    eye = torch.eye(3, 4)
    m = eye + (estimate_matrix(x, known, net) - eye) * strength
    # the same map on [-1, 1] values (u = (x + 1) / 2, out = 2 M u - 1), so the photo
    # is read once and no full-size [0, 1] copy is made
    a = m[:, :3]
    m_pm1 = torch.cat([a, a.sum(1, keepdim=True) + 2 * m[:, 3:] - 1], 1)
    return apply_colour_matrix(x, m_pm1[None].to(x.dtype))
