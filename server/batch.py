"""Image files for ``python -m server restore`` and ``demo``: reading, checking an
output path before any work, atomic writing, and restoring many photos (folders,
globs) with progress, skipping, resuming and a failure summary.

Every path problem is found before the first photo is restored, and every
message names the path. Results are written with oldphoto_model.atomic: a kill
never leaves a half-written photo, so running the same command again resumes.
"""
from __future__ import annotations

import glob
import io
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from oldphoto_model.atomic import DestinationExists, atomic_write

_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
#: 16-bit colour (not a Pillow mode: Pillow reads and writes colour in 8 bits only), read
#: and written through OpenCV when it is installed
_DEEP_COLOUR = {"RGB;16": 3, "RGBA;16": 4}
#: output formats that store 16 bits per channel
_DEEP_FORMATS = ("PNG", "TIFF")
_GLOB_CHARS = "*?["
#: a restore: (image H x W x C, mask H x W or None, progress(fraction, stage), should_cancel())
#: -> (result array, where it ran)
RestoreFn = Callable[[Any, Any, Callable[[float, str], None], Callable[[], bool]], "tuple[Any, str]"]


class PathProblem(ValueError):
    """An input or output path that cannot be used; the message names it."""


def _note(msg: str) -> None:
    print(f"oldphoto-server: {msg}", file=sys.stderr, flush=True)


# -- reading ---------------------------------------------------------------------------------
def _open(path: str):
    """A Pillow image, its header read (pixels not yet); PathProblem for a non-image."""
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        raise PathProblem(f"{path}: not an image file Pillow can read") from None


#: Pillow's 16-bit gray modes ("I": 32-bit integers, what some readers give 16-bit gray as).
_DEEP_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def bits_per_channel(im: Any) -> int:
    """Bits per channel in the file: 16 for 16-bit gray and for the 16-bit RGB(A) that
    Pillow unpacks to 8 bits as it reads (its tile's raw mode says so); 32 for float; else 8.
    Ask before ``load()``, which forgets the tiles."""
    if im.mode in _DEEP_GRAY:
        return 16
    if im.mode == "F":
        return 32
    for tile in getattr(im, "tile", None) or ():
        args = tile[3] if isinstance(tile, tuple) and len(tile) > 3 else getattr(tile, "args", None)
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        if isinstance(raw, str) and ";16" in raw:
            return 16
    return 8


def _cv2() -> Any:
    """OpenCV when installed (the ``eval`` extra), else None: the reader and writer of 16-bit colour."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def holds_16bit(path: Path) -> bool:
    """Does the output file's format store 16 bits per channel (PNG, TIFF)?"""
    try:
        return output_format(Path(path)) in _DEEP_FORMATS
    except PathProblem:
        return False


