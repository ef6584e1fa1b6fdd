"""Real old photographs (domain R) for ``prepare-data``: a manifest of hashes and URLs.

No package of the registries holds real aged photos, so the project ships only a
manifest (``real_old_manifest.tsv``: file, sha256, source_repo, commit, path,
license_of_repo) and never the photos. For every entry ``<cache>/real/FILE`` is
made to hold exactly the bytes the manifest's sha256 names, taken from the first
of:

1. the cache itself (a file already there with the right hash is left alone);
2. a local folder (``--data.real_source_dir``; by default ``../shared/real_old``
   next to the checkout when it exists), copied;
3. ``BASE_URL/<source_repo>/<commit>/<quoted path>`` (raw.githubusercontent.com).

Every file is written through ``oldphoto_model.atomic`` (temporary file in the
same folder, then a rename) and its hash is checked while it is written: a file
with the wrong hash is never given its name. A file that cannot be had is
reported (``skipped: real photo FILE: why``) and the others go on.
"""
from __future__ import annotations

import hashlib
import http.client
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from oldphoto_model.atomic import atomic_write

from ..config import DataConfig

#: the manifest shipped with the package (hashes and URLs only, no photos)
MANIFEST = Path(__file__).with_name("real_old_manifest.tsv")
#: files are fetched from BASE_URL/<source_repo>/<commit>/<path>
BASE_URL = "https://raw.githubusercontent.com"
#: ``../shared/real_old`` next to the checkout, where this project keeps the photos
REPO = Path(__file__).resolve().parents[2]
SHARED_REAL = REPO.parent / "shared" / "real_old"
#: the subfolder of the cache that holds them (VAE_A reads it when --data.real_dirs is empty)
CACHE_SUBDIR = "real"

COLUMNS = ("file", "sha256", "source_repo", "commit", "path", "license_of_repo")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_CHUNK = 1 << 16


class ManifestError(ValueError):
    """The manifest cannot be used: missing columns, a malformed field, a duplicate name."""


class HashMismatch(ValueError):
    """Bytes whose sha256 is not the manifest's (the file is not kept)."""


class TooLarge(ValueError):
    """A download larger than ``max_bytes`` (a wrong URL or a hostile server)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One row of the manifest."""

    file: str
    sha256: str
    source_repo: str
    commit: str
    path: str
    license: str

    def url(self, base_url: str = BASE_URL) -> str:
        """Where a person with internet fetches this file (the path URL-encoded)."""
        return f"{base_url.rstrip('/')}/{self.source_repo}/{self.commit}/{urllib.parse.quote(self.path)}"


@dataclass
class RealPhotosResult:
    """What ``fetch_real_photos`` did: the files now in the cache and how each got there."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    cached: int = 0          # already in the cache with the right hash
    copied: int = 0          # from the local folder
    downloaded: int = 0
    failed: list[str] = field(default_factory=list)   # one message per file that is missing


def _log(msg: str) -> None:
    print(f"[prepare-data] {msg}", flush=True)


def read_manifest(path: str | Path = MANIFEST) -> list[ManifestEntry]:
    """Parse a tab-separated manifest with a header row (``COLUMNS``, any order, extra ones ignored).

    Every field is checked here, before anything is fetched: the file name becomes a
    path in the cache, so it must be a plain name (no folder, no leading dot)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    rows = [ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise ManifestError(f"{path}: empty manifest (expected a header row: {' '.join(COLUMNS)})")
    header = [h.strip() for h in rows[0].split("\t")]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise ManifestError(f"{path}: header lacks the column(s) {', '.join(missing)} "
                            f"(tab-separated; expected {' '.join(COLUMNS)})")
    idx = {c: header.index(c) for c in COLUMNS}
    out: list[ManifestEntry] = []
    seen: set[str] = set()
    for n, line in enumerate(rows[1:], start=2):
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) < len(header):
            raise ManifestError(f"{path}: row {n} has {len(cells)} fields, the header {len(header)}")
        e = ManifestEntry(*(cells[idx[c]] for c in COLUMNS))
        where = f"{path}: row {n} ({e.file!r})"
        if not e.file or e.file.startswith(".") or "/" in e.file or "\\" in e.file:
            raise ManifestError(f"{where}: the file name must be a plain name, not a path")
        if not _SHA256.fullmatch(e.sha256):
            raise ManifestError(f"{where}: sha256 must be 64 lowercase hex digits, got {e.sha256!r}")
        if not _REPO.fullmatch(e.source_repo) or ".." in e.source_repo:
            raise ManifestError(f"{where}: source_repo must be OWNER/NAME, got {e.source_repo!r}")
        if not _COMMIT.fullmatch(e.commit):
            raise ManifestError(f"{where}: commit must be 40 lowercase hex digits, got {e.commit!r}")
        if not e.path or e.path.startswith("/") or ".." in e.path.split("/"):
            raise ManifestError(f"{where}: path must be relative inside the repository, got {e.path!r}")
        if e.file in seen:
            raise ManifestError(f"{where}: the file name appears twice")
        seen.add(e.file)
        out.append(e)
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _store(dest: Path, src: BinaryIO, expected: str, max_bytes: int, deadline: float | None = None) -> None:
    """Stream ``src`` into ``dest`` atomically, hashing on the way; a wrong hash, too many
    bytes or a passed deadline raise inside the writer, so no file is left behind."""
    def write(f: BinaryIO) -> None:
        h, n = hashlib.sha256(), 0
        for chunk in iter(lambda: src.read(_CHUNK), b""):
            n += len(chunk)
            if n > max_bytes:
                raise TooLarge(f"more than {max_bytes} bytes")
            if deadline is not None and time.monotonic() > deadline:
                # the socket timeout bounds each read; this bounds a server that drips bytes
                raise TimeoutError("download took too long")
            h.update(chunk)
            f.write(chunk)
        got = h.hexdigest()
        if got != expected:
            raise HashMismatch(f"sha256 {got}, the manifest says {expected}")
    atomic_write(dest, write)


