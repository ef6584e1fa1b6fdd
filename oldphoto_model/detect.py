"""Scratch detection: photo in, defect probability map and binary mask out.

``detect(image, model)`` runs the scratch detector (``archs.detector``) over any photo
size in tiles with a halo as wide as the network's receptive field, so the result is
the same as one pass over the whole photo (tested) while memory stays bounded by the
tile size. The probability is the mean over the photo's four mirror images (``VIEWS``:
as is, flipped left-right, top-bottom, both; a scratch is a scratch in any of them,
while a false alarm on texture seldom fires in all four), looked at twice: at the
photo's size and at half of it (``HALF_SIZE``: the large faint brush stamps of a whole
photo look, halved, like those of the training crops), the half-size look counting with
its probability squared, both on the photo with a fixed draw of faint gray noise laid
over it (``DEFAULT_DITHER``: the synthetic defects it learned are noise-free, so without it
a smooth real highlight reads as a hole). The binary mask marks ``prob >= threshold`` (the
weight file's, else ``DEFAULT_THRESHOLD``).

The detector's weight file is separate from the restoration weights (the two are
trained and shipped independently) and follows the same rules (docs/WEIGHTS.md):
a ``torch.save`` dict of plain values and tensors, read with ``weights_only=True``,
written atomically:

    format    "oldphoto-detector-weights"
    version   1
    config    JSON text of DetectorConfig.to_dict()
    metadata  JSON text: provenance, and "threshold" when training chose one
    detector  state dict of ScratchDetector
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

from .archs.detector import DetectorConfig, ScratchDetector
from .errors import InputError
from .netfile import load_network, save_network
from .tiles import run_tiled
from .weights import DEFAULT_DETECTOR as DEFAULT_DETECTOR  # re-exported: the shipped file
from .weights import default_detector_path

if TYPE_CHECKING:
    from .pipeline import Progress, RestoreOptions, Restorer

DETECTOR_FORMAT = "oldphoto-detector-weights"
DETECTOR_VERSION = 1

#: The threshold of a detector whose weight file names none: the training loss's own
#: decision boundary. The shipped file names its own (``metadata["threshold"]``, chosen by
#: ``eval-detect`` for few false alarms); ``model_threshold`` reads it.
DEFAULT_THRESHOLD = 0.5

#: Pixels a detected mask is grown by before a detect-then-restore (on top of the
#: options' own ``grow``): the detector's mask stops short of a scratch's soft edge, which
#: then stays as a faint outline (measured: +0.4 dB overall, +1.5 dB on the defects of the
#: evaluation photos against no growth; 2 px gives no more; docs/MODEL.md).
DETECT_GROW = 1

#: Share of a detect-then-restore run's progress that the detection takes.
DETECT_SHARE = 0.1

#: Mirror images of the photo whose probabilities ``detect`` averages: 4 (the photo, and
#: flipped left-right, top-bottom and both; measured on the synthetic set and the real
#: scans, docs/MODEL.md "Four views") or 1 (one pass; the shipped threshold is chosen
#: for 4, so with 1 it flags more).
DEFAULT_VIEWS = 4

#: Also look at the photo at half its size (box-averaged 2x2; the map bilinearly upsampled
#: back) and keep, per pixel, the larger of the two probabilities, the half-size one raised
#: to ``HALF_POWER``. Measured on the evaluation photos with the shipped file at its 0.99:
#: F1 0.611 -> 0.659, restore with the detected mask +0.11 dB, no more flagged on the real
#: old photos (docs/MODEL.md "Half-size look").
DEFAULT_HALF_SIZE = True
#: The half-size look sees stamps as training did but also skin and pavement as dirt
#: more readily: with the plain probability it marked a face at the shipped threshold;
#: squared, a pixel needs 0.995 there to reach 0.99 and the real photos stay as clean.
HALF_POWER = 2

#: Gaussian noise (sigma in levels of 255, gray, one fixed draw per photo size) laid over
#: the photo before it is looked at: the synthetic defects the detector learned are
#: painted after the photo's grain, flat and noise-free, so a smooth real highlight (sunlit
#: pavement, snow, a blown sky) read as a hole; with the scanner's kind of noise on every
#: region, flatness is no cue. Measured with the shipped file (docs/MODEL.md "Dither"):
#: at 0.98 the held-out real scans' flags fall from 0.178 % to 0.053 % while the defects
#: found fall from 0.558 to 0.550, so the threshold can go from 0.99 to 0.98 (F1 0.655 ->
#: 0.697); 6 and 8 levels gave less. 0 turns it off.
DEFAULT_DITHER = 4.0
#: The noise is a fixed function of the photo's size: the same photo gets the same map
DITHER_SEED = 20261130

#: Output pixels per tile side (rounded down to the network's multiple). With the
#: default detector a 1024^2 tile plus halo needs about 0.4 GB in float32.
DEFAULT_TILE = 1024


def save_detector(model: ScratchDetector, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """Write the detector atomically in the format above (float32)."""
    return save_network(model, path, DETECTOR_FORMAT, DETECTOR_VERSION, "detector", metadata)


def load_detector(path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> ScratchDetector:
    """Load a detector weight file (default: the shipped ``weights/detector.pt``) in eval
    mode; ``model.weights_info`` holds its identity. Problems raise ``WeightsError`` (for a
    missing default file one that says so: ``weights.default_detector_path``)."""
    p = Path(path) if path is not None else default_detector_path()
    return load_network(p, DETECTOR_FORMAT, DETECTOR_VERSION, "detector", "scratch-detector",
                        lambda d: ScratchDetector(DetectorConfig.from_dict(d)), map_location)


def model_threshold(model: ScratchDetector) -> float:
    """The binary threshold a detector's weight file chose (``metadata["threshold"]``, a
    number in 0..1), else ``DEFAULT_THRESHOLD``."""
    info = getattr(model, "weights_info", None)
    t = info.metadata.get("threshold") if info is not None and isinstance(info.metadata, dict) else None
    if isinstance(t, (int, float)) and not isinstance(t, bool) and 0.0 <= t <= 1.0:
        return float(t)
    return DEFAULT_THRESHOLD


def to_network_input(image: np.ndarray) -> torch.Tensor:
    """uint8/uint16 HxW, HxWx1..4 -> float (1, 3, H, W) in [-1, 1]: gray as three equal
    channels, alpha dropped."""
    if not isinstance(image, np.ndarray) or image.dtype not in (np.uint8, np.uint16):
        raise InputError("image must be a uint8 or uint16 numpy array")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 2, 3, 4) or min(image.shape[:2]) < 1:
        raise InputError(f"image shape must be HxW or HxWxC with C in 1..4, got {image.shape}")
    rgb = image[..., :3] if image.shape[2] >= 3 else np.repeat(image[..., :1], 3, -1)
    scale = 255.0 if image.dtype == np.uint8 else 65535.0
    t = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()   # a copy: inputs may be read-only
    return t / (scale / 2) - 1.0


@torch.inference_mode()
def detect_logits(x: torch.Tensor, model: ScratchDetector, tile: int = DEFAULT_TILE,
                  progress: Optional[Callable[[float], None]] = None) -> torch.Tensor:
    """Logits (H, W) of a (1, 3, H, W) input, tile by tile; equal to ``model(x)`` on the
    padded input up to float rounding.

    The input is mirror-padded to the network's multiple once; each tile's output is
    computed from the tile plus a halo of at least the receptive radius, aligned to
    the multiple, and cut at the photo's edges (so border tiles see the same zero
    padding as a single pass)."""
    return run_tiled(model, x, model.config.multiple, model.config.receptive_radius, tile, progress)[0]


def _mirror_mean(x: torch.Tensor, model: ScratchDetector, tile: int,
                 progress: Callable[[float], None], views: int) -> torch.Tensor:
    """Mean of ``sigmoid(detect_logits)`` over the first ``views`` mirror images of ``x``."""
    flips: list[tuple[int, ...]] = [(), (-1,), (-2,), (-2, -1)][:views]
    total = torch.zeros(x.shape[-2:])
    for i, dims in enumerate(flips):
        def part(fraction: float, i: int = i) -> None:
            progress((i + fraction) / len(flips))
        view = x.flip(dims) if dims else x
        p = torch.sigmoid(detect_logits(view, model, tile, part))
        total += p.flip(dims) if dims else p
    return total / len(flips)


def half_size(x: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (1, C, ceil(H/2), ceil(W/2)): 2x2 box means (an odd edge repeated)."""
    h, w = x.shape[-2:]
    x = torch.nn.functional.pad(x, (0, w % 2, 0, h % 2), mode="replicate") if (h % 2 or w % 2) else x
    return torch.nn.functional.avg_pool2d(x, 2)


