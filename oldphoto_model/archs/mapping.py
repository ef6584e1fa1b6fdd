"""Latent mapping network T: Z_X -> Z_Y, with the partial nonlocal block."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn

from ..config import AttentionOptions, MappingConfig
from .blocks import ResBlock, conv_norm_relu
from .nonlocal_block import PartialNonLocalBlock


class MappingNetwork(nn.Module):
    """head convs -> [rho_local | partial nonlocal global branch] fused by mask -> tail convs.

    F_fuse = (1 - m) * rho_local(F) + m * rho_global(O)   (m = 1 at defects)
    """

    def __init__(self, cfg: MappingConfig = MappingConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        base, width = cfg.latent_channels, cfg.width
        nm = cfg.norm == "instance"
        head: list[nn.Module] = []
        cin = base
        for i in range(4):                      # 64 -> 128 -> 256 -> 512 -> 512
            cout = min(base * 2 ** (i + 1), width)
            head += conv_norm_relu(cin, cout, normalize=nm)
            cin = cout
        self.head = nn.Sequential(*head)
        self.local_branch = nn.Sequential(*[ResBlock(width, normalize=nm) for _ in range(cfg.n_res_local)])
        self.global_branch = PartialNonLocalBlock(width, cfg.n_res_global) if cfg.use_nonlocal else None
        tail: list[nn.Module] = []
        for i in range(3):                      # 512 -> 512 -> 256 -> 128
            cout = min(base * 2 ** (3 - i), width)
            tail += conv_norm_relu(cin, cout, normalize=nm)
            cin = cout
        tail += [nn.ReflectionPad2d(1), nn.Conv2d(cin, base, 3)]
        self.tail = nn.Sequential(*tail)

    def forward_features(self, z: torch.Tensor, mask: torch.Tensor | None = None,
                         opts: AttentionOptions = AttentionOptions(),
                         run: Optional[Callable[[nn.Module, torch.Tensor], torch.Tensor]] = None,
                         tick: Optional[Callable[[float], None]] = None,
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (rho_local(F), F_fuse). mask: (N, 1, h, w) at latent size, 1 = defect.

        ``run(module, x)`` executes the conv stacks (default ``module(x)``; the
        restore pipeline passes the memory-lean executor); ``tick(fraction)``
        reports progress through the global branch's attention."""
        run = run or (lambda module, x: module(x))
        f = run(self.head, z)
        local = run(self.local_branch, f)
        if self.global_branch is None or mask is None or not bool((mask > 0.5).any()):
            return local, local             # empty mask: no attention is computed at all
        glob = self.global_branch(f, mask, opts, tick)
        return local, torch.where(mask > 0.5, glob, local)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None,
                opts: AttentionOptions = AttentionOptions()) -> torch.Tensor:
        return self.tail(self.forward_features(z, mask, opts)[1])
