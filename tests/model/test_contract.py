"""The restore contract beyond the network: hole pre-fill, mask growth, the
"only the selection changes" blend with tone matching, detail carry-over."""
import numpy as np
import pytest
import torch

from oldphoto_model import InputError, RestoreOptions, Restorer, bands
from oldphoto_model.bands import denoised_detail, low_pass, merge, noise_level, patch_noise_level, photo_weight
from oldphoto_model.fill import box_blur, fill_holes, harmonic_fill, smooth_offset
from oldphoto_model.pipeline import blend_into

from ..conftest import random_model


@pytest.fixture(scope="module")
def restorer():
    return Restorer(random_model(), device="cpu", precision="fp32")


def _photo(h=48, w=56, seed=0):
    """Smooth shapes plus a little texture: something a fill can be judged on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.3 + 0.4 * xx, 0.5 - 0.3 * yy, 0.4 + 0.2 * xx * yy], -1)
    base[(yy - 0.5) ** 2 + (xx - 0.4) ** 2 < 0.05] = (0.8, 0.7, 0.2)
    return np.clip((base + rng.normal(0, 0.02, base.shape)) * 255, 0, 255).astype(np.uint8)


def _mask(h=48, w=56):
    m = np.zeros((h, w), np.uint8)
    m[20:23, 5:50] = 255            # a scratch
    m[5:12, 30:36] = 255            # a hole
    return m


def test_fill_keeps_known_pixels_and_fills_smoothly():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 37, 53)
    known = (torch.rand(2, 1, 37, 53) > 0.3).float()
    y = fill_holes(x, known)
    assert torch.equal(y[known.expand_as(x) > 0], x[known.expand_as(x) > 0])
    assert torch.isfinite(y).all() and y.min() >= x.min() and y.max() <= x.max()
    # a constant photo is filled with the constant; a ramp with values near the ramp
    assert torch.allclose(fill_holes(torch.full_like(x, 0.25), known), torch.full_like(x, 0.25), atol=1e-6)
    ramp = torch.linspace(0, 1, 53).view(1, 1, 1, 53).expand(1, 3, 37, 53).contiguous()
    hole = torch.ones(1, 1, 37, 53)
    hole[..., 10:20, 20:30] = 0
    assert (fill_holes(ramp, hole) - ramp).abs().max() < 0.1
    # nothing known: returned as it is (no NaN from 0/0)
    assert torch.equal(fill_holes(x, torch.zeros_like(known)), x)


def test_smooth_offset_carries_a_constant_difference_into_the_hole():
    x = torch.rand(1, 3, 40, 40)
    known = torch.ones(1, 1, 40, 40)
    known[..., 15:25, 10:30] = 0
    off = smooth_offset(x + 0.3, x, known)
    assert torch.allclose(off, torch.full_like(off, 0.3), atol=1e-5)


def test_output_does_not_depend_on_the_pixels_under_the_mask(restorer):
    """The pre-fill: the scratch's own colour never reaches the network."""
    img, m = _photo(), _mask()
    other = img.copy()
    other[m >= 128] = 255 - other[m >= 128]
    a = restorer.restore(img, m, RestoreOptions(grow=0))
    b = restorer.restore(other, m, RestoreOptions(grow=0))
    np.testing.assert_array_equal(a, b)
    # without the mask the network does see them
    assert not np.array_equal(restorer.restore(img), restorer.restore(other))


def test_grow_widens_what_counts_as_defect(restorer):
    img, m = _photo(), _mask()
    only = RestoreOptions(restrict_to_mask=True, grow=0)
    grown = RestoreOptions(restrict_to_mask=True, grow=2)
    a, b = restorer.restore(img, m, only), restorer.restore(img, m, grown)
    ring = np.zeros_like(m, bool)
    ring[18:20, 10:40] = True                  # two rows above the scratch
    np.testing.assert_array_equal(a[ring], img[ring])
    assert not np.array_equal(b[ring], img[ring])
    far = np.ones_like(m, bool)
    far[2:27, 2:54] = False
    np.testing.assert_array_equal(b[far], img[far])


