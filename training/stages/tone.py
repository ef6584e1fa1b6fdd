"""The tone estimator stage (``python -m training tone``, oldphoto_model.archs.tone): a
global colour matrix that undoes fading, tint, lifted blacks and lost contrast.

    views    a training photo (the cache's photos, or procedural ones with
             --data.synthetic): a random crop of 50-100 % of each side, flipped, made
             gray or sepia like the restoration stages' clean crops, shrunk to
             ``tone.view`` px on its long side
    pairs    the view through ``degrade()`` (the whole chain, structured defects
             included); thumbnails (oldphoto_model.tone.thumbnail, the restore's own:
             intact pixels only) of the degraded and of the clean view. ``tone.samples``
             pairs make the bank, built once in chunk files (RUN_DIR/tone/bank/), so a
             step costs a few milliseconds instead of a degradation per sample
    loss     MSE between the degraded thumbnail through the estimated matrix and the
             clean thumbnail; the last ``tone.holdout`` pairs are held out and reported
    export   RUN_DIR/tone.pt (oldphoto_model.tone.save_tone)

Runs in the shared loop (training/stages/loop.py): resumable (finished bank chunks are
kept, the fit checkpoints like every stage), DDP, progress bar.
"""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from oldphoto_model.archs.tone import ToneConfig, ToneEstimator, apply_colour_matrix, tone_features
from oldphoto_model.atomic import atomic_write
from oldphoto_model.tone import load_tone, save_tone, thumbnail

from ..config import Config
from ..data.dataset import load_textures, synthetic_photos, to_gray_or_sepia
from ..data.degradations import degrade
from ..data.sources import train_photo_paths
from ..dist import DistContext, barrier
from .common import trained_network, wrap

#: Long side the training photos are decoded at (views are cropped from it).
LOAD_SIDE = 448


def tone_config(cfg: Config) -> ToneConfig:
    return ToneConfig(hidden=cfg.tone.hidden, thumb=cfg.tone.thumb)


def training_photos(cfg: Config) -> list[np.ndarray]:
    """uint8 photos, long side at most LOAD_SIDE."""
    if cfg.data.synthetic:
        return synthetic_photos(max(2, cfg.data.synthetic_count), 2 * cfg.tone.view, cfg.train.seed)
    paths = train_photo_paths(cfg.data)
    if not paths:
        raise FileNotFoundError(f"no training photos in {Path(cfg.data.cache_dir) / 'photos'}: run "
                                "`python -m training prepare-data` first (or pass --data.synthetic)")
    out = []
    for p in paths:
        im = Image.open(p)
        im.draft("RGB", (LOAD_SIDE, LOAD_SIDE))          # JPEG: decode at a fraction of the size
        out.append(long_side(np.asarray(im.convert("RGB")), LOAD_SIDE, shrink_only=True))
    return out


