"""The ``detect`` stage: runs in the shared loop, resumes bit-identically, exports a
weight file the product loads; ``eval-detect`` scores it against the classical detector."""

import numpy as np
import pytest
import torch
from PIL import Image

from oldphoto_model.detect import detect, load_detector
from training.__main__ import main
from training.classical import tophat_detect
from training.data.dataset import DetectSamples, TrainingSamples
from training.eval_detect import (
    choose_threshold,
    detection_rows,
    eval_pairs,
    kind_table,
    match_counts,
    scores,
    summary,
    sweep_table,
    trained_on,
)
from training.stages.detect import as_scanned, detection_loss, export_detector, gaussian_blur, with_pristine

from .resume import train_and_check_resume


def test_detect_stage_runs_resumes_and_exports(smoke, tmp_path):
    train_and_check_resume(smoke, tmp_path, "detect", "detector")
    model = load_detector(export_detector(smoke))
    assert model.weights_info.metadata["steps"] == smoke.detect.steps
    prob, mask = detect(np.zeros((20, 30, 3), np.uint8), model)
    assert prob.shape == mask.shape == (20, 30)


def test_detect_stage_with_pristine_samples_resumes_bit_identically(smoke, tmp_path):
    smoke.detect.pristine = 0.5          # its draws come from the per-step seed
    smoke.detect.scan_noise = 6.0        # so do these
    train_and_check_resume(smoke, tmp_path, "detect", "detector")


@pytest.fixture
def real_dir(tmp_path):
    """Three 'real old photos': smooth gradients a synthetic defect stands out on."""
    d = tmp_path / "real"
    d.mkdir()
    yy, xx = np.mgrid[0:80, 0:100]
    for i, name in enumerate(("kept_a", "kept_b", "held")):
        g = ((yy + xx * (i + 1)) % 200 + 30).astype(np.uint8)
        Image.fromarray(np.stack([g, g, g], -1)).save(d / f"{name}.png")
    return d


def test_detect_samples_from_real_photos(smoke, real_dir):
    """``real`` 1: every sample is a crop of a real photo not held out, marked only where
    a drawn defect changed it; ``real`` 0 and scale 1 are the plain training samples."""
    smoke.data.real_dirs = [str(real_dir)]
    smoke.data.crop = smoke.detect.crop
    ds = DetectSamples(smoke, 1.0, ("held",))
    assert sorted(p.stem for p in ds.detect_real.paths) == ["kept_a", "kept_b"]
    marked = 0
    for slot in range(12):
        s = ds[(0, slot)]
        changed = (s["degraded"] != s["clean"]).any(0)
        assert torch.equal(changed, s["mask"][0] > 0)
        gray = s["clean"]
        assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])   # a real (gray) crop
        marked += int(changed.any())
    assert 3 <= marked <= 11                     # degrade.p_defects of them carry defects
    plain, same = TrainingSamples(smoke, defects=True), DetectSamples(smoke, 0.0)
    for slot in range(4):
        a, b = plain[(1, slot)], same[(1, slot)]
        assert all(torch.equal(a[k], b[k]) for k in ("clean", "degraded", "mask"))
    scaled = DetectSamples(smoke, 0.0, (), (2.0, 3.0)).defect_scale(5, 1)
    assert set(scaled) == {"hole"} and 2.0 <= scaled["hole"] <= 3.0      # holes only, by default
    assert DetectSamples(smoke, 0.0).defect_scale(5, 1) == {}
    lined = DetectSamples(smoke, 0.0, (), (1.0, 1.0), ("hole",), lines=1.0)
    base = DetectSamples(smoke, 0.0)
    drawn = 0
    for slot in range(6):
        a, b = base[(2, slot)], lined[(2, slot)]
        drawn += int(not torch.equal(a["clean"], b["clean"]))     # strokes drawn into the scene,
        assert torch.equal(a["mask"], b["mask"])                  # never marked as defects
    assert drawn >= 5
    with pytest.raises(ValueError, match="real old photos"):
        DetectSamples(smoke, 0.5, ("kept_a", "kept_b", "held"))
    with pytest.raises(ValueError, match="defect_scale"):
        DetectSamples(smoke, 0.0, (), (2.0, 1.0))


