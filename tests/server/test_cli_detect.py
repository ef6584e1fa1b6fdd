"""``python -m server detect IN MASK_OUT`` and ``restore --detect``: through a real server
(loopback TCP) and in-process, output-path checks before any work, typed failures."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from oldphoto_model.detect import detect
from server.cli import main

from .helpers import free_port, random_image, random_mask

MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def _photo(tmp_path, c=3, seed=40, h=36, w=44):
    img = random_image(seed, h, w, c)
    src = tmp_path / "in.png"
    Image.fromarray(img[..., 0] if c == 1 else img, [k for k, v in MODES.items() if v == c][0]).save(src)
    return img, src


def _via(kind, det_server, detector_path):
    return ["--address", det_server.endpoint] if kind == "server" else [
        "--in-process", "--detector", str(detector_path), "--device", "cpu"]


@pytest.mark.parametrize("via", ["server", "in-process"])
@pytest.mark.parametrize("mode", list(MODES))
def test_detect_writes_the_mask(det_server, detector_path, local_detector, tmp_path, capsys, via, mode):
    img, src = _photo(tmp_path, MODES[mode], seed=41 + MODES[mode])
    out, prob = tmp_path / "mask.png", tmp_path / "prob.png"
    before = src.read_bytes()
    assert main(["detect", str(src), str(out), "--probability", str(prob)] + _via(via, det_server, detector_path)) == 0
    want_prob, want_mask = detect(img, local_detector)
    got = Image.open(out)
    assert got.mode == "L" and got.size == (44, 36)
    np.testing.assert_array_equal(np.asarray(got), want_mask)
    assert 0 < (want_mask > 0).mean() < 1
    np.testing.assert_array_equal(np.asarray(Image.open(prob)), np.rint(want_prob * 255).astype(np.uint8))
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "% of the pixels" in text and "threshold 0.22" in text
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "mask.png", "prob.png"]   # no temporaries


def test_detect_threshold_flag(det_server, local_detector, tmp_path):
    img, src = _photo(tmp_path)
    out = tmp_path / "m.png"
    assert main(["detect", str(src), str(out), "--threshold", "0.26", "--address", det_server.endpoint]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out)), detect(img, local_detector, 0.26)[1])
    assert main(["detect", str(src), str(tmp_path / "n.png"), "--threshold", "1.5",
                 "--address", det_server.endpoint]) == 2


@pytest.mark.parametrize("case", ["exists", "is input", "no folder", "bad extension", "same as probability"])
def test_detect_output_problems_before_any_work(tmp_path, capsys, case):
    """Path problems are said before the server is contacted (none listens here)."""
    _, src = _photo(tmp_path)
    dead = ["--address", f"tcp://127.0.0.1:{free_port()}"]
    out = {"exists": tmp_path / "old.png", "is input": src, "no folder": tmp_path / "nope" / "m.png",
           "bad extension": tmp_path / "m.xyz", "same as probability": tmp_path / "m.png"}[case]
    if case == "exists":
        out.write_bytes(b"keep me")
    extra = ["--probability", str(tmp_path / "m.png")] if case == "same as probability" else []
    assert main(["detect", str(src), str(out)] + extra + dead) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "no restoration server" not in err
    if case == "exists":
        assert "--overwrite" in err and out.read_bytes() == b"keep me"


def test_detect_without_server_or_detector(address, tmp_path, capsys):
    _, src = _photo(tmp_path)
    assert main(["detect", str(src), str(tmp_path / "a.png"), "--address", f"tcp://127.0.0.1:{free_port()}"]) == 3
    assert "python -m server" in capsys.readouterr().err
    assert main(["detect", str(src), str(tmp_path / "b.png"), "--address", address]) == 1   # no detector there
    assert "cannot find scratches" in capsys.readouterr().err
    assert main(["detect", str(src), str(tmp_path / "c.png"), "--in-process", "--detector",
                 str(tmp_path / "gone.pt")]) == 2
    err = capsys.readouterr().err
    assert "file not found" in err and "Traceback" not in err
    assert not any((tmp_path / n).exists() for n in ("a.png", "b.png", "c.png"))


@pytest.mark.parametrize("via", ["server", "in-process"])
def test_restore_detect(det_server, weights_path, detector_path, local_detector, reference, tmp_path, capsys, via):
    img, src = _photo(tmp_path, seed=50)
    dst = tmp_path / "out.png"
    args = ["restore", str(src), str(dst), "--detect", "--grow", "1"] + _via(via, det_server, detector_path)
    if via == "in-process":
        args += ["--weights", str(weights_path), "--precision", "fp32"]
    assert main(args) == 0
    from oldphoto_model import RestoreOptions
    from oldphoto_model.detect import DETECT_GROW
    found = detect(img, local_detector)[1]
    got = np.asarray(Image.open(dst))
    np.testing.assert_array_equal(got, reference.restore(img, found, RestoreOptions(grow=1 + DETECT_GROW)))
    assert not np.array_equal(got, reference.restore(img, None, RestoreOptions(grow=1)))
    assert "detected scratches on" in capsys.readouterr().out


def test_restore_detect_refusals(address, det_server, tmp_path, capsys):
    img, src = _photo(tmp_path)
    msk = tmp_path / "mask.png"
    Image.fromarray(random_mask(1, 36, 44)).save(msk)
    assert main(["restore", str(src), str(tmp_path / "o1.png"), "--mask", str(msk), "--detect",
                 "--address", det_server.endpoint]) == 1
    assert "--mask and --detect" in capsys.readouterr().err
    assert main(["restore", str(src), str(tmp_path / "o2.png"), "--detect", "--address", address]) == 1
    err = capsys.readouterr().err
    assert "cannot find scratches" in err and "without a scratch detector" in err
    assert not (tmp_path / "o1.png").exists() and not (tmp_path / "o2.png").exists()


def test_batch_restore_detect_only_where_no_mask(det_server, local_detector, reference, tmp_path, capsys):
    """A batch with --detect: photos with a mask use it, the others get the detected one."""
    from oldphoto_model import RestoreOptions
    from oldphoto_model.detect import DETECT_GROW
    album, masks, out = tmp_path / "album", tmp_path / "masks", tmp_path / "out"
    album.mkdir()
    masks.mkdir()
    a, b = random_image(60, 32, 40, 3), random_image(61, 32, 40, 3)
    Image.fromarray(a).save(album / "a.png")
    Image.fromarray(b).save(album / "b.png")
    ma = random_mask(60, 32, 40)
    Image.fromarray(ma).save(masks / "a.png")
    assert main(["restore", str(album), str(out), "--mask", str(masks), "--detect",
                 "--address", det_server.endpoint]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(out / "a.png")), reference.restore(a, ma))
    np.testing.assert_array_equal(np.asarray(Image.open(out / "b.png")),
                                  reference.restore(b, detect(b, local_detector)[1], RestoreOptions(grow=DETECT_GROW)))
