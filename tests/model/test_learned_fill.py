"""The learned fill: the harmonic fill when untrained, only defect pixels change, tiled
inference (skipping tiles without defects) equal to one plain pass, a weight file that
round-trips, and in the restore only where ``learned_fill`` asks for it."""
import dataclasses

import numpy as np
import pytest
import torch

from oldphoto_model import RestoreOptions, Restorer, WeightsError
from oldphoto_model.archs.fill import FillConfig, FillNet
from oldphoto_model.learned_fill import FILL_FILE, load_fill, refine_fill, save_fill
from oldphoto_model.tiles import pad_to_multiple

from ..conftest import random_model


def trained_like(width=4, levels=2, seed=0, see_through=True):
    """A fill network with every weight random (the head too), so its residual is not zero."""
    torch.manual_seed(seed)
    net = FillNet(FillConfig(width=width, levels=levels, see_through=see_through))
    with torch.no_grad():
        net.head.weight.normal_(0, 0.3)
        net.head.bias.normal_(0, 0.1)
    return net.eval()


def _inputs(h, w, seed=1, holes=((5, 9, 3, 30),)):
    g = torch.Generator().manual_seed(seed)
    scan = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    filled = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, h, w)
    for y0, y1, x0, x1 in holes:
        mask[..., y0:y1, x0:x1] = 1
    return filled, scan, mask


def test_untrained_network_is_the_harmonic_fill():
    filled, scan, mask = _inputs(32, 48)
    torch.testing.assert_close(FillNet().refine(filled, scan, mask), filled, rtol=0, atol=0)


def test_without_see_through_the_defect_pixels_as_scanned_do_not_matter(tmp_path):
    """``see_through`` False: what covered the photo under the mask cannot reach the fill
    (the letters of a watermark cannot come back); with it, it does. Tiled, as the product."""
    filled, scan, mask = _inputs(40, 56)
    other = torch.where(mask > 0, -scan, scan)             # other values under the mask only
    blind, seeing = trained_like(see_through=False), trained_like(see_through=True)
    torch.testing.assert_close(refine_fill(filled, scan, mask, blind, tile=16),
                               refine_fill(filled, other, mask, blind, tile=16), rtol=0, atol=0)
    assert (refine_fill(filled, scan, mask, seeing) - refine_fill(filled, other, mask, seeing)).abs().max() > 1e-3
    assert load_fill(save_fill(blind, tmp_path / "blind.pt")).config.see_through is False


@pytest.mark.parametrize("h,w,tile", [(37, 53, 16), (64, 64, 24), (21, 90, 1024), (100, 40, 32)])
def test_tiled_equals_one_plain_pass_and_changes_only_defects(h, w, tile):
    net = trained_like()
    filled, scan, mask = _inputs(h, w, holes=((5, 9, 3, min(30, w)), (h - 6, h - 1, w - 12, w - 2)))
    got = refine_fill(filled, scan, mask, net, tile=tile)
    m = net.config.multiple
    padded = [pad_to_multiple(t, m) for t in (filled, scan, mask)]
    with torch.no_grad():
        want = net.refine(*padded)[..., :h, :w]
    inside = mask.expand_as(filled) > 0
    torch.testing.assert_close(got[inside], want[inside], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[~inside], filled[~inside], rtol=0, atol=0)
    assert (got[inside] - filled[inside]).abs().max() > 1e-3          # the network did act


def test_tiles_without_defects_are_not_computed():
    net = trained_like()
    calls = []
    net.register_forward_hook(lambda *a: calls.append(1))
    filled, scan, mask = _inputs(64, 64, holes=((2, 5, 2, 6),))
    got = refine_fill(filled, scan, mask, net, tile=16)
    assert len(calls) == 1                                            # one of 16 tiles holds the defect
    with torch.no_grad():
        want = net.refine(filled, scan, mask)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert refine_fill(filled, scan, torch.zeros_like(mask), net) is filled


def test_weight_file_round_trips(tmp_path):
    net = trained_like(width=5, levels=1)
    path = save_fill(net, tmp_path / "fill.pt", {"steps": 7})
    back = load_fill(path)
    assert back.config == net.config and back.weights_info.metadata["steps"] == 7
    filled, scan, mask = _inputs(16, 16)
    torch.testing.assert_close(back.refine(filled, scan, mask), net.refine(filled, scan, mask))
    (tmp_path / "bad.pt").write_bytes(b"not a weight file")
    with pytest.raises(WeightsError):
        load_fill(tmp_path / "bad.pt")
    with pytest.raises(WeightsError, match="file not found"):
        load_fill(tmp_path / "missing.pt")
    # an installation without the file: a clear error for the default, and no fill to use
    bare = dataclasses.replace(FILL_FILE, default=tmp_path / "absent.pt")
    with pytest.raises(WeightsError, match="no learned-fill weights"):
        bare.load()
    assert bare.shipped() is None
    installed = dataclasses.replace(FILL_FILE, default=path)
    assert installed.shipped().config == net.config


def test_restore_uses_it_on_the_defects_only_when_asked():
    model = random_model()
    plain = Restorer(model, device="cpu", precision="fp32", fill=None)
    learned = Restorer(model, device="cpu", precision="fp32", fill=trained_like())
    img = np.random.default_rng(3).integers(40, 200, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), np.uint8)
    mask[18:21, 5:40] = 255
    sel = RestoreOptions(restrict_to_mask=True)
    a, b = plain.restore(img, mask, sel), learned.restore(img, mask, sel)
    np.testing.assert_array_equal(a[mask == 0], img[mask == 0])
    np.testing.assert_array_equal(b[mask == 0], img[mask == 0])       # outside the selection: the scan
    assert np.abs(a[mask > 0].astype(int) - b[mask > 0]).max() > 0      # the fill differs
    off = RestoreOptions(restrict_to_mask=True, learned_fill=False)
    np.testing.assert_array_equal(learned.restore(img, mask, off), a)
    np.testing.assert_array_equal(learned.restore(img), plain.restore(img))   # no mask: nothing to fill
    with pytest.raises(ValueError):
        Restorer(model, device="cpu", precision="fp32", fill="mine")