def _target_mode(im: Any, path: str, keep_16bit: bool = False) -> str:
    """The mode an image is restored in: its own when the model takes it, else an 8-bit
    conversion. With ``keep_16bit`` (the restore takes uint16 and the output stores 16
    bits) 16-bit gray stays 16-bit ("I;16") and 16-bit colour too ("RGB;16", "RGBA;16")
    when OpenCV is there to read it; otherwise both are 8-bit (Pillow reads 16-bit
    colour as 8 bits). ValueError for floating-point images."""
    mode = im.mode
    if mode in ("RGB", "RGBA") and keep_16bit and bits_per_channel(im) == 16 and _cv2() is not None:
        return mode + ";16"
    if mode in _MODES:
        return mode
    if mode in _DEEP_GRAY:
        return "I;16" if keep_16bit else "L"
    if mode == "F":
        raise ValueError(f"{path}: 32-bit floating-point images are not supported; save it as 8 or "
                         "16 bits per channel")
    has_alpha = mode in ("PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    return ("RGBA" if has_alpha else "RGB") if mode != "1" else "L"


def peek_mode(path: str, keep_16bit: bool = False) -> str:
    """The mode ``read_image`` will give, from the file's header only (cheap)."""
    with _open(path) as im:
        return _target_mode(im, path, keep_16bit)


def _gray16(im: Any, path: str) -> Any:
    """A 16-bit gray image as a uint16 array (ValueError for values beyond 16 bits)."""
    import numpy as np
    a = np.asarray(im)
    if a.size and (int(a.min()) < 0 or int(a.max()) > 65535):
        raise ValueError(f"{path}: {im.mode} image with values outside 0..65535; save it as 8 or 16 bits")
    return a.astype(np.uint16)


def _swap_red_blue(a: Any) -> Any:
    """RGB(A) <-> OpenCV's BGR(A) (its own inverse)."""
    return a[:, :, [2, 1, 0, 3][:a.shape[2]]]


def _read_colour16(path: str, channels: int) -> Any:
    """A 16-bit RGB(A) file as uint16 H x W x C, through OpenCV (which gives BGR(A))."""
    import numpy as np
    cv2 = _cv2()
    a = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if a is None or a.dtype != np.uint16 or a.ndim != 3 or a.shape[2] != channels:
        raise ValueError(f"{path}: OpenCV could not read it as 16-bit colour with {channels} channels")
    return np.ascontiguousarray(_swap_red_blue(a))


def read_image(path: str, keep_16bit: bool = False):
    """-> (array H x W x C, mode, save kwargs that keep metadata): uint8, or with
    ``keep_16bit`` uint16 for 16-bit gray (mode "I;16") and for 16-bit colour when
    OpenCV is installed ("RGB;16", "RGBA;16"). 8-bit modes other than L/LA/RGB/RGBA are
    converted (with a note); 16-bit photos restored in 8 bits say so and why; floating
    point is refused."""
    import numpy as np
    from PIL import Image
    im = _open(path)
    bits = bits_per_channel(im)
    target = _target_mode(im, path, keep_16bit)
    if target in _DEEP_COLOUR:
        im.close()
        _note(f"note: {path} has 16 bits per channel; restored in 16 bits")
        return _read_colour16(path, _DEEP_COLOUR[target]), target, {}
    im.load()
    keep = {k: im.info[k] for k in ("icc_profile", "dpi") if k in im.info}
    if target == "I;16":
        _note(f"note: {path} has 16 bits per channel; restored in 16 bits")
        return np.ascontiguousarray(_gray16(im, path)[:, :, None]), target, keep
    if bits > 8:
        why = ("the result's format stores 8 bits" if not keep_16bit
               else "Pillow reads 16-bit color as 8 bits; install opencv-python-headless to keep 16 bits"
               if im.mode not in _DEEP_GRAY else "")
        _note(f"note: {path} has 16 bits per channel; restored in 8 bits (the result is an 8-bit "
              f"{target} image{'; ' + why if why else ''})")
    elif target != im.mode:
        _note(f"note: {path} is mode {im.mode}; restoring it as {target}")
    if im.mode in _DEEP_GRAY:   # scaled: Pillow's own convert clips at 255
        im = Image.fromarray(np.rint(_gray16(im, path) / 257.0).astype(np.uint8), mode="L")
    elif target != im.mode:
        im = im.convert(target)
    arr = np.array(im, dtype=np.uint8)    # a writable copy (the pipeline makes tensors of it)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr), im.mode, keep


def read_mask(path: str, size: "tuple[int, int]"):
    """A defect mask file as uint8 H x W (white = defect); ValueError unless it is ``size`` (w, h)."""
    import numpy as np
    from PIL import Image
    m = Image.open(path)
    if m.size != tuple(size):
        raise ValueError(f"mask {path} is {m.size[0]}x{m.size[1]}, the image is {size[0]}x{size[1]}")
    return np.ascontiguousarray(np.asarray(m.convert("L"), dtype=np.uint8))


# -- checking and writing an output ------------------------------------------------------------
def output_format(path: Path) -> str:
    """Pillow's format name for ``path``'s extension; PathProblem naming the path otherwise."""
    from PIL import Image
    Image.init()
    ext = path.suffix.lower()
    if not ext:
        raise PathProblem(f"{path}: no file extension, so no image format; end the name in .png, .jpg or .tif")
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise PathProblem(f"{path}: Pillow cannot write {ext!r} files; end the name in .png, .jpg or .tif")
    return fmt


def _save_kwargs(path: Path, fmt: str, mode: str, keep: dict) -> dict:
    """Encoder options; PathProblem when the format cannot hold the image (alpha into JPEG)."""
    kw = dict(keep)
    if fmt == "JPEG":
        if mode in ("LA", "RGBA"):
            raise PathProblem(f"{path}: JPEG cannot store the alpha channel of a {mode} image; "
                              "write PNG or TIFF")
        kw["quality"] = 95
    return kw


def check_output(path: Path, overwrite: bool, mode: Optional[str] = None, source: Optional[Path] = None) -> str:
    """Everything about an output file that can be known before restoring: its folder
    exists and is writable, it is not a folder, it does not exist (unless ``overwrite``),
    its extension names a format Pillow writes and, given the image ``mode``, that the
    format can hold it. Returns the format; raises PathProblem naming the path."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise PathProblem(f"{path} is a folder; give a file name such as {path / 'restored.png'}")
    parent = path.parent
    if not parent.is_dir():
        raise PathProblem(f"{path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PathProblem(f"{path}: no permission to write into {parent}")
    if os.path.lexists(path) and not overwrite:
        if source is not None and path.exists() and os.path.samefile(source, path):
            raise PathProblem(f"{path} is the input file: choose another OUT or pass --overwrite")
        raise PathProblem(f"{path} already exists: choose another OUT or pass --overwrite to replace it")
    fmt = output_format(path)
    if mode in _DEEP_COLOUR:
        if fmt not in _DEEP_FORMATS:
            raise PathProblem(f"{path}: {fmt} cannot store 16-bit colour; write PNG or TIFF")
    elif mode is not None:
        from PIL import Image
        kw = _save_kwargs(path, fmt, mode, {})
        try:   # a 1-pixel trial: formats that cannot hold this mode say so now, not after the work
            Image.new(mode, (1, 1)).save(io.BytesIO(), format=fmt, **kw)
        except (OSError, ValueError, KeyError) as e:
            raise PathProblem(f"{path}: {fmt} cannot store a {mode} image ({e}); write PNG or TIFF") from None
    return fmt


def write_image(path: str, arr, mode: str, keep: dict, overwrite: bool = False) -> None:
    """Write ``arr`` (H x W x C) in ``mode`` atomically; the format comes from the file name.
    An existing file is replaced only with ``overwrite`` (DestinationExists otherwise)."""
    from PIL import Image
    p = Path(path)
    fmt = output_format(p)
    if mode in _DEEP_COLOUR:
        ok, data = _cv2().imencode(".png" if fmt == "PNG" else ".tif", _swap_red_blue(arr))
        if not ok:
            raise OSError(f"{path}: OpenCV could not encode the 16-bit result")
        atomic_write(p, lambda f: f.write(data.tobytes()), overwrite=overwrite, make_parents=False)
        return
    kw = _save_kwargs(p, fmt, mode, keep)
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)   # the mode follows the array
    if img.mode != mode:
        img = img.convert(mode)
    atomic_write(p, lambda f: img.save(f, format=fmt, **kw), overwrite=overwrite, make_parents=False)


# -- planning a batch ------------------------------------------------------------------------------
@dataclass
class Job:
    """One photo to restore: where from, where to, and its mask file (or None)."""

    src: Path
    dst: Path
    mask: Optional[Path] = None


def is_image_name(path: Path) -> bool:
    """Does the extension belong to an image format Pillow reads?"""
    from PIL import Image
    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    return fmt is not None and fmt in Image.OPEN


def _expand(spec: str, recursive: bool) -> "list[tuple[Path, Path]]":
    """An input argument -> [(photo, its path relative to what was named)]."""
    p = Path(spec)
    if any(ch in spec for ch in _GLOB_CHARS) and not p.exists():
        hits = sorted(Path(h) for h in glob.glob(spec, recursive=True))
        files = [h for h in hits if h.is_file() and is_image_name(h)]
        if not files:
            raise PathProblem(f"{spec}: no image file matches this pattern")
        return [(f, Path(f.name)) for f in files]
    if p.is_dir():
        walk = p.rglob("*") if recursive else p.iterdir()
        files = sorted(f for f in walk if f.is_file() and is_image_name(f) and not f.name.startswith("."))
        return [(f, f.relative_to(p)) for f in files]
    if p.is_file():
        return [(p, Path(p.name))]
    raise PathProblem(f"{spec}: no such file or folder")


def _mask_for(photo_rel: Path, mask_dir: Path) -> Optional[Path]:
    """The mask of a photo in ``mask_dir``: same relative folder, name STEM.* or STEM_mask.*."""
    folder = mask_dir / photo_rel.parent
    for stem in (photo_rel.stem, photo_rel.stem + "_mask"):
        for cand in sorted(folder.glob(glob.escape(stem) + ".*")):
            if cand.is_file() and is_image_name(cand):
                return cand
    return None


def is_batch(inputs: Sequence[str], output: str) -> bool:
    """Several photos (or a folder, or a pattern), or an existing folder as OUT."""
    return (len(inputs) > 1 or Path(output).is_dir()
            or any(Path(i).is_dir() or (any(c in i for c in _GLOB_CHARS) and not Path(i).exists())
                   for i in inputs))


def plan(inputs: Sequence[str], output: str, mask: Optional[str] = None, ext: Optional[str] = None,
         recursive: bool = False) -> "list[Job]":
    """The photos of a batch and where each result goes (OUT/relative name, extension
    ``ext`` or the photo's own). Raises PathProblem, naming the path, for anything
    that cannot work: nothing is restored before the whole plan is sound."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise PathProblem(f"{out} is a file; with several photos OUT must be a folder")
    if not out.exists() and not out.parent.is_dir():
        raise PathProblem(f"{out}: the folder {out.parent} does not exist (OUT itself is created)")
    mask_dir = Path(mask) if mask else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise PathProblem(f"{mask_dir}: with several photos --mask names a folder of masks "
                          "(matched by name: PHOTO.png or PHOTO_mask.png)")
    if ext is not None:
        ext = ext if ext.startswith(".") else "." + ext
        output_format(out / ("x" + ext))
    found: "list[tuple[Path, Path]]" = []
    for spec in inputs:
        found += _expand(spec, recursive)
    out_abs = out.resolve()
    jobs: "list[Job]" = []
    by_dst: "dict[Path, Path]" = {}
    for src, rel in found:
        if out_abs in src.resolve().parents:
            continue        # earlier results inside the input folder are not photos to restore
        dst = out / rel.with_suffix(ext or rel.suffix)
        if dst in by_dst:
            raise PathProblem(f"{by_dst[dst]} and {src} would both be written to {dst}; "
                              "restore them separately or choose --ext")
        by_dst[dst] = src
        jobs.append(Job(src, dst, _mask_for(rel, mask_dir) if mask_dir else None))
    masks = {j.mask.resolve() for j in jobs if j.mask is not None}
    jobs = [j for j in jobs if j.src.resolve() not in masks]   # a mask beside its photo is no photo
    if not jobs:
        raise PathProblem(f"no photos to restore in {', '.join(inputs)}")
    for j in jobs:
        output_format(j.dst)
    return jobs


# -- running ------------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class BatchProgress:
    """Progress of a batch on stderr: photos done, photos/s, ETA and the current photo's stage
    (one redrawn line on a terminal, a line per photo elsewhere)."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.stream = total, stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()
        self.done = 0          # photos restored in this run (skipped ones do not count for speed)
        self.index = 0
        self.name = ""

    def rate(self) -> float:
        return self.done / max(1e-9, time.monotonic() - self.t0)

    def _speed(self, left: int) -> str:
        if self.done == 0:
            return "ETA when the first photo is done"
        r = self.rate()
        return f"{r:.2f} photos/s, ETA {_clock(left / r)}"

    def start(self, index: int, name: str) -> None:
        self.index, self.name = index, name

    def stage(self, fraction: float, stage: str) -> None:
        if self.tty:
            left = self.total - self.index + 1
            self.stream.write(f"\r[{self.index}/{self.total}] {self.name}: {stage} {fraction * 100:3.0f}% "
                              f"| {self._speed(left)}\033[K")
            self.stream.flush()

    def finished(self, restored: bool) -> None:
        self.done += restored
        if self.tty:
            self.stream.write("\r\033[K")
        left = self.total - self.index
        what = "done" if restored else "FAILED"
        self.stream.write(f"[{self.index}/{self.total}] {self.name}: {what} | {self._speed(left)}\n")
        self.stream.flush()


@dataclass
class BatchResult:
    restored: "list[Job]" = field(default_factory=list)
    skipped: "list[Job]" = field(default_factory=list)
    failed: "list[tuple[Job, str]]" = field(default_factory=list)
    interrupted: bool = False
    stopped_by: str = ""       # why the batch ended early (no server), else empty
    seconds: float = 0.0

    def summary(self, total: int) -> str:
        """What happened, for the person: counts, speed, failures, how to resume."""
        rate = len(self.restored) / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{len(self.restored)} restored, {len(self.skipped)} skipped (already done), "
                 f"{len(self.failed)} failed, of {total} photos in {_clock(self.seconds)}"
                 + (f" ({rate:.2f} photos/s)" if self.restored else "")]
        if self.failed:
            lines.append("failed:")
            lines += [f"  {job.src}: {why}" for job, why in self.failed]
        if self.stopped_by:
            lines.append(f"stopped: {self.stopped_by}")
        if self.interrupted or self.stopped_by:
            left = total - len(self.restored) - len(self.skipped) - len(self.failed)
            lines.append(f"{left} photos left: run the same command again to continue "
                         "(finished photos are skipped)")
        return "\n".join(lines)


class _Interrupt:
    """Ctrl-C sets a flag that the restore's cancel check and the loop read, so the running
    photo is cancelled cleanly (on the server too) instead of the process dying mid-way."""

    def __init__(self) -> None:
        self.flag = False
        self._old: Any = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.flag:                        # a second Ctrl-C: stop at once
            raise KeyboardInterrupt()
        self.flag = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def run_jobs(jobs: "list[Job]", restore: RestoreFn, *, overwrite: bool,
             skip_existing: bool, fatal: "tuple[type[BaseException], ...]" = (), stream=None,
             on_done: Optional[Callable[[Job, str, float], None]] = None,
             keep_16bit: bool = False) -> BatchResult:
    """Restore ``jobs`` one after the other with ``restore(image, mask, progress, should_cancel)``
    -> (result array, where it ran). A photo that fails is recorded and the batch goes on;
    an exception of the ``fatal`` types (no server) ends it, as ``stopped_by``. ``keep_16bit``:
    ``restore`` takes uint16, so 16-bit photos keep their bits where the output format
    stores them (``read_image``). Ctrl-C cancels
    the running photo and ends the batch with ``interrupted`` set. ``on_done(job, where, seconds)`` after each photo."""
    result = BatchResult()
    bar = BatchProgress(len(jobs), stream)
    t0 = time.monotonic()
    with _Interrupt() as stop:
        for i, job in enumerate(jobs, 1):
            if stop.flag:
                break
            bar.start(i, str(job.src))
            if skip_existing and os.path.lexists(job.dst):
                result.skipped.append(job)
                continue
            t = time.monotonic()
            try:
                image, mode, keep = read_image(str(job.src), keep_16bit and holds_16bit(job.dst))
                check_output(job.dst, overwrite, mode)
                h, w = image.shape[:2]
                mask = read_mask(str(job.mask), (w, h)) if job.mask else None
                out, where = restore(image, mask, bar.stage, lambda: stop.flag)
                write_image(str(job.dst), out, mode, keep, overwrite)
            except fatal as e:
                result.stopped_by = _reason(e)
                break
            except Exception as e:      # one bad photo must not stop an album
                if stop.flag:
                    break
                result.failed.append((job, _reason(e)))
                bar.finished(False)
                continue
            result.restored.append(job)
            bar.finished(True)
            if on_done is not None:
                on_done(job, where, time.monotonic() - t)
    processed = len(result.restored) + len(result.skipped) + len(result.failed)
    result.interrupted = stop.flag and processed < len(jobs)
    result.seconds = time.monotonic() - t0
    return result


def _reason(e: BaseException) -> str:
    """An exception as one line for people (no class names for the expected kinds)."""
    if isinstance(e, (ValueError, DestinationExists)):
        return str(e)
    if isinstance(e, OSError) and e.filename:
        return f"{e.strerror or e} ({e.filename})"
    msg = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {msg}" if not isinstance(e, OSError) else msg