def test_detect_stage_with_real_photos_and_scaled_defects_resumes(smoke, real_dir, tmp_path):
    smoke.data.real_dirs = [str(real_dir)]
    smoke.detect.real, smoke.detect.defect_scale, smoke.detect.real_holdout = 0.5, [1.0, 2.5], ["held"]
    train_and_check_resume(smoke, tmp_path, "detect", "detector")
    model = load_detector(export_detector(smoke))
    assert model.weights_info.metadata["real_trained_on"] == ["kept_a", "kept_b"]
    assert trained_on(model) == ("kept_a", "kept_b")        # eval-detect leaves these out
    smoke.detect.real = 0.0
    assert trained_on(load_detector(export_detector(smoke))) == ()


def test_loss_prefers_the_true_mask():
    t = torch.zeros(2, 1, 16, 16)
    t[0, 0, 4, :] = 1
    good = detection_loss(torch.where(t > 0, 6.0, -6.0), t, 3.0, 1.0)["total"]
    empty = detection_loss(torch.full_like(t, -6.0), t, 3.0, 1.0)["total"]
    assert good < 0.1 < empty


def test_pristine_samples_are_the_clean_crop_with_an_empty_mask():
    torch.manual_seed(0)
    batch = {"degraded": torch.rand(64, 3, 8, 8), "clean": torch.rand(64, 3, 8, 8),
             "mask": (torch.rand(64, 1, 8, 8) > 0.5).float()}
    x, m = with_pristine(batch, 0.0)
    assert x is batch["degraded"] and m is batch["mask"]
    x, m = with_pristine(batch, 1.0)
    assert torch.equal(x, batch["clean"]) and not m.any()
    torch.manual_seed(1)
    x, m = with_pristine(batch, 0.3)
    swapped = [i for i in range(64) if torch.equal(x[i], batch["clean"][i])]
    kept = [i for i in range(64) if torch.equal(x[i], batch["degraded"][i])]
    assert sorted(swapped + kept) == list(range(64)) and 8 < len(swapped) < 32
    assert not m[swapped].any() and all(torch.equal(m[i], batch["mask"][i]) for i in kept)
    x, m = with_pristine(batch, 1.0, overexposed=1.0)         # every crop brightened, clipped
    assert not m.any() and (x >= batch["clean"] - 1e-6).all() and (x == 1.0).float().mean() > 0.2
    gain = (x + 1) / (batch["clean"] + 1)
    unclipped = x < 1.0
    assert gain[unclipped].min() >= 1.3 - 1e-4 and gain[unclipped].max() <= 2.5 + 1e-4


def test_scan_noise_is_per_sample_gray_gaussian_within_its_sigma():
    torch.manual_seed(0)
    x = torch.zeros(64, 3, 32, 32)
    assert torch.equal(as_scanned(x, 0.0), x)
    y = as_scanned(x, 6.0)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])      # gray noise
    sd = y[:, 0].flatten(1).std(1) * 255 / 2                                     # in levels
    assert sd.max() <= 6.0 * 1.15 and sd.min() < 1.0 and sd.max() > 4.5          # uniform in [0, 6]
    assert abs(float(sd.mean()) - 3.0) < 0.6
    assert as_scanned(torch.ones(4, 3, 8, 8), 50.0).max() <= 1.0                 # clipped


def test_scan_blur_mixes_each_sample_with_its_gaussian_blur():
    torch.manual_seed(0)
    x = torch.zeros(32, 3, 21, 21)
    x[:, :, 10, 10] = 1.0                                                        # an impulse
    b = gaussian_blur(x, 1.0)
    t = torch.arange(-3, 4, dtype=torch.float32)
    k = torch.exp(-t * t / 2)
    k2 = torch.outer(k, k) / k.sum() ** 2                                        # the plain 2-D kernel
    assert torch.allclose(b[0, 0, 7:14, 7:14], k2, atol=1e-6) and abs(float(b[0, 0].sum()) - 1) < 1e-5
    y = as_scanned(x, 0.0, 1.0)
    w = 1 - y[:, 0, 10, 10]                                                      # = mix * (1 - k2 centre)
    mix = w / (1 - k2[3, 3])
    assert torch.allclose(y, x + mix.view(-1, 1, 1, 1) * (b - x), atol=1e-6)
    assert mix.min() < 0.2 and mix.max() > 0.8 and (mix >= 0).all() and (mix <= 1).all()


