"""``make-sample``: the demo's bundled old photo, made by the project's own degradation.

The source is matplotlib's public-domain portrait of Grace Hopper (fetched into the
evaluation set by ``prepare-data``). It is aged with every ageing effect (the stand-in
for a real old photo) plus scratches and dust, and written with its exact defect mask
to ``server/samples/`` (``<name>.png`` and ``<name>_mask.png``), where ``python -m server
demo`` finds it.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from .config import Config
from .data.dataset import load_textures
from .data.degradations import add_defects, degrade_unstructured, luma, to_float, to_u8

SAMPLE_NAME = "grace_hopper_old"
SAMPLE_SEED = 1906        # Grace Hopper's birth year; any seed reproduces its own sample


def make_sample(cfg: Config, out_dir: str | Path, seed: int = SAMPLE_SEED) -> tuple[Path, Path]:
    """Write the aged sample and its defect mask; returns their paths."""
    src = Path(cfg.data.eval_dir or Path(cfg.data.cache_dir) / "eval") / "grace_hopper.png"
    if not src.exists():
        raise FileNotFoundError(f"{src} is missing: run `python -m training prepare-data` first")
    clean = to_float(np.asarray(Image.open(src).convert("RGB")))
    rng = np.random.default_rng(seed)
    # a monochrome print, as most old photos are; the ageing effects add the tint
    clean = np.repeat(luma(clean)[..., None], 3, axis=2)
    textures = load_textures(cfg.data.cache_dir)
    aged = to_u8(degrade_unstructured(clean, rng, cfg.degrade, textures, strong=True))
    scratches = dataclasses.replace(cfg.degrade, max_defects=6, defect_kinds=["curve", "crack", "dust", "curve"])
    aged, mask = add_defects(aged, rng, scratches, textures)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image_path, mask_path = out / f"{SAMPLE_NAME}.png", out / f"{SAMPLE_NAME}_mask.png"
    Image.fromarray(aged).save(image_path, optimize=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path, optimize=True)
    return image_path, mask_path
