"""The ``fill`` stage: samples whose target is the aged crop without its defects, a loop
run that resumes bit-identically and exports a file the product loads, and a network
that learns to beat the harmonic fill it starts from."""
import pytest
import torch

from oldphoto_model.archs.nonlocal_block import dilate
from oldphoto_model.learned_fill import load_fill
from training.data.dataset import FillSamples
from training.dist import setup
from training.losses import masked_l1
from training.stages.fill import FillStage, export_fill

from .resume import train_and_check_resume


def test_fill_stage_runs_resumes_and_exports(smoke, tmp_path):
    train_and_check_resume(smoke, tmp_path, "fill", "fill")
    net = load_fill(export_fill(smoke))
    assert net.weights_info.metadata["steps"] == smoke.fill.steps


def test_samples_mark_every_changed_pixel_and_prefill_them(smoke):
    smoke.data.crop = smoke.fill.crop
    ds = FillSamples(smoke)
    for key in [(0, 0), (1, 1), (5, 0)]:
        s = ds[key]
        m = s["mask"][0] > 0
        assert m.any()
        outside = ~m.expand_as(s["degraded"])
        # off the (grown) mask the input is the target: only defect pixels differ
        torch.testing.assert_close(s["degraded"][outside], s["target"][outside], rtol=0, atol=0)
        torch.testing.assert_close(s["filled"][outside], s["degraded"][outside], rtol=0, atol=0)
        assert not torch.equal(s["degraded"], s["target"])
    a, b = ds[(3, 1)], ds[(3, 1)]
    assert all(torch.equal(a[k], b[k]) for k in a)                     # a pure function of the key


def test_network_learns_to_beat_the_harmonic_fill(smoke):
    smoke.fill.lr = 3e-3
    smoke.fill.steps = 1000                                            # no decay within the test
    smoke.data.crop = smoke.fill.crop
    stage = FillStage(smoke, setup("cpu", "auto"))
    ds = FillSamples(smoke)
    batch = {k: torch.stack([ds[(0, i)][k] for i in range(4)]) for k in ("degraded", "target", "mask", "filled")}
    first = stage.train_step(batch, None)
    assert abs(first["vs_harmonic"] - 1.0) < 1e-6                      # zero head: it starts as the harmonic fill
    for _ in range(60):
        last = stage.train_step(batch, None)
    assert last["vs_harmonic"] < 0.9
    out = stage.net.refine(batch["filled"], batch["degraded"], batch["mask"])
    assert masked_l1(out, batch["target"], batch["mask"]) < masked_l1(batch["filled"], batch["target"],
                                                                                 batch["mask"])


def test_samples_draw_the_fill_s_own_defect_kinds(smoke):
    """``fill.defect_kinds`` decides what the fill is trained on (lettering included by
    default), not the degrade chain's kinds; an unknown kind is refused up front."""
    smoke.data.crop = smoke.fill.crop
    assert "text" in smoke.fill.defect_kinds and "text" not in smoke.degrade.defect_kinds
    smoke.fill.defect_kinds = ["hole"]
    holes = FillSamples(smoke)
    for key in [(0, 0), (2, 1)]:
        s = holes[key]
        changed = (s["degraded"] != s["target"]).any(0)
        assert changed.any() and (s["degraded"][:, changed] == 1.0).all()     # holes are painted white
    smoke.fill.defect_kinds = ["text", "smudge"]
    with pytest.raises(ValueError, match="smudge"):
        FillSamples(smoke)


def test_some_masks_are_drawn_loose_and_bad_growth_is_refused(smoke):
    """A ``loose_p`` share of the samples has its mask grown by more than ``grow_max`` (a
    selection drawn around a stain), the rest by at most ``grow_max``; growth that cannot
    be drawn is refused up front."""
    smoke.data.crop = smoke.fill.crop
    smoke.fill.defect_kinds = ["dust"]
    smoke.fill.grow_max, smoke.fill.loose_max = 1, 6

    def widest_growth(ds, key):
        s = ds[key]
        changed = (s["degraded"] != s["target"]).any(0)
        m = s["mask"][0] > 0
        # distance (Chebyshev) of the farthest mask pixel from a changed pixel
        for r in range(0, 20):
            if not (m & ~dilate(changed, r)).any():
                return r
        return 99

    smoke.fill.loose_p = 0.0
    assert max(widest_growth(FillSamples(smoke), (k, 0)) for k in range(8)) <= 1
    smoke.fill.loose_p = 1.0
    assert min(widest_growth(FillSamples(smoke), (k, 0)) for k in range(8)) >= 2
    smoke.fill.loose_max = 1
    with pytest.raises(ValueError, match="loose_max"):
        FillSamples(smoke)
