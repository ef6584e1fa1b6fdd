"""The harmonic fill (conjugate gradients on the defect pixels only) against a plain
Jacobi iteration over the whole image, and the properties a fill must have."""
import pytest
import torch
import torch.nn.functional as F

from oldphoto_model.fill import harmonic_fill


def jacobi_reference(x: torch.Tensor, known: torch.Tensor, sweeps: int = 20000) -> torch.Tensor:
    """Every unknown pixel := the mean of its in-image 4-neighbours, until it settles."""
    h, w = x.shape[-2:]
    unknown = known < 0.5
    inside = F.pad(torch.ones(1, 1, h, w, dtype=torch.float64), (1, 1, 1, 1))
    count = inside[..., :-2, 1:-1] + inside[..., 2:, 1:-1] + inside[..., 1:-1, :-2] + inside[..., 1:-1, 2:]
    u = x.double().clone()
    for _ in range(sweeps):
        p = F.pad(u, (1, 1, 1, 1))
        total = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
        u = torch.where(unknown, total / count, x.double())
    return u.float()


@pytest.mark.parametrize("h,w,share,seed", [(20, 24, 0.3, 0), (9, 31, 0.6, 1), (16, 16, 0.05, 2), (7, 5, 0.8, 3)])
def test_matches_the_plain_jacobi_solution(h, w, share, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 3, h, w, generator=g)
    known = (torch.rand(2, 1, h, w, generator=g) > share).float()
    known[1, 0, 0, 0] = 1                                   # at least one intact pixel each
    known[0, 0, -1, -1] = 1
    got = harmonic_fill(x, known, iterations=5000, tol=1e-9)
    assert (got - jacobi_reference(x, known)).abs().max() < 1e-4
    assert torch.equal(got[known.expand_as(x) > 0.5], x[known.expand_as(x) > 0.5])


def test_a_linear_ramp_is_filled_exactly_and_a_hole_never_overshoots():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(40.0), indexing="ij")
    ramp = (0.02 * xx - 0.01 * yy)[None, None].repeat(1, 3, 1, 1)
    known = torch.ones(1, 1, 32, 40)
    known[..., 10:22, 5:30] = 0
    assert (harmonic_fill(ramp, known) - ramp).abs().max() < 1e-4
    # maximum principle: a fill stays within the range of its boundary values
    g = torch.Generator().manual_seed(4)
    x = torch.rand(1, 3, 32, 40, generator=g)
    out = harmonic_fill(x, known)
    assert float(out.min()) >= float(x.min()) - 1e-5 and float(out.max()) <= float(x.max()) + 1e-5


def test_nothing_to_fill_or_nothing_known_returns_the_input():
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(harmonic_fill(x, torch.ones(1, 1, 8, 8)), x)
    assert torch.equal(harmonic_fill(x, torch.zeros(1, 1, 8, 8)), x)
