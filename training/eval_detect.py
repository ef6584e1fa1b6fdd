"""``eval-detect``: how well the scratch detector finds the synthetic defects, next to a
classical detector, and an overlay sheet of the real old photos.

Photos and defects are ``evaluate``'s: each evaluation photo (long side
``eval.max_side``) degraded with seed (eval.seed, i), always with structured defects.

Measures, pixels pooled over all photos (so a photo with more defect pixels weighs more):

- **precision**: share of flagged pixels within ``TOLERANCE`` px (Chebyshev) of a true
  defect pixel; **recall**: share of true defect pixels within ``TOLERANCE`` px of a
  flagged one. The tolerance forgives a mask one or two pixels wider or narrower than a
  scratch's anti-aliased edge, which the restore does not care about.
- **F1** = 2PR / (P + R); **IoU** = F1 / (2 - F1) (the same tolerant counts: 1 / (1/P + 1/R - 1));
  **exact IoU**: |flagged ∩ true| / |flagged ∪ true| with no tolerance.
- **false alarms**: share of pixels flagged on the clean photo (``clean``) and on the
  same photo aged by the same chain without structured defects (``aged``: grain, noise,
  JPEG, fading, paper, halftone — the undamaged old photo).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from oldphoto_model.archs.nonlocal_block import dilate
from oldphoto_model.detect import DEFAULT_DETECTOR, DEFAULT_THRESHOLD, detect, load_detector, model_threshold

from .classical import tophat_detect
from .config import Config
from .data.dataset import load_textures
from .data.degradations import degrade
from .data.sources import list_images
from .evaluate import _cell, degraded_pair, eval_photos, load_photo, overlay, real_dir
from .logger import save_grid

#: edge tolerance of precision and recall, in pixels
TOLERANCE = 2

Detector = Callable[[np.ndarray], np.ndarray]      # uint8 HxWx3 -> bool HxW


def eval_pairs(cfg: Config, kinds: list[dict[str, np.ndarray]] | None = None
               ) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, clean, degraded, bool mask, aged without defects) per evaluation photo, made as
    ``evaluate`` makes its pairs (``degraded_pair``: the same degraded photos). ``kinds``:
    when given, gets per photo {defect kind: bool mask of the pixels that kind changed}."""
    textures = load_textures(cfg.data.cache_dir)
    out = []
    for i, (name, clean) in enumerate(eval_photos(cfg)):
        parts: list[tuple[str, np.ndarray]] | None = [] if kinds is not None else None
        degraded, mask = degraded_pair(cfg, i, clean, textures, parts)
        # the identical seed draws the identical unstructured ageing (defects come last)
        aged, _, _ = degrade(clean, [cfg.eval.seed, i], cfg.degrade, textures, defects=False)
        out.append((name, clean, degraded, mask, aged))
        if parts is not None and kinds is not None:
            by_kind: dict[str, np.ndarray] = {}
            for kind, m in parts:
                by_kind[kind] = by_kind.get(kind, np.zeros_like(mask)) | m
            kinds.append(by_kind)
    return out


def match_counts(pred: np.ndarray, truth: np.ndarray, tolerance: int = TOLERANCE) -> dict[str, int]:
    """Pixel counts of one photo: flagged, flagged near truth, true, true near a flag, exact overlap/union."""
    p, t = torch.from_numpy(pred), torch.from_numpy(truth)
    return {"pred": int(p.sum()), "pred_hit": int((p & dilate(t, tolerance)).sum()),
            "true": int(t.sum()), "true_hit": int((t & dilate(p, tolerance)).sum()),
            "inter": int((p & t).sum()), "union": int((p | t).sum())}


def scores(c: dict[str, float]) -> dict[str, float]:
    """Precision, recall, F1, tolerant and exact IoU from (pooled) ``match_counts``."""
    prec = c["pred_hit"] / c["pred"] if c["pred"] else 0.0
    rec = c["true_hit"] / c["true"] if c["true"] else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "iou": f1 / (2 - f1),
            "iou_exact": c["inter"] / c["union"] if c["union"] else 0.0}


def detection_rows(cfg: Config, pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
                   detectors: dict[str, Detector], kinds: list[dict[str, np.ndarray]] | None = None
                   ) -> list[dict]:
    """One row per (photo, detector): the ``match_counts`` on the degraded photo and the
    pixels flagged on the clean and the aged-undamaged versions. ``pairs`` as ``eval_pairs``;
    with its ``kinds``, also per defect kind K of ``cfg.degrade.defect_kinds`` ``true_K``
    (pixels K changed) and ``hit_K`` (those within the tolerance of a flagged pixel)."""
    rows = []
    for i, (name, clean, degraded, mask, aged) in enumerate(pairs):
        for method, fn in detectors.items():
            pred = fn(degraded)
            row = {"photo": name, "method": method, **match_counts(pred, mask),
                   "pixels": mask.size, "fa_clean": int(fn(clean).sum()), "fa_aged": int(fn(aged).sum())}
            if kinds is not None:
                near = dilate(torch.from_numpy(pred), TOLERANCE).numpy()
                for kind in cfg.degrade.defect_kinds:
                    m = kinds[i].get(kind, np.zeros_like(mask))
                    row[f"true_{kind}"], row[f"hit_{kind}"] = int(m.sum()), int((m & near).sum())
            rows.append(row)
    return rows