def test_scores_with_tolerance():
    truth = np.zeros((20, 20), bool)
    truth[10, 2:18] = True
    shifted = np.roll(truth, 2, axis=0)               # 2 px off: still counted
    s = scores(match_counts(shifted, truth))
    assert s["precision"] == s["recall"] == s["f1"] == 1.0 and s["iou_exact"] == 0.0
    far = np.roll(truth, 3, axis=0)
    assert scores(match_counts(far, truth))["f1"] == 0.0
    half = truth.copy()
    half[10, 10:] = False
    s = scores(match_counts(half, truth))
    assert s["precision"] == 1.0 and s["recall"] == 10 / 16       # 8 flagged + 2 within reach
    assert abs(s["iou"] - s["f1"] / (2 - s["f1"])) < 1e-12


def test_classical_finds_a_bright_scratch_and_not_flat_grey():
    img = np.full((64, 64, 3), 100, np.uint8)
    assert not tophat_detect(img).any()
    img[30, 5:60] = 230
    m = tophat_detect(img)
    assert m[30, 10:55].all() and m.sum() < 3 * 55


def test_detection_rows_and_cli(smoke, tmp_path, capsys):
    pairs = eval_pairs(smoke)
    assert len(pairs) == smoke.eval.photos and all(p[3].any() for p in pairs)
    rows = detection_rows(smoke, pairs, {"truth": lambda img: np.zeros(img.shape[:2], bool)})
    table, md = summary(rows)
    assert table[0]["recall"] == 0.0 and table[0]["fa_clean"] == 0.0 and "| truth |" in md
    run = ["--preset", "smoke", "--train.run_dir", smoke.train.run_dir, "--data.cache_dir", smoke.data.cache_dir]
    main(["detect"] + run)
    main(["eval-detect"] + run + ["--out", str(tmp_path / "ev")])
    text = capsys.readouterr().out
    assert "learned" in text and "classical" in text
    assert (tmp_path / "ev" / "detect.md").is_file() and (tmp_path / "ev" / "detect.csv").is_file()


def test_choose_threshold_keeps_both_false_alarm_budgets():
    def row(t, fa, real):
        return {"threshold": t, "precision": 1.0, "recall": 1.0 - t, "f1": 1.0 - t, "iou": 0.5,
                "fa_clean": fa, "fa_aged": fa / 2, "real": real}
    sweep = [row(0.5, 0.9, 0.5), row(0.8, 0.4, 0.3), row(0.9, 0.3, 0.08), row(0.99, 0.1, 0.01)]
    assert choose_threshold(sweep)["threshold"] == 0.9                 # 0.8 flags too much of the real photos
    assert choose_threshold(sweep, real_target=0.4)["threshold"] == 0.8
    no_real = [dict(r, real=None) for r in sweep]
    assert choose_threshold(no_real)["threshold"] == 0.8
    assert choose_threshold(sweep, target=0.01)["threshold"] == 0.99   # none fits: the fewest
    assert "| 0.9 |" in sweep_table(sweep) and "| – |" in sweep_table(no_real)


def test_recall_by_defect_kind(smoke):
    kinds: list = []
    pairs = eval_pairs(smoke, kinds)
    assert len(kinds) == len(pairs)
    for (_, _, _, mask, _), by_kind in zip(pairs, kinds):
        union = np.zeros_like(mask)
        for kind, m in by_kind.items():
            assert kind in smoke.degrade.defect_kinds and m.any()
            union |= m
        assert np.array_equal(union, mask)          # the kinds' masks are exactly the defect mask
    # a detector that finds one kind only: recall 1 on it, 0 on the others it does not touch
    first = next(k for k in smoke.degrade.defect_kinds if any(k in b for b in kinds))
    marks = {id(p[2]): b.get(first, np.zeros_like(p[3])) for p, b in zip(pairs, kinds)}   # by degraded photo
    rows = detection_rows(smoke, pairs, {"one kind": lambda img: marks.get(id(img), np.zeros(img.shape[:2], bool))},
                          kinds)
    assert all(r[f"hit_{first}"] == r[f"true_{first}"] for r in rows)
    table = kind_table(rows, smoke.degrade.defect_kinds)
    assert f"| {first} |" in table and "| 1.000 |" in table
    share = sum(r[f"true_{first}"] for r in rows) / sum(r[f"true_{k}"] for r in rows for k in smoke.degrade.defect_kinds)
    assert f"| {first} | {100 * share:.1f} % | 1.000 |" in table
