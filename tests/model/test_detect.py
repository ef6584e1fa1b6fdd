"""The scratch detector: tiled inference equals one pass, the receptive radius bounds
the dependence, the weight file round-trips."""
import numpy as np
import pytest
import torch

from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
from oldphoto_model.detect import (
    detect,
    detect_logits,
    detect_probability,
    load_detector,
    save_detector,
    to_network_input,
)
from oldphoto_model.errors import InputError, WeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(width=4, levels=2, seed=0):
    torch.manual_seed(seed)
    m = ScratchDetector(DetectorConfig(width, levels)).eval()
    with torch.no_grad():       # larger weights than the default init: every layer matters
        for p in m.parameters():
            p.mul_(1.5)
    return m


@pytest.mark.parametrize("levels", [1, 2])
def test_receptive_radius_bounds_the_dependence(levels):
    m = _model(levels=levels).double()
    mult, r = m.config.multiple, m.config.receptive_radius
    n = mult * (-(-(2 * r + 4 * mult) // mult))
    x = torch.randn(1, 3, n, n, dtype=torch.float64, requires_grad=True)
    c = n // 2 + 3                          # not on the pooling grid
    m(x)[0, 0, c, c].backward()
    ys, xs = torch.nonzero(x.grad.abs().sum(1)[0], as_tuple=True)
    reach = max((ys - c).abs().max(), (xs - c).abs().max())
    assert 0 < reach <= m.config.receptive_radius


@pytest.mark.parametrize("shape,tile", [((70, 93, 3), 16), ((45, 40), 8), ((33, 130, 4), 24), ((9, 5, 1), 8)])
def test_tiled_equals_one_pass(shape, tile):
    m = _model()
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    whole = detect_logits(to_network_input(img), m, tile=10_000)
    tiled = detect_logits(to_network_input(img), m, tile=tile)
    assert tiled.shape == shape[:2]
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)
    # and the one pass is the network on the mirror-padded photo
    mult = m.config.multiple
    x = to_network_input(img)
    ph, pw = -shape[0] % mult, -shape[1] % mult
    padded = torch.from_numpy(np.pad(x[0].numpy(), ((0, 0), (0, ph), (0, pw)), mode="symmetric"))[None]
    with torch.no_grad():
        torch.testing.assert_close(whole, m(padded)[0, 0, :shape[0], :shape[1]], rtol=1e-5, atol=1e-5)


def test_four_views_average_the_mirror_images():
    """The four-view probability is the plain mean of the network's probabilities on the
    flipped photo, flipped back (a single untiled pass as the reference), tiled or not;
    hence a mirrored photo gets the mirrored map, which one view does not give."""
    m = _model()
    img = np.random.default_rng(4).integers(0, 256, (37, 52, 3), dtype=np.uint8)
    x = to_network_input(img)
    ref = sum(torch.sigmoid(detect_logits(x.flip(d), m, tile=10_000)).flip(d) if d else
              torch.sigmoid(detect_logits(x, m, tile=10_000)) for d in [(), (-1,), (-2,), (-2, -1)]) / 4
    torch.testing.assert_close(detect_probability(x, m, tile=16, half=False, dither=0), ref, rtol=1e-5, atol=1e-6)
    prob, _ = detect(img, m, dither=0)
    mirrored, _ = detect(np.ascontiguousarray(img[:, ::-1]), m, dither=0)
    np.testing.assert_allclose(mirrored, prob[:, ::-1], atol=1e-6)
    one, _ = detect(img, m, views=1, half=False, dither=0)
    np.testing.assert_allclose(one, torch.sigmoid(detect_logits(x, m)).numpy(), atol=1e-6)
    one_mirrored, _ = detect(np.ascontiguousarray(img[:, ::-1]), m, views=1, half=False, dither=0)
    assert np.abs(one_mirrored - one[:, ::-1]).max() > 1e-3
    seen = []
    detect(img, m, tile=16, progress=seen.append, half=False)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 4 * 12
    with pytest.raises(InputError, match="views"):
        detect(img, m, views=3)


@pytest.mark.parametrize("shape", [(37, 52, 3), (40, 50, 3), (9, 5, 3)])
def test_half_size_look_is_the_plain_max(shape):
    """With the half-size look the probability is, per pixel, the larger of the full-size
    map and the square of the map of the 2x2-averaged photo upsampled back; checked against
    untiled passes on a plain numpy downscale, tiled, odd sizes included. The progress
    covers both looks in order."""
    from oldphoto_model.detect import HALF_POWER
    m = _model()
    with torch.no_grad():
        m.head.weight *= 30.0       # logits spread widely and mostly high: the squared
        m.head.bias += 4.0          # half-size map wins on some pixels, not on all
    img = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    x = to_network_input(img)
    full = detect_probability(x, m, tile=10_000, half=False, dither=0)
    a = np.pad(x[0].numpy(), ((0, 0), (0, shape[0] % 2), (0, shape[1] % 2)), mode="edge")
    small = (a[:, 0::2, 0::2] + a[:, 1::2, 0::2] + a[:, 0::2, 1::2] + a[:, 1::2, 1::2]) / 4
    p_small = detect_probability(torch.from_numpy(small)[None], m, tile=10_000, half=False, dither=0)
    up = torch.nn.functional.interpolate(p_small[None, None], size=(2 * small.shape[1], 2 * small.shape[2]),
                                         mode="bilinear", align_corners=False)[0, 0, :shape[0], :shape[1]]
    ref = torch.maximum(full, up ** HALF_POWER)
    torch.testing.assert_close(detect_probability(x, m, tile=8, dither=0), ref, rtol=1e-5, atol=1e-6)
    assert (ref > full + 1e-4).any()                        # the half-size look decides somewhere
    seen = []
    prob, _ = detect(img, m, tile=8, progress=seen.append, dither=0)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    np.testing.assert_allclose(prob, ref.numpy(), atol=1e-6)


@pytest.mark.parametrize("shape", [(37, 52, 3), (9, 5, 3)])
def test_dither_is_the_plain_pass_on_the_photo_plus_fixed_noise(shape):
    """With ``dither`` the map is the undithered map of the photo plus ``dither_noise``
    (gray, seeded: the same photo gets the same map; sigma in levels of 255), clipped,
    tiled or not, both looks; 0 is the plain map; out-of-range values are refused."""
    from oldphoto_model.detect import DEFAULT_DITHER, dither_noise
    m = _model()
    img = np.random.default_rng(6).integers(0, 256, shape, dtype=np.uint8)
    x = to_network_input(img)
    n = dither_noise(shape[0], shape[1], 6.0)
    assert n.shape == (1, 1) + shape[:2] and torch.equal(n, dither_noise(shape[0], shape[1], 6.0))
    big = dither_noise(300, 300, 6.0) * 255 / 2
    assert abs(float(big.std()) - 6.0) < 0.1 and abs(float(big.mean())) < 0.1
    ref = detect_probability((x + n).clamp(-1, 1), m, tile=10_000, dither=0)
    torch.testing.assert_close(detect_probability(x, m, tile=8, dither=6.0), ref, rtol=1e-5, atol=1e-6)
    plain = detect_probability(x, m, tile=10_000, dither=0)
    assert (ref - plain).abs().max() > 1e-4                       # the noise reaches the map
    prob, _ = detect(img, m, tile=8)
    default = detect_probability(x, m, tile=10_000, dither=DEFAULT_DITHER)
    np.testing.assert_allclose(prob, default.numpy(), atol=1e-6)
    np.testing.assert_array_equal(prob, detect(img, m, tile=8)[0])
    with pytest.raises(InputError, match="dither"):
        detect(img, m, dither=-1.0)


def test_detect_outputs_and_gray_equals_rgb(tmp_path):
    m = _model()
    gray = np.random.default_rng(2).integers(0, 256, (40, 50), dtype=np.uint8)
    prob, mask = detect(gray, m, threshold=0.5)
    assert prob.dtype == np.float32 and prob.shape == (40, 50) and 0 <= prob.min() and prob.max() <= 1
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert ((prob >= 0.5) == (mask == 255)).all()
    prob3, _ = detect(np.repeat(gray[..., None], 3, -1), m)
    np.testing.assert_array_equal(prob, prob3)
    p16, _ = detect(gray.astype(np.uint16) * 257, m)
    np.testing.assert_allclose(p16, prob, atol=1e-5)


def test_weight_file_round_trip_and_errors(tmp_path):
    m = _model(width=6, levels=1)
    path = save_detector(m, tmp_path / "d.pt", {"threshold": 0.4})
    loaded = load_detector(path)
    assert loaded.config == m.config and loaded.weights_info.metadata["threshold"] == 0.4
    for k, v in m.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(WeightsError, match="file not found"):
        load_detector(tmp_path / "none.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a scratch-detector"):
        load_detector(tmp_path / "other.pt")


def test_shipped_detector_loads_with_its_measured_threshold():
    """The shipped file loads (weights_only) and names the threshold eval-detect chose; detect()
    uses it when none is given."""
    from oldphoto_model.detect import DEFAULT_DETECTOR, model_threshold
    assert DEFAULT_DETECTOR.is_file() and DEFAULT_DETECTOR.stat().st_size < 2_000_000
    m = load_detector()
    assert m.weights_info.path == str(DEFAULT_DETECTOR)
    t = m.weights_info.metadata["threshold"]
    assert model_threshold(m) == t and 0.5 < t < 1
    img = np.random.default_rng(3).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    prob, mask = detect(img, m)
    assert ((prob >= t) == (mask == 255)).all()
    assert model_threshold(_model()) == 0.5       # a network without a weight file: the default


def test_missing_default_detector_is_a_clear_weights_error(tmp_path, monkeypatch):
    from oldphoto_model import weights as weights_mod
    monkeypatch.setattr(weights_mod, "DEFAULT_DETECTOR", tmp_path / "detector.pt")
    with pytest.raises(WeightsError, match="no scratch-detector weights in this installation") as e:
        load_detector()
    assert "python -m training detect" in str(e.value) and e.value.path == str(tmp_path / "detector.pt")


def test_restore_detected_is_restore_with_the_detected_mask(tiny_model):
    from oldphoto_model import RestoreOptions, Restorer
    from oldphoto_model.detect import DETECT_GROW, restore_detected
    from oldphoto_model.pipeline import MAX_GROW
    m = _model()
    img = np.random.default_rng(4).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    _, mask = detect(img, m, threshold=0.5)
    assert 0 < (mask > 0).mean() < 1, "the test needs a mask with something in it"
    r = Restorer(tiny_model, device="cpu", precision="fp32")
    seen = []
    out, info = restore_detected(r, m, img, RestoreOptions(grow=1), lambda f, s: seen.append((f, s)),
                                 threshold=0.5)
    np.testing.assert_array_equal(info["mask"], mask)
    assert info["flagged"] == pytest.approx((mask > 0).mean()) and info["low_memory"] is False
    np.testing.assert_array_equal(out, r.restore(img, mask, RestoreOptions(grow=1 + DETECT_GROW)))
    assert not np.array_equal(out, r.restore(img, mask, RestoreOptions(grow=1)))
    most, _ = restore_detected(r, m, img, RestoreOptions(grow=MAX_GROW), threshold=0.5)   # capped, no error
    np.testing.assert_array_equal(most, r.restore(img, mask, RestoreOptions(grow=MAX_GROW)))
    assert not np.array_equal(out, r.restore(img, None, RestoreOptions(grow=1)))
    fractions = [f for f, _ in seen]
    assert seen[0] == (0.0, "detect") and fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {s for _, s in seen} >= {"detect", "decode", "done"}