def summary(rows: list[dict]) -> tuple[list[dict], str]:
    """Pooled scores per method and the Markdown table of them."""
    lines = ["| detector | precision | recall | F1 | IoU | exact IoU | false alarms, clean (%) | "
             "false alarms, aged (%) |", "|---|---|---|---|---|---|---|---|"]
    table = []
    for m in dict.fromkeys(r["method"] for r in rows):
        tot = {k: sum(r[k] for r in rows if r["method"] == m)
               for k in ("pred", "pred_hit", "true", "true_hit", "inter", "union", "pixels", "fa_clean", "fa_aged")}
        s = {"method": m, **scores(tot), "fa_clean": 100 * tot["fa_clean"] / tot["pixels"],
             "fa_aged": 100 * tot["fa_aged"] / tot["pixels"]}
        table.append(s)
        lines.append(f"| {m} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} | {s['iou']:.3f} | "
                     f"{s['iou_exact']:.3f} | {s['fa_clean']:.2f} | {s['fa_aged']:.2f} |")
    return table, "\n".join(lines)


def kind_table(rows: list[dict], kinds: tuple[str, ...] | list[str]) -> str:
    """Markdown: per defect kind, its share of all defect pixels and each detector's recall
    on it (``detection_rows`` with ``kinds``; a pixel two defects changed counts for both)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    first = [r for r in rows if r["method"] == methods[0]]
    total = sum(r[f"true_{k}"] for r in first for k in kinds) or 1
    lines = ["| defect kind | share of defect pixels | " + " | ".join(f"recall, {m}" for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for k in kinds:
        true = sum(r[f"true_{k}"] for r in first)
        rec = [sum(r[f"hit_{k}"] for r in rows if r["method"] == m) / true if true else 0.0 for m in methods]
        lines.append(f"| {k} | {100 * true / total:.1f} % | " + " | ".join(f"{v:.3f}" for v in rec) + " |")
    return "\n".join(lines)


def default_detectors(model, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Detector]:
    """The learned detector (``model``; None leaves it out) and the classical one."""
    out: dict[str, Detector] = {}
    if model is not None:
        out[f"learned (U-Net, threshold {threshold:g})"] = lambda img: detect(img, model, threshold)[1] > 0
    out["classical (top-hat + Hessian line filter)"] = tophat_detect
    return out


#: Thresholds ``threshold_sweep`` tries (the probability a pixel needs to be flagged).
SWEEP = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.985, 0.99, 0.992, 0.995, 0.998, 0.999)
#: The false-alarm budget the shipped threshold is chosen for: at most this share (%) of
#: the pixels of undamaged photos (clean and aged, each) flagged.
FALSE_ALARM_TARGET = 0.5
#: ... and at most this mean share (%) of the real old photos' pixels (long side
#: ``eval.real_max_side``): they are nearly undamaged, so what is flagged on them is
#: nearly all false alarm, and the synthetic clean photos lack their grain and textures.
REAL_TARGET = 0.1


def threshold_sweep(pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], model,
                    thresholds: tuple[float, ...] = SWEEP, real: list[np.ndarray] | None = None) -> list[dict]:
    """Pooled scores and false alarms of the learned detector at each threshold (the
    probability maps are computed once per photo). ``pairs`` as ``eval_pairs``; with
    ``real`` photos, also ``real``: the mean share (%) of their pixels flagged (else None)."""
    maps = [(detect(degraded, model)[0], mask, detect(clean, model)[0], detect(aged, model)[0])
            for _name, clean, degraded, mask, aged in pairs]
    real_maps = [detect(img, model)[0] for img in real or []]
    pixels = sum(m.size for _, m, _, _ in maps)
    out = []
    for t in thresholds:
        tot: dict[str, float] = {}
        fa_clean = fa_aged = 0
        for p_deg, mask, p_clean, p_aged in maps:
            for k, v in match_counts(p_deg >= t, mask).items():
                tot[k] = tot.get(k, 0) + v
            fa_clean += int((p_clean >= t).sum())
            fa_aged += int((p_aged >= t).sum())
        out.append({"threshold": t, **scores(tot), "fa_clean": 100 * fa_clean / pixels,
                    "fa_aged": 100 * fa_aged / pixels,
                    "real": float(np.mean([100 * (p >= t).mean() for p in real_maps])) if real_maps else None})
    return out


def choose_threshold(sweep: list[dict], target: float = FALSE_ALARM_TARGET, real_target: float = REAL_TARGET
                     ) -> dict:
    """The sweep row with the lowest threshold whose false alarms (clean and aged) are both
    within ``target`` % and, where the sweep measured real photos, whose share of them
    flagged is within ``real_target`` %; when none is, the row with the fewest."""
    def excess(r: dict) -> float:
        over = max(r["fa_clean"], r["fa_aged"]) - target
        return max(over, r["real"] - real_target if r.get("real") is not None else over)
    ok = [r for r in sweep if excess(r) <= 0]
    return min(ok, key=lambda r: r["threshold"]) if ok else min(sweep, key=lambda r: (excess(r), r["threshold"]))


def sweep_table(sweep: list[dict]) -> str:
    """The Markdown table of ``threshold_sweep``."""
    lines = ["| threshold | precision | recall | F1 | IoU | false alarms, clean (%) | false alarms, aged (%) "
             "| real old photos flagged (%) |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['threshold']:g} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
              f"{r['iou']:.3f} | {r['fa_clean']:.2f} | {r['fa_aged']:.2f} | "
              f"{'–' if r.get('real') is None else format(r['real'], '.3f')} |" for r in sweep]
    return "\n".join(lines)


def real_photos(cfg: Config, leave_out: tuple[str, ...] = ()) -> list[np.ndarray]:
    """The real old photos (``evaluate.real_dir``) at long side ``eval.real_max_side``,
    without those whose file stem is in ``leave_out``; [] when none."""
    folder = real_dir(cfg)
    paths = list_images(folder) if folder is not None else []
    left_out = set(leave_out)
    return [load_photo(p, cfg.eval.real_max_side) for p in paths[:cfg.eval.real_photos or len(paths)]
            if p.stem not in left_out]


def trained_on(model) -> tuple[str, ...]:
    """Stems of the real photos a detector's weight file says it was trained on."""
    info = getattr(model, "weights_info", None)
    seen = info.metadata.get("real_trained_on") if info is not None and isinstance(info.metadata, dict) else None
    return tuple(str(s) for s in seen) if isinstance(seen, list) else ()


