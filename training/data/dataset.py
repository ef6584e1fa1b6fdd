"""Training samples: keyed by (step, slot), so every batch is a pure function of the
seed and the step — a resumed run sees exactly the batches an uninterrupted run sees,
whatever the number of data-loader workers."""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from oldphoto_model.archs.nonlocal_block import dilate
from oldphoto_model.fill import harmonic_fill

from ..config import Config, DataConfig
from .degradations import (
    DEFECT_KINDS,
    Textures,
    add_defects,
    apply_defect,
    degrade,
    degrade_unstructured,
    to_float,
    to_u8,
)
from .real_photos import domain_r_source
from .sources import crops_dir, is_flat, list_images


def synthetic_photo(rng: np.random.Generator, size: int) -> np.ndarray:
    """A procedural stand-in for a photo (tests only): gradients, shapes, stripes, texture."""
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / size
    img = np.stack([rng.uniform(0.2, 0.8) + rng.uniform(-0.4, 0.4) * (xx if c % 2 else yy)
                    for c in range(3)], -1)
    for _ in range(int(rng.integers(3, 7))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.3)
        inside = ((yy - cy) ** 2 + (xx - cx) ** 2) < r * r if rng.random() < 0.5 else \
            (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.3, 1))
        img[inside] = rng.uniform(0, 1, 3)
    f = rng.uniform(4, 14)
    img += 0.08 * np.sin(2 * np.pi * f * (xx * rng.uniform(-1, 1) + yy))[..., None]
    img += rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def synthetic_photos(n: int, size: int, seed: int) -> list[np.ndarray]:
    return [synthetic_photo(np.random.default_rng([seed, 7, i]), size) for i in range(n)]