def test_match_tone_removes_a_tinted_fill():
    """A restored result that is the photo plus a colour cast: in selection mode the
    tone-matched fill continues the surroundings, the plain blend keeps the cast."""
    x = torch.from_numpy(_photo()).permute(2, 0, 1)[None].float() / 127.5 - 1
    m = _mask()
    defect = torch.from_numpy(m >= 128)[None, None].float()
    tinted = x + torch.tensor([0.3, -0.1, -0.2]).view(1, 3, 1, 1)
    plain = blend_into(x, tinted, m, defect, match_tone=False)
    matched = blend_into(x, tinted, m, defect, match_tone=True)
    inside = defect.expand_as(x) > 0
    assert (plain - x)[inside].abs().mean() > 0.15
    assert (matched - x)[inside].abs().max() < 1e-5
    assert torch.equal(matched[~inside], x[~inside])


def test_merge_keeps_edges_drops_noise_and_fills_defects_from_the_scan():
    torch.manual_seed(1)
    noise = 0.05 * torch.randn(1, 3, 64, 64)
    step = torch.zeros(1, 3, 64, 64)
    step[..., 32:] = 1.0
    soft = low_pass(step, 2)                                # the network's softer edge
    out = merge(step + noise, soft, None, tone=1.0, detail=1.0, sharpen=0.0)
    # the scan's edge comes back (a 0->1 step: the middle two columns differ by ~1)
    assert float((out[..., 32] - out[..., 31]).mean()) > 0.6 > float((soft[..., 32] - soft[..., 31]).mean())
    # its noise does not: flat areas stay close to the network's
    assert float((out - soft)[..., 4:24].abs().mean()) < 0.3 * float(noise.abs().mean())
    # sharpen steepens the strong edge and leaves the flat areas as they were
    sharper = merge(step + noise, soft, None, tone=1.0, detail=1.0, sharpen=0.4)
    assert float((sharper[..., 32] - sharper[..., 31]).mean()) > 1.15 * float((out[..., 32] - out[..., 31]).mean())
    assert float((sharper - out)[..., 4:24].abs().mean()) < 0.1 * float(noise.abs().mean())
    # the identity settings return the network's result unchanged
    assert torch.equal(merge(step + noise, soft, None, tone=1.0, detail=0.0), soft)
    # tone 0: the scan's own tone (its low band, up to the network's high band)
    brighter = merge(step + 0.3, soft, None, tone=0.0, detail=0.0)
    assert abs(float(brighter.mean() - (step + 0.3).mean())) < 1e-4
    assert float((low_pass(brighter) - low_pass(step + 0.3)).abs().max()) < 0.1
    # on defects the pre-filled scan stands (not the network's result), its fine band
    # through the same noise gate as the rest
    defect = torch.zeros(1, 1, 64, 64)
    defect[..., 28:36, :] = 1
    w = photo_weight(defect, step.shape)
    assert float(w[..., 28:36, :].max()) == 0 and float(w[..., :20, :].min()) == 1
    filled = harmonic_fill(step + noise, 1 - defect)
    blotch = soft + 0.8 * defect                            # a network whose fill is a bright band
    out = merge(filled, blotch, defect, tone=1.0, detail=1.0)
    assert float((out - filled)[..., 28:36, :].abs().max()) < 0.15       # the step's edge is sharpened
    assert float((out - filled)[..., 28:36, 4:24].abs().mean()) < 0.03    # flat: the fill itself
    # grain a fill carries (a learned fill continues the scan's) is gated like the scan's own
    grain = 0.05 * torch.randn(1, 3, 64, 64) * defect
    grainy = merge(filled + grain, blotch, defect, tone=1.0, detail=1.0)
    left = (grainy - out)[..., 28:36, 4:24].abs().mean()
    assert float(left) < 0.4 * float(grain[..., 28:36, 4:24].abs().mean())
    # a fill takes the merged tone around it: a network result tinted 0.3 too
    # bright comes back to the grey area's level everywhere at tone 0, halfway at 0.5
    grey = torch.full((1, 3, 64, 64), 0.5)
    out = merge(grey, grey + 0.3, defect, tone=0.0, detail=1.0)
    assert float((out - grey).abs().max()) < 0.01
    half = merge(grey, grey + 0.3, defect, tone=0.5, detail=1.0)
    assert float((half - grey - 0.15).abs().max()) < 0.01


