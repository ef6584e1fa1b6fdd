"""What the restored photo keeps of the scan: a two-band merge of the network's result
and the (pre-filled) photo.

The network is trusted with what it does well here: to a chosen degree, the photo's
tone and colour. Its latent is a quarter of the photo's resolution, so its fine
structure is softer than the scan's; the merge therefore splits both images at
``radius`` into a low band (tone, colour, shading) and a high band (edges, texture,
grain):

    out = low(y) * tone + low(x) * (1 - tone)
        + high(x) * g * (1 + sharpen * g) * detail + high(y) * (1 - detail)   (outside the defects)

with ``g`` = max(0, 1 - (k sigma)^2 / local energy of high(x)), a Wiener gain taken
separately on the high band's luma and its two colour differences (an orthonormal
opponent basis: colour noise, such as an autochrome's dye grains, is mostly in the
colour differences, an image's texture mostly in luma, so each is gated by its own
noise level and multiple ``k``), and with sigma a noise-level function of
brightness (grain and noise of a print or film are stronger in some tones than in
others: one level for the whole photo gated the dark foliage and lettering of real
scans away as noise). The luma's level comes from the smallest eigenvalue of the
covariance of 5x5 patches (``patch_noise_level``): texture fills a few of a patch's
25 dimensions, white noise all of them, so the least-varying direction sees the noise
alone. The median of the fine residual, still used for the colour differences (which
carry little texture), takes texture for noise in tones that are textured everywhere
(a city's facades, foliage) and the gate then wiped whole regions of real scans into
smooth blotches. Edges and texture that stand above the noise pass (and are
steepened by ``sharpen``: the scan came in blurred); flat areas' grain and noise are
attenuated. ``tone = 1``, ``detail = 0`` give the network's result unchanged.

On the defects the pre-filled scan (its harmonic fill, ``fill.harmonic_fill``)
stands, shifted by the smooth change the merge made around them
(``fill.smooth_offset``), so a fill continues the tone it is set in. Measured on the
evaluation set it is closer to the lost pixels than the network's own fill
(docs/MODEL.md): whatever texture a fill invents is, pixel for pixel, a guess.

Plain tensor maths, O(pixels).
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .archs.nonlocal_block import dilate
from .fill import box_blur, smooth_offset

#: Split between the low and the high band: a double (2r+1)^2 box, about a Gaussian
#: of sigma 2.8 px (the network's softening reaches about this far).
BAND_RADIUS = 3
#: Noise multiples below which the scan's high band counts as noise, in luma and in
#: the colour differences (chosen on the evaluation set and the real old photos,
#: docs/MODEL.md: with the patch-based luma level, 1.1 keeps more of a scan's grain
#: than needed and 2.0 starts to smooth foliage and facades again).
NOISE_MULTIPLE = 1.5
CHROMA_MULTIPLE = 2.0
#: Side of the square patches whose covariance gives the luma's noise level.
NOISE_PATCH = 5
#: Brightness bins of the noise-level function (equal pixel counts).
NOISE_BINS = 8
#: Default steepening of the scan's strong edges (the ``sharpen`` of ``merge``): the
#: round value that makes the result at least as sharp as the scan it came from on the
#: evaluation set, with the scan's scratches given or found by the detector (with the
#: patch-based luma level: 0.71 and 0.68 against the scan's 0.66; 0.2 leaves the
#: detected-mask restore at 0.65, 0.4 costs 0.1 dB more; docs/MODEL.md).
SHARPEN = 0.3
#: Width of the soft edge between the defects' fill (and the network's result right
#: next to them) and the merged photo.
EDGE_RADIUS = 2


def low_pass(x: torch.Tensor, radius: int = BAND_RADIUS) -> torch.Tensor:
    """Double box blur (close to a Gaussian of sigma ~ 0.8 * radius + 0.4)."""
    return box_blur(box_blur(x, radius), radius)


def _sample_step(numel: int, most: float) -> int:
    """Stride (in each direction) of a regular sample of at most ~``most`` of ``numel`` pixels."""
    return max(1, int((numel / most) ** 0.5 + 0.999))


#: Pixels the noise-level function is estimated on, at most (a regular sample beyond:
#: 32 k per brightness bin keep each median within about 1 %, and sorting all of a
#: large photo's pixels by brightness cost more than the rest of the merge).
NOISE_SAMPLE = 1 << 18


def _bin_levels(level: torch.Tensor, lv: torch.Tensor, bins: int,
                estimate: Callable[[torch.Tensor], float]) -> torch.Tensor:
    """The noise-level function: the sampled pixels (brightness ``lv``) split into ``bins``
    brightness bins of equal count, ``estimate(indices of a bin)`` the level of each,
    interpolated linearly between the bins' median brightness at every pixel of
    ``level`` (constant beyond the outer ones; one bin or a flat photo: one level)."""
    if bins <= 1 or lv.numel() < 2 * bins:
        return torch.full_like(level, estimate(torch.arange(lv.numel())))
    centres, sigmas = [], []
    for part in lv.argsort().tensor_split(bins):
        centres.append(float(lv[part].median()))
        sigmas.append(estimate(part))
    c = torch.tensor(centres, dtype=level.dtype)
    s = torch.tensor(sigmas, dtype=level.dtype)
    keep = torch.cat([torch.tensor([True]), c[1:] > c[:-1] + 1e-6])   # flat photos: one bin
    c, s = c[keep], s[keep]
    if c.numel() == 1:
        return torch.full_like(level, float(s[0]))
    v = level.clamp(float(c[0]), float(c[-1]))
    hi = torch.searchsorted(c, v.contiguous()).clamp(1, c.numel() - 1)
    t = (v - c[hi - 1]) / (c[hi] - c[hi - 1])
    return s[hi - 1] + (s[hi] - s[hi - 1]) * t


def noise_level(x: torch.Tensor, level: torch.Tensor, bins: int = NOISE_BINS) -> torch.Tensor:
    """Per-pixel noise level of a one-channel image ``x`` (1, 1, H, W) as a function of
    ``level`` (1, 1, H, W, e.g. its local brightness): the robust level 1.4826 *
    median |x - its 3x3 double box blur| within each of ``bins`` brightness bins of
    equal pixel count, interpolated linearly between the bins' median brightness
    (constant beyond the outer ones); ``bins = 1``: one level for the whole photo.
    Estimated on at most ``NOISE_SAMPLE`` pixels of a regular grid. Texture counts
    as noise here: for channels with little of it (colour differences)."""
    step = _sample_step(x[0, 0].numel(), NOISE_SAMPLE)
    d = (x - low_pass(x, 1)).abs()[..., ::step, ::step].flatten()   # (the full-size blur keeps d exact)
    lv = level[..., ::step, ::step].flatten()
    return _bin_levels(level, lv, bins, lambda part: 1.4826 * float(d[part].median()))


def _residual_gain() -> float:
    """std of ``x - low_pass(x, 1)`` over the std of white noise x (the scale both
    noise-level functions report): the norm of the delta minus the 5x5 double-box kernel."""
    k1 = torch.tensor([1.0, 2.0, 3.0, 2.0, 1.0]) / 9.0
    k = torch.outer(k1, k1)
    k[2, 2] -= 1.0
    return float(k.pow(2).sum().sqrt())


_RESIDUAL_GAIN = _residual_gain()


def patch_noise_level(x: torch.Tensor, level: torch.Tensor, bins: int = NOISE_BINS,
                      patch: int = NOISE_PATCH) -> torch.Tensor:
    """Per-pixel noise level of a one-channel image ``x`` (N, 1, H, W) as a function of
    ``level`` like ``noise_level`` (same scale: white noise gives both the same level),
    but per brightness bin from the smallest eigenvalue of the covariance of the
    ``patch`` x ``patch`` patches whose centre falls in the bin: texture and edges span
    few of a patch's dimensions, white noise all of them, so the least-varying direction
    holds the noise alone. The eigenvalue of a sample covariance sits below the true
    one by (1 - sqrt(dims / patches))^2 (Marchenko-Pastur), corrected here. Patches
    on a regular grid of at most ``NOISE_SAMPLE`` positions; a photo smaller than a
    patch, or with too few patches for one covariance per bin, gets ``noise_level``'s
    single level."""
    h, w = x.shape[-2:]
    dims = patch * patch
    if h < patch or w < patch:
        return noise_level(x, level, bins)
    step = _sample_step((h - patch + 1) * (w - patch + 1), NOISE_SAMPLE)
    ys = torch.arange(0, h - patch + 1, step)
    xs = torch.arange(0, w - patch + 1, step)
    flat = x.reshape(-1, h, w)
    if flat.shape[0] * ys.numel() * xs.numel() < 4 * dims * max(1, bins):
        return noise_level(x, level, 1)     # too few patches for a covariance per bin (tiny photos)
    cols = [flat[:, (ys + dy)[:, None], (xs + dx)[None, :]].flatten()
            for dy in range(patch) for dx in range(patch)]
    patches = torch.stack(cols, 1).double()                           # (positions, dims)
    lv = level.reshape(-1, h, w)[:, (ys + patch // 2)[:, None], (xs + patch // 2)[None, :]].flatten()

    def estimate(part: torch.Tensor) -> float:
        n = part.numel()
        p = patches[part]
        p = p - p.mean(0, keepdim=True)
        smallest = float(torch.linalg.eigvalsh(p.t() @ p / (n - 1))[0].clamp_min(0))
        return smallest ** 0.5 / (1 - (dims / n) ** 0.5) * _RESIDUAL_GAIN

    return _bin_levels(level, lv, bins, estimate)


def wiener_gain(high: torch.Tensor, sigma: torch.Tensor | float, multiple: float = NOISE_MULTIPLE) -> torch.Tensor:
    """Per-pixel gain in [0, 1] of a band: 1 where its local energy stands far above
    (multiple * sigma)^2, 0 where it does not exceed it (sigma: a number or a map)."""
    energy = low_pass(high * high, EDGE_RADIUS)
    return (1 - (multiple * sigma) ** 2 / energy.clamp_min(1e-12)).clamp_min(0)


#: Orthonormal opponent basis (rows): luma-like mean, red - green, (red + green) / 2 - blue.
_OPPONENT = torch.tensor([[3 ** -0.5, 3 ** -0.5, 3 ** -0.5],
                          [2 ** -0.5, -(2 ** -0.5), 0.0],
                          [6 ** -0.5, 6 ** -0.5, -2 * 6 ** -0.5]])


def denoised_detail(x: torch.Tensor, high: torch.Tensor, sharpen: float,
                    multiple: float = NOISE_MULTIPLE, chroma_multiple: float = CHROMA_MULTIPLE,
                    bins: int = NOISE_BINS) -> torch.Tensor:
    """``high`` (the scan x's high band) with its noise gated out and its edges
    steepened: per opponent component (luma and two colour differences; any other
    channel count is gated as it is, one multiple for all), high * g * (1 + sharpen * g)
    with the Wiener gain g against the noise-level function of the component over
    the luma's local brightness (``patch_noise_level`` for luma and any channel
    count other than three, ``noise_level`` for the colour differences)."""
    multiples: tuple[float, ...]
    if x.shape[1] == 3:
        basis = _OPPONENT.to(x.dtype)
        xo = torch.einsum("ij,njhw->nihw", basis, x)
        ho = torch.einsum("ij,njhw->nihw", basis, high)
        multiples = (multiple, chroma_multiple, chroma_multiple)
    else:
        basis, xo, ho = None, x, high
        multiples = (multiple,) * x.shape[1]
    brightness = low_pass(xo[:, :1], EDGE_RADIUS)
    parts = []
    for c, m in enumerate(multiples):
        # texture lives in luma: its level from patches; the colour differences' median is noise
        level_of = noise_level if basis is not None and c > 0 else patch_noise_level
        g = wiener_gain(ho[:, c:c + 1], level_of(xo[:, c:c + 1], brightness, bins), m)
        parts.append(ho[:, c:c + 1] * g * (1 + sharpen * g))
    out = torch.cat(parts, 1)
    return out if basis is None else torch.einsum("ji,njhw->nihw", basis, out)


def photo_weight(defect: Optional[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """(1, 1, H, W): 1 where the scan is intact, 0 on and next to defects (a scratch's
    soft edge is no detail), with a soft edge of ``EDGE_RADIUS`` px in between."""
    if defect is None:
        return torch.ones(1, 1, *shape[-2:])
    near = dilate(defect[0, 0] > 0.5, EDGE_RADIUS).to(torch.float32)[None, None]
    return 1 - box_blur(near, EDGE_RADIUS).clamp(0, 1)


def merge(x: torch.Tensor, y: torch.Tensor, defect: Optional[torch.Tensor], tone: float, detail: float,
          sharpen: float = SHARPEN, radius: int = BAND_RADIUS) -> torch.Tensor:
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
    has_defects = defect is not None and bool((defect > 0.5).any())
    if detail > 0 or has_defects:
        detail_x = denoised_detail(x, high_x, sharpen)
    if detail > 0:
        out = out + detail * (detail_x - (y - low_y))
    if defect is None or not has_defects:     # (None checked again for the type checker)
        return out
    photo = photo_weight(defect, x.shape)
    # next to a defect (a scratch's soft edge is no detail) the network's result
    # stands, on it the pre-filled scan, its fine band through the same noise gate as the
    # rest of the photo (a learned fill carries the scan's grain, which must not stay
    # where the surroundings were denoised); each shifted by a smooth offset measured
    # around them, so both continue the merged surroundings' tone
    intact = (photo >= 1).to(y.dtype)
    x_gated = low_x + detail_x
    fill = torch.where(defect > 0.5, x_gated + smooth_offset(out, x_gated, intact),
                       toned + smooth_offset(out, toned, intact))
    return fill + (out - fill) * photo