def dither_noise(h: int, w: int, sigma: float) -> torch.Tensor:
    """(1, 1, h, w) Gaussian noise of ``sigma`` levels of 255 on the network's [-1, 1]
    scale, drawn from a generator seeded with ``DITHER_SEED`` (the same for equal sizes)."""
    g = torch.Generator().manual_seed(DITHER_SEED)
    return torch.randn((1, 1, h, w), generator=g) * (sigma * 2.0 / 255.0)


def detect_probability(x: torch.Tensor, model: ScratchDetector, tile: int = DEFAULT_TILE,
                       progress: Optional[Callable[[float], None]] = None, views: int = DEFAULT_VIEWS,
                       half: bool = DEFAULT_HALF_SIZE, dither: float = DEFAULT_DITHER) -> torch.Tensor:
    """Probability (H, W) of a (1, 3, H, W) input: the mean of ``sigmoid(detect_logits)``
    over the first ``views`` of its mirror images (1: as is; 2: also flipped left-right;
    4: also top-bottom and both), each mapped back before averaging. With ``half``, the
    larger of that and the same mean on ``half_size(x)``, bilinearly upsampled back and
    raised to ``HALF_POWER``. ``dither`` > 0: all of it on ``x`` plus ``dither_noise``
    (clipped to [-1, 1])."""
    if views not in (1, 2, 4):
        raise InputError(f"views must be 1, 2 or 4, got {views}")
    if not 0.0 <= dither <= 64.0:
        raise InputError(f"dither must be in 0..64 levels, got {dither}")
    if dither > 0:
        x = (x + dither_noise(x.shape[-2], x.shape[-1], dither).to(x.dtype)).clamp(-1.0, 1.0)
    # the half-size look costs a quarter of the pixels: a fifth of the progress
    share = 0.8 if half else 1.0

    def report(offset: float, width: float) -> Callable[[float], None]:
        return lambda f: progress(offset + width * f) if progress is not None else None
    prob = _mirror_mean(x, model, tile, report(0.0, share), views)
    if half:
        h, w = x.shape[-2:]
        small = _mirror_mean(half_size(x), model, tile, report(share, 1.0 - share), views)
        up = torch.nn.functional.interpolate(small[None, None], scale_factor=2, mode="bilinear",
                                             align_corners=False)[0, 0, :h, :w]
        prob = torch.maximum(prob, up ** HALF_POWER)
    return prob


