"""The learned fill (``archs.fill``) applied to a whole photo: ``refine_fill`` takes the
harmonic fill of the defects (``fill.harmonic_fill``) and the scan, and returns the fill
the network refines, computed in tiles (``tiles.run_tiled``) only where there are defects.

Weight file (``netfile`` layout): format "oldphoto-fill-weights", version 1, the
network under "fill"; the shipped one is ``weights/fill.pt``. Restoring works without
it (the harmonic fill alone).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch

from .archs.fill import FillConfig, FillNet
from .netfile import chosen_path, load_network, save_network
from .tiles import run_tiled

FILL_FORMAT = "oldphoto-fill-weights"
FILL_VERSION = 1
DEFAULT_FILL = Path(__file__).resolve().parent / "weights" / "fill.pt"

#: Output pixels per tile side: a 1024^2 tile plus halo needs about 1 GB in float32.
FILL_TILE = 1024


def save_fill(net: FillNet, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write the learned fill atomically (float32)."""
    return save_network(net, path, FILL_FORMAT, FILL_VERSION, "fill", metadata)


def load_fill(path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> FillNet:
    """Load a learned-fill file (default: the shipped ``weights/fill.pt``) in eval mode."""
    p = chosen_path(path, DEFAULT_FILL, "no learned-fill weights in this installation: reinstall the package "
                                        "or train them with `python -m training fill` (restoring works without "
                                        "them, with the harmonic fill)")
    return load_network(p, FILL_FORMAT, FILL_VERSION, "fill", "learned-fill",
                        lambda d: FillNet(FillConfig.from_dict(d)), map_location)


def shipped_fill() -> Optional[FillNet]:
    """The shipped learned fill, or None when this installation has none."""
    return load_fill() if DEFAULT_FILL.is_file() else None


@torch.inference_mode()
def refine_fill(filled: torch.Tensor, scan: torch.Tensor, defect: torch.Tensor, net: FillNet,
                tile: int = FILL_TILE) -> torch.Tensor:
    """filled (1, 3, H, W) with its defect pixels replaced by the network's fill.

    filled: the scan with its defects harmonically filled; scan: as scanned; both in
    [-1, 1]; defect: (1, 1, H, W), 1 = defect. Any size; float32 on the CPU; pixels
    off the defects are returned unchanged."""
    mask = (defect > 0.5).to(torch.float32).cpu()
    if not bool(mask.any()):
        return filled
    f = filled.float().cpu()
    inputs = FillNet.inputs(f, scan.float().cpu(), mask)
    residual = run_tiled(net, inputs, net.config.multiple, net.config.receptive_radius, tile,
                         needed=mask[0, 0] > 0)
    if residual.shape[0] == 0:
        return filled
    return (f + mask * residual[None]).to(filled.dtype)
