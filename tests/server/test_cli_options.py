"""``python -m server restore``/``info``: mistyped addresses, images beyond the server's
limits, the restore tuning flags and 16-bit photos (a real server on loopback)."""
from __future__ import annotations

import re
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oldphoto_model import RestoreOptions
from server.cli import main, restore_parser
from server.protocol import OPTIONS

from . import test_client
from .helpers import random_image, random_mask

small_server = test_client.small_server     # the fixture: a server that takes at most 1000 pixels


@pytest.mark.parametrize("address,meant", [
    ("localhost:5587", "did you mean tcp://localhost:5587?"), ("127.0.0.1:5587", "did you mean tcp://127.0.0.1:5587?"),
    ("tcp://127.0.0.1", "did you mean tcp://127.0.0.1:5587?"), ("tcp://host:notaport", "from 1 to 65535")])
@pytest.mark.parametrize("command", ["restore", "info"])
def test_mistyped_address_is_a_usage_error_at_once(tmp_path, capsys, address, meant, command):
    src = tmp_path / "in.png"
    Image.fromarray(random_image(1, 8, 8, 3)).save(src)
    args = ["restore", str(src), str(tmp_path / "out.png")] if command == "restore" else ["info"]
    t = time.monotonic()
    with pytest.raises(SystemExit) as e:
        main(args + ["--address", address])
    assert e.value.code == 2 and time.monotonic() - t < 1.0
    err = capsys.readouterr().err
    assert f"argument --address: server address {address}" in err and meant in err
    assert not (tmp_path / "out.png").exists()


def test_image_beyond_the_server_limits_is_said_at_once(small_server, tmp_path, capsys):
    """200x120 RGB: a frame beyond what ZeroMQ lets through to this server, so it would be
    dropped without an answer; the client asks the limits first and says what to do."""
    src = tmp_path / "big.png"
    Image.fromarray(random_image(2, 120, 200, 3)).save(src)
    t = time.monotonic()
    assert main(["restore", str(src), str(tmp_path / "out.png"), "--address", small_server.endpoint]) == 1
    assert time.monotonic() - t < 3.0
    err = capsys.readouterr().err
    assert "200x120 pixels" in err and "Scale it down" in err
    assert "python -m server --max-pixels 24000 --max-side 200" in err
    assert not (tmp_path / "out.png").exists()


def test_restore_tuning_flags_come_from_the_protocol():
    ns = restore_parser().parse_args(["in.png", "out.png"])
    for name, (_typ, default, _help) in OPTIONS.items():
        assert getattr(ns, name) == default == getattr(RestoreOptions(), name)
    ns = restore_parser().parse_args(["in.png", "out.png", "--grow", "3", "--no-match-tone", "--detail", "0.5",
                                      "--tone", "1", "--sharpen", "0", "--black-point", "1"])
    assert (ns.grow, ns.match_tone, ns.detail, ns.tone, ns.sharpen, ns.black_point) == (3, False, 0.5, 1.0, 0.0, 1.0)
    assert f"(default: {RestoreOptions().tone})" in " ".join(restore_parser().format_help().split())


def test_protocol_doc_lists_every_option_with_its_default():
    """docs/protocol.md's options table names every option of the protocol with the
    model's default (the defaults are typed there; this keeps them true)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]+?) \|", doc, re.M))
    for name, (typ, default, _help) in OPTIONS.items():
        assert name in rows, f"docs/protocol.md has no row for option {name}"
        cell = rows[name]
        assert (cell == str(default).lower()) if typ is bool else (typ(cell) == default), (name, cell, default)


@pytest.mark.parametrize("via", ["server", "in-process"])
def test_restore_tuning_flags_reach_the_model(address, weights_path, reference, tmp_path, via):
    img, mask = random_image(5, 32, 40, 3), random_mask(5, 32, 40)
    src, msk, dst = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    Image.fromarray(img).save(src)
    Image.fromarray(mask).save(msk)
    args = ["restore", str(src), str(dst), "--mask", str(msk), "--restrict-to-mask", "--grow", "3",
            "--no-match-tone", "--detail", "0.5", "--tone", "1"]
    args += ["--address", address] if via == "server" else ["--in-process", "--weights", str(weights_path),
                                                            "--device", "cpu", "--precision", "fp32"]
    assert main(args) == 0
    tuning = dict(restrict_to_mask=True, grow=3, match_tone=False, detail=0.5)
    want = reference.restore(img, mask, RestoreOptions(tone=1.0, **tuning))
    np.testing.assert_array_equal(np.asarray(Image.open(dst)), want)
    assert not np.array_equal(want, reference.restore(img, mask, RestoreOptions(restrict_to_mask=True)))
    assert not np.array_equal(want, reference.restore(img, mask, RestoreOptions(**tuning)))   # tone counted


def write_png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit PNG (gray, or RGB), written by hand: Pillow cannot write 16-bit RGB."""
    h, w = arr.shape[:2]
    color = 2 if arr.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _read16(path: Path) -> np.ndarray:
    """A 16-bit result as uint16 H x W x C (gray through Pillow, colour through OpenCV)."""
    im = Image.open(path)
    if im.mode == "I;16":
        return np.asarray(im)[:, :, None]
    cv2 = pytest.importorskip("cv2")
    a = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return a[:, :, [2, 1, 0, 3][:a.shape[2]]]


