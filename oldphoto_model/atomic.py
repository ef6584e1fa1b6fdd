"""The project's one atomic file writer (weights, training checkpoints, the CLI's images).

A file is written to a temporary file in the destination folder, flushed to disk,
given the permissions a plain ``open()`` would give (0666 minus the umask), and
only then renamed over the destination. A kill, a crash or a full disk at any
moment leaves either the old file or the new one, never a half-written one, and
no temporary file behind (except after SIGKILL: a hidden ``.NAME.*.tmp``).

The destination itself is never followed: an existing symbolic link is replaced
by the new file (its target is left alone), or refused with ``overwrite=False``.
Standard library only (the package's other modules need torch; this one does not).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, "os.PathLike[str]"]


class DestinationExists(FileExistsError):
    """The destination exists and the caller did not allow replacing it."""

    def __init__(self, path: PathLike) -> None:
        super().__init__(f"{path} already exists (pass --overwrite to replace it)")
        self.path = str(path)


def _umask() -> int:
    # os.umask can only be read by setting it; the caller's value is put straight back
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: PathLike, write: Callable[[BinaryIO], object], *, overwrite: bool = True,
                 make_parents: bool = True) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes into a binary file object.

    ``overwrite=False`` refuses an existing destination (DestinationExists, raised
    before and after the write: a file that appears meanwhile is not replaced).
    A folder as destination is an IsADirectoryError naming it. Returns the path.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    if not overwrite and os.path.lexists(path):
        raise DestinationExists(path)
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp's 0600 would hide a shared file
        if overwrite:
            os.replace(tmp, path)             # replaces a symlink itself, never its target
        else:
            _link_new(tmp, path)
        _fsync_dir(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def _link_new(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has that name (atomic where hard
    links exist; elsewhere a check then a rename)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise DestinationExists(path) from None
    except OSError:       # no hard links on this file system (FAT, some network shares)
        if os.path.lexists(path):
            raise DestinationExists(path) from None
        os.replace(tmp, path)


def atomic_write_bytes(path: PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """``atomic_write`` of a bytes object."""
    return atomic_write(path, lambda f: f.write(data), overwrite=overwrite)


__all__ = ["DestinationExists", "atomic_write", "atomic_write_bytes"]
