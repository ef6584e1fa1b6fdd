"""``evaluate``: restore the evaluation photos degraded with fixed seeds, through the
product's own restore path (``Restorer.restore`` with the plug-in's options).

Rows: the degraded input, OpenCV's Telea inpainting, the classical hand recipe
(``classical.hand_recipe``), the model on the whole photo and the model with "only
the selection changes" (the plug-in's default with a selection), the model on the
whole photo with the mask the scratch detector finds (``--eval.detector``: the shipped
one unless a file or ``none`` is given; scored against the true mask); with
``--eval.ablations`` also the restore options one at a time. The model rows use the
shipped tone estimator (``--eval.tone``: a file, or ``none`` for none) and the shipped
learned fill (``--eval.fill``: a file, or ``none`` for the harmonic fill). Columns: PSNR, SSIM,
PSNR inside the defect mask, edge sharpness (``metrics.edge_sharpness``) and the
fill's tone offset to its surroundings (``metrics.fill_delta``).

Writes ``eval/results.csv``, ``eval/results.md``, ``eval/grid.png`` and
``eval/grid_small.png`` (crops around the defects), and, when the real old photos
are found, ``eval/real_sheet.jpg`` (input | restored), ``eval/real_detail.jpg`` (1:1
crops of the most detailed windows) and ``eval/real_masked.jpg``
(the photos with scratch masks kept in ``bench/real_masks/``).
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oldphoto_model import RestoreOptions, Restorer, load_model
from oldphoto_model.detect import load_detector, restore_detected
from oldphoto_model.fill import box_blur
from oldphoto_model.learned_fill import load_fill
from oldphoto_model.pipeline import SHIPPED
from oldphoto_model.tone import load_tone

from .classical import hand_recipe, opencv, telea
from .config import Config
from .data.dataset import load_textures, synthetic_photos
from .data.degradations import add_defects, degrade
from .data.sources import list_images
from .logger import save_grid
from .metrics import edge_sharpness, fill_delta, psnr, ssim

REPO = Path(__file__).resolve().parent.parent
REAL_MASKS = REPO / "bench" / "real_masks"
COLUMNS = ("psnr", "ssim", "psnr_mask", "sharpness", "fill_delta")


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
    return [(p.stem, load_photo(p, cfg.eval.max_side)) for p in paths]


def degraded_pair(cfg: Config, i: int, clean: np.ndarray, textures,
                  parts: list[tuple[str, np.ndarray]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, bool defect mask) of evaluation photo ``i``: a fixed seed per photo, and
    always with defects, so the in-mask figures are defined. ``parts``: when given, gets
    each defect's (kind, exact mask) (``add_defects``)."""
    degraded, _, mask = degrade(clean, [cfg.eval.seed, i], cfg.degrade, textures, defects=True, parts=parts)
    if not mask.any():
        if parts is not None:
            parts.clear()
        degraded, mask = add_defects(degraded, np.random.default_rng([cfg.eval.seed, i, 1]), cfg.degrade, textures,
                                     parts=parts)
    return degraded, mask


def load_photo(path: Path, max_side: int) -> np.ndarray:
    """RGB uint8, shrunk (Lanczos) so that its long side is at most ``max_side``."""
    im = Image.open(path).convert("RGB")
    s = min(1.0, max_side / max(im.size))
    if s < 1.0:
        im = im.resize((max(16, round(im.size[0] * s)), max(16, round(im.size[1] * s))), Image.Resampling.LANCZOS)
    return np.asarray(im)