@pytest.mark.parametrize("via", ["server", "in-process"])
@pytest.mark.parametrize("channels", [1, 3], ids=["gray16", "rgb16"])
def test_16_bit_photos_keep_16_bits(address, weights_path, reference, tmp_path, capsys, via, channels):
    """A 16-bit scan written as PNG or TIFF keeps its 16 bits through the server (the
    wire's u16) and in-process: the same as the restore contract on the uint16 array.
    Colour needs OpenCV (Pillow reads and writes colour in 8 bits only)."""
    if channels == 3:
        pytest.importorskip("cv2")
    rng = np.random.default_rng(channels)
    deep = rng.integers(0, 65536, (24, 20, channels) if channels == 3 else (24, 20), dtype=np.uint16)
    src = tmp_path / "scan.png"
    write_png16(src, deep)
    want = reference.restore(deep.reshape(24, 20, channels))
    for ext in ("png", "tif"):
        dst = tmp_path / f"out.{ext}"
        args = ["restore", str(src), str(dst)]
        args += ["--address", address] if via == "server" else ["--in-process", "--weights", str(weights_path),
                                                                "--device", "cpu", "--precision", "fp32"]
        assert main(args) == 0
        assert f"{src} has 16 bits per channel; restored in 16 bits" in capsys.readouterr().err
        got = _read16(dst)
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got, want)
        assert np.count_nonzero(got % 257) > got.size // 2       # not an 8-bit result scaled up


def _restore_16_via(address, deep, dst, capsys):
    """Write ``deep`` as a 16-bit PNG beside ``dst``, restore it through the server into
    ``dst``; returns (source path, dst, what was said on stderr)."""
    src = dst.parent / "scan.png"
    write_png16(src, deep)
    assert main(["restore", str(src), str(dst), "--address", address]) == 0
    return src, dst, capsys.readouterr().err


@pytest.mark.parametrize("channels", [1, 3], ids=["gray16", "rgb16"])
def test_16_bit_photos_into_8_bit_formats_say_so(address, reference, tmp_path, capsys, channels):
    """A JPEG holds 8 bits: the photo is restored in 8 bits and a note says why."""
    rng = np.random.default_rng(channels)
    deep = rng.integers(0, 65536, (24, 20, channels) if channels == 3 else (24, 20), dtype=np.uint16)
    src, dst, err = _restore_16_via(address, deep, tmp_path / "out.jpg", capsys)
    assert f"{src} has 16 bits per channel; restored in 8 bits" in err
    assert "the result's format stores 8 bits" in err
    assert Image.open(dst).mode == ("RGB" if channels == 3 else "L")


def test_16_bit_colour_without_opencv_says_what_to_install(address, reference, tmp_path, capsys, monkeypatch):
    from server import batch
    monkeypatch.setattr(batch, "_cv2", lambda: None)
    deep = np.random.default_rng(3).integers(0, 65536, (24, 20, 3), dtype=np.uint16)
    src, dst, err = _restore_16_via(address, deep, tmp_path / "out.png", capsys)
    assert f"{src} has 16 bits per channel; restored in 8 bits" in err
    assert "install opencv-python-headless to keep 16 bits" in err
    out = np.asarray(Image.open(dst))
    assert out.dtype == np.uint8
    # 8 bits as Pillow reads 16-bit RGB (the high byte)
    np.testing.assert_array_equal(out, reference.restore((deep >> 8).astype(np.uint8)))
