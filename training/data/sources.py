"""Offline data sources (Debian and PyPI packages) and ``prepare-data``.

Everything goes to the cache (``--data.cache_dir``, default ``$OLDPHOTO_CACHE`` or
``~/.cache/oldphoto``), never into git:

    downloads/      .deb files (``apt-get download``) and wheels/sdists (``pip download --no-deps``)
    extract/PKG/    what ``dpkg -x`` / the archive gave, kept so a re-run is free
    photos/         training photos, one file per photo
    eval/           evaluation photos (PNG), disjoint from training
    textures/       brushes/*.png (alpha scans) and papers/*.png (gray scans)
    real/           real old photos (domain R) of the manifest, hash-checked (real_photos.py)
    crops/N/        the training set: N x N crops, flat ones dropped

Every step is idempotent: existing files are kept.
"""
from __future__ import annotations

import fnmatch
import hashlib
import io
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image

from ..config import DataConfig

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class DebSource:
    """A Debian package and the globs (relative to its root) of the files to use."""

    package: str
    globs: tuple[str, ...]
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class PypiSource:
    """A PyPI distribution (``pip download --no-deps``) and member globs inside it."""

    requirement: str
    globs: tuple[str, ...]
    exclude: tuple[str, ...] = ()
    sdist: bool = False          # the files live only in the source archive


_PLASMA = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
           "Grey", "Kite", "OneStandsOut", "Path", "summer_1am")
_LXQT = ("Butterfly-Kenneth-Wimer", "Valendas", "after-the-rain", "appleflower", "beam", "butterfly",
         "cloud", "drop", "flowers", "fog", "this-is-not-windows")