def load_textures(cache_dir: str | Path, max_side: int = 512) -> Textures:
    """Brushes and paper scans that ``prepare-data`` put in the cache (empty if none)."""
    t = Textures()
    root = Path(cache_dir) / "textures"
    for kind, dest in (("brushes", t.brushes), ("papers", t.papers)):
        d = root / kind
        if not d.is_dir():
            continue
        for p in sorted(d.glob("*.png")):
            im = Image.open(p).convert("L")
            if max(im.size) > max_side:
                s = max_side / max(im.size)
                im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))),
                               Image.Resampling.BILINEAR)
            a = np.asarray(im, np.float32) / 255.0
            if kind == "brushes":
                ys, xs = np.nonzero(a > 0.1)
                if len(ys) < 16:
                    continue
                a = a[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
            dest.append(a)
    return t


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float CxHxW in [-1, 1]."""
    return torch.tensor(img).permute(2, 0, 1).float() / 127.5 - 1.0   # a copy: cached arrays are read-only


def to_gray_or_sepia(img: np.ndarray, rng: np.random.Generator, gray_p: float, sepia_p: float) -> np.ndarray:
    """Most old photos are monochrome: turn a share of the clean crops gray or sepia."""
    u = rng.random()
    if u < gray_p:
        y = np.rint(img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32))
        return np.repeat(np.clip(y, 0, 255).astype(np.uint8)[..., None], 3, -1)
    if u < gray_p + sepia_p:
        f = img.astype(np.float32) / 255.0
        y = f @ np.array([0.299, 0.587, 0.114], np.float32)
        sep = np.stack([y * 1.0, y * 0.84, y * 0.62], -1) + np.array([0.06, 0.04, 0.02], np.float32)
        return (np.clip(sep, 0, 1) * 255).round().astype(np.uint8)
    return img


class PhotoPool:
    """Clean crops: the prepared crop folder, extra folders, or procedural images."""

    def __init__(self, cfg: Config) -> None:
        d = cfg.data
        self.crop = d.crop
        self.arrays: list[np.ndarray] = []
        self.paths: list[Path] = []
        if d.synthetic:
            self.arrays = synthetic_photos(d.synthetic_count, max(d.crop, d.short_side_min), cfg.train.seed)
        else:
            folder = crops_dir(d)
            if not folder.is_dir():
                # a crop set of a larger size serves too: random sub-crops of it
                bigger = sorted((int(p.name), p) for p in folder.parent.glob("*")
                                if p.name.isdigit() and int(p.name) > d.crop) if folder.parent.is_dir() else []
                folder = bigger[0][1] if bigger else folder
            self.paths = list_images(folder) if folder.is_dir() else []
            if not self.paths:
                raise FileNotFoundError(f"no training crops in {folder}: run `python -m training prepare-data` "
                                        "first (or pass --data.synthetic for a test run)")

    def __len__(self) -> int:
        return len(self.arrays) or len(self.paths)

    def get(self, i: int, rng: np.random.Generator) -> np.ndarray:
        if self.arrays:
            a = self.arrays[i]
            y0 = int(rng.integers(a.shape[0] - self.crop + 1))
            x0 = int(rng.integers(a.shape[1] - self.crop + 1))
            return a[y0:y0 + self.crop, x0:x0 + self.crop]
        a = _read(str(self.paths[i]))
        if a.shape[0] > self.crop or a.shape[1] > self.crop:
            y0 = int(rng.integers(a.shape[0] - self.crop + 1))
            x0 = int(rng.integers(a.shape[1] - self.crop + 1))
            a = a[y0:y0 + self.crop, x0:x0 + self.crop]
        return a


@functools.lru_cache(maxsize=8192)
def _read(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


class RealPool:
    """Real old photos (domain R) from ``--data.real_dirs`` or ``<cache>/real``: random
    crops at a random scale."""

    def __init__(self, dirs: list[str], crop: int, exclude: tuple[str, ...] = ()) -> None:
        """``exclude``: file stems left out (held-out photos)."""
        left_out = set(exclude)
        self.paths = [p for d in dirs for p in list_images(d) if Path(p).stem not in left_out]
        self.crop = crop

    @classmethod
    def of(cls, data: DataConfig, crop: int, exclude: tuple[str, ...] = ()) -> RealPool | None:
        """The pool of domain R's photos (``domain_r_source``); None when there are none."""
        dirs, _ = domain_r_source(data)
        return cls(dirs, crop, exclude) if dirs else None

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, rng: np.random.Generator) -> np.ndarray:
        im = _read_real(str(self.paths[int(rng.integers(len(self.paths)))]))
        target = int(rng.integers(self.crop, 2 * self.crop + 1))
        s = target / min(im.size)
        im = im.resize((max(self.crop, round(im.size[0] * s)), max(self.crop, round(im.size[1] * s))),
                       Image.Resampling.BICUBIC)
        a = np.asarray(im)
        for _ in range(5):
            y0, x0 = int(rng.integers(a.shape[0] - self.crop + 1)), int(rng.integers(a.shape[1] - self.crop + 1))
            c = a[y0:y0 + self.crop, x0:x0 + self.crop]
            if not is_flat(c, 0.03):
                break
        return c


@functools.lru_cache(maxsize=64)
def _read_real(path: str) -> Image.Image:
    # decoding a ~1 MB scan took most of a domain-R sample's time; the decoded image is
    # the same every time, so the crops (and their bits) do not change
    return Image.open(path).convert("RGB")


