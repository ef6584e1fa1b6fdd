"""``python -m server restore`` and ``demo`` with files as people give them: output-path
problems found before any work, atomic writes that never replace without --overwrite,
batches of folders and patterns (masks by name, progress, skip, resume, summary)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.cli import main

from .helpers import free_port, random_image, random_mask

ROOT = Path(__file__).resolve().parents[2]


def _dead() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


def _photo(path: Path, seed: int, c: int = 3, size=(24, 32)) -> np.ndarray:
    img = random_image(seed, size[0], size[1], c)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[c]
    Image.fromarray(img[..., 0] if c == 1 else img, mode).save(path)
    return img


# -- item: output problems before any work ------------------------------------------------
@pytest.mark.parametrize("out,words", [
    ("missing/out.png", ["does not exist", "missing"]),
    ("out.xyz", ["cannot write '.xyz'"]),
    ("out", ["no file extension"]),
    ("alpha.jpg", ["JPEG cannot store the alpha"]),
])
def test_output_problems_are_found_before_contacting_the_server(tmp_path, capsys, out, words):
    src = tmp_path / "in.png"
    _photo(src, 1, c=4)
    dst = tmp_path / out
    t = time.monotonic()
    # a dead server address: had the work started, this would be the no-server status 3
    assert main(["restore", str(src), str(dst), "--address", _dead()]) == 1
    assert time.monotonic() - t < 1.5
    err = capsys.readouterr().err
    assert str(dst) in err and all(w in err for w in words), err
    assert "Errno" not in err and not dst.exists()


def test_existing_output_is_refused_without_overwrite(address, tmp_path, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    _photo(src, 2)
    dst.write_bytes(b"someone's file")
    assert main(["restore", str(src), str(dst), "--address", _dead()]) == 1
    err = capsys.readouterr().err
    assert str(dst) in err and "--overwrite" in err and dst.read_bytes() == b"someone's file"
    assert main(["restore", str(src), str(dst), "--address", address, "--overwrite"]) == 0
    assert Image.open(dst).size == (32, 24)


def test_symlink_output_is_never_followed(address, tmp_path, capsys):
    src, target, link = tmp_path / "in.png", tmp_path / "precious.png", tmp_path / "out.png"
    _photo(src, 3)
    target.write_bytes(b"precious")
    link.symlink_to(target)
    assert main(["restore", str(src), str(link), "--address", address]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["restore", str(src), str(link), "--address", address, "--overwrite"]) == 0
    assert target.read_bytes() == b"precious"          # the link was replaced, not written through
    assert not link.is_symlink() and Image.open(link).size == (32, 24)


def test_failed_write_keeps_the_old_result(address, tmp_path, monkeypatch, capsys):
    src, dst = tmp_path / "in.png", tmp_path / "out.png"
    _photo(src, 4)
    dst.write_bytes(b"old result")

    def full_disk(self, fp, *a, **k):
        fp.write(b"half")
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert main(["restore", str(src), str(dst), "--address", address, "--overwrite"]) == 1
    assert "No space left" in capsys.readouterr().err
    assert dst.read_bytes() == b"old result" and sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "out.png"]


# -- item: batches ---------------------------------------------------------------------------
def _album(tmp_path: Path):
    album, masks = tmp_path / "album", tmp_path / "masks"
    album.mkdir()
    masks.mkdir()
    imgs = {f"p{i}": _photo(album / f"p{i}.png", 10 + i) for i in range(3)}
    mk = {"p0": random_mask(1, 24, 32), "p2": random_mask(2, 24, 32)}
    Image.fromarray(mk["p0"]).save(masks / "p0.png")
    Image.fromarray(mk["p2"]).save(masks / "p2_mask.png")          # the bundled sample's naming
    (album / "notes.txt").write_text("not a photo")
    (album / "broken.png").write_bytes(b"not really a png")
    return album, masks, imgs, mk


def test_batch_folder_with_masks_summary_and_skip(address, reference, tmp_path, capsys):
    album, masks, imgs, mk = _album(tmp_path)
    out = tmp_path / "restored"
    assert main(["restore", str(album), str(out), "--mask", str(masks), "--address", address]) == 1
    cap = capsys.readouterr()
    for name, img in imgs.items():
        got = np.asarray(Image.open(out / f"{name}.png"))
        np.testing.assert_array_equal(got, reference.restore(img, mk.get(name)))
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p1.png", "p2.png"]
    assert "3 restored, 0 skipped (already done), 1 failed, of 4 photos" in cap.out
    assert f"{album / 'broken.png'}: " in cap.out and "not an image file" in cap.out
    assert "photos/s" in cap.err and "ETA" in cap.err
    # again: what is done is skipped, the broken one is tried and reported again
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert main(["restore", str(album), str(out), "--mask", str(masks), "--address", address]) == 1
    assert "0 restored, 3 skipped (already done), 1 failed" in capsys.readouterr().out
    assert before == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}


def test_batch_glob_in_process_with_ext(weights_path, reference, tmp_path, capsys):
    album, _, imgs, _ = _album(tmp_path)
    out = tmp_path / "jpegs"
    rc = main(["restore", str(album / "p[01].png"), str(out), "--ext", "jpg", "--in-process",
               "--weights", str(weights_path), "--device", "cpu", "--precision", "fp32"])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["p0.jpg", "p1.jpg"]
    assert Image.open(out / "p0.jpg").format == "JPEG"
    assert "2 restored, 0 skipped (already done), 0 failed, of 2 photos" in capsys.readouterr().out


def test_batch_plan_problems_before_any_work(tmp_path, capsys):
    album, _, _, _ = _album(tmp_path)
    cases = [
        ([str(tmp_path / "nope" / "*.png"), str(tmp_path / "o")], "no image file matches"),
        ([str(album), str(tmp_path / "x" / "y")], "does not exist"),
        ([str(album), str(album / "p0.png")], "OUT must be a folder"),
        ([str(album), str(tmp_path / "o"), "--mask", str(album / "p0.png")], "folder of masks"),
        ([str(album), str(tmp_path / "o"), "--ext", "xyz"], "cannot write '.xyz'"),
    ]
    for args, words in cases:
        assert main(["restore", *args, "--address", _dead()]) == 1, args
        err = capsys.readouterr().err
        assert words in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_batch_without_server_says_so_once(tmp_path, capsys):
    album, _, _, _ = _album(tmp_path)
    assert main(["restore", str(album), str(tmp_path / "o"), "--address", _dead()]) == 3
    assert capsys.readouterr().err.count("python -m server") == 1


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def test_ctrl_c_then_the_same_command_resumes(weights_path, tmp_path):
    album = tmp_path / "album"
    album.mkdir()
    for i in range(8):
        _photo(album / f"p{i}.png", 20 + i, size=(192, 256))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "server", "restore", str(album), str(out), "--in-process",
           "--weights", str(weights_path), "--device", "cpu", "--precision", "fp32"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert first.startswith("restored"), (first, proc.stderr.read() if proc.poll() is not None else "")
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "photos left: run the same command again" in rest and "Traceback" not in err
    done = sorted(p.name for p in out.iterdir())
    assert 1 <= len(done) < 8 and all(not n.startswith(".") for n in done), done
    for n in done:                                     # every file there is a whole photo
        assert np.asarray(Image.open(out / n)).shape == (192, 256, 3)
    r = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{8 - len(done)} restored, {len(done)} skipped (already done), 0 failed, of 8 photos" in r.stdout
    assert len(list(out.iterdir())) == 8


# -- item: the demo's output ----------------------------------------------------------------------
def test_demo_writes_to_pictures_and_says_where(weights_path, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    (home / "Pictures").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    args = ["demo", "--address", _dead(), "--weights", str(weights_path), "--device", "cpu"]
    assert main(args) == 0
    first = home / "Pictures" / "oldphoto-demo" / "grace_hopper_old-restored.png"
    assert f"wrote {first}" in capsys.readouterr().out and first.is_file()
    assert main(args) == 0                                # a second run never replaces the first
    second = first.with_name("grace_hopper_old-restored-2.png")
    assert f"wrote {second}" in capsys.readouterr().out and second.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["home"]   # nothing in the current folder


def test_demo_without_pictures_uses_the_temporary_folder(weights_path, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    assert main(["demo", "--address", _dead(), "--weights", str(weights_path), "--device", "cpu"]) == 0
    want = tmp_path / "tmp" / "oldphoto-demo" / "grace_hopper_old-restored.png"
    assert f"wrote {want}" in capsys.readouterr().out and want.is_file()


def test_demo_out_problems_before_starting_anything(tmp_path, capsys):
    existing = tmp_path / "d.png"
    existing.write_bytes(b"mine")
    t = time.monotonic()
    assert main(["demo", "--address", _dead(), "--out", str(existing)]) == 1
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == b"mine"
    assert main(["demo", "--address", _dead(), "--out", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err
    assert time.monotonic() - t < 2.0                    # no model was loaded
