"""The partial nonlocal block (paper §3.3).

    O_i = nu( sum_j s_ij mu(F_j) ),  s_ij = softmax over intact j of theta(F_i) . phi(F_j)
    global branch = rho_global(O)

The fusion with the local branch happens in the mapping network. Defect
positions never serve as keys or values, so nothing is filled from a defect.
"""
from __future__ import annotations

from typing import Callable, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AttentionOptions
from .attention import Backend, masked_attention
from .blocks import ResBlock


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Square (Chebyshev) dilation of a bool (h, w) mask: the reach of ``radius``
    stacked 3x3 convolutions."""
    if radius <= 0:
        return mask
    m = mask[None, None].to(torch.float32)
    return F.max_pool2d(m, 2 * radius + 1, stride=1, padding=radius)[0, 0] > 0


def _backend(opts: AttentionOptions) -> Backend:
    """opts.backend as masked_attention's option type."""
    # AttentionOptions keeps a plain str; masked_attention raises on a name outside Backend
    return cast(Backend, opts.backend)


class PartialNonLocalBlock(nn.Module):
    """Global branch of the mapping network: masked nonlocal attention + rho_global."""

    def __init__(self, width: int, n_res_global: int = 3) -> None:
        super().__init__()
        self.theta = nn.Conv2d(width, width, 1)
        self.phi = nn.Conv2d(width, width, 1)
        self.mu = nn.Conv2d(width, width, 1)
        self.nu = nn.Conv2d(width, width, 1)
        # zero nu: the global branch starts silent, as the original's W
        nn.init.zeros_(self.nu.weight)
        assert self.nu.bias is not None     # Conv2d's default bias=True
        nn.init.zeros_(self.nu.bias)
        # no instance norm here: each output then depends on a (4n+1)^2 window only,
        # which is what makes the hole-only computation exact
        self.rho_global = nn.Sequential(*[ResBlock(width, normalize=False) for _ in range(n_res_global)])
        self.radius = 2 * n_res_global

    @staticmethod
    def _lin(rows: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
        return F.linear(rows, conv.weight.flatten(1), conv.bias)

    def attention_output(self, x: torch.Tensor, defect: torch.Tensor,
                         opts: AttentionOptions = AttentionOptions()) -> torch.Tensor:
        """O before nu, at every position of one sample. x: (C, h, w); defect: (h, w) bool."""
        c = x.shape[0]
        rows = x.reshape(c, -1).T
        o = masked_attention(self._lin(rows, self.theta), self._lin(rows, self.phi),
                             self._lin(rows, self.mu), ~defect.flatten(), _backend(opts),
                             opts.chunk_elements)
        return o.T.reshape(x.shape)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                opts: AttentionOptions = AttentionOptions(),
                tick: Optional[Callable[[float], None]] = None) -> torch.Tensor:
        """rho_global(O) for x (N, C, h, w) and mask (N, 1, h, w) (1 = defect).

        With ``opts.hole_only`` the result is exact at defect positions and zero
        elsewhere (only defect positions are ever used); otherwise it is computed
        everywhere. ``tick(fraction)`` reports progress through the attention.
        """
        outs = []
        for b in range(x.shape[0]):
            defect = mask[b, 0] > 0.5
            if not bool(defect.any()):
                outs.append(torch.zeros_like(x[b]))
            elif opts.hole_only:
                outs.append(self._hole_only(x[b], defect, opts, tick))
            else:
                o = self.attention_output(x[b], defect, opts)
                y = F.conv2d(o[None], self.nu.weight, self.nu.bias)
                outs.append(self.rho_global(y)[0])
        return torch.stack(outs)

    def _hole_only(self, x: torch.Tensor, defect: torch.Tensor, opts: AttentionOptions,
                   tick: Optional[Callable[[float], None]] = None) -> torch.Tensor:
        c, h, w = x.shape
        r = self.radius
        reach = dilate(defect, r)           # positions whose O can influence a defect output
        rows = x.reshape(c, -1).T
        q_idx = reach.flatten().nonzero().squeeze(1)
        k_idx = (~defect).flatten().nonzero().squeeze(1)
        q = self._lin(rows.index_select(0, q_idx), self.theta)
        kv_rows = rows.index_select(0, k_idx)
        k, v = self._lin(kv_rows, self.phi), self._lin(kv_rows, self.mu)
        all_keys = torch.ones(k.shape[0], dtype=torch.bool, device=x.device)
        o = masked_attention(q, k, v, all_keys, _backend(opts), opts.chunk_elements, tick)
        y_rows = self._lin(o, self.nu)
        y = torch.zeros(h * w, c, dtype=y_rows.dtype, device=x.device).index_copy(0, q_idx, y_rows)
        y = y.T.reshape(c, h, w)
        # rho_global only on tiles that hold defects, each with an r-wide halo:
        # a tile's interior is then exact (the halo absorbs the crop's own padding)
        out = torch.zeros_like(y)
        for (y0, y1, x0, x1), (ry0, ry1, rx0, rx1) in defect_tiles(defect, r, opts.tile):
            res = self.rho_global(y[None, :, ry0:ry1, rx0:rx1])[0]
            out[:, y0:y1, x0:x1] = res[:, y0 - ry0:y1 - ry0, x0 - rx0:x1 - rx0]
        return out


Box = tuple[int, int, int, int]


def _tiles(defect: torch.Tensor, r: int, t: int) -> list[tuple[Box, Box]]:
    h, w = defect.shape
    th, tw = -(-h // t), -(-w // t)
    padded = torch.zeros(th * t, tw * t, dtype=torch.bool, device=defect.device)
    padded[:h, :w] = defect
    occupied = padded.view(th, t, tw, t).any(dim=3).any(dim=1).nonzero().tolist()
    out = []
    for ty, tx in occupied:
        y0, x0 = ty * t, tx * t
        y1, x1 = min(h, y0 + t), min(w, x0 + t)
        out.append(((y0, y1, x0, x1), (max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r))))
    return out


def defect_tiles(defect: torch.Tensor, r: int, tile: int = 0) -> list[tuple[Box, Box]]:
    """Tiles covering every defect, as (interior box, box with r-halo) pairs.

    ``tile`` > 0 fixes the tile side; 0 picks, among a few sides and the single
    bounding box of the defects, the choice that makes rho_global process the
    fewest positions (many small tiles pay for their halos, one box for its gaps).
    """
    if tile > 0:
        return _tiles(defect, r, tile)
    h, w = defect.shape
    ys, xs = defect.any(dim=1).nonzero(), defect.any(dim=0).nonzero()
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    best = [((y0, y1, x0, x1), (max(0, y0 - r), min(h, y1 + r), max(0, x0 - r), min(w, x1 + r)))]

    def cost(plan):
        return sum((b[1] - b[0]) * (b[3] - b[2]) for _, b in plan)
    for t in (8, 16, 32, 64):
        if t < max(h, w):
            plan = _tiles(defect, r, t)
            if cost(plan) < cost(best):
                best = plan
    return best