class TrainingSamples(Dataset):
    """``dataset[(step, slot)]`` -> dict of tensors in [-1, 1]:

    ``clean`` y, ``degraded`` x (with structured defects when ``defects``), ``mask``
    (1 = defect) and, with ``with_real``, ``real``: a real old photo crop or, when
    none were given, the stand-in (a heavily aged synthetic photo, see docs/TRAINING.md).
    """

    def __init__(self, cfg: Config, defects: bool, with_real: bool = False,
                 textures: Textures | None = None, degraded: bool = True) -> None:
        self.cfg = cfg
        self.defects = defects
        self.degraded = degraded   # False: clean crops only (VAE_B), no degradation synthesis
        self.with_real = with_real
        self.pool = PhotoPool(cfg)
        self.real = RealPool.of(cfg.data, cfg.data.crop)
        self.textures = textures if textures is not None else load_textures(cfg.data.cache_dir)

    def __len__(self) -> int:
        return len(self.pool)

    def defect_scale(self, step: int, slot: int) -> dict[str, float]:
        """``degrade``'s ``defect_scale`` for a sample: none (defects sized by the crop)."""
        return {}

    def scene_lines(self, clean: np.ndarray, step: int, slot: int) -> np.ndarray:
        """The clean crop, to which a subclass may add scene content: unchanged here."""
        return clean

    def clean_sample(self, rng: np.random.Generator) -> np.ndarray:
        d = self.cfg.data
        img = self.pool.get(int(rng.integers(len(self.pool))), rng)
        if rng.random() < d.flip_prob:
            img = img[:, ::-1]
        return np.ascontiguousarray(to_gray_or_sepia(img, rng, d.gray_prob, d.sepia_prob))

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        step, slot = key
        rng = np.random.default_rng([self.cfg.train.seed, step, slot])
        clean = self.scene_lines(self.clean_sample(rng), step, slot)
        if not self.degraded:
            return {"clean": to_tensor(clean)}
        seed = int(rng.integers(2 ** 63))
        degraded, _, mask = degrade(clean, seed, self.cfg.degrade, self.textures, defects=self.defects,
                                    defect_scale=self.defect_scale(step, slot))
        out = {"clean": to_tensor(clean), "degraded": to_tensor(degraded),
               "mask": torch.from_numpy(mask[None].astype(np.float32))}
        if self.with_real:
            if self.real is not None:
                out["real"] = to_tensor(self.real.get(rng))
            else:
                other = self.clean_sample(rng)
                aged, _, _ = degrade(other, int(rng.integers(2 ** 63)), self.cfg.degrade, self.textures,
                                     defects=True, strong=True)
                out["real"] = to_tensor(aged)
        return out


class DetectSamples(TrainingSamples):
    """The detector's samples: ``TrainingSamples`` with defects, of which a share ``real``
    (drawn per sample from its own stream, so ``real`` 0 gives exactly ``TrainingSamples``)
    are a crop of a real old photo with ``degrade.p_defects`` chance of synthetic
    structured defects on top. Only the drawn defects are marked: the scan's own grain,
    halftone and paper are negatives. ``clean`` is the crop without the drawn defects.
    ``scale`` (low, high): each sample's defects of the ``scaled_kinds`` are drawn as for
    a photo a uniform random factor in that range larger than the crop (``apply_defect``'s
    ``scale``). ``lines``: share of samples given unmarked scene lines (``scene_lines``)."""

    def __init__(self, cfg: Config, real: float, holdout: tuple[str, ...] = (),
                 scale: tuple[float, float] = (1.0, 1.0), scaled_kinds: tuple[str, ...] = ("hole",),
                 lines: float = 0.0) -> None:
        super().__init__(cfg, defects=True)
        if not 1.0 <= scale[0] <= scale[1]:
            raise ValueError(f"--detect.defect_scale needs 1 <= low <= high, got {scale}")
        self.scale_range, self.scaled_kinds = scale, scaled_kinds
        self.lines = lines
        self.real_share = real
        self.detect_real = None
        if real > 0:
            self.detect_real = RealPool.of(cfg.data, cfg.data.crop, holdout)
            if self.detect_real is None or len(self.detect_real) == 0:
                raise ValueError("--detect.real needs real old photos (--data.real_dirs or "
                                 "prepare-data's <cache>/real); none are left after --detect.real_holdout")

    def scene_lines(self, clean: np.ndarray, step: int, slot: int) -> np.ndarray:
        """With probability ``lines``: 1-3 scratch-like strokes (curves, cracks, dust) drawn
        into the clean crop *before* the ageing and left unmarked: wires, ropes, poles and
        specks of light are scene content, blurred and grained with the photo, while damage
        happens to the print afterwards."""
        rng = np.random.default_rng([self.cfg.train.seed, step, slot, 3])
        if self.lines <= 0 or rng.random() >= self.lines:
            return clean
        for _ in range(int(rng.integers(1, 4))):
            kind = ("curve", "crack", "dust")[int(rng.integers(3))]
            clean, _ = apply_defect(clean, kind, rng, self.textures)
        return clean

    def defect_scale(self, step: int, slot: int) -> dict[str, float]:
        lo, hi = self.scale_range
        s = lo if hi == lo else float(np.random.default_rng([self.cfg.train.seed, step, slot, 2]).uniform(lo, hi))
        return {k: s for k in self.scaled_kinds} if s != 1.0 else {}

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        step, slot = key
        pick = np.random.default_rng([self.cfg.train.seed, step, slot, 1])
        if self.detect_real is None or pick.random() >= self.real_share:
            return super().__getitem__(key)
        crop = self.detect_real.get(pick)
        if pick.random() < self.cfg.data.flip_prob:
            crop = np.ascontiguousarray(crop[:, ::-1])
        img, mask = crop, np.zeros(crop.shape[:2], bool)
        if pick.random() < self.cfg.degrade.p_defects:
            img, mask = add_defects(crop, pick, self.cfg.degrade, self.textures, self.defect_scale(step, slot))
        return {"clean": to_tensor(crop), "degraded": to_tensor(img),
                "mask": torch.from_numpy(mask[None].astype(np.float32))}


