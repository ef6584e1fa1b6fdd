"""evaluate's edge-sharpness and fill-tone measures respond to what they claim to measure."""
import numpy as np
from PIL import Image, ImageFilter

from training.classical import stretch
from training.metrics import edge_sharpness, fill_delta


def _photo():
    rng = np.random.default_rng(0)
    a = np.zeros((96, 96, 3), np.uint8)
    for _ in range(12):
        y, x = rng.integers(0, 80, 2)
        a[y:y + 16, x:x + 16] = rng.integers(0, 256, 3)
    return a


def test_sharpness_is_one_for_the_clean_photo_and_lower_when_blurred():
    clean, mask = _photo(), np.zeros((96, 96), bool)
    blurred = np.asarray(Image.fromarray(clean).filter(ImageFilter.GaussianBlur(2)))
    assert abs(edge_sharpness(clean, clean, mask) - 1) < 1e-9
    assert edge_sharpness(blurred, clean, mask) < 0.7


def test_fill_delta_sees_a_tinted_fill_and_not_an_in_tone_one():
    img = np.full((64, 64, 3), 120, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 10:50] = True
    tinted = img.copy()
    tinted[mask] = (160, 110, 90)
    assert fill_delta(img, mask) < 0.5
    assert fill_delta(tinted, mask) > 20


def test_stretch_maps_percentiles_to_the_full_range_and_keeps_gray_gray():
    g = np.repeat(np.linspace(60, 180, 64 * 64).reshape(64, 64, 1), 3, -1).astype(np.uint8)
    s = stretch(g, (0.5, 99.5))
    assert s.min() == 0 and s.max() == 255 and (s[..., 0] == s[..., 2]).all()