def real_overlay_sheet(cfg: Config, detector: Detector, out: Path, cell: int = 256, per_row: int = 4) -> Path | None:
    """``out`` (PNG): each real old photo (long side ``eval.real_max_side``) next to itself
    with the detected mask in red. None when no real photos are found."""
    photos = real_photos(cfg)
    if not photos:
        return None
    cells = []
    for img in photos:
        cells += [_cell(img, cell), _cell(overlay(img, detector(img)), cell)]
    per = 2 * per_row
    rows = [cells[i:i + per] for i in range(0, len(cells), per)]
    rows[-1] += [np.full_like(cells[0], 255)] * (per - len(rows[-1]))
    save_grid(rows, out, labels=["scan", "detected (red)"] * per_row)
    return out


def eval_detect(cfg: Config, weights: str | Path | None, out: Path) -> list[Path]:
    """Print and write the detection table (``detect.md``, ``detect.csv``) and the real-photo
    overlay sheet (``detect_real.png``); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    run_weights = Path(cfg.train.run_dir) / "detector.pt"
    path = Path(weights) if weights else run_weights if run_weights.is_file() else DEFAULT_DETECTOR
    model = load_detector(path)
    threshold = model_threshold(model)
    detectors = default_detectors(model, threshold)
    kinds: list[dict[str, np.ndarray]] = []
    pairs = eval_pairs(cfg, kinds)
    rows = detection_rows(cfg, pairs, detectors, kinds)
    _, table = summary(rows)
    table += "\n\n" + kind_table(rows, cfg.degrade.defect_kinds)
    print(table, flush=True)
    md = out / "detect.md"
    md.write_text(f"detector: {path}\nphotos: {len(pairs)}, seed {cfg.eval.seed}, max side {cfg.eval.max_side}, "
                  f"edge tolerance {TOLERANCE} px\n\n{table}\n")
    with open(out / "detect.csv", "w") as f:
        f.write(",".join(rows[0]) + "\n")
        f.writelines(",".join(str(v) for v in r.values()) + "\n" for r in rows)
    written = [md, out / "detect.csv"]
    seen = trained_on(model)
    sweep = threshold_sweep(pairs, model, real=real_photos(cfg, seen))
    best = choose_threshold(sweep)
    real_rule = (f" and real old photos flagged <= {REAL_TARGET} %"
                 f"{f' ({len(seen)} it was trained on left out)' if seen else ''}"
                 if best.get("real") is not None else "")
    text = (f"{sweep_table(sweep)}\n\nlowest threshold with false alarms <= {FALSE_ALARM_TARGET} % "
            f"(clean and aged){real_rule}: {best['threshold']:g} (F1 {best['f1']:.3f}, recall {best['recall']:.3f}, "
            f"false alarms {best['fa_clean']:.2f} / {best['fa_aged']:.2f} %); this file's threshold: {threshold:g}")
    print(text, flush=True)
    (out / "detect_thresholds.md").write_text(f"detector: {path}\n\n{text}\n")
    written.append(out / "detect_thresholds.md")
    sheet = real_overlay_sheet(cfg, next(iter(detectors.values())), out / "detect_real.png")
    return written + ([sheet] if sheet else [])
