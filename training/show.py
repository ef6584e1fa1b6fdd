"""``show-degradations``: a PNG contact sheet of what the model learns from."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import Config
from .data.dataset import TrainingSamples, load_textures, synthetic_photos
from .data.degradations import DEFECT_KINDS, apply_defect, degrade
from .logger import save_grid


def contact_sheet(cfg: Config, out: str | Path, n: int = 6) -> Path:
    """Rows: clean | degraded (the whole chain) | its mask | then each defect kind alone:
    stamp (real brush), curve, dust, crack, hole."""
    textures = load_textures(cfg.data.cache_dir)
    try:
        samples = TrainingSamples(cfg, defects=True, textures=textures)
        rng = np.random.default_rng(cfg.train.seed)
        cleans = [samples.clean_sample(rng) for _ in range(n)]      # flips, gray and sepia included
    except FileNotFoundError:
        cleans = synthetic_photos(n, cfg.data.crop, cfg.train.seed)
    rows = []
    for i, clean in enumerate(cleans):
        degraded, _, mask = degrade(clean, [cfg.train.seed, i], cfg.degrade, textures, defects=True)
        row = [clean, degraded, np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1)]
        for j, kind in enumerate(DEFECT_KINDS):
            row.append(apply_defect(clean, kind, np.random.default_rng([cfg.train.seed, i, j]), textures)[0])
        rows.append(row)
    return save_grid(rows, Path(out))
