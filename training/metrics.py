"""Image-quality measures of ``evaluate``: uint8 HxWx3 arrays in, floats out."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from oldphoto_model.archs.nonlocal_block import dilate
from oldphoto_model.fill import box_blur, fill_holes

_LUMA = np.array([0.299, 0.587, 0.114])


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images, over all pixels or those where ``mask`` is True."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = d.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, constants of Wang et al.), averaged over channels."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()

    def f(t):           # the separable 11x11 Gaussian window, valid part only
        return F.conv2d(F.conv2d(t, g.view(1, 1, 1, 11)), g.view(1, 1, 11, 1))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def _dilate(mask: np.ndarray, px: int) -> np.ndarray:
    return dilate(torch.from_numpy(np.asarray(mask, bool)), px).numpy()


def sobel_magnitude(img: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the luma (Sobel, replicated borders), HxW float."""
    y = torch.from_numpy((img.astype(np.float64) @ _LUMA))[None, None]
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float64)
    k = torch.stack([kx, kx.T])[:, None]
    g = F.conv2d(F.pad(y, (1, 1, 1, 1), mode="replicate"), k)
    return g.pow(2).sum(1).sqrt()[0].numpy()


def edge_sharpness(out: np.ndarray, clean: np.ndarray, mask: np.ndarray, top: float = 0.10,
                   margin: int = 4) -> float:
    """Mean Sobel magnitude of ``out`` on the clean photo's strongest edges (its top
    ``top`` share of gradient magnitudes, at least ``margin`` px away from the defect
    mask), divided by the clean photo's own: 1 = as sharp as the original, below 1 =
    blurrier."""
    gc = sobel_magnitude(clean)
    keep = ~_dilate(mask, margin)
    if not keep.any():
        return float("nan")
    edges = keep & (gc >= np.quantile(gc[keep], 1 - top))
    return float(sobel_magnitude(out)[edges].mean() / max(1e-9, gc[edges].mean()))


def fill_delta(out: np.ndarray, mask: np.ndarray, ring: int = 4, radius: int = 7) -> float:
    """How far a fill's tone is from its surroundings, in grey levels.

    The colours of the ``ring``-px band just outside the mask are interpolated
    smoothly across it (``fill_holes``); the fill's difference to that is averaged
    over defect pixels in a (2 * radius + 1)² box (so texture, which averages out,
    does not count, while a tinted or too dark patch does), and the mean absolute
    local offset over the mask's pixels and the channels is returned."""
    if not mask.any():
        return float("nan")
    band = _dilate(mask, ring) & ~mask
    x = torch.from_numpy(out.astype(np.float64)).permute(2, 0, 1)[None]
    m = torch.from_numpy(mask.astype(np.float64))[None, None]
    ref = fill_holes(x, torch.from_numpy(band.astype(np.float64))[None, None])
    d = (x - ref) * m
    local = box_blur(d, radius) / box_blur(m, radius).clamp_min(1e-6)
    return float(local.abs().mean(1)[0][torch.from_numpy(mask)].mean())
