"""The tone estimator and automatic tone: identity when untrained, blind to defect
pixels, a weight file that round-trips, and in the restore only for the whole photo."""
import numpy as np
import pytest
import torch

from oldphoto_model import InputError, RestoreOptions, Restorer, WeightsError
from oldphoto_model.archs.tone import QUANTILES, ToneConfig, ToneEstimator, apply_colour_matrix, tone_features
from oldphoto_model.tone import correct_tone, estimate_matrix, load_tone, save_tone, thumbnail

from .test_pipeline import random_model


def brightening(gain=0.8, offset=0.1):
    """An estimator whose matrix is gain * I + offset whatever the photo."""
    net = ToneEstimator(ToneConfig(hidden=8, thumb=16))
    with torch.no_grad():
        net.mlp[-1].bias.copy_((torch.cat([torch.eye(3) * gain, torch.full((3, 1), offset)], 1)
                                - torch.eye(3, 4)).flatten())
    return net.eval()


def test_untrained_estimator_is_the_identity():
    x = torch.rand(1, 3, 40, 30) * 2 - 1
    net = ToneEstimator().eval()
    torch.testing.assert_close(estimate_matrix(x, None, net), torch.eye(3, 4))
    torch.testing.assert_close(correct_tone(x, None, net, 1.0), x, atol=1e-6, rtol=0)


def test_features_are_the_plain_quantiles():
    t = torch.rand(2, 3, 12, 12)
    f = tone_features(t)
    q = len(QUANTILES)
    r = t[1, 0].flatten().numpy()
    want = np.quantile(r, QUANTILES)
    np.testing.assert_allclose(f[1, :q].numpy(), want, atol=1e-6)      # R's quantiles come first
    np.testing.assert_allclose(f[1, 6 * q].item(), r.mean(), atol=1e-6)  # then the means


def test_defect_pixels_do_not_count():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 48, 64)
    known = torch.ones(1, 1, 48, 64)
    known[..., 10:14, :] = 0                       # a scratch across the photo
    known[..., 30:48, 40:64] = 0                   # and a hole that covers whole thumbnail cells
    y = x.clone()
    y[..., 10:14, :] = 1.0                         # white scratch
    y[..., 30:48, 40:64] = 0.0
    torch.testing.assert_close(thumbnail(x, known, 16), thumbnail(y, known, 16))
    net = brightening()
    with torch.no_grad():
        net.mlp[-1].weight.normal_(0, 0.1)         # the matrix now depends on the photo
    torch.testing.assert_close(estimate_matrix(x, known, net), estimate_matrix(y, known, net))


def test_strength_scales_the_correction():
    x = torch.rand(1, 3, 20, 20) * 2 - 1
    net = brightening(0.8, 0.1)
    full, half = correct_tone(x, None, net, 1.0), correct_tone(x, None, net, 0.5)
    torch.testing.assert_close(full, ((x + 1) / 2 * 0.8 + 0.1) * 2 - 1)
    torch.testing.assert_close(half, (x + full) / 2)
    assert correct_tone(x, None, net, 0.0) is x


def test_apply_colour_matrix_mixes_channels():
    x = torch.rand(1, 3, 4, 5)
    m = torch.tensor([[[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.5]]])
    y = apply_colour_matrix(x, m)
    torch.testing.assert_close(y[:, 0], x[:, 1])
    torch.testing.assert_close(y[:, 1], x[:, 0])
    torch.testing.assert_close(y[:, 2], x[:, 2] + 0.5)


def test_weight_file_round_trip_and_errors(tmp_path):
    net = brightening()
    with torch.no_grad():
        net.feature_mean.fill_(0.3)
    p = save_tone(net, tmp_path / "tone.pt", {"steps": 7})
    back = load_tone(p)
    assert back.weights_info.metadata == {"steps": 7} and back.config == net.config
    t = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(back(t), net(t))
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a tone-estimator weight file"):
        load_tone(tmp_path / "other.pt")
    payload = torch.load(p, weights_only=True)
    payload["config"] = '{"hidden": 100000000, "thumb": 64}'
    torch.save(payload, tmp_path / "huge.pt")
    with pytest.raises(WeightsError, match="out of range"):
        load_tone(tmp_path / "huge.pt")
    with pytest.raises(WeightsError, match="file not found"):
        load_tone(tmp_path / "missing.pt")


def test_restore_applies_auto_tone_to_the_whole_photo_only():
    model = random_model()
    plain = Restorer(model, device="cpu", precision="fp32", tone=None)
    toned = Restorer(model, device="cpu", precision="fp32", tone=brightening(1.0, 0.1))
    rng = np.random.default_rng(3)
    img = rng.integers(40, 200, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[18:21, 5:40] = 255
    opts = RestoreOptions(black_point=0.0)
    a, b = plain.restore(img, mask, opts), toned.restore(img, mask, opts)
    assert (b.astype(int) - a.astype(int)).mean() > 10                    # the whole photo got brighter
    np.testing.assert_array_equal(toned.restore(img, mask, RestoreOptions(black_point=0.0, auto_tone=0.0)), a)
    sel = RestoreOptions(restrict_to_mask=True)
    np.testing.assert_array_equal(toned.restore(img, mask, sel), plain.restore(img, mask, sel))
    with pytest.raises(InputError, match="auto_tone"):
        RestoreOptions(auto_tone=1.5)
    with pytest.raises(ValueError):
        Restorer(model, device="cpu", precision="fp32", tone="mine")


def test_thumbnail_is_the_plain_mean_of_each_cells_intact_pixels():
    torch.manual_seed(1)
    x = torch.rand(1, 3, 24, 32)
    known = (torch.rand(1, 1, 24, 32) > 0.3).float()
    known[..., :6, :8] = 0                       # one cell with no intact pixel at all
    got = thumbnail(x, known, 4)                 # cells of 6 x 8 pixels
    for i in range(4):
        for j in range(4):
            k = known[0, 0, 6 * i:6 * i + 6, 8 * j:8 * j + 8] > 0
            if not k.any():
                continue
            want = x[0, :, 6 * i:6 * i + 6, 8 * j:8 * j + 8][:, k].mean(1)
            torch.testing.assert_close(got[0, :, i, j], want)
    # the empty cell takes a value between its neighbours' (the push-pull fill), not 0
    assert 0.2 < float(got[0, :, 0, 0].min()) and float(got[0, :, 0, 0].max()) < 0.8
    torch.testing.assert_close(thumbnail(x, None, 4), x.unfold(2, 6, 6).unfold(3, 8, 8).mean((-1, -2)))