def long_side(a: np.ndarray, side: int, shrink_only: bool = False) -> np.ndarray:
    """uint8 HxWx3 resized (box filter) so that its long side is ``side``."""
    s = side / max(a.shape[:2])
    if shrink_only and s >= 1:
        return a
    size = (max(8, round(a.shape[1] * s)), max(8, round(a.shape[0] * s)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize(size, Image.Resampling.BOX))


def make_pair(photo: np.ndarray, rng: np.random.Generator, cfg: Config, textures) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, clean) uint8 thumbnails (3, t, t) of one random view of ``photo``."""
    h, w = photo.shape[:2]
    f = rng.uniform(0.5, 1.0)
    ch, cw = max(8, int(h * f)), max(8, int(w * f))
    y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    view = photo[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < cfg.data.flip_prob:
        view = view[:, ::-1]
    view = long_side(view, cfg.tone.view)
    clean = np.ascontiguousarray(to_gray_or_sepia(view, rng, cfg.data.gray_prob, cfg.data.sepia_prob))
    degraded, _, mask = degrade(clean, int(rng.integers(2 ** 63)), cfg.degrade, textures, defects=True)
    t = cfg.tone.thumb

    def thumb(a: np.ndarray, known: torch.Tensor | None) -> np.ndarray:
        x = torch.from_numpy(np.array(a)).permute(2, 0, 1)[None].float() / 255
        return (thumbnail(x, known, t)[0].clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return thumb(degraded, torch.from_numpy(~mask)[None, None].float()), thumb(clean, None)


_PHOTOS: list[np.ndarray] = []     # a bank worker's photos, decoded once per process


def make_chunk(cfg: Config, index: int, n: int) -> dict[str, torch.Tensor]:
    """``n`` pairs of bank chunk ``index`` (seeded by it alone: any worker, same chunk)."""
    torch.set_num_threads(1)
    if not _PHOTOS:
        _PHOTOS.extend(training_photos(cfg))
    textures = load_textures(cfg.data.cache_dir)
    rng = np.random.default_rng([cfg.train.seed, 7707, index])
    pairs = [make_pair(_PHOTOS[int(rng.integers(len(_PHOTOS)))], rng, cfg, textures) for _ in range(n)]
    return {"degraded": torch.from_numpy(np.stack([p[0] for p in pairs])),
            "clean": torch.from_numpy(np.stack([p[1] for p in pairs]))}


def build_bank(cfg: Config, folder: Path, log=print) -> dict[str, torch.Tensor]:
    """The whole bank: missing chunk files are made (``data.num_workers`` processes)
    and written atomically, present ones read back."""
    folder.mkdir(parents=True, exist_ok=True)
    n, size = cfg.tone.samples, cfg.tone.chunk
    chunks = [(i, min(size, n - i * size)) for i in range(math.ceil(n / size))]
    missing = [(i, k) for i, k in chunks if not (folder / f"chunk_{i:04d}.pt").is_file()]
    if missing:
        log(f"building the bank: {len(missing)} of {len(chunks)} chunks of {size} pairs to make")

        def save(i: int, chunk: dict[str, torch.Tensor]) -> None:
            atomic_write(folder / f"chunk_{i:04d}.pt", lambda f: torch.save(chunk, f))
            log(f"bank chunk {i + 1}/{len(chunks)} written")
        if cfg.data.num_workers > 1:
            with ProcessPoolExecutor(cfg.data.num_workers) as pool:
                futures = {i: pool.submit(make_chunk, cfg, i, k) for i, k in missing}
                for i, fut in futures.items():
                    save(i, fut.result())
        else:
            for i, k in missing:
                save(i, make_chunk(cfg, i, k))
    parts = [torch.load(folder / f"chunk_{i:04d}.pt", weights_only=True) for i, _ in chunks]
    return {k: torch.cat([p[k] for p in parts]) for k in ("degraded", "clean")}


def train_count(cfg: Config, bank: dict[str, torch.Tensor]) -> int:
    """Pairs the fit uses: all but the last ``tone.holdout`` of the bank."""
    return max(1, len(bank["clean"]) - cfg.tone.holdout)


class BankSamples(Dataset):
    """``dataset[(step, slot)]``: a random training pair of the bank (floats in [0, 1])."""

    def __init__(self, bank: dict[str, torch.Tensor], n_train: int, seed: int) -> None:
        self.bank, self.n_train, self.seed = bank, n_train, seed

    def __len__(self) -> int:
        return self.n_train

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        i = int(np.random.default_rng([self.seed, key[0], key[1]]).integers(self.n_train))
        return {k: v[i].float() / 255 for k, v in self.bank.items()}


def tone_loss(net: torch.nn.Module, degraded: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(apply_colour_matrix(degraded, net(degraded)), clean)


class ToneStage:
    """The estimator, its optimiser and schedule; the loop calls ``train_step`` and ``sample_rows``."""

    def __init__(self, cfg: Config, ctx: DistContext, log=print) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, "tone"
        T = cfg.tone
        folder = Path(cfg.train.run_dir) / "tone" / "bank"
        # made once, by the main rank; the others read the finished chunks
        bank = build_bank(cfg, folder, log) if ctx.is_main else None
        barrier(ctx)
        if bank is None:
            bank = build_bank(cfg, folder, log)
        self.n_train = train_count(cfg, bank)
        self.bank = bank
        self.net = ToneEstimator(tone_config(cfg)).to(ctx.device)
        # the features' normalisation: the training pairs' own statistics, stored with the weights
        train = bank["degraded"][:self.n_train]
        f = torch.cat([tone_features(train[i:i + 1000].float() / 255) for i in range(0, self.n_train, 1000)])
        net: ToneEstimator = self.net
        net.feature_mean.copy_(f.mean(0))
        net.feature_std.copy_(f.std(0).clamp_min(1e-4))
        log(f"tone estimator: hidden {T.hidden}, thumbnail {T.thumb}, {len(bank['clean'])} pairs "
            f"({T.holdout} held out), {sum(p.numel() for p in self.net.parameters()) / 1e3:.0f} k parameters")
        self.modules = {"tone": self.net}
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=T.lr, weight_decay=T.weight_decay)
        self.optimizers = {"g": self.opt}          # "g": the loop logs this optimiser's learning rate
        self.schedulers = {"g": torch.optim.lr_scheduler.OneCycleLR(self.opt, T.lr, total_steps=max(2, T.steps),
                                                                    pct_start=0.05)}
        self.net_ddp = wrap(self.net, ctx)

    def dataset(self) -> BankSamples:
        return BankSamples(self.bank, self.n_train, self.cfg.train.seed)

    def train_step(self, batch: dict[str, torch.Tensor], amp) -> dict[str, float]:
        loss = tone_loss(self.net_ddp, batch["degraded"].contiguous(), batch["clean"].contiguous())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.schedulers["g"].step()
        return {"mse": float(loss.detach())}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Degraded | corrected | clean thumbnail, per sample (images in [-1, 1])."""
        x, c = batch["degraded"].contiguous(), batch["clean"]
        y = apply_colour_matrix(x, self.net(x)).clamp(0, 1)
        return [[x[i] * 2 - 1, y[i] * 2 - 1, c[i] * 2 - 1] for i in range(min(4, len(x)))]


