"""The numpy restore pipeline: modes, sizes, masks, precision, determinism."""
import numpy as np
import pytest
import torch

from oldphoto_model import (
    InputError,
    MappingConfig,
    ModelConfig,
    RestoreOptions,
    Restorer,
    VAEConfig,
    binarize_mask,
    restore,
)
from oldphoto_model.pipeline import _LUMA

from ..conftest import random_model


def _img(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _scratch(h, w):
    m = np.zeros((h, w), np.uint8)
    m[h // 3:h // 3 + 3, w // 8:] = 255
    return m


@pytest.fixture(scope="module")
def restorer():
    return Restorer(random_model(), device="cpu", precision="fp32")


@pytest.mark.parametrize("shape", [(333, 517), (333, 517, 1), (333, 517, 2), (333, 517, 3), (333, 517, 4),
                                   (1, 1, 3), (2, 7), (17, 5, 4)])
def test_shapes_modes_dtypes(restorer, shape):
    img = _img(shape)
    out = restorer.restore(img, _scratch(*shape[:2]))
    assert out.shape == img.shape and out.dtype == np.uint8
    if len(shape) == 3 and shape[2] in (2, 4):
        assert np.array_equal(out[..., -1], img[..., -1]), "alpha must be carried through untouched"


def test_gray_is_luma_of_color_result(restorer):
    g = _img((40, 52), 1)
    out_gray = restorer.restore(g)
    out_rgb = restorer.restore(np.repeat(g[:, :, None], 3, axis=2))
    expect = np.clip(np.rint(out_rgb.astype(np.float32) @ _LUMA), 0, 255)
    assert np.abs(out_gray.astype(int) - expect).max() <= 1


def test_rgba_color_equals_rgb(restorer):
    rgba = _img((30, 44, 4), 2)
    m = _scratch(30, 44)
    assert np.array_equal(restorer.restore(rgba, m)[..., :3], restorer.restore(rgba[..., :3].copy(), m))


def test_mask_threshold_rule(restorer):
    img = _img((48, 48, 3), 3)
    soft = _scratch(48, 48) // 255 * 127          # feathered below the 50 % contour
    assert not binarize_mask(soft).any()
    assert np.array_equal(restorer.restore(img, soft), restorer.restore(img))
    hard = soft + (soft > 0)                       # 128: counts as defect
    assert not np.array_equal(restorer.restore(img, hard), restorer.restore(img))
    assert np.array_equal(restorer.restore(img, hard), restorer.restore(img, (hard > 0) * np.uint8(255)))


def test_deterministic(restorer):
    img, m = _img((64, 80, 3), 4), _scratch(64, 80)
    assert np.array_equal(restorer.restore(img, m), restorer.restore(img.copy(), m.copy()))


def test_input_not_modified(restorer):
    img, m = _img((40, 40, 4), 5), _scratch(40, 40)
    keep, keep_m = img.copy(), m.copy()
    restorer.restore(img, m)
    assert np.array_equal(img, keep) and np.array_equal(m, keep_m)


@pytest.mark.parametrize("bad,msg", [
    (np.zeros((10, 10, 3), np.float32), "dtype"),
    (np.zeros((10, 10, 5), np.uint8), "shape"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((2, 3, 4, 5), np.uint8), "shape"),
    ([[1, 2]], "numpy"),
])
def test_bad_images_raise_input_error(restorer, bad, msg):
    with pytest.raises(InputError, match=msg):
        restorer.restore(bad)


def test_bad_mask_raises_input_error(restorer):
    img = _img((20, 20, 3))
    with pytest.raises(InputError, match="does not match"):
        restorer.restore(img, np.zeros((20, 21), np.uint8))
    with pytest.raises(InputError, match="uint8"):
        restorer.restore(img, np.zeros((20, 20), bool))


def test_progress_in_order_and_cancel(restorer):
    seen = []
    restorer.restore(_img((32, 32, 3)), _scratch(32, 32), progress=lambda f, s: seen.append(f))
    assert seen == sorted(seen) and seen[0] == 0.0 and seen[-1] == 1.0
    assert len(seen) > 30, "progress (and cancel checks) must come per layer, not per stage"
    assert any(0.6 < f < 0.75 for f in seen), "the attention reports its progress too"

    class Stop(Exception):
        pass

    calls = []

    def cancel(f, s):
        calls.append(s)
        if len(calls) == 3:         # inside the encoder, two layers in
            raise Stop()
    with pytest.raises(Stop):
        restorer.restore(_img((32, 32, 3)), progress=cancel)
    assert calls == ["encode"] * 3


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_reduced_precision_close_to_fp32(dtype):
    model = random_model()
    img, m = _img((64, 64, 3), 6), _scratch(64, 64)
    ref = restore(img, m, model=model, device="cpu", precision="fp32").astype(int)
    try:
        out = restore(img, m, model=model, device="cpu", precision=dtype).astype(int)
    except RuntimeError as e:
        pytest.skip(f"{dtype} not supported on this CPU build: {e}")
    # random weights amplify rounding; a trained model is measured in docs/BENCHMARKS.md
    assert np.abs(out - ref).mean() < 8.0


def test_explicit_cuda_without_gpu_is_clear():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA"):
        Restorer(random_model(), device="cuda")


@pytest.mark.parametrize("norm", ["instance", "none"])
def test_pipeline_equals_plain_model_forward(norm):
    """The banded, in-place pipeline against RestorationModel.forward (the plain reference)."""
    model = random_model(ModelConfig(vae=VAEConfig(channels=8, norm=norm),
                                     mapping=MappingConfig(latent_channels=8, width=16, norm=norm)))
    img = _img((52, 44, 3), 7)
    mask = _scratch(52, 44)
    # the network's result alone: no learned fill, no merge, no tone or black-point correction of the scan
    out = Restorer(model, device="cpu", precision="fp32", band_elements=2000).restore(
        img, mask, RestoreOptions(grow=0, detail=0.0, tone=1.0, auto_tone=0.0, black_point=0.0, learned_fill=False))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    m = torch.from_numpy(mask >= 128)[None, None].float()
    with torch.no_grad():
        ref = model(x, m)[0].permute(1, 2, 0).numpy()
    ref = np.clip(np.rint((ref + 1) * 127.5), 0, 255).astype(np.uint8)
    assert np.abs(out.astype(int) - ref).max() <= 1


@pytest.mark.parametrize("flags,want", [(frozenset(), torch.float32),
                                        (frozenset({"avx512_bf16"}), torch.bfloat16),
                                        (frozenset({"amx_bf16", "avx512_bf16"}), torch.bfloat16)])
def test_auto_precision_on_cpu_follows_bf16_instructions(monkeypatch, flags, want):
    from oldphoto_model import device as dev
    monkeypatch.setattr(dev, "cpu_bf16_flags", lambda: flags)
    assert dev.select_precision(torch.device("cpu"), "auto") == want
    assert dev.select_precision(torch.device("cpu"), "fp32") == torch.float32
    with pytest.raises(ValueError):
        dev.select_precision(torch.device("cpu"), "fp8")
