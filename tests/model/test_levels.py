"""The lifted-black correction of the restore (oldphoto_model.levels)."""
import numpy as np
import pytest
import torch

from oldphoto_model import RestoreOptions, Restorer
from oldphoto_model.levels import PERCENTILE, TARGET, lift_blacks

from ..conftest import random_model
from .test_contract import _mask, _photo


@pytest.fixture(scope="module")
def restorer():
    return Restorer(random_model(), device="cpu", precision="fp32")


def _ramp(lo: float, hi: float) -> torch.Tensor:
    """(1, 3, 32, 64) in [-1, 1]: every value from lo to hi (0..1 units) in each channel."""
    v = torch.linspace(lo, hi, 32 * 64).view(1, 1, 32, 64).repeat(1, 3, 1, 1)
    return v * 2 - 1


def _pct(t: torch.Tensor, q: float) -> float:
    return float(torch.quantile((t[0, 0].flatten() + 1) / 2, q / 100))


def test_true_blacks_are_left_alone_and_lifted_ones_come_down():
    deep = _ramp(0.0, 0.9)
    assert torch.equal(lift_blacks(deep, deep, None, 1.0), deep)
    lifted = _ramp(0.2, 0.9)
    full = lift_blacks(lifted, lifted, None, 1.0)
    half = lift_blacks(lifted, lifted, None, 0.5)
    black = _pct(lifted, PERCENTILE)
    assert abs(_pct(full, PERCENTILE) - TARGET) < 0.01                       # all the lift out
    b, hi = 0.5 * (black - TARGET), _pct(lifted, 100 - PERCENTILE)
    assert abs(_pct(half, PERCENTILE) - (black - b) * hi / (hi - b)) < 1e-3   # half of it
    assert TARGET < _pct(half, PERCENTILE) < black
    assert abs(_pct(full, 100 - PERCENTILE) - _pct(lifted, 100 - PERCENTILE)) < 1e-4   # highlights stay
    assert torch.equal(lift_blacks(lifted, lifted, None, 0.0), lifted)


def test_a_tinted_black_loses_its_tint_and_defects_do_not_count():
    scan = _ramp(0.0, 0.9)
    scan[:, 2] = _ramp(0.25, 0.9)[:, 2]                # the blue channel's black lifted: a bluish black
    out = lift_blacks(scan, scan, None, 1.0)
    assert _pct(out[:, 2:], PERCENTILE) < _pct(scan[:, 2:], PERCENTILE) - 0.15
    assert torch.equal(out[:, :2], scan[:, :2])
    # a dark scratch over a lifted photo must not pass for its black
    lifted = _ramp(0.2, 0.9)
    scratched = lifted.clone()
    defect = torch.zeros(1, 1, 32, 64)
    defect[..., 10:14, :] = 1
    scratched[..., 10:14, :] = -1.0
    with_mask = lift_blacks(lifted, scratched, 1 - defect, 1.0)
    assert torch.allclose(with_mask, lift_blacks(lifted, lifted, None, 1.0), atol=0.02)
    assert torch.equal(lift_blacks(lifted, scratched, None, 1.0), lifted)    # the scratch's 0 looked like a black


def test_the_restore_applies_it_to_the_whole_photo_only(restorer):
    img = (_photo().astype(np.float32) * 0.7 + 70).astype(np.uint8)            # a faded print: no black below 70
    mask = _mask()
    lifted = restorer.restore(img, None, RestoreOptions(black_point=0.0))
    lowered = restorer.restore(img, None, RestoreOptions(black_point=1.0))
    assert np.percentile(lowered, 0.5) < np.percentile(lifted, 0.5) - 30
    sel = RestoreOptions(restrict_to_mask=True)
    assert np.array_equal(restorer.restore(img, mask, sel),
                          restorer.restore(img, mask, RestoreOptions(restrict_to_mask=True, black_point=1.0)))


def test_the_sampled_percentiles_of_a_large_photo_match_the_exact_ones(monkeypatch):
    """Beyond ``_SAMPLE`` pixels the percentiles come from a regular sample (the fast
    path): on a photo-like image they stay within a level of the exact ones."""
    from oldphoto_model import levels
    g = torch.Generator().manual_seed(5)
    v = (torch.rand(256 * 256, generator=g) ** 2).sort().values[torch.randperm(256 * 256, generator=g)]
    exact = torch.quantile(v, torch.tensor([PERCENTILE / 100, 1 - PERCENTILE / 100])).tolist()
    monkeypatch.setattr(levels, "_SAMPLE", 4096)                # 16x fewer than the pixels
    lo, hi = levels._percentiles(v, PERCENTILE)
    assert abs(lo - exact[0]) < 1 / 255 and abs(hi - exact[1]) < 1 / 255
