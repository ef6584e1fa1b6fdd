"""Test scenes shared by the GIMP 3 and the gimpfu tests: selections drawn around a
scratch and seen from a layer with offsets (numpy; tests only)."""
from __future__ import annotations

import numpy as np


def _paste(dst: np.ndarray, src: np.ndarray, oy: int, ox: int) -> None:
    """dst[oy:oy+h, ox:ox+w] = src, clipped to dst (offsets may be negative)."""
    H, W = dst.shape
    h, w = src.shape
    ys, xs = slice(max(0, oy), min(H, oy + h)), slice(max(0, ox), min(W, ox + w))
    dst[ys, xs] = src[ys.start - oy:ys.stop - oy, xs.start - ox:xs.stop - ox]


def scratch_selection(scratch: np.ndarray, canvas_hw: tuple[int, int], offset: tuple[int, int],
                      feather: bool = True) -> np.ndarray:
    """Image-sized selection of a layer-coordinate scratch: grown by 1 px at full
    strength (255), with a 1-px ring of 100 (below the server's threshold 128)
    when ``feather``. ``offset`` is the layer's (x, y) on the canvas."""
    grown = scratch.copy()
    grown[1:] |= scratch[:-1]
    grown[:-1] |= scratch[1:]
    ring = np.zeros_like(scratch)
    ring[1:] |= grown[:-1]
    ring[:-1] |= grown[1:]
    ring &= ~grown
    lay = np.where(grown, 255, np.where(ring, 100 if feather else 0, 0)).astype(np.uint8)
    sel = np.zeros(canvas_hw, np.uint8)
    _paste(sel, lay, offset[1], offset[0])
    return sel


def selection_in_layer(sel: np.ndarray, layer_hw: tuple[int, int], offset: tuple[int, int]) -> np.ndarray:
    """The image-sized selection seen in layer coordinates (0 outside the canvas)."""
    out = np.zeros(layer_hw, np.uint8)
    _paste(out, sel, -offset[1], -offset[0])
    return out
