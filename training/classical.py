"""Classical baselines of ``evaluate`` (OpenCV; None when opencv-python-headless is missing).

- Telea inpainting of the defect mask alone.
- The hand recipe a skilled GIMP user can run: Telea (radius 3) inside the mask,
  OpenCV's non-local-means denoising (h 5), then a per-channel 0.5/99.5-percentile
  contrast stretch (gray photos in luma, so no tint is introduced).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def opencv():
    """The cv2 module, or None."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def telea(img: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray | None:
    """OpenCV's Telea inpainting of the True pixels of ``mask``, or None without opencv."""
    cv2 = opencv()
    if cv2 is None:
        return None
    return cv2.inpaint(img, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def is_gray(img: np.ndarray) -> bool:
    return bool((img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all())


def stretch(img: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Map each channel's low/high percentile to 0/255 (gray photos: one map for all)."""
    lo_p, hi_p = percentiles
    chans = [img[..., 0]] if is_gray(img) else [img[..., c] for c in range(3)]
    out = []
    for ch in chans:
        lo, hi = np.percentile(ch, [lo_p, hi_p])
        scale = 255.0 / max(1.0, hi - lo)
        out.append(np.clip((ch.astype(np.float32) - lo) * scale, 0, 255).round().astype(np.uint8))
    return np.stack(out * 3 if len(out) == 1 else out, -1)


def hand_recipe(img: np.ndarray, mask: np.ndarray, radius: int = 3, h: float = 5.0,
                percentiles: Sequence[float] = (0.5, 99.5)) -> np.ndarray | None:
    """Telea in the mask + non-local means + percentile stretch, or None without opencv."""
    cv2 = opencv()
    if cv2 is None:
        return None
    x = telea(img, mask, radius) if mask.any() else img
    if is_gray(x):
        x = np.repeat(cv2.fastNlMeansDenoising(np.ascontiguousarray(x[..., 0]), None, h)[..., None], 3, -1)
    else:
        x = cv2.fastNlMeansDenoisingColored(np.ascontiguousarray(x), None, h, h)
    return stretch(x, percentiles)