def methods(cfg: Config, restorer: Restorer, detector=None
            ) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray | None]]:
    """name -> f(degraded, bool mask) -> result (None: unavailable). With a scratch
    ``detector``, also the whole photo restored with the mask it finds (the true mask
    is used only to score it)."""
    E = cfg.eval
    full, sel = RestoreOptions(), RestoreOptions(restrict_to_mask=True)

    def model(opts: RestoreOptions):
        return lambda img, mask: restorer.restore(img, mask.astype(np.uint8) * 255, opts)
    rows: dict[str, Callable] = {
        "degraded input": lambda img, mask: img,
        f"OpenCV Telea (r{E.telea_radius})": lambda img, mask: telea(img, mask, E.telea_radius),
        f"hand recipe (Telea r{E.recipe_telea_radius} + NLM h{E.recipe_nlm_h:g} + stretch)":
            lambda img, mask: hand_recipe(img, mask, E.recipe_telea_radius, E.recipe_nlm_h, E.recipe_percentiles),
        "model, whole photo": model(full),
        "model, only the selection changes": model(sel),
    }
    if detector is not None:
        rows["model, whole photo, detected mask"] = lambda img, mask: restore_detected(restorer, detector, img, full)[0]
    if E.ablations:
        for label, opts in (("whole photo, network's tone (tone 1)", dataclasses.replace(full, tone=1.0)),
                            ("whole photo, tone 0.5", dataclasses.replace(full, tone=0.5)),
                            ("whole photo, the scan's tone (tone 0)", dataclasses.replace(full, tone=0.0)),
                            ("whole photo, no scan detail (detail 0)", dataclasses.replace(full, detail=0.0)),
                            ("whole photo, network only (tone 1, detail 0)",
                             dataclasses.replace(full, tone=1.0, detail=0.0)),
                            ("whole photo, no sharpening (sharpen 0)", dataclasses.replace(full, sharpen=0.0)),
                            ("whole photo, sharpen 0.8", dataclasses.replace(full, sharpen=0.8)),
                            ("whole photo, blacks left as scanned (black_point 0)",
                             dataclasses.replace(full, black_point=0.0)),
                            ("whole photo, all the lifted black out (black_point 1)",
                             dataclasses.replace(full, black_point=1.0)),
                            ("whole photo, no automatic tone (auto_tone 0)",
                             dataclasses.replace(full, auto_tone=0.0)),
                            ("whole photo, auto_tone 0.5", dataclasses.replace(full, auto_tone=0.5)),
                            ("whole photo, grow 3", dataclasses.replace(full, grow=3)),
                            ("whole photo, harmonic fill (learned_fill off)",
                             dataclasses.replace(full, learned_fill=False)),
                            ("selection, harmonic fill (learned_fill off)",
                             dataclasses.replace(sel, learned_fill=False)),
                            ("selection, tone matching off", dataclasses.replace(sel, match_tone=False))):
            rows[f"model, {label}"] = model(opts)
    return rows


