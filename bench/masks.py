"""Synthetic defect masks for benchmarks: thin scratches or large blotches of a given area share."""
from __future__ import annotations

import numpy as np


def scratch_mask(h: int, w: int, fraction: float, seed: int = 0, width: int = 3) -> np.ndarray:
    """Random straight-ish thin scratches (``width`` px) until ``fraction`` of the area is covered."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    while m.mean() / 255 < fraction:
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        ang = rng.uniform(0, np.pi)
        length = rng.uniform(0.3, 1.0) * max(h, w)
        dy, dx = np.sin(ang), np.cos(ang)
        t = (yy - y0) * dy + (xx - x0) * dx
        d = np.abs((yy - y0) * dx - (xx - x0) * dy)
        m[(d <= width / 2) & (np.abs(t) <= length / 2)] = 255
    return m


def blotch_mask(h: int, w: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Random discs until ``fraction`` of the area is covered (large holes)."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    while m.mean() / 255 < fraction:
        r = rng.uniform(0.03, 0.12) * min(h, w)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        m[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
    return m