def test_noise_level_estimate():
    torch.manual_seed(2)
    for sigma in (0.02, 0.1):
        x = sigma * torch.randn(1, 1, 128, 128)
        est = noise_level(x, torch.zeros_like(x), bins=1)
        assert bool((est == est[0, 0, 0, 0]).all()) and 0.5 * sigma < float(est[0, 0, 0, 0]) < 1.5 * sigma


def test_noise_level_follows_brightness():
    """Grain stronger in the bright half than in the dark one: the noise-level function
    gives each half its own level (one level for the photo sits in between)."""
    torch.manual_seed(3)
    level = torch.zeros(1, 1, 128, 128)
    level[..., 64:] = 1.0
    x = level * 0.6 + torch.where(level > 0.5, 0.08, 0.01) * torch.randn(1, 1, 128, 128)
    s = noise_level(x, level)
    assert 0.005 < float(s[..., :64].mean()) < 0.015
    assert 0.06 < float(s[..., 64:].mean()) < 0.10
    one = noise_level(x, level, bins=1)      # one level, between the two
    assert bool((one == one[0, 0, 0, 0]).all())
    assert float(s[..., :64].mean()) < float(one[0, 0, 0, 0]) < float(s[..., 64:].mean())
    # a flat photo (one brightness) gives one level, no division by an empty bin
    flat = noise_level(x, torch.zeros_like(x))
    assert bool(torch.isfinite(flat).all()) and float(flat.std()) == 0.0


def _plain_noise_level(x, level, bins):
    """The noise-level function over every pixel, no sampling (the reference)."""
    d = (x - low_pass(x, 1)).abs().flatten()
    lv = level.flatten()
    parts = lv.argsort().tensor_split(bins)
    c = torch.tensor([float(lv[p].median()) for p in parts])
    s = torch.tensor([1.4826 * float(d[p].median()) for p in parts])
    return np.interp(level.flatten().numpy(), c.numpy(), s.numpy()).reshape(x.shape)


def test_noise_level_sampling_matches_every_pixel():
    """Beyond 4 MP the levels come from a regular sample: close to all pixels'."""
    torch.manual_seed(4)
    h = w = 2100
    level = torch.linspace(0, 1, w).expand(1, 1, h, w).contiguous()
    x = level + (0.01 + 0.05 * level) * torch.randn(1, 1, h, w)
    fast = noise_level(x, level).numpy()
    ref = _plain_noise_level(x, level, 8)
    assert np.abs(fast - ref).max() < 0.05 * ref.max()


def test_patch_noise_level_equals_the_median_level_on_white_noise():
    """Both noise-level functions report the same scale: white noise whose level grows
    with brightness gives the same function (small and large photos)."""
    torch.manual_seed(6)
    for n, most in ((96, 1.2), (700, 1.05)):     # (a small photo's bins hold ~1,000 patches each)
        level = torch.linspace(0, 1, n).expand(1, 1, n, n).contiguous()
        x = level + (0.01 + 0.05 * level) * torch.randn(1, 1, n, n)
        ratio = patch_noise_level(x, level) / noise_level(x, level)
        assert 1 / most < float(ratio.min()) and float(ratio.max()) < most, (n, float(ratio.min()), float(ratio.max()))


