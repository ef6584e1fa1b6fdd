"""Tiled inference of the small fully convolutional helpers (the scratch detector, the
learned fill): any photo size, memory bounded by the tile, the same result as one pass.

Each network output pixel depends on at most ``radius`` input pixels on each side and no
normalisation couples distant pixels, so a tile computed from itself plus a halo of that
radius equals the same pixels of a single pass over the (padded) photo, up to float
rounding (tests/model/test_detect.py, tests/model/test_learned_fill.py).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import nn


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Mirror-pad (N, C, H, W) at the bottom and right to sides that are multiples of
    ``multiple`` (symmetric padding: works for any size, even one smaller than the padding)."""
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if not (ph or pw):
        return x
    return torch.from_numpy(np.pad(x.cpu().numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode="symmetric"))


@torch.inference_mode()
def run_tiled(net: nn.Module, x: torch.Tensor, multiple: int, radius: int, tile: int,
              progress: Optional[Callable[[float], None]] = None,
              needed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``net`` over a (1, C, H, W) input, tile by tile: (C_out, H, W) float32 on the CPU.

    The input is mirror-padded to ``multiple`` once; each tile's output comes from the
    tile plus a halo of at least ``radius`` pixels, aligned to the multiple, and is cut
    at the photo's edges (border tiles see the same zero padding as a single pass).
    ``needed``: (H, W) bool; tiles without a True pixel are skipped and left at 0 (the
    learned fill changes defect pixels only)."""
    halo = -(-radius // multiple) * multiple
    tile = max(multiple, tile // multiple * multiple)
    h, w = x.shape[-2:]
    x = pad_to_multiple(x, multiple)
    hp, wp = x.shape[-2:]
    dev = next(net.parameters()).device
    out: Optional[torch.Tensor] = None
    starts = [(y, x0) for y in range(0, hp, tile) for x0 in range(0, wp, tile)]
    for i, (y0, x0) in enumerate(starts):
        y1, x1 = min(hp, y0 + tile), min(wp, x0 + tile)
        if needed is None or bool(needed[y0:min(y1, h), x0:min(x1, w)].any()):
            a, b, c, d = max(0, y0 - halo), min(hp, y1 + halo), max(0, x0 - halo), min(wp, x1 + halo)
            res = net(x[:, :, a:b, c:d].to(dev))[0].float().cpu()
            if out is None:
                out = torch.zeros(res.shape[0], hp, wp)
            out[:, y0:y1, x0:x1] = res[:, y0 - a:y1 - a, x0 - c:x1 - c]
        if progress is not None:
            progress((i + 1) / len(starts))
    if out is None:       # every tile skipped: nothing was needed
        return torch.zeros(0, h, w)
    return out[:, :h, :w]
