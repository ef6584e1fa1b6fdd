"""Lifted blacks: how much of a faded scan's black level the restore takes out.

Faded prints lose their blacks: the darkest tones are lifted to a grey, often tinted
(yellowed or sepia paper shows through). For each colour channel the scan's black
level is its ``PERCENTILE`` % darkest value over the intact pixels; what lies above
``TARGET`` (a print's usual black) is lifted black, and ``strength`` of it is taken
out by a linear map per channel that keeps the channel's highlights (its
100 - ``PERCENTILE`` % value) where they are:

    out = (y - b) * hi / (hi - b),    b = strength * max(0, black - TARGET)

in [0, 1] units. A photo with true blacks (black <= TARGET) is left alone; a tinted
black (one channel lifted more than the others) loses part of its tint. Plain
tensor maths, O(pixels).
"""
from __future__ import annotations

from typing import Optional

import torch

#: The percentile that counts as a channel's black (and 100 minus it as its highlight):
#: not the minimum, which a single dust speck or noise sets.
PERCENTILE = 0.5
#: A print's usual black level (0..1): what lies above it counts as lifted.
TARGET = 8 / 255
#: Default share of the lifted black that is taken out (docs/MODEL.md: measured on the
#: evaluation set; the rest is left, as a photo may be hazy on purpose).
STRENGTH = 0.5
#: Pixels a percentile is taken over, at most (a regular sample beyond).
_SAMPLE = 1 << 22


def _percentiles(v: torch.Tensor, q: float) -> tuple[float, float]:
    """The q-th and (100 - q)-th percentile of a 1-D tensor."""
    step = max(1, v.numel() // _SAMPLE)
    s = v[::step].float()
    t = torch.tensor([q / 100, 1 - q / 100], dtype=s.dtype)
    lo, hi = torch.quantile(s, t).tolist()
    return lo, hi


def lift_blacks(y: torch.Tensor, scan: torch.Tensor, intact: Optional[torch.Tensor],
                strength: float = STRENGTH) -> torch.Tensor:
    """``y`` with ``strength`` of the scan's lifted black level taken out per channel.

    y, scan: (1, C, H, W) in [-1, 1] (the restored result and the scan it came from);
    intact: (1, 1, H, W), 1 where the scan's pixels count (not on defects), or None.
    """
    if strength <= 0:
        return y
    keep = None if intact is None else intact[0, 0].flatten() > 0.5
    if keep is not None and not bool(keep.any()):
        return y
    out = []
    for c in range(y.shape[1]):
        v = (scan[0, c].flatten() + 1) / 2
        lo, hi = _percentiles(v if keep is None else v[keep], PERCENTILE)
        b = strength * max(0.0, lo - TARGET)
        if b <= 0 or hi - b <= 1e-3:
            out.append(y[:, c:c + 1])
            continue
        u = (y[:, c:c + 1] + 1) / 2
        out.append(((u - b) * (hi / (hi - b))) * 2 - 1)
    return torch.cat(out, 1)