def _texture(n, noise, seed):
    """Fine texture over every pixel (three oriented gratings) plus white noise."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32), torch.arange(n, dtype=torch.float32), indexing="ij")
    tex = 0.06 * (torch.sin(0.9 * xx + 0.3 * yy) + torch.sin(1.7 * yy - 0.5 * xx) + torch.sin(2.3 * (xx + yy) / 1.41))
    return (0.5 + tex + noise * torch.randn(n, n, generator=g))[None, None]


def test_patch_noise_level_sees_the_noise_under_texture():
    """A photo textured everywhere (a city's facades, foliage): the median of the fine
    residual takes the texture for noise, many times the real level, and the gate then
    wipes the texture out; the patches' least-varying direction holds the noise alone."""
    x = _texture(160, 0.01, 7)
    level = low_pass(x, 2)
    truth = 0.01 * bands._RESIDUAL_GAIN           # white noise's level on the functions' scale
    assert float(noise_level(x, level).mean()) > 4 * truth
    est = patch_noise_level(x, level)
    assert 0.7 * truth < float(est.min()) and float(est.max()) < 1.4 * truth
    # and the gate keeps that texture (luma), where the median level wiped most of it
    rgb = x.expand(1, 3, 160, 160)
    high = rgb - low_pass(rgb)
    kept = float((denoised_detail(rgb, high, 0.0) * high).sum() / (high * high).sum())
    assert kept > 0.8, kept


def _plain_patch_level(x, level, bins, patch=5):
    """Every patch (no sampling), plain numpy covariance and eigenvalues (the reference)."""
    h, w = x.shape[-2:]
    img = x[0, 0].numpy().astype(np.float64)
    ps = np.stack([img[dy:h - patch + 1 + dy, dx:w - patch + 1 + dx].ravel()
                   for dy in range(patch) for dx in range(patch)], 1)
    lv = level[0, 0, patch // 2:h - patch // 2, patch // 2:w - patch // 2].numpy().ravel()
    order = np.argsort(lv, kind="stable")
    c, s = [], []
    for part in np.array_split(order, bins):
        n = len(part)
        smallest = max(np.linalg.eigvalsh(np.cov(ps[part].T))[0], 0.0)
        c.append(np.median(lv[part]))
        s.append(np.sqrt(smallest) / (1 - np.sqrt(patch * patch / n)) * bands._RESIDUAL_GAIN)
    return np.interp(level.flatten().numpy(), c, s).reshape(x.shape)


def test_patch_noise_level_sampling_matches_every_patch(monkeypatch):
    """Beyond NOISE_SAMPLE positions the patches come from a regular grid: the levels stay
    close to those of every patch."""
    torch.manual_seed(8)
    n = 240
    level = torch.linspace(0, 1, n).expand(1, 1, n, n).contiguous()
    x = level + 0.5 * (_texture(n, 0.0, 9) - 0.5) + (0.01 + 0.04 * level) * torch.randn(1, 1, n, n)
    ref = _plain_patch_level(x, level, 8)
    full = patch_noise_level(x, level).numpy()          # 236^2 positions, under NOISE_SAMPLE: every patch
    assert np.abs(full - ref).max() < 0.03 * ref.max()
    monkeypatch.setattr(bands, "NOISE_SAMPLE", 1 << 12)
    sampled = patch_noise_level(x, level).numpy()       # a grid of stride 4
    assert np.abs(sampled - ref).max() < 0.1 * ref.max()


def test_denoised_detail_keeps_luma_texture_and_removes_colour_noise():
    torch.manual_seed(5)
    yy = torch.arange(96.0).view(1, 1, 96, 1).expand(1, 1, 96, 96)
    stripes = 0.06 * torch.sin(yy * 2.2)                         # fine gray texture, right half
    stripes = torch.where(torch.arange(96) >= 48, stripes, torch.zeros(()))
    x = 0.5 + stripes.expand(1, 3, 96, 96) + 0.02 * torch.randn(1, 3, 96, 96)
    high = x - low_pass(x)
    out = denoised_detail(x, high, sharpen=0.0)
    chroma = lambda t: t - t.mean(1, keepdim=True)               # noqa: E731
    assert float(chroma(out).pow(2).mean()) < 0.2 * float(chroma(high).pow(2).mean())
    luma_in, luma_out = high.mean(1)[..., 8:-8, 56:-8], out.mean(1)[..., 8:-8, 56:-8]
    kept = float((luma_in * luma_out).sum() / (luma_in * luma_in).sum())
    assert kept > 0.5          # (a luma multiple of 2 keeps 0.13 of it)
    # no gate (multiples 0) and no sharpening: the band comes back as it went in
    assert torch.allclose(denoised_detail(x, high, 0.0, multiple=0.0, chroma_multiple=0.0), high, atol=1e-5)
    # a gray photo has no colour differences: none appear, nothing is NaN
    g = x.mean(1, keepdim=True).expand(1, 3, 96, 96)
    gout = denoised_detail(g, g - low_pass(g), sharpen=0.4)
    assert bool(torch.isfinite(gout).all()) and float(chroma(gout).abs().max()) < 1e-5


def test_detail_option_is_the_scans_structure_outside_the_mask(restorer):
    """Outside the mask detail brings the scan's structure back; on the mask only the
    smooth tone offset that keeps the fill in line with its surroundings follows."""
    img, m = _photo(), _mask()
    a = restorer.restore(img, m, RestoreOptions(detail=0.0)).astype(float)
    b = restorer.restore(img, m, RestoreOptions(detail=1.0)).astype(float)
    outside = np.abs(a - b)[m < 128].mean()
    assert outside > 1.0
    assert np.abs(a - b)[m >= 128].mean() < 0.5 * outside
    # and the result moves towards the scan there
    assert np.abs(b - img)[m < 128].mean() < np.abs(a - img)[m < 128].mean()


@pytest.mark.parametrize("bad", [dict(grow=-1), dict(grow=65), dict(detail=1.5), dict(tone=-0.1),
                                 dict(mask_threshold=256)])
def test_bad_options_are_typed_errors(bad):
    with pytest.raises(InputError):
        RestoreOptions(**bad)


def test_box_blur_matches_a_plain_convolution():
    x = torch.rand(1, 2, 19, 23, dtype=torch.float64)
    k = torch.ones(2, 1, 5, 5, dtype=torch.float64) / 25
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), k, groups=2)
    assert torch.allclose(box_blur(x, 2), ref, atol=1e-12)


