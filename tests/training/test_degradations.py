import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.config import DegradeConfig
from training.data.dataset import synthetic_photo
from training.data.degradations import (
    DEFECT_KINDS,
    Textures,
    add_defects,
    apply_defect,
    degrade,
    fade,
    film_grain,
    gaussian_blur,
    halftone,
    jpeg,
    noise,
    paper_texture,
    resample,
    scaled_window,
    uneven_exposure,
)
from training.data.sources import read_gbr, read_gih, read_pat


def photo(seed=0, size=64):
    return synthetic_photo(np.random.default_rng(seed), size)


def brush_textures():
    rng = np.random.default_rng(3)
    b = np.zeros((20, 60), np.float32)
    b[8:11, :] = 1.0                        # a straight scratch
    b += rng.random(b.shape).astype(np.float32) * 0.3
    return Textures(brushes=[np.clip(b, 0, 1)], papers=[rng.random((40, 40)).astype(np.float32)])


@given(seed=st.integers(0, 2 ** 32 - 1))
@settings(max_examples=15, deadline=None)
def test_degrade_is_deterministic_per_seed(seed):
    clean = photo(1)
    a = degrade(clean, seed, textures=brush_textures())
    b = degrade(clean, seed, textures=brush_textures())
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_different_seeds_differ():
    clean = photo(1)
    outs = [degrade(clean, s)[0] for s in range(6)]
    assert len({o.tobytes() for o in outs}) == 6


@pytest.mark.parametrize("kind", DEFECT_KINDS)
@pytest.mark.parametrize("seed", range(6))
def test_each_defect_mask_is_exactly_the_changed_pixels(kind, seed):
    clean = photo(seed)
    out, mask = apply_defect(clean, kind, np.random.default_rng(seed), brush_textures())
    changed = np.any(out != clean, axis=-1)
    np.testing.assert_array_equal(mask, changed)
    assert out.dtype == np.uint8 and out.shape == clean.shape


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_defects_are_visible_and_local(kind):
    """Over a few seeds every kind changes something, never the whole image."""
    shares = []
    for seed in range(8):
        _, mask = apply_defect(photo(seed), kind, np.random.default_rng(100 + seed), brush_textures())
        shares.append(mask.mean())
    assert max(shares) > 0.0005 and max(shares) < 0.6


def _thickness(mask):
    """Erosions (3x3) it takes to empty the mask: half the widest stroke, roughly."""
    n, m = 0, mask.copy()
    while m.any():
        p = np.pad(m, 1)
        m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        n += 1
    return n


def test_defects_drawn_for_a_larger_photo_are_wider_exact_and_in_view():
    """``scale`` 3 draws holes as on a photo three times the crop's size: wider strokes,
    the mask still exactly the changed pixels, and the window always shows some of it;
    ``scale`` 1 is the plain draw, bit for bit."""
    plain, big = [], []
    for seed in range(12):
        clean = photo(seed, 96)
        out, mask = apply_defect(clean, "hole", np.random.default_rng(seed), scale=3.0)
        np.testing.assert_array_equal(mask, np.any(out != clean, axis=-1))
        assert mask.any()
        big.append(_thickness(mask))
        a = apply_defect(clean, "hole", np.random.default_rng(seed))
        b = apply_defect(clean, "hole", np.random.default_rng(seed), scale=1.0)
        np.testing.assert_array_equal(a[0], b[0])
        plain.append(_thickness(a[1]))
    assert np.mean(big) > 2 * np.mean(plain)


def test_scaled_window_shows_the_covered_pixels():
    alpha = np.zeros((300, 300), np.float32)
    alpha[250:260, 20:25] = 1.0
    for seed in range(20):
        w = scaled_window(alpha, 64, 80, np.random.default_rng(seed))
        assert w.shape == (64, 80) and w.any()
    empty = scaled_window(np.zeros((100, 90), np.float32), 30, 40, np.random.default_rng(0))
    assert empty.shape == (30, 40) and not empty.any()


def test_full_chain_mask_covers_the_defects_only():
    """The chain's mask is the union of the defects' masks: outside it the image equals
    the unstructured-only degradation of the same draw."""
    clean = photo(4)
    cfg = DegradeConfig(p_defects=1.0)
    for seed in range(5):
        deg, _, mask = degrade(clean, seed, cfg)
        assert mask.any()
        rng = np.random.default_rng(seed)
        from training.data.degradations import degrade_unstructured, to_float, to_u8
        base = to_u8(degrade_unstructured(to_float(clean), rng, cfg))
        rng.random()                         # the p_defects draw
        redo, m2 = add_defects(base, rng, cfg)
        np.testing.assert_array_equal(redo, deg)
        np.testing.assert_array_equal(m2, mask)
        np.testing.assert_array_equal(deg[~mask], base[~mask])


@pytest.mark.parametrize("op", [gaussian_blur, noise, resample, jpeg, fade, uneven_exposure, film_grain,
                                halftone, paper_texture])
def test_unstructured_ops_change_the_image_within_range(op):
    img = photo(2).astype(np.float32) / 255
    out = op(img, np.random.default_rng(5), DegradeConfig())
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert np.abs(out - img).mean() > 1e-4


def test_gimp_brush_and_pattern_parsers():
    w, h = 5, 3
    name = b"x\0"
    px = bytes(range(w * h))
    gbr = (28 + len(name)).to_bytes(4, "big") + (2).to_bytes(4, "big") + w.to_bytes(4, "big") + \
        h.to_bytes(4, "big") + (1).to_bytes(4, "big") + b"GASP" + (10).to_bytes(4, "big") + name + px
    a, n = read_gbr(gbr)
    assert a.shape == (3, 5) and n == len(gbr) and a[0, 1] == pytest.approx(1 / 255)
    gih = b"name\n2 ncells:2\n" + gbr + gbr
    assert len(read_gih(gih)) == 2
    pat = (24 + len(name)).to_bytes(4, "big") + (1).to_bytes(4, "big") + w.to_bytes(4, "big") + \
        h.to_bytes(4, "big") + (3).to_bytes(4, "big") + b"GPAT" + name + bytes([30]) * (w * h * 3)
    assert read_pat(pat).shape == (3, 5)


def test_contact_sheet(tmp_path, smoke):
    from PIL import Image

    from training.show import contact_sheet
    p = contact_sheet(smoke, tmp_path / "sheet.png", n=3)
    im = Image.open(p)
    assert im.size[0] > im.size[1] > smoke.data.crop


def test_text_is_lettering_with_an_outline_of_the_opposite_tone():
    """Lettering over a flat mid-gray print: light letters (the majority) over a darker
    rim, or dark letters over a lighter one; what is marked is small, legible-sized
    strokes, and the photo under semi-transparent letters still shows through."""
    from training.data.degradations import text_layers
    seen_outline, seen_through = 0, 0
    for seed in range(20):
        layers = text_layers(np.random.default_rng(seed), 200, 300)
        (rim, rim_color), (letters, color) = layers
        assert letters.max() > 0.3 and (letters > 0.12).mean() < 0.3
        if (rim > 0.12).any():
            seen_outline += 1
            assert (rim_color.mean() - 0.5) * (color.mean() - 0.5) < 0     # opposite tones
        if letters.max() < 0.95:
            seen_through += 1
    assert seen_outline >= 8 and seen_through >= 3
