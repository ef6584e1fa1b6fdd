"""The shipped default weights: present in the package, small, loadable the way the
server loads them, made by ``python -m training``, and better than their input on
real photos degraded by the project's own degradation."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto_model import Restorer, default_weights_path, load_model
from training.config import preset
from training.data.degradations import degrade
from training.evaluate import psnr

DATA = Path(__file__).resolve().parents[1] / "data"
SHIPPED_PRESET = "cpu-sharp"


@pytest.fixture(scope="module")
def model():
    return load_model()


def test_default_weights_are_shipped_small_and_from_the_training_package(model):
    path = default_weights_path()
    assert model.weights_info.path == str(path)     # load_model() loads the default
    assert path.parent.name == "weights" and path.parent.parent.name == "oldphoto_model"
    assert path.stat().st_size <= 60 * 2 ** 20
    meta = model.weights_info.metadata
    # the recipe lives in the preset named by the file (docs/MODEL.md: cpu-sharp)
    assert meta["trained_by"] == "python -m training" and meta["preset"] == SHIPPED_PRESET
    cfg = preset(SHIPPED_PRESET)
    assert model.config == cfg.model
    assert meta["steps"] == {"vae-a": cfg.vae_a.steps, "vae-b": cfg.vae_b.steps, "mapping": cfg.mapping.steps}


def test_default_weights_restore_better_than_the_degraded_input(model):
    restorer = Restorer(model, "cpu", "fp32")
    cfg = preset("cpu").degrade
    gain, gain_mask = [], []
    for i, name in enumerate(sorted(DATA.glob("*_192.png"))):
        clean = np.asarray(Image.open(name).convert("RGB"))
        for seed in range(2):
            degraded, _, mask = degrade(clean, [99, i, seed], cfg, None, defects=True)
            if not mask.any():
                continue
            out = restorer.restore(degraded, mask.astype(np.uint8) * 255)
            gain.append(psnr(out, clean) - psnr(degraded, clean))
            gain_mask.append(psnr(out, clean, mask) - psnr(degraded, clean, mask))
    assert len(gain) >= 4
    print(f"PSNR gain over the input: {np.mean(gain):.2f} dB overall, {np.mean(gain_mask):.2f} dB in the masks")
    # floors, not the figures (printed above); random weights or a broken pipeline
    # lose several dB
    assert np.mean(gain) > 0.0, gain
    assert np.mean(gain_mask) > 4.0, gain_mask


def test_shipped_tone_estimator_undoes_a_fade():
    """The shipped tone estimator: small, made by ``python -m training tone``, loaded by
    default, and it takes a faded, yellowed, lifted print closer to the original."""
    import torch

    from oldphoto_model.tone import DEFAULT_TONE, correct_tone, load_tone
    net = load_tone()
    assert DEFAULT_TONE.stat().st_size <= 1 << 20
    assert net.weights_info.metadata["training"].startswith("python -m training tone")
    assert Restorer(load_model(), "cpu", "fp32").tone is not None        # on by default
    gains = []
    for name in sorted(DATA.glob("*_192.png")):
        clean = np.asarray(Image.open(name).convert("RGB")).astype(np.float32) / 255
        faded = 0.12 + 0.7 * clean * np.array([1.0, 0.93, 0.72], np.float32)   # lifted, flat, yellowed
        x = torch.from_numpy(faded).permute(2, 0, 1)[None] * 2 - 1
        out = (correct_tone(x, None, net, 1.0)[0].permute(1, 2, 0).numpy() + 1) / 2
        u8 = lambda a: np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)  # noqa: E731
        gains.append(psnr(u8(out), u8(clean)) - psnr(u8(faded), u8(clean)))
    print(f"tone estimator on faded crops: {np.round(gains, 2)} dB")
    assert min(gains) > 1.0, gains


def test_shipped_detector_finds_scratches_and_leaves_clean_crops_alone():
    """The shipped scratch detector: small, made by ``python -m training detect``, and at
    its own threshold it marks a good part of the synthetic defects on the committed
    crops (mostly on them) while marking almost nothing of the same crops undamaged."""
    from oldphoto_model.detect import DEFAULT_DETECTOR, detect, load_detector, model_threshold
    from training.eval_detect import match_counts, scores
    net = load_detector()
    assert DEFAULT_DETECTOR.stat().st_size <= 4 << 20
    assert net.weights_info.metadata["training"].startswith("python -m training detect")
    assert 0.5 <= model_threshold(net) < 1.0
    cfg = preset("cpu").degrade
    tot: dict = {}
    flagged_clean = pixels = 0
    for i, name in enumerate(sorted(DATA.glob("*_192.png"))):
        clean = np.asarray(Image.open(name).convert("RGB"))
        for seed in range(3):
            degraded, _, mask = degrade(clean, [77, i, seed], cfg, None, defects=True)
            for k, v in match_counts(detect(degraded, net)[1] > 0, mask).items():
                tot[k] = tot.get(k, 0) + v
        flagged_clean += int(detect(clean, net)[1].astype(bool).sum())
        pixels += clean.shape[0] * clean.shape[1]
    s = scores(tot)
    print(f"shipped detector on the crops: precision {s['precision']:.3f} recall {s['recall']:.3f} "
          f"F1 {s['f1']:.3f}; clean crops flagged {100 * flagged_clean / pixels:.2f} %")
    # floors, not the figures (printed above): random weights flag noise or nothing
    assert s["precision"] > 0.6 and s["recall"] > 0.1, s
    assert flagged_clean / pixels < 0.01
