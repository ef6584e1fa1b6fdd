"""The project's one atomic writer (oldphoto_model/atomic.py): old or new, never half."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oldphoto_model.atomic import DestinationExists, atomic_write, atomic_write_bytes

ROOT = Path(__file__).resolve().parents[2]


def test_writes_and_replaces(tmp_path):
    p = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(p, b"one")
    assert p.read_bytes() == b"one"
    atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["f.bin"]


def test_failing_writer_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")

    def half_then_fail(f):
        f.write(b"ne")
        raise OSError(28, "No space left on device")
    with pytest.raises(OSError, match="No space"):
        atomic_write(p, half_then_fail)
    assert p.read_bytes() == b"old" and list(tmp_path.iterdir()) == [p]


def test_refuses_to_replace_without_overwrite(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    with pytest.raises(DestinationExists, match="--overwrite") as e:
        atomic_write_bytes(p, b"new", overwrite=False)
    assert str(p) in str(e.value)
    assert p.read_bytes() == b"old" and list(tmp_path.iterdir()) == [p]
    q = tmp_path / "new.bin"
    atomic_write_bytes(q, b"x", overwrite=False)
    assert q.read_bytes() == b"x"


def test_symlinks_are_not_followed(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"precious")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    with pytest.raises(DestinationExists):
        atomic_write_bytes(link, b"new", overwrite=False)
    dangling = tmp_path / "dangling.bin"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(DestinationExists):
        atomic_write_bytes(dangling, b"new", overwrite=False)
    assert not (tmp_path / "nowhere").exists()
    atomic_write_bytes(link, b"new")                 # the link is replaced, its target kept
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert target.read_bytes() == b"precious"


def test_folder_as_destination_names_it(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        atomic_write_bytes(tmp_path, b"x")


def test_permissions_follow_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        p = atomic_write_bytes(tmp_path / "f.bin", b"x")
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640


def test_sigkill_mid_write_leaves_the_old_file(tmp_path):
    """A real kill while the new content is half written."""
    p = tmp_path / "f.bin"
    p.write_bytes(b"old")
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from oldphoto_model.atomic import atomic_write
        def slow(f):
            f.write(b"x" * 100000); f.flush()
            print("half", flush=True)
            time.sleep(60)
        atomic_write({str(p)!r}, slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "half"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert p.read_bytes() == b"old"
    # only a hidden temporary file may remain, never under the destination's name
    assert all(x == p or x.name.startswith(".f.bin.") for x in tmp_path.iterdir())
