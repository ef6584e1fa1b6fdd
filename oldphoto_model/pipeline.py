"""The restore pipeline: numpy uint8 or uint16 image (+ optional selection mask) in, same shape
and dtype out.

``Restorer.restore`` is the whole image contract that the server, the CLI, the
evaluation and the tests all call: the mask rule (threshold, growth), the
network (pre-fill, E_A, T with the partial nonlocal block, G_B, run by the lean
executor), a low-memory retry after an out-of-memory error, the two-band merge with
the scan (its fine structure, and as much of its own tone as asked), and, for "only
the selected area changes", the tone-matched blend.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .archs.fill import FillNet
from .archs.nonlocal_block import dilate
from .bands import SHARPEN, merge
from .config import AttentionOptions
from .device import select_device, select_precision
from .errors import InputError
from .fill import smooth_offset
from .lean import DEFAULT_BAND_ELEMENTS, count_layers, lean_forward
from .learned_fill import refine_fill, shipped_fill
from .levels import STRENGTH as BLACK_POINT
from .levels import lift_blacks
from .model import RestorationModel, mask_to_latent, prefill
from .tone import ToneEstimator, correct_tone, shipped_tone

#: Progress callback: (fraction done in [0, 1], stage name). It may raise (e.g.
#: ``errors.Cancelled``) to stop the restore; the exception propagates unchanged.
Progress = Callable[[float, str], None]

#: Feathered selections: a pixel is a defect when its mask value is at least this
#: (the 50 % contour, where GIMP draws the selection outline).
DEFAULT_MASK_THRESHOLD = 128

#: Smallest side fed to the network (reflect padding needs room).
MIN_SIDE = 16

#: Default share of the tone estimator's correction (docs/MODEL.md: measured on the
#: evaluation set).
AUTO_TONE = 1.0

#: ``Restorer``'s default tone estimator: the shipped one when installed.
SHIPPED = "shipped"

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

#: The image dtypes a restore takes, with their full-scale value (16-bit scans keep
#: their 16 bits: the network works in floats, and the result is rounded only once).
_FULL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}

#: Attention settings of the low-memory retry after an out-of-memory error:
#: small score-matrix chunks and small tiles (same result up to rounding).
LOW_MEMORY_ATTENTION = AttentionOptions(backend="chunked", hole_only=True, chunk_elements=1 << 20, tile=16)

_OOM_TYPES: tuple[type, ...] = (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))


def is_oom(e: BaseException) -> bool:
    """CUDA/CPU allocation failure, whatever type the backend used for it."""
    return isinstance(e, _OOM_TYPES) or (isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


#: The most a defect mask may be grown (``RestoreOptions.grow``), in pixels.
MAX_GROW = 64


@dataclass(frozen=True)
class RestoreOptions:
    """What a person chooses for one restore (the plug-ins' and the CLI's options).

    ``mask_threshold``: selection values >= this are defects (128 = GIMP's outline).
    ``grow``: the defect mask is grown by this many pixels first (selections drawn
    tight leave a scratch's soft edge outside).
    ``restrict_to_mask``: only the selected pixels change (a feathered selection
    blends); needs a mask.
    ``match_tone``: with ``restrict_to_mask``, the fill takes the tone and colour of
    the unrestored surroundings (the low-frequency difference between the photo and
    the restored result, measured around the selection, is added inside it), so no
    tinted patch or seam appears.
    ``detail``: 0..1, how much of the photo's own fine structure (edges and texture
    that stand above its noise) replaces the network's softer one outside the mask.
    ``tone``: 0..1, how much of the network's tone and colour correction is applied
    outside the mask (0 keeps the photo's own tone; the fills are restored either way).
    ``sharpen``: 0..2, how much the photo's strong edges are steepened on top of
    ``detail`` (0: as sharp as the scan's fine band after denoising; the default
    gives back the sharpness the denoising takes).
    ``black_point``: 0..1, how much of a faded scan's lifted black level is taken out
    (``oldphoto_model.levels``; whole photo only: with ``restrict_to_mask`` the fill
    must match the untouched surroundings).
    ``auto_tone``: 0..1, how much of the tone estimator's colour correction
    (``oldphoto_model.tone``: fading, tint, lifted blacks, lost contrast) the scan's tone
    gets before the merge (whole photo only, like ``black_point``; without a tone
    estimator it does nothing).
    ``learned_fill``: the defects' fill is the learned fill's refinement of their
    harmonic fill (``oldphoto_model.learned_fill``; without a learned-fill file, or off:
    the harmonic fill), in both modes.
    ``oldphoto_model.bands`` has the two-band merge behind both.
    """

    mask_threshold: int = DEFAULT_MASK_THRESHOLD
    grow: int = 0
    restrict_to_mask: bool = False
    match_tone: bool = True
    detail: float = 1.0
    tone: float = 0.25
    sharpen: float = SHARPEN
    black_point: float = BLACK_POINT
    auto_tone: float = AUTO_TONE
    learned_fill: bool = True

    def __post_init__(self) -> None:
        if not 0 <= int(self.mask_threshold) <= 255:
            raise InputError(f"mask_threshold must be in 0..255, got {self.mask_threshold}")
        if not 0 <= int(self.grow) <= MAX_GROW:
            raise InputError(f"grow must be in 0..{MAX_GROW} pixels, got {self.grow}")
        if not 0.0 <= float(self.detail) <= 1.0:
            raise InputError(f"detail must be in 0..1, got {self.detail}")
        if not 0.0 <= float(self.tone) <= 1.0:
            raise InputError(f"tone must be in 0..1, got {self.tone}")
        if not 0.0 <= float(self.sharpen) <= 2.0:
            raise InputError(f"sharpen must be in 0..2, got {self.sharpen}")
        if not 0.0 <= float(self.black_point) <= 1.0:
            raise InputError(f"black_point must be in 0..1, got {self.black_point}")
        if not 0.0 <= float(self.auto_tone) <= 1.0:
            raise InputError(f"auto_tone must be in 0..1, got {self.auto_tone}")


def binarize_mask(mask: np.ndarray, threshold: int = DEFAULT_MASK_THRESHOLD) -> np.ndarray:
    """uint8 selection (0-255, possibly feathered) -> bool defect mask: value >= threshold."""
    return np.asarray(mask) >= threshold


def _check(image: np.ndarray, mask: Optional[np.ndarray]) -> tuple[np.ndarray, Optional[np.ndarray]]:
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array, got {type(image).__name__}")
    if image.dtype not in _FULL_SCALE:
        raise InputError(f"image dtype must be uint8 or uint16, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 2, 3, 4)):
        raise InputError(f"image shape must be HxW or HxWxC with C in 1..4, got {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"image is empty: {image.shape}")
    if image.ndim == 2:
        image = image[:, :, None]
    if mask is not None:
        if not isinstance(mask, np.ndarray) or mask.dtype != np.uint8:
            raise InputError("mask must be a uint8 numpy array")
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.shape != image.shape[:2]:
            raise InputError(f"mask shape {mask.shape} does not match image size {image.shape[:2]}")
    return image, mask


def _pad_amounts(size: int, multiple: int) -> int:
    target = max(MIN_SIDE, -(-size // multiple) * multiple)
    return target - size


def _pad(t: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Pad bottom/right by reflection; replicate where the image is too small to reflect."""
    if ph == 0 and pw == 0:
        return t
    h, w = t.shape[-2:]
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(t, (0, pw, 0, ph), mode=mode)


class Restorer:
    """A model placed on a device at a precision, ready to restore many photos."""

    def __init__(self, model: RestorationModel, device: str | torch.device = "auto",
                 precision: str = "auto", attention: AttentionOptions = AttentionOptions(),
                 band_elements: int = DEFAULT_BAND_ELEMENTS,
                 tone: Optional[ToneEstimator] | str = SHIPPED,
                 fill: Optional[FillNet] | str = SHIPPED) -> None:
        """``tone``: the tone estimator of the ``auto_tone`` option; ``fill``: the learned
        fill of the ``learned_fill`` option. ``"shipped"`` (the default) loads the
        installed one when there is one, None restores without."""
        self.band_elements = band_elements
        for name, value in (("tone", tone), ("fill", fill)):
            if isinstance(value, str) and value != SHIPPED:
                raise ValueError(f"{name} must be a network, None or {SHIPPED!r}, got {value!r}")
        self.tone: Optional[ToneEstimator] = shipped_tone() if isinstance(tone, str) else tone
        self.fill: Optional[FillNet] = shipped_fill() if isinstance(fill, str) else fill
        self.device = select_device(device)
        self.dtype = select_precision(self.device, precision)
        self.attention = attention
        # NHWC: oneDNN / cuDNN's fast kernels (3.6x on the 3-channel first conv in fp32 here);
        # Module.to takes memory_format, torch's overloads of it do not list it
        on_device = model.eval().to(self.device)
        self.model: RestorationModel = on_device.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.multiple = model.config.multiple

    def _autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @torch.inference_mode()
    def restore_tensor(self, x: torch.Tensor, defect: Optional[torch.Tensor],
                       progress: Optional[Progress] = None, prefilled: bool = False) -> torch.Tensor:
        """x: (1, 3, H, W) in [-1, 1] with H, W multiples of the model's multiple;
        defect: (1, 1, H, W) in {0, 1} or None; ``prefilled``: x went through
        ``prefill`` already. Returns float32 (1, 3, H, W)."""
        report = progress or (lambda f, s: None)
        m = self.model

        def stage(module, t, lo, hi, name):
            # per-layer progress: finer bars, and a cancel raised by ``progress`` lands within a layer
            n, done = count_layers(module), [0]

            def tick():
                done[0] += 1
                report(lo + (hi - lo) * min(1.0, done[0] / n), name)
            report(lo, name)
            return lean_forward(module, t, self.band_elements, tick)

        x = x.to(self.device)
        if defect is not None and not prefilled:
            x = prefill(x, defect.to(self.device))
        x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            z = stage(m.encoder_a.net, x, 0.0, 0.15, "encode")
            del x
            lat = None
            if defect is not None and bool(defect.any()):
                lat = mask_to_latent(defect.to(self.device), self.multiple)
            spans = iter([(0.15, 0.25, "map"), (0.25, 0.6, "map")])

            def run(module, t):
                lo, hi, name = next(spans)
                return stage(module, t, lo, hi, name)
            _, fused = m.mapping.forward_features(
                z, lat, self.attention, run, lambda frac: report(0.6 + 0.15 * frac, "map"))
            del z
            w = stage(m.mapping.tail, fused, 0.75, 0.85, "map-tail")
            del fused
            y = stage(m.decoder_b.net, w, 0.85, 1.0, "decode")
        report(1.0, "done")
        return y.float()

    def _network(self, x: torch.Tensor, defect: Optional[torch.Tensor],
                 progress: Optional[Progress]) -> tuple[torch.Tensor, bool]:
        """``restore_tensor`` of a pre-filled x, with one low-memory retry after an
        out-of-memory error. Returns (result, whether the low-memory path ran)."""
        try:
            return self.restore_tensor(x, defect, progress, prefilled=True), False
        except Exception as e:
            if not is_oom(e):
                raise
        # retried outside the except block, so the failed attempt's tensors (held by
        # the traceback) are freed first
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        if progress is not None:
            progress(0.0, "low-memory retry")
        saved, self.attention = self.attention, LOW_MEMORY_ATTENTION
        try:
            return self.restore_tensor(x, defect, progress, prefilled=True), True
        finally:
            self.attention = saved

    def restore(self, image: np.ndarray, mask: Optional[np.ndarray] = None,
                options: RestoreOptions = RestoreOptions(),
                progress: Optional[Progress] = None) -> np.ndarray:
        """Restore a uint8 or uint16 image (HxW, HxWx1 gray, HxWx2 gray+alpha, HxWx3 RGB,
        HxWx4 RGBA). ``mask`` (uint8 HxW, 255 = defect) marks scratches to inpaint
        (``options`` says how it is read and whether only it changes). Returns the
        same shape and dtype: gray stays gray (ITU-R 601 luma of the result), alpha
        is copied."""
        return self.restore_with_info(image, mask, options, progress)[0]

    def restore_with_info(self, image: np.ndarray, mask: Optional[np.ndarray] = None,
                          options: RestoreOptions = RestoreOptions(),
                          progress: Optional[Progress] = None) -> tuple[np.ndarray, dict]:
        """``restore`` plus facts about the run: ``{"low_memory": bool}``."""
        orig_shape = np.shape(image)
        image, mask = _check(image, mask)
        h, w, c = image.shape
        color = image[:, :, :3] if c >= 3 else np.repeat(image[:, :, :1], 3, axis=2)
        # a copy when the caller's buffer is read-only (torch warns on such arrays)
        color = np.ascontiguousarray(color) if color.flags.writeable else np.array(color)
        full = _FULL_SCALE[image.dtype]
        x = torch.from_numpy(color.astype(np.float32)).permute(2, 0, 1)[None] * (2.0 / full) - 1.0
        ph, pw = _pad_amounts(h, self.multiple), _pad_amounts(w, self.multiple)
        defect = None
        if mask is not None:
            binary = dilate(torch.from_numpy(binarize_mask(mask, options.mask_threshold)), options.grow)
            if bool(binary.any()):
                defect = binary[None, None].float()
        # once for the network and the merge: the scratch's pixels are no detail and must not count
        filled = prefill(x, defect)
        if defect is not None and self.fill is not None and options.learned_fill:
            filled = refine_fill(filled, x, defect, self.fill)
        y, low_memory = self._network(_pad(filled, ph, pw), None if defect is None else _pad(defect, ph, pw),
                                      progress)
        y = y[:, :, :h, :w].cpu()
        selection = mask if options.restrict_to_mask else None
        intact = None if defect is None else 1 - defect
        # the whole photo's tone: the scan's, corrected by the estimator (never in a
        # selection, whose fill must match the untouched scan around it)
        scan = filled
        if selection is None and self.tone is not None and options.auto_tone > 0:
            scan = correct_tone(filled, intact, self.tone, options.auto_tone)
        if options.detail > 0 or options.tone < 1:
            y = merge(scan, y, defect, options.tone, options.detail, options.sharpen)
        if selection is not None:
            y = blend_into(x, y, selection, defect, options.match_tone, filled)
        else:
            y = lift_blacks(y, scan, intact, options.black_point)
        rgb = (y[0].permute(1, 2, 0).numpy() + 1.0) * (full / 2.0)
        if c < 3:
            rgb = (rgb @ _LUMA)[:, :, None]
        out_color = np.clip(np.rint(rgb), 0, full).astype(image.dtype)
        out = np.empty_like(image)
        nc = out_color.shape[2]
        out[:, :, :nc] = out_color
        if c in (2, 4):
            out[:, :, nc:] = image[:, :, nc:]   # alpha untouched
        return out.reshape(orig_shape), {"low_memory": low_memory}


def blend_into(x: torch.Tensor, y: torch.Tensor, mask: np.ndarray, defect: Optional[torch.Tensor],
               match_tone: bool, filled: Optional[torch.Tensor] = None) -> torch.Tensor:
    """"Only the selected area changes": x * (1 - a) + y' * a, where a is the
    selection (mask / 255, so feathering blends; a grown defect counts fully).

    With ``match_tone`` y' continues the unrestored surroundings: on the defects it is
    ``filled`` (the scan's harmonic fill, ``prefill``: made of those surroundings
    alone), elsewhere the restored y shifted by ``smooth_offset`` to the scan's tone.
    Without it, y' is the restored y as it is."""
    a = torch.from_numpy(np.asarray(mask, np.float32) / 255.0)[None, None]
    if defect is not None:
        a = torch.maximum(a, defect)
        if match_tone:
            y = y + smooth_offset(x, y, 1 - defect)
            if filled is not None:
                y = torch.where(defect > 0.5, filled, y)
    return x + (y - x) * a


def restore(image: np.ndarray, mask: Optional[np.ndarray] = None, *, model: RestorationModel,
            device: str | torch.device = "auto", precision: str = "auto",
            options: RestoreOptions = RestoreOptions(),
            progress: Optional[Progress] = None,
            attention: AttentionOptions = AttentionOptions()) -> np.ndarray:
    """One-call restore; see ``Restorer.restore``. For many photos keep a ``Restorer``."""
    return Restorer(model, device, precision, attention).restore(image, mask, options, progress)