def detect(image: np.ndarray, model: ScratchDetector, threshold: Optional[float] = None,
           tile: int = DEFAULT_TILE, progress: Optional[Callable[[float], None]] = None,
           views: int = DEFAULT_VIEWS, half: bool = DEFAULT_HALF_SIZE, dither: float = DEFAULT_DITHER
           ) -> tuple[np.ndarray, np.ndarray]:
    """(probability float32 HxW in [0, 1], mask uint8 HxW: 255 where prob >= threshold).

    ``image``: uint8 or uint16, HxW (gray) or HxWxC (C 1..4; alpha ignored).
    ``threshold``: None takes the weight file's (``model_threshold``).
    ``tile``: output pixels per tile side; memory grows with its square, not with the photo.
    ``progress``: called with the fraction of the work done (it may raise to cancel).
    ``views``: mirror images averaged (``DEFAULT_VIEWS``); ``half``: also look at half size
    (``DEFAULT_HALF_SIZE``); ``dither``: noise laid over the photo first (``DEFAULT_DITHER``
    levels; the shipped threshold is chosen with all three defaults)."""
    if threshold is None:
        threshold = model_threshold(model)
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in 0..1, got {threshold}")
    prob = detect_probability(to_network_input(image), model, tile, progress, views, half, dither).numpy()
    return prob.astype(np.float32), np.where(prob >= threshold, 255, 0).astype(np.uint8)


def restore_detected(restorer: "Restorer", detector: ScratchDetector, image: np.ndarray,
                     options: Optional["RestoreOptions"] = None, progress: Optional["Progress"] = None,
                     threshold: Optional[float] = None, tile: int = DEFAULT_TILE
                     ) -> tuple[np.ndarray, dict[str, Any]]:
    """Restore ``image`` with the mask ``detect`` finds in it (the restore of a photo with
    nothing selected and "find the scratches" asked for), grown by ``DETECT_GROW`` more
    than ``options.grow``. Returns (result, info): ``restorer.restore_with_info``'s info
    plus ``mask`` (the detected uint8 mask, before growing) and ``flagged`` (its share of
    the pixels). ``progress(fraction, stage)``: stage "detect" over the first
    ``DETECT_SHARE``, then the restore's own stages over the rest."""
    from .pipeline import MAX_GROW, RestoreOptions

    def on_tile(fraction: float) -> None:
        if progress is not None:
            progress(DETECT_SHARE * fraction, "detect")

    def on_restore(fraction: float, stage: str) -> None:
        if progress is not None:
            progress(DETECT_SHARE + (1.0 - DETECT_SHARE) * fraction, stage)

    on_tile(0.0)
    _, mask = detect(image, detector, threshold, tile, on_tile)
    options = options or RestoreOptions()
    grown = dataclasses.replace(options, grow=min(MAX_GROW, options.grow + DETECT_GROW))
    out, info = restorer.restore_with_info(image, mask, grown, on_restore)
    return out, dict(info, mask=mask, flagged=float(np.count_nonzero(mask)) / max(1, mask.size))