def held_out_mse(net: ToneEstimator, bank: dict[str, torch.Tensor], n_train: int) -> tuple[float, float]:
    """(MSE of the corrected, MSE of the uncorrected) held-out degraded thumbnails."""
    x, c = bank["degraded"][n_train:].float() / 255, bank["clean"][n_train:].float() / 255
    if not len(x):
        return float("nan"), float("nan")
    with torch.no_grad():
        return float(tone_loss(net, x, c)), float(F.mse_loss(x, c))


def export_tone(cfg: Config, out: str | Path | None = None, log=print) -> Path:
    """Write the trained estimator of ``RUN_DIR/tone/last.pt`` to ``out`` (default
    ``RUN_DIR/tone.pt``), report its held-out error and load it back through the product's loader."""
    run = Path(cfg.train.run_dir)
    net, step = trained_network(cfg, "tone", "tone", ToneEstimator(tone_config(cfg)))
    bank = build_bank(cfg, run / "tone" / "bank", log)
    fit, before = held_out_mse(net, bank, train_count(cfg, bank))
    log(f"held-out thumbnails: MSE {fit:.5f} corrected, {before:.5f} as degraded "
        f"({10 * math.log10(before / fit) if fit > 0 else float('inf'):+.2f} dB)")
    path = save_tone(net, Path(out or run / "tone.pt"), metadata={
        "purpose": "tone estimator", "preset": cfg.preset, "steps": step, "pairs": cfg.tone.samples,
        "held_out_mse": fit, "held_out_mse_uncorrected": before,
        "training": "python -m training tone (synthetic fading of training/data/degradations.py)"})
    load_tone(path)
    return path
