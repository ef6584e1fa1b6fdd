"""The learned fill (``archs.fill``) applied to a whole photo: ``refine_fill`` takes the
harmonic fill of the defects (``fill.harmonic_fill``) and the scan, and returns the fill
the network refines, computed in tiles (``tiles.run_tiled``) only where there are defects.

Weight file (``netfile`` layout): format "oldphoto-fill-weights", version 1, the
network under "fill"; the shipped one is ``weights/fill.pt``. Restoring works without
it (the harmonic fill alone).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .archs.fill import FillConfig, FillNet
from .netfile import HelperFile
from .tiles import run_tiled

DEFAULT_FILL = Path(__file__).resolve().parent / "weights" / "fill.pt"
FILL_FILE: HelperFile[FillNet] = HelperFile(
    "oldphoto-fill-weights", 1, "fill", "learned-fill", DEFAULT_FILL,
    "no learned-fill weights in this installation: train them with `python -m training fill` "
    "(restoring works without them, with the harmonic fill)",
    lambda d: FillNet(FillConfig.from_dict(d)))
save_fill = FILL_FILE.save        # (net, path, metadata=None) -> Path
load_fill = FILL_FILE.load        # (path=None: weights/fill.pt, map_location="cpu")
shipped_fill = FILL_FILE.shipped  # () -> the installed learned fill or None

#: Output pixels per tile side: a 1024^2 tile plus halo needs about 1 GB in float32.
FILL_TILE = 1024


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
    inputs = net.inputs(f, scan.float().cpu(), mask)
    residual = run_tiled(net, inputs, net.config.multiple, net.config.receptive_radius, tile,
                         needed=mask[0, 0] > 0)    # at least one tile holds a defect
    return (f + mask * residual[None]).to(filled.dtype)