@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_16_bit_images_keep_16_bits(restorer, channels):
    """A 16-bit scan comes back 16-bit, of the same shape, and agrees with the 8-bit
    restore of the same photo (to the 8-bit rounding), in both modes."""
    photo8 = _photo()
    if channels is not None:
        gray = photo8.mean(axis=2, keepdims=True).astype(np.uint8)
        photo8 = {1: gray, 2: np.concatenate([gray, gray // 2], 2), 3: photo8,
                  4: np.concatenate([photo8, gray], 2)}[channels]
    else:
        photo8 = photo8[:, :, 0]
    photo16 = photo8.astype(np.uint16) * 257       # the same photo, so the results must agree
    for opts in (RestoreOptions(), RestoreOptions(restrict_to_mask=True)):
        out16 = restorer.restore(photo16, _mask(), opts)
        out8 = restorer.restore(photo8, _mask(), opts)
        assert out16.dtype == np.uint16 and out16.shape == photo16.shape
        assert np.abs(out16.astype(np.float64) / 257 - out8).max() <= 1.0
        # the result is rounded once, to 16 bits: more than 8 bits' worth of levels
        assert len(np.unique(out16)) > len(np.unique(out8))
        if channels in (2, 4):
            assert np.array_equal(out16[:, :, -1], photo16[:, :, -1])     # alpha untouched


def test_other_dtypes_refused(restorer):
    with pytest.raises(InputError, match="uint8 or uint16"):
        restorer.restore(_photo().astype(np.float32))