class FillSamples(TrainingSamples):
    """The learned fill's samples (``cfg.fill``): ``degraded`` (the aged crop with 1..
    max_defects structured defects, the ``scaled_kinds`` drawn as for a photo up to
    ``defect_scale`` times the crop), ``target`` (the aged crop without them), ``mask``
    (the defects grown by 0..``grow_max`` pixels, in a ``loose_p`` share of the samples by
    up to ``loose_max``: a loosely drawn selection) and ``filled`` (``degraded`` with the
    mask harmonically filled: the network's starting point, as in the product)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg, defects=True)
        lo, hi = cfg.fill.defect_scale
        if not 1.0 <= lo <= hi:
            raise ValueError(f"--fill.defect_scale needs 1 <= low <= high, got {cfg.fill.defect_scale}")
        if not 0 <= cfg.fill.grow_max < cfg.fill.loose_max:
            raise ValueError(f"--fill.grow_max and --fill.loose_max need 0 <= grow_max < loose_max, got "
                             f"{cfg.fill.grow_max}, {cfg.fill.loose_max}")
        unknown = set(cfg.fill.defect_kinds) - set(DEFECT_KINDS)
        if unknown or not cfg.fill.defect_kinds:
            raise ValueError(f"--fill.defect_kinds: unknown {sorted(unknown)} (known: {DEFECT_KINDS})")
        self.degrade_cfg = dataclasses.replace(cfg.degrade, defect_kinds=list(cfg.fill.defect_kinds))

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        step, slot = key
        f = self.cfg.fill
        rng = np.random.default_rng([self.cfg.train.seed, step, slot])
        clean = self.clean_sample(rng)
        aged = to_u8(degrade_unstructured(to_float(clean), rng, self.cfg.degrade, self.textures))
        lo, hi = f.defect_scale
        scale = float(rng.uniform(lo, hi))
        degraded, mask = aged, np.zeros(aged.shape[:2], bool)
        while not mask.any():       # a defect may miss the crop: draw again
            degraded, mask = add_defects(aged, rng, self.degrade_cfg, self.textures,
                                         {k: scale for k in f.scaled_kinds})
        loose = rng.random() < f.loose_p
        grow = rng.integers(f.grow_max + 1, f.loose_max + 1) if loose else rng.integers(0, f.grow_max + 1)
        m = dilate(torch.from_numpy(mask), int(grow))[None].float()
        x = to_tensor(degraded)
        return {"degraded": x, "target": to_tensor(aged), "mask": m,
                "filled": harmonic_fill(x[None], 1 - m[None])[0]}


class StepSampler(Sampler):
    """Yields, for steps ``start..total-1``, this rank's list of (step, slot) keys."""

    def __init__(self, start: int, total: int, batch: int, rank: int = 0) -> None:
        self.start, self.total, self.batch, self.rank = start, total, batch, rank

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.total):
            yield [(step, self.rank * self.batch + j) for j in range(self.batch)]

    def __len__(self) -> int:
        return max(0, self.total - self.start)