def evaluate(cfg: Config, weights: str | Path | None = None, out_dir: str | Path | None = None) -> list[dict]:
    """Run the benchmark; returns the rows written to ``results.csv``."""
    weights = Path(weights or Path(cfg.train.run_dir) / "weights.pt")
    out = Path(out_dir or Path(cfg.train.run_dir) / "eval")
    out.mkdir(parents=True, exist_ok=True)
    tone = None if cfg.eval.tone == "none" else load_tone(cfg.eval.tone) if cfg.eval.tone else SHIPPED
    fill = None if cfg.eval.fill == "none" else load_fill(cfg.eval.fill) if cfg.eval.fill else SHIPPED
    restorer = Restorer(load_model(weights), cfg.train.device, cfg.eval.precision, tone=tone, fill=fill)
    detector = load_detector(cfg.eval.detector or None) if cfg.eval.detector != "none" else None
    if opencv() is None:
        print("[evaluate] OpenCV is not installed: the Telea and hand-recipe baselines are left out of "
              "the table and the grids (pip install opencv-python-headless to include them)", flush=True)
    textures = load_textures(cfg.data.cache_dir)
    table = methods(cfg, restorer, detector)
    rows, grid = [], []
    for i, (name, clean) in enumerate(eval_photos(cfg)):
        degraded, mask = degraded_pair(cfg, i, clean, textures)
        results = {m: f(degraded, mask) for m, f in table.items()}
        for method, im in results.items():
            if im is None:
                continue
            rows.append({"photo": name, "method": method, "psnr": psnr(im, clean), "ssim": ssim(im, clean),
                         "psnr_mask": psnr(im, clean, mask), "sharpness": edge_sharpness(im, clean, mask),
                         "fill_delta": fill_delta(im, mask), "mask_share": float(mask.mean())})
        grid.append([degraded, np.repeat(mask[..., None].astype(np.uint8) * 255, 3, -1)]
                    + [r for r in list(results.values())[1:5] if r is not None] + [clean])
        print(f"evaluate: {i + 1} {name}", flush=True)
    labels = ["degraded", "mask"] + [m for m, r in list(results.items())[1:5] if r is not None] + ["clean"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    table_md = summary(rows)
    (out / "results.md").write_text(f"weights: {weights}\nphotos: {len(grid)}, seed {cfg.eval.seed}, "
                                    f"precision {cfg.eval.precision}\n\n{table_md}\n")
    print(table_md)
    # the grid wants equal sizes: crop every photo to the smallest
    hh = min(r[0].shape[0] for r in grid)
    ww = min(r[0].shape[1] for r in grid)
    save_grid([[im[:hh, :ww] for im in r] for r in grid], out / "grid.png", labels=labels)
    small = []
    for row in grid[:cfg.eval.grid_photos]:            # row[1] is the mask, as RGB
        y, x, c = crop_around_mask(row[1][..., 0] > 0, cfg.eval.grid_crop)
        small.append([im[y:y + c, x:x + c] for im in row])
    save_grid(small, out / "grid_small.png", labels=labels)
    real_sheets(cfg, restorer, out)
    return rows


def summary(rows: list[dict]) -> str:
    """The mean of every column per method, as a Markdown table."""
    lines = ["| method | PSNR (dB) | SSIM | PSNR in mask (dB) | edge sharpness | fill Δ (levels) |",
             "|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        v = {k: np.nanmean([r[k] for r in rs]) for k in COLUMNS}
        lines.append(f"| {m} | {v['psnr']:.2f} | {v['ssim']:.3f} | {v['psnr_mask']:.2f} | {v['sharpness']:.3f} "
                     f"| {v['fill_delta']:.2f} |")
    return "\n".join(lines)


def crop_around_mask(mask: np.ndarray, size: int) -> tuple[int, int, int]:
    """(top, left, side) of a square crop centred on the mask's centre of mass, inside the image."""
    h, w = mask.shape
    c = min(size, h, w)
    ys, xs = np.nonzero(mask) if mask.any() else ([h // 2], [w // 2])
    y = int(np.clip(np.mean(ys) - c // 2, 0, h - c))
    x = int(np.clip(np.mean(xs) - c // 2, 0, w - c))
    return y, x, c


# ------------------------------------------------------------------ real old photos

def real_dir(cfg: Config) -> Path | None:
    """``eval.real_dir``, else the real old photos next to the checkout (``../shared/real_old``)."""
    for cand in ([cfg.eval.real_dir] if cfg.eval.real_dir else []) + [str(REPO.parent / "shared" / "real_old")]:
        if Path(cand).is_dir() and list_images(cand):
            return Path(cand)
    return None


def _cell(img: np.ndarray, side: int) -> np.ndarray:
    """``img`` fitted into a white ``side``² square."""
    im = Image.fromarray(img)
    s = side / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.Resampling.LANCZOS)
    cell = Image.new("RGB", (side, side), "white")
    cell.paste(im, ((side - im.size[0]) // 2, (side - im.size[1]) // 2))
    return np.asarray(cell)


def overlay(img: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mask in red over the photo."""
    out = img.copy()
    out[mask] = (0.4 * out[mask] + 0.6 * np.array([255, 0, 0])).astype(np.uint8)
    return out


def detail_window(img: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the ``side``² window with the most fine detail (energy of the luma
    minus its 5×5 box mean): where a noise gate that takes texture for grain shows."""
    luma = img[..., :3].astype(np.float64).mean(-1) if img.ndim == 3 else img.astype(np.float64)
    t = torch.from_numpy(luma)[None, None]
    side = min(side, *luma.shape)
    fine = t - box_blur(t, 2)
    energy = F.avg_pool2d(fine * fine, side, stride=1)[0, 0]      # every window inside the photo
    y, x = divmod(int(energy.argmax()), energy.shape[1])
    return y, x


def real_sheets(cfg: Config, restorer: Restorer, out: Path, cell: int = 256) -> None:
    """Contact sheets of the real old photos: ``real_sheet.jpg`` (input | restored, whole
    photo, no mask), ``real_detail.jpg`` (input | restored, 1:1 crops of each photo's most
    detailed window, restored at up to ``eval.detail_max_side``: what the small sheet
    cannot show, fine texture kept or wiped) and ``real_masked.jpg`` (input | mask | only
    the selection changes | whole photo) for the photos that have a mask in
    ``bench/real_masks/``; the full-size results go to ``real/``."""
    folder = real_dir(cfg)
    if folder is None:
        print("evaluate: no real old photos found (--eval.real_dir): no real-photo sheets")
        return
    full_dir = out / "real"
    full_dir.mkdir(parents=True, exist_ok=True)
    pairs, masked, details = [], [], []
    paths = list_images(folder)
    for p in paths[:cfg.eval.real_photos or len(paths)]:
        img = load_photo(p, cfg.eval.real_max_side)
        res = restorer.restore(img)
        Image.fromarray(np.concatenate([img, res], 1)).save(full_dir / f"{p.stem}.jpg", quality=92)
        pairs += [_cell(img, cell), _cell(res, cell)]
        big = load_photo(p, cfg.eval.detail_max_side)
        y, x = detail_window(big, cfg.eval.detail_crop)
        c = min(cfg.eval.detail_crop, *big.shape[:2])
        details += [_cell(im[y:y + c, x:x + c], cfg.eval.detail_crop) for im in (big, restorer.restore(big))]
        mpath = REAL_MASKS / f"{p.stem}.png"
        if mpath.is_file():
            m = np.asarray(Image.open(mpath).convert("L").resize(img.shape[1::-1], Image.Resampling.NEAREST)) >= 128
            sel = restorer.restore(img, m.astype(np.uint8) * 255, RestoreOptions(restrict_to_mask=True))
            whole = restorer.restore(img, m.astype(np.uint8) * 255)
            Image.fromarray(np.concatenate([img, sel, whole], 1)).save(full_dir / f"{p.stem}_masked.jpg",
                                                                         quality=92)
            masked.append([_cell(x, 2 * cell) for x in (img, overlay(img, m), sel, whole)])
    per_row = 6
    rows = [pairs[i:i + per_row] for i in range(0, len(pairs), per_row)]
    rows[-1] += [np.full_like(pairs[0], 255)] * (per_row - len(rows[-1]))
    save_grid(rows, out / "real_sheet.png", labels=["scan", "restored"] * (per_row // 2))
    _to_jpeg(out / "real_sheet.png")
    per_row = 8
    rows = [details[i:i + per_row] for i in range(0, len(details), per_row)]
    rows[-1] += [np.full_like(details[0], 255)] * (per_row - len(rows[-1]))
    save_grid(rows, out / "real_detail.png", labels=["scan 1:1", "restored"] * (per_row // 2))
    _to_jpeg(out / "real_detail.png")
    if masked:
        save_grid(masked, out / "real_masked.png",
                  labels=["scan", "scratch mask", "only the selection changes", "whole photo"])
        _to_jpeg(out / "real_masked.png")


def _to_jpeg(png: Path) -> None:
    Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=85)
    png.unlink()
