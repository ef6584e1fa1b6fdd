"""Warm starts for larger helper networks (training.grow): the grown U-Net computes what the
trained small one computed, learns from there, and the fill and detect stages start from a
weight file with ``init_from``."""
import pytest
import torch

from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
from oldphoto_model.archs.fill import FillConfig, FillNet
from oldphoto_model.archs.unet import SmallUNet
from oldphoto_model.detect import save_detector
from oldphoto_model.learned_fill import load_fill, save_fill
from training.dist import setup
from training.grow import grow_unet
from training.stages.detect import DetectStage
from training.stages.fill import FillStage, export_fill
from training.stages.loop import train_stage


def _trained_like(net: torch.nn.Module, seed: int) -> torch.nn.Module:
    # random weights of a trained network's size: every weight (heads included) nonzero
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.15)
    return net


@pytest.mark.parametrize("small, large", [((8, 2), (12, 2)), ((8, 2), (8, 3)), ((6, 1), (10, 3)),
                                          ((8, 3), (8, 3))])
def test_grown_unet_computes_the_small_one(small, large):
    torch.manual_seed(0)
    s = _trained_like(SmallUNet(5, 2, *small), 1)
    big = grow_unet(s, SmallUNet(5, 2, *large))
    m = 2 ** (large[1] + 1)
    x = torch.randn(2, 5, 3 * m, 2 * m)
    with torch.no_grad():
        want, got = s(x), big(x)
    assert want.abs().mean() > 0.1                           # a nontrivial function
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    assert sum(p.numel() for p in big.parameters()) >= sum(p.numel() for p in s.parameters())


def test_grown_unet_learns_beyond_the_copy():
    # the zero links into the old channels and the identity join must not freeze anything
    torch.manual_seed(0)
    s = _trained_like(SmallUNet(3, 1, 6, 1), 2)
    big = grow_unet(s, SmallUNet(3, 1, 8, 2))
    opt = torch.optim.Adam(big.parameters(), lr=1e-3)
    x, y = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(big(x), y).backward()
        opt.step()
    new_level = big.enc[2][0].weight
    assert new_level.grad is not None and new_level.grad.abs().sum() > 0
    assert not torch.allclose(big(x), s(x))


def test_smaller_target_is_refused():
    with pytest.raises(ValueError, match="at least as wide and deep"):
        grow_unet(SmallUNet(3, 1, 8, 2), SmallUNet(3, 1, 6, 2))
    with pytest.raises(ValueError, match="at least as wide and deep"):
        grow_unet(SmallUNet(3, 1, 8, 2), SmallUNet(3, 1, 8, 1))
    with pytest.raises(ValueError):
        grow_unet(SmallUNet(3, 1, 8, 2), SmallUNet(4, 1, 8, 2))


def test_stages_start_from_a_grown_weight_file(smoke, tmp_path):
    ctx = setup("cpu", "auto")
    x = torch.rand(1, 7, 64, 64) * 2 - 1
    small_fill = _trained_like(FillNet(FillConfig(width=4, levels=2, see_through=False)), 3)
    smoke.fill.init_from = str(save_fill(small_fill, tmp_path / "fill.pt"))
    smoke.fill.width, smoke.fill.levels, smoke.fill.see_through = 6, 3, False
    stage = FillStage(smoke, ctx, log=lambda m: None)
    torch.testing.assert_close(stage.net(x), small_fill(x), rtol=1e-5, atol=1e-5)
    smoke.fill.see_through = True                   # different inputs: refused, not silently mixed
    with pytest.raises(ValueError, match="see_through"):
        FillStage(smoke, ctx, log=lambda m: None)

    small_det = _trained_like(ScratchDetector(DetectorConfig(width=4, levels=2)), 4)
    smoke.detect.init_from = str(save_detector(small_det, tmp_path / "det.pt"))
    smoke.detect.width, smoke.detect.levels = 4, 3
    d = DetectStage(smoke, ctx, log=lambda m: None)
    torch.testing.assert_close(d.net(x[:, :3]), small_det(x[:, :3]), rtol=1e-5, atol=1e-5)


def test_exported_fill_records_what_it_was_grown_from(smoke, tmp_path):
    small = _trained_like(FillNet(FillConfig(width=4, levels=2, see_through=False)), 5)
    smoke.fill.init_from = str(save_fill(small, tmp_path / "small_fill.pt", {"steps": 7}))
    smoke.fill.width, smoke.fill.levels, smoke.fill.see_through = 6, 3, False
    train_stage(smoke, "fill")
    meta = getattr(load_fill(export_fill(smoke)), "weights_info").metadata
    assert meta["grown_from"]["file"] == "small_fill.pt" and meta["grown_from"]["steps"] == 7
    assert meta["steps"] == smoke.fill.steps