def _download(url: str, dest: Path, expected: str, timeout: float, max_bytes: int) -> None:
    req = urllib.request.Request(url, headers={"User-Agent": "oldphoto-training"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        _store(dest, resp, expected, max_bytes, time.monotonic() + 10 * timeout)


def _why(e: BaseException) -> str:
    """A short reason for the report (urllib wraps the interesting part)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        r = e.reason
        return "timed out" if isinstance(r, (socket.timeout, TimeoutError)) else f"cannot connect ({r})"
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timed out"
    return str(e) or type(e).__name__


def default_source_dir() -> Path | None:
    """``../shared/real_old`` next to the checkout, if it is there."""
    return SHARED_REAL if SHARED_REAL.is_dir() else None


def source_dir_for(cfg: DataConfig) -> Path | None:
    """``--data.real_source_dir`` (must exist), else ``default_source_dir()``."""
    if cfg.real_source_dir:
        d = Path(cfg.real_source_dir).expanduser()
        if not d.is_dir():
            raise NotADirectoryError(f"--data.real_source_dir {cfg.real_source_dir}: no such folder")
        return d
    return default_source_dir()


def fetch_real_photos(cache: str | Path, manifest: str | Path = MANIFEST, source_dir: str | Path | None = None,
                      base_url: str = BASE_URL, timeout: float = 30.0, max_bytes: int = 64 << 20,
                      report: Callable[[str], None] = _log) -> RealPhotosResult:
    """Make ``<cache>/real`` hold every file of ``manifest`` with its sha256 (idempotent).

    ``timeout`` bounds the connection and each read (and ten times it a whole file).
    A file that cannot be had is reported and listed in ``failed``; the others go on.
    Raises ManifestError for a malformed manifest, before fetching anything."""
    entries = read_manifest(manifest)
    out = Path(cache) / CACHE_SUBDIR
    out.mkdir(parents=True, exist_ok=True)
    src_dir = Path(source_dir) if source_dir else None
    res = RealPhotosResult(folder=out)
    for e in entries:
        dest = out / e.file
        if dest.is_file():
            have = sha256_file(dest)
            if have == e.sha256:
                res.cached += 1
                res.files.append(dest)
                continue
            # a damaged or foreign file must not feed training under a manifest name
            dest.unlink()
            report(f"real photo {e.file}: the cached copy has sha256 {have}, the manifest says "
                   f"{e.sha256}; removed, fetching it again")
        local = src_dir / e.file if src_dir else None
        if local is not None and local.is_file():
            try:
                with open(local, "rb") as f:
                    _store(dest, f, e.sha256, max_bytes)
                res.copied += 1
                res.files.append(dest)
                continue
            except (HashMismatch, TooLarge, OSError) as err:
                report(f"real photo {e.file}: local copy {local} not used: {_why(err)}; downloading it")
        url = e.url(base_url)
        try:
            _download(url, dest, e.sha256, timeout, max_bytes)
        except (HashMismatch, TooLarge, OSError, ValueError, http.client.HTTPException) as err:
            # URLError/HTTPError are OSErrors; a cut-off body is an HTTPException (IncompleteRead)
            msg = f"real photo {e.file}: {url}: {_why(err)}"
            res.failed.append(msg)
            report(f"skipped: {msg}")
            continue
        res.downloaded += 1
        res.files.append(dest)
    return res


def cache_real_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir) / CACHE_SUBDIR


def domain_r_source(cfg: DataConfig) -> tuple[list[str], str]:
    """The folders VAE_A draws real old photos from, and a line for the log saying which.

    ``--data.real_dirs`` first; else ``<cache>/real`` when ``prepare-data`` put photos
    there (not with ``--data.synthetic``: test runs must not depend on the user's
    cache); else none, and the stage uses the synthetic stand-in."""
    from .sources import list_images  # sources imports this module
    if cfg.real_dirs:
        n = sum(len(list_images(d)) for d in cfg.real_dirs)
        return list(cfg.real_dirs), f"domain R: {n} real old photos from --data.real_dirs"
    d = cache_real_dir(cfg)
    n = len(list_images(d)) if d.is_dir() else 0
    if n and not cfg.synthetic:
        return [str(d)], f"domain R: {n} real old photos from {d} (prepare-data)"
    why = (f"--data.synthetic run: {d} not used" if n else
           f"no --data.real_dirs given and no real old photos in {d}")
    return [], (f"domain R: {why} -> stand-in: heavily aged synthetic photos (every ageing effect, "
                "structured defects); see docs/TRAINING.md")


__all__ = ["BASE_URL", "MANIFEST", "HashMismatch", "ManifestEntry", "ManifestError", "RealPhotosResult",
           "TooLarge", "cache_real_dir", "default_source_dir", "domain_r_source", "fetch_real_photos",
           "read_manifest", "sha256_file", "source_dir_for"]
