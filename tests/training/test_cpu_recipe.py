"""The pieces of the recipe that trained the shipped weights: the ``cpu`` preset, the
discriminator-free stages, the mapping's image L1 and the demo sample."""
import numpy as np
import pytest
import torch
from PIL import Image

from training.config import preset
from training.data.dataset import TrainingSamples
from training.dist import DistContext
from training.stages import train_stage
from training.stages.loop import build_stage


def _batch(cfg, defects):
    ds = TrainingSamples(cfg, defects=defects, with_real=True)
    keys = ("clean", "degraded", "mask", "real")
    return {k: torch.stack([ds[(0, j)][k] for j in range(2)]) for k in keys}


def test_cpu_preset_is_the_small_network_without_discriminators():
    c = preset("cpu")
    s = preset("small")
    assert c.model.mapping.width == s.model.mapping.width and c.data.crop == s.data.crop
    assert c.model.vae.norm == c.model.mapping.norm == "none"
    assert c.loss.image_gan == c.loss.feat_match == 0 and c.loss.image_l1 > 0
    assert preset("default").loss.image_l1 == 0      # the paper's recipe stays the default


@pytest.mark.parametrize("stage", ["vae-a", "vae-b", "mapping"])
def test_discriminator_never_runs_when_its_weights_are_zero(smoke, stage, monkeypatch):
    if stage == "mapping":
        for s in ("vae-a", "vae-b"):
            train_stage(smoke, s)
    smoke.loss.image_gan = smoke.loss.feat_match = 0.0
    smoke.loss.image_l1 = 5.0
    st = build_stage(smoke, DistContext(), stage, log=lambda m: None)
    before = {k: v.clone() for k, v in st.d_img.state_dict().items()}

    def boom(*a, **k):
        raise AssertionError("the image discriminator ran")
    monkeypatch.setattr(st.d_img, "forward", boom)
    losses = st.train_step(_batch(smoke, stage == "mapping"), None)
    assert not {"gan", "fm", "d_img"} & set(losses)
    assert ("img_l1" in losses) == (stage == "mapping")
    assert all(torch.equal(v, before[k]) for k, v in st.d_img.state_dict().items())
    if stage == "vae-a":            # the latent discriminator still learns the domains
        assert "d_lat" in losses


def test_discriminator_trains_when_weighted(smoke):
    st = build_stage(smoke, DistContext(), "vae-b", log=lambda m: None)
    before = {k: v.clone() for k, v in st.d_img.state_dict().items()}
    losses = st.train_step(_batch(smoke, False), None)
    assert {"gan", "fm", "d_img"} <= set(losses)
    assert any(not torch.equal(v, before[k]) for k, v in st.d_img.state_dict().items())


def test_make_sample_is_reproducible_and_masks_its_scratches(smoke, tmp_path):
    from training.sample import make_sample
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    yy, xx = np.mgrid[0:120, 0:100]
    photo = np.stack([xx * 2, yy * 2, (xx + yy)], axis=2).astype(np.uint8)
    Image.fromarray(photo).save(eval_dir / "grace_hopper.png")
    smoke.data.eval_dir = str(eval_dir)
    a = make_sample(smoke, tmp_path / "a", seed=3)
    b = make_sample(smoke, tmp_path / "b", seed=3)
    for p, q in zip(a, b):
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))
    img, mask = (np.asarray(Image.open(p)) for p in a)
    assert img.shape == (120, 100, 3) and mask.shape == (120, 100)
    assert set(np.unique(mask)) == {0, 255}
    assert not np.array_equal(img, photo)
    smoke.data.eval_dir = str(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="prepare-data"):
        make_sample(smoke, tmp_path / "c")