TRAIN_PHOTOS: tuple[DebSource, ...] = (
    DebSource("lomiri-wallpapers-16.04", ("usr/share/backgrounds/*_by_*.jpg",), exclude=("*umang*",)),
    DebSource("lomiri-wallpapers-20.04", ("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",)),
    DebSource("mate-backgrounds", ("usr/share/backgrounds/mate/nature/*.jpg",)),
    DebSource("plasma-workspace-wallpapers",
              tuple(f"usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in _PLASMA)),
    DebSource("lxqt-themes", tuple(f"usr/share/lxqt/wallpapers/{n}.*" for n in _LXQT)),
    DebSource("palapeli-data", ("usr/share/palapeli/collection/*.jpg",)),
    DebSource("digikam-data", ("usr/share/digikam/about/images/body-background.jpg",
                               "usr/share/*/about/images/body-background.jpg")),
    DebSource("scribus-template", ("usr/share/scribus/templates/*/*.jpg", "usr/share/scribus/templates/*.jpg")),
    # ~114 photos (lossy WebP) inside Qt resource files
    DebSource("gcompris-qt-data", tuple(f"usr/share/gcompris-qt/rcc/{n}.rcc" for n in (
        "erase", "explore_monuments", "explore_farm_animals", "explore_world_animals", "explore_world_music"))),
)

#: members of .rcc files smaller than this (short side) are icons, not photos
RCC_MIN_SIDE = 400

TEXTURES: tuple[DebSource, ...] = (
    DebSource("krita-data", ("usr/share/krita/patterns/*paper*", "usr/share/krita/patterns/*Paper*",
                             "usr/share/krita/patterns/*canvas*", "usr/share/krita/patterns/*grain*",
                             "usr/share/krita/bundles/Krita_3_Default_Resources.bundle",
                             "usr/share/krita/bundles/Krita_4_Default_Resources.bundle")),
    DebSource("gimp-data", ("usr/share/gimp/2.0/patterns/Paper/*.pat",
                            "usr/share/gimp/2.0/brushes/Sketch/Pencil-Scratch.gbr",
                            "usr/share/gimp/2.0/brushes/Splatters/Grunge-*.gih")),
    DebSource("mypaint-data-extras", ("usr/share/mypaint/backgrounds/*/*.png",
                                      "usr/share/mypaint/backgrounds/*.png")),
)

#: brush members of the krita bundles: scratches, dust, cracks, fibres
BUNDLE_BRUSHES = ("brushes/*cratch*", "brushes/*ust*", "brushes/*rack*", "brushes/*iber*")

EVAL_PHOTOS: tuple[PypiSource, ...] = (
    PypiSource("scikit-image", tuple(f"skimage/data/{n}.*" for n in (
        "astronaut", "camera", "coffee", "chelsea", "coins", "rocket", "motorcycle_left", "clock_motion"))),
    PypiSource("scikit-learn", ("sklearn/datasets/images/china.jpg", "sklearn/datasets/images/flower.jpg")),
    PypiSource("matplotlib", ("matplotlib/mpl-data/sample_data/grace_hopper.jpg",)),
    PypiSource("PyWavelets", ("pywt/data/aero.npz", "pywt/data/ascent.npz")),
    PypiSource("mahotas", ("*/mahotas/demos/data/luispedro.jpg", "mahotas/demos/data/luispedro.jpg")),
    PypiSource("face_recognition==1.3.0", ("*/tests/test_images/obama*.jpg", "*/tests/test_images/biden.jpg"),
               sdist=True),
)


class SourceUnavailable(RuntimeError):
    """A package could not be fetched (no network, no such package, no apt)."""


def _log(msg: str) -> None:
    print(f"[prepare-data] {msg}", flush=True)


def _match(name: str, globs: Iterable[str], exclude: Iterable[str] = ()) -> bool:
    return any(fnmatch.fnmatch(name, g) for g in globs) and not any(fnmatch.fnmatch(name, e) for e in exclude)


def fetch_deb(package: str, cache: Path) -> Path:
    """``apt-get download`` + ``dpkg -x`` into ``extract/PKG`` (no dependencies, no scripts)."""
    dest = cache / "extract" / package
    if (dest / ".done").is_file():
        return dest
    dl = cache / "downloads" / "debs"
    dl.mkdir(parents=True, exist_ok=True)
    debs = sorted(dl.glob(f"{package}_*.deb"))
    if not debs:
        if shutil.which("apt-get") is None:
            raise SourceUnavailable(f"{package}: apt-get is not available on this system")
        r = subprocess.run(["apt-get", "download", package], cwd=dl, capture_output=True, text=True)
        debs = sorted(dl.glob(f"{package}_*.deb"))
        if r.returncode != 0 or not debs:
            raise SourceUnavailable(f"{package}: apt-get download failed: {r.stderr.strip()[-300:]} "
                                    "(run `apt-get update` first, or check the network)")
    dest.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["dpkg", "-x", str(debs[-1]), str(dest)], capture_output=True, text=True)
    if r.returncode != 0:
        raise SourceUnavailable(f"{package}: dpkg -x failed: {r.stderr.strip()[-300:]}")
    (dest / ".done").write_text(debs[-1].name)
    return dest


def fetch_pypi(requirement: str, cache: Path, sdist: bool = False) -> Path:
    """``pip download --no-deps`` one distribution (wheel, or the sdist); returns the archive."""
    dl = cache / "downloads" / "pypi" / (requirement.replace("=", "_") + ("-sdist" if sdist else ""))
    dl.mkdir(parents=True, exist_ok=True)
    have = [p for p in dl.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if have:
        return have[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl)]
    if sdist:
        cmd += ["--no-binary", ":all:"]
    r = subprocess.run(cmd + [requirement], capture_output=True, text=True)
    have = [p for p in dl.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if r.returncode != 0 or not have:
        raise SourceUnavailable(f"{requirement}: pip download failed: {r.stderr.strip()[-300:]}")
    return have[0]


def archive_members(archive: Path, globs: Iterable[str]) -> list[tuple[str, bytes]]:
    """(name, bytes) of the members of a wheel/zip/tar.gz matching ``globs``."""
    globs = tuple(globs)
    out = []
    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as z:
            for n in z.namelist():
                if _match(n, globs):
                    out.append((n, z.read(n)))
    else:
        with tarfile.open(archive) as t:
            for m in t.getmembers():
                if m.isfile() and _match(m.name, globs):
                    f = t.extractfile(m)
                    assert f is not None    # a regular file has contents
                    out.append((m.name, f.read()))
    return out


# --------------------------------------------------------------------------- GIMP formats

def read_gbr(data: bytes) -> tuple[np.ndarray, int]:
    """One GIMP brush (.gbr) -> (float HxW in [0, 1], bytes consumed). Gray brushes are
    coverage; RGBA brushes use their alpha."""
    hs, version, w, h, bpp = struct.unpack(">5I", data[:20])
    if version == 1:
        hs = max(hs, 20)
    n = w * h * bpp
    px = np.frombuffer(data[hs:hs + n], np.uint8)
    if px.size != n:
        raise ValueError("truncated brush")
    arr = px.reshape(h, w, bpp)
    a = arr[..., 0] if bpp == 1 else arr[..., -1]
    return a.astype(np.float32) / 255.0, hs + n


def read_gih(data: bytes) -> list[np.ndarray]:
    """A GIMP image hose (.gih): two text lines, then concatenated .gbr brushes."""
    pos = 0
    for _ in range(2):
        pos = data.index(b"\n", pos) + 1
    out = []
    while pos + 28 <= len(data):
        try:
            a, n = read_gbr(data[pos:])
        except (ValueError, struct.error):
            break
        out.append(a)
        pos += n
    return out


def read_pat(data: bytes) -> np.ndarray:
    """A GIMP pattern (.pat) -> float gray HxW in [0, 1]."""
    hs, version, w, h, bpp = struct.unpack(">5I", data[:20])
    arr = np.frombuffer(data[hs:hs + w * h * bpp], np.uint8).reshape(h, w, bpp)
    rgb = arr[..., :3] if bpp >= 3 else arr[..., :1]
    return rgb.astype(np.float32).mean(-1) / 255.0


def _brushes_from(name: str, data: bytes) -> list[np.ndarray]:
    low = name.lower()
    if low.endswith(".gih"):
        return read_gih(data)
    if low.endswith(".gbr"):
        return [read_gbr(data)[0]]
    if low.endswith(".png"):
        im = Image.open(io.BytesIO(data))
        if im.mode in ("RGBA", "LA"):
            return [np.asarray(im.getchannel("A"), np.float32) / 255.0]
        return [1.0 - np.asarray(im.convert("L"), np.float32) / 255.0]   # dark paint on white
    return []


def _save_gray(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(np.clip(arr * 255, 0, 255).astype(np.uint8), mode="L").save(path)


# --------------------------------------------------------------------------- prepare steps

def _safe_name(*parts: str) -> str:
    return "__".join(p.replace("/", "_") for p in parts)


def collect_train_photos(cache: Path, report: Callable[[str], None] = _log) -> int:
    out = cache / "photos"
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for src in TRAIN_PHOTOS:
        try:
            root = fetch_deb(src.package, cache)
        except SourceUnavailable as e:
            report(f"skipped: {e}")
            continue
        k = 0
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and p.suffix == ".rcc" and _match(rel, src.globs, src.exclude):
                k += _photos_from_rcc(p, out, src.package)
            elif p.is_file() and p.suffix.lower() in IMAGE_EXT and _match(rel, src.globs, src.exclude):
                dest = out / _safe_name(src.package, rel.split("/")[-4] if "contents/images" in rel else p.name)
                if dest.suffix.lower() not in IMAGE_EXT:
                    dest = dest.with_suffix(p.suffix)
                if not dest.exists():
                    shutil.copyfile(p, dest)
                k += 1
        report(f"{src.package}: {k} photos")
        n += k
    return n


def _photos_from_rcc(path: Path, out: Path, package: str) -> int:
    n = 0
    for member, blob in read_rcc(path.read_bytes()):
        if Path(member).suffix.lower() not in IMAGE_EXT:
            continue
        dest = out / _safe_name(package, path.stem, Path(member).name)
        if not dest.exists():
            try:
                if min(Image.open(io.BytesIO(blob)).size) < RCC_MIN_SIDE:
                    continue
            except OSError:
                continue
            dest.write_bytes(blob)
        n += 1
    return n


def collect_textures(cache: Path, report: Callable[[str], None] = _log) -> tuple[int, int]:
    bdir, pdir = cache / "textures" / "brushes", cache / "textures" / "papers"
    bdir.mkdir(parents=True, exist_ok=True)
    pdir.mkdir(parents=True, exist_ok=True)
    nb = np_ = 0
    for src in TEXTURES:
        try:
            root = fetch_deb(src.package, cache)
        except SourceUnavailable as e:
            report(f"skipped: {e}")
            continue
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if not (p.is_file() and _match(rel, src.globs)):
                continue
            if p.suffix == ".bundle":
                with zipfile.ZipFile(p) as z:
                    for m in z.namelist():
                        if _match(m, BUNDLE_BRUSHES):
                            for i, a in enumerate(_brushes_from(m, z.read(m))):
                                if a.size >= 64 and a.max() > 0.2:
                                    _save_gray(a, bdir / f"{_safe_name(p.stem, Path(m).stem)}_{i}.png")
                                    nb += 1
            elif p.suffix in (".gbr", ".gih"):
                for i, a in enumerate(_brushes_from(p.name, p.read_bytes())):
                    _save_gray(a, bdir / f"{_safe_name(src.package, p.stem)}_{i}.png")
                    nb += 1
            elif p.suffix == ".pat":
                _save_gray(read_pat(p.read_bytes()), pdir / f"{_safe_name(src.package, p.stem)}.png")
                np_ += 1
            elif p.suffix.lower() in IMAGE_EXT:
                g = np.asarray(Image.open(p).convert("L"), np.float32) / 255.0
                _save_gray(g, pdir / f"{_safe_name(src.package, p.stem)}.png")
                np_ += 1
    report(f"textures: {nb} brushes, {np_} paper scans")
    return nb, np_


def collect_eval_photos(cache: Path, report: Callable[[str], None] = _log) -> int:
    out = cache / "eval"
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for src in EVAL_PHOTOS:
        try:
            archive = fetch_pypi(src.requirement, cache, src.sdist)
        except SourceUnavailable as e:
            report(f"skipped: {e}")
            continue
        for name, data in archive_members(archive, src.globs):
            dest = out / (Path(name).stem + ".png")
            if dest.exists():
                n += 1
                continue
            if name.endswith(".npz"):
                arr = next(iter(np.load(io.BytesIO(data)).values()))
                arr = np.clip(arr, 0, 255).astype(np.uint8)
                im = Image.fromarray(arr)
            else:
                im = Image.open(io.BytesIO(data))
            im.convert("RGB").save(dest)
            n += 1
    report(f"evaluation photos: {n}")
    return n


def collect_real_photos(cfg: DataConfig, report: Callable[[str], None] = _log,
                        base_url: str | None = None) -> int:
    """The manifest's real old photos into ``<cache>/real`` (local folder first, then the
    web); returns how many are there. ``base_url`` replaces raw.githubusercontent.com (tests)."""
    from . import real_photos as rp
    src = rp.source_dir_for(cfg)
    manifest = cfg.real_manifest or rp.MANIFEST
    res = rp.fetch_real_photos(cfg.cache_dir, manifest, src, base_url or rp.BASE_URL, report=report)
    how = ", ".join(f"{n} {what}" for n, what in ((res.cached, "already there"), (res.copied, f"copied from {src}"),
                                                  (res.downloaded, "downloaded"), (len(res.failed), "missing"))
                    if n)
    report(f"real old photos: {len(res.files)} of {len(res.files) + len(res.failed)} in {res.folder}"
           + (f" ({how})" if how else ""))
    return len(res.files)


def build_crops(photo_files: list[Path], cfg: DataConfig, out: Path, seed: int,
                report: Callable[[str], None] = _log) -> int:
    """Shrink each photo to a random short side, cut random crops, drop flat ones."""
    out.mkdir(parents=True, exist_ok=True)
    n = kept = 0
    for path in photo_files:
        digest = int.from_bytes(hashlib.sha256(path.name.encode()).digest()[:8], "little")
        rng = np.random.default_rng([seed, digest])
        try:
            im = Image.open(path).convert("RGB")
        except OSError as e:
            report(f"unreadable photo {path}: {e}")
            continue
        short = min(im.size)
        target = int(rng.integers(cfg.short_side_min, cfg.short_side_max + 1))
        if short > target:
            s = target / short
            im = im.resize((max(cfg.crop, round(im.size[0] * s)), max(cfg.crop, round(im.size[1] * s))),
                           Image.Resampling.LANCZOS)
        if min(im.size) < cfg.crop:
            continue
        arr = np.asarray(im)
        h, w = arr.shape[:2]
        for i in range(cfg.crops_per_photo):
            n += 1
            y0, x0 = int(rng.integers(h - cfg.crop + 1)), int(rng.integers(w - cfg.crop + 1))
            crop = arr[y0:y0 + cfg.crop, x0:x0 + cfg.crop]
            if is_flat(crop, cfg.flat_std_min):
                continue
            dest = out / f"{path.stem}_{i:03d}.png"
            if not dest.exists():
                Image.fromarray(crop).save(dest)
            kept += 1
    report(f"crops: kept {kept} of {n} ({cfg.crop}x{cfg.crop}, flat ones dropped) in {out}")
    return kept


def is_flat(crop: np.ndarray, std_min: float) -> bool:
    """Too little structure to learn from (sky, bokeh): luma std below ``std_min``."""
    y = crop.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
    return float(y.std()) < std_min


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXT)


def crops_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir) / "crops" / str(cfg.crop)


def train_photo_paths(cfg: DataConfig, report: Callable[[str], None] = lambda msg: None) -> list[Path]:
    """The clean training photos: the cache's ``photos`` folder and ``--data.clean_dirs``."""
    cache = Path(cfg.cache_dir)
    photos = list_images(cache / "photos") if (cache / "photos").is_dir() else []
    for d in cfg.clean_dirs:
        extra = list_images(d)
        report(f"--data.clean_dirs {d}: {len(extra)} photos")
        photos += extra
    return photos


def prepare_data(cfg: DataConfig, seed: int = 0, report: Callable[[str], None] = _log) -> dict[str, int]:
    """Fetch photos and textures into the cache and build the crop set (idempotent)."""
    cache = Path(cfg.cache_dir)
    report(f"cache: {cache}")
    counts = {"photos": 0, "brushes": 0, "papers": 0, "eval": 0, "real": 0}
    if "debian" in cfg.sources:
        counts["photos"] = collect_train_photos(cache, report)
        counts["brushes"], counts["papers"] = collect_textures(cache, report)
    if "pypi" in cfg.sources:
        counts["eval"] = collect_eval_photos(cache, report)
    if "real" in cfg.sources:
        counts["real"] = collect_real_photos(cfg, report)
    photos = train_photo_paths(cfg, report)
    if not photos:
        raise SourceUnavailable("no training photos: every source was unreachable and no "
                                "--data.clean_dirs was given")
    counts["crops"] = build_crops(photos, cfg, crops_dir(cfg), seed, report)
    return counts


# --------------------------------------------------------------------------- Qt resources

def read_rcc(data: bytes) -> list[tuple[str, bytes]]:
    """Files of a Qt binary resource (.rcc, format 1-3): (path, bytes), decompressed.

    Layout: ``qres``, version, tree/data/names offsets (+ flags in v3); tree entries of
    14 bytes (+8 for a timestamp from v2): name offset, flags (1 zlib, 2 directory,
    4 zstd), then child count + first child or locale + data offset.
    """
    import zlib
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, dat, names = struct.unpack(">4I", data[4:20])
    entry = 22 if version >= 2 else 14

    def name(off: int) -> str:
        n = struct.unpack(">H", data[names + off:names + off + 2])[0]
        return data[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    out: list[tuple[str, bytes]] = []

    def walk(index: int, prefix: str) -> None:
        base = tree + index * entry
        name_off, flags = struct.unpack(">IH", data[base:base + 6])
        path = prefix + ("" if index == 0 else name(name_off))
        if flags & 2:
            count, first = struct.unpack(">II", data[base + 6:base + 14])
            for i in range(count):
                walk(first + i, path + ("/" if index else ""))
            return
        off = struct.unpack(">I", data[base + 10:base + 14])[0]
        size = struct.unpack(">I", data[dat + off:dat + off + 4])[0]
        blob = data[dat + off + 4:dat + off + 4 + size]
        if flags & 1:
            blob = zlib.decompress(blob[4:])
        elif flags & 4:
            return          # zstd needs a package we do not require; none of the used files
        out.append((path, blob))
    walk(0, "")
    return out
