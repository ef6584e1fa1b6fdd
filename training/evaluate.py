"""``evaluate``: restore the evaluation photos (DESIGN.md §5) degraded with fixed seeds.

Reports PSNR and SSIM over the photo and PSNR inside the scratch mask for the
model, the degraded input, and OpenCV's Telea inpainting of the input (when
opencv-python-headless is installed). Writes ``eval/results.csv``, ``eval/results.md``,
``eval/grid.png`` and ``eval/grid_small.png`` (crops around the defects of the first
photos: the one docs/ shows).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oldphoto_model import Restorer, load_model

from .config import Config
from .data.dataset import load_textures, synthetic_photos
from .data.degradations import degrade
from .data.sources import list_images
from .logger import save_grid


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB of uint8 images, over all pixels or those where ``mask`` is True."""
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = d.mean()
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, constants of Wang et al.), averaged over channels."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = (g[:, None] * g[None, :])[None, None]

    def f(t):
        return F.conv2d(t, win)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return float(s.mean())


def telea(img: np.ndarray, mask: np.ndarray, radius: int) -> np.ndarray | None:
    """OpenCV's Telea inpainting, or None without opencv."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2.inpaint(img, mask.astype(np.uint8) * 255, radius, cv2.INPAINT_TELEA)


def eval_photos(cfg: Config) -> list[tuple[str, np.ndarray]]:
    """(name, uint8 photo) pairs, shrunk to ``eval.max_side``."""
    if cfg.data.synthetic:
        ims = synthetic_photos(max(1, cfg.eval.photos or 2), cfg.eval.max_side, cfg.eval.seed)
        return [(f"synthetic{i}", a) for i, a in enumerate(ims)]
    folder = Path(cfg.data.eval_dir or Path(cfg.data.cache_dir) / "eval")
    paths = list_images(folder) if folder.is_dir() else []
    if not paths:
        raise FileNotFoundError(f"no evaluation photos in {folder}: run `python -m training prepare-data`")
    if cfg.eval.photos:
        paths = paths[:cfg.eval.photos]
    out = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        s = min(1.0, cfg.eval.max_side / max(im.size))
        im = im.resize((max(16, round(im.size[0] * s)), max(16, round(im.size[1] * s))), Image.LANCZOS)
        out.append((p.stem, np.asarray(im)))
    return out


def evaluate(cfg: Config, weights: str | Path | None = None, out_dir: str | Path | None = None) -> list[dict]:
    """Run the benchmark; returns the rows written to ``results.csv``."""
    weights = Path(weights or Path(cfg.train.run_dir) / "weights.pt")
    out = Path(out_dir or Path(cfg.train.run_dir) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    restorer = Restorer(load_model(weights), cfg.train.device, "fp32")
    textures = load_textures(cfg.data.cache_dir)
    rows, grid = [], []
    for i, (name, clean) in enumerate(eval_photos(cfg)):
        # fixed seed per photo; always with defects so the in-mask PSNR is defined
        degraded, _, mask = degrade(clean, [cfg.eval.seed, i], cfg.degrade, textures, defects=True)
        if not mask.any():
            from .data.degradations import add_defects
            degraded, mask = add_defects(degraded, np.random.default_rng([cfg.eval.seed, i, 1]), cfg.degrade, textures)
        restored = restorer.restore(degraded, mask.astype(np.uint8) * 255)
        # what the plug-in hands back by default when the defects are selected: the model's
        # pixels inside the selection, the photo's own outside it
        kept = np.where(mask[..., None], restored, degraded)
        candidates = {"degraded input": degraded, "model": restored, "model, outside the mask kept": kept}
        inpainted = telea(degraded, mask, cfg.eval.telea_radius)
        if inpainted is not None:
            candidates["opencv telea"] = inpainted
        for method, im in candidates.items():
            rows.append({"photo": name, "method": method, "psnr": psnr(im, clean), "ssim": ssim(im, clean),
                         "psnr_mask": psnr(im, clean, mask), "mask_share": float(mask.mean())})
        grid.append([degraded, np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1)]
                    + ([inpainted] if inpainted is not None else []) + [restored, clean])
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | PSNR (dB) | SSIM | PSNR in mask (dB) |", "|---|---|---|---|"]
    for m in methods:
        rs = [r for r in rows if r["method"] == m]
        lines.append(f"| {m} | {np.mean([r['psnr'] for r in rs]):.2f} | {np.mean([r['ssim'] for r in rs]):.3f} "
                     f"| {np.nanmean([r['psnr_mask'] for r in rs]):.2f} |")
    table = "\n".join(lines)
    (out / "results.md").write_text(f"weights: {weights}\nphotos: {len(grid)}, seed {cfg.eval.seed}\n\n{table}\n")
    print(table)
    # the grid wants equal sizes: centre-crop every photo to the smallest
    hh = min(r[0].shape[0] for r in grid)
    ww = min(r[0].shape[1] for r in grid)
    save_grid([[im[:hh, :ww] for im in r] for r in grid], out / "grid.png")
    small = []
    for row in grid[:cfg.eval.grid_photos]:            # row[1] is the mask, as RGB
        y, x, c = crop_around_mask(row[1][..., 0] > 0, cfg.eval.grid_crop)
        small.append([im[y:y + c, x:x + c] for im in row])
    save_grid(small, out / "grid_small.png")
    return rows


def crop_around_mask(mask: np.ndarray, size: int) -> tuple[int, int, int]:
    """(top, left, side) of a square crop centred on the mask's centre of mass, inside the image."""
    h, w = mask.shape
    c = min(size, h, w)
    ys, xs = np.nonzero(mask) if mask.any() else ([h // 2], [w // 2])
    y = int(np.clip(np.mean(ys) - c // 2, 0, h - c))
    x = int(np.clip(np.mean(xs) - c // 2, 0, w - c))
    return y, x, c
