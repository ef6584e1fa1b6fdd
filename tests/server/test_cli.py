"""``python -m server``: a real server process, the flags, restore and demo commands."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.cli import bundled_sample, main, serve_parser
from server.client import Client
from server.config import ServerConfig, config_fields

from .helpers import free_port, random_image, random_mask

ROOT = Path(__file__).resolve().parents[2]


def _env():
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _read_line(proc, timeout):
    """First stdout line of ``proc`` within ``timeout`` s (the server prints one when ready)."""
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        proc.kill()
        raise AssertionError(f"no start-up line within {timeout} s: {proc.stderr.read()}")
    return proc.stdout.readline()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_python_m_server_serves_info_to_another_process(weights_path, tmp_path, sig):
    bind = (f"tcp://127.0.0.1:{free_port()}" if sig == signal.SIGINT
            else f"ipc://{tmp_path}/oldphoto.sock")
    proc = subprocess.Popen([sys.executable, "-m", "server", "--bind", bind, "--weights", str(weights_path),
                             "--device", "cpu", "--precision", "fp32", "--queue-size", "3"],
                            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc, 60)
        assert f"listening on {bind}" in line and "device cpu" in line and "w.pt@" in line
        # a second process asks it
        r = subprocess.run([sys.executable, "-m", "server", "info", "--address", bind], cwd=ROOT, env=_env(),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert '"device": "cpu"' in r.stdout and '"queue_size": 3' in r.stdout
        assert f'"pid": {proc.pid}' not in r.stdout and str(weights_path) not in r.stdout   # nothing private
        with Client(bind) as cl:                     # and a restore through it is right
            img = random_image(1, 20, 24, 3)
            data, meta = cl.restore(img.tobytes(), 24, 20, 3)
            assert meta["weights"].startswith("w.pt@")
    finally:
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "stopped" in out


def test_non_loopback_bind_needs_the_flag(weights_path, capsys):
    assert main(["--bind", "tcp://0.0.0.0:5999", "--weights", str(weights_path)]) == 2
    assert "--allow-remote" in capsys.readouterr().err


def test_non_loopback_bind_never_runs_without_curve(tmp_path, capsys):
    assert main(["--bind", f"tcp://0.0.0.0:{free_port()}", "--allow-remote", "--curve", "off",
                 "--weights", str(tmp_path / "none.pt")]) == 2
    err = capsys.readouterr().err
    assert "requires CURVE" in err and "file not found" not in err    # refused before loading anything


@pytest.fixture
def no_default_weights(tmp_path, monkeypatch):
    """An installation whose default weight file is missing."""
    import oldphoto_model.weights
    monkeypatch.setattr(oldphoto_model.weights, "DEFAULT_WEIGHTS", tmp_path / "missing" / "default.pt")


def test_missing_default_weights_is_a_clear_message(no_default_weights, capsys):
    assert main(["--bind", f"tcp://127.0.0.1:{free_port()}"]) == 2
    err = capsys.readouterr().err
    assert "no default weights" in err and "--weights" in err and "Traceback" not in err


def test_port_in_use_is_a_clear_message(server, weights_path, capsys):
    assert main(["--bind", server.endpoint, "--weights", str(weights_path), "--device", "cpu"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def test_flags_are_generated_from_server_config():
    parser = serve_parser()
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == {f.name for f in config_fields()}
    defaults = parser.parse_args([])
    assert ServerConfig(**vars(defaults)) == ServerConfig()
    assert defaults.bind == "tcp://127.0.0.1:5587"


MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


@pytest.mark.parametrize("via", ["server", "in-process"])
@pytest.mark.parametrize("mode", list(MODES))
def test_restore_command_keeps_the_mode(address, weights_path, reference, tmp_path, capsys, via, mode):
    c = MODES[mode]
    img = random_image(c + 30, 36, 28, c)
    mask = random_mask(c + 30, 36, 28)
    src, msk, dst = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    Image.fromarray(img[..., 0] if c == 1 else img, mode).save(src)
    Image.fromarray(mask, "L").convert("RGB").save(msk)       # any mode is read as gray
    before = src.read_bytes()
    args = ["restore", str(src), str(dst), "--mask", str(msk)]
    args += ["--address", address] if via == "server" else ["--in-process", "--weights", str(weights_path),
                                                            "--device", "cpu", "--precision", "fp32"]
    assert main(args) == 0
    out = Image.open(dst)
    assert out.mode == mode and out.size == (28, 36)
    got = np.asarray(out).reshape(36, 28, c)
    np.testing.assert_array_equal(got, reference.restore(img, mask))
    assert src.read_bytes() == before
    assert "restored" in capsys.readouterr().out


def test_restore_command_refuses_to_overwrite_the_input(address, tmp_path, capsys):
    src = tmp_path / "in.png"
    Image.fromarray(random_image(1, 16, 16, 3)).save(src)
    before = src.read_bytes()
    assert main(["restore", str(src), str(src), "--address", address]) == 1
    assert "--overwrite" in capsys.readouterr().err and src.read_bytes() == before
    assert main(["restore", str(src), str(src), "--address", address, "--overwrite"]) == 0
    assert src.read_bytes() != before


def test_restore_command_jpeg_tiff_and_errors(address, reference, tmp_path, capsys):
    img = random_image(2, 24, 32, 3)
    src = tmp_path / "in.tif"
    Image.fromarray(img).save(src)
    assert main(["restore", str(src), str(tmp_path / "o.jpg"), "--address", address]) == 0
    assert Image.open(tmp_path / "o.jpg").format == "JPEG"
    assert main(["restore", str(src), str(tmp_path / "o.tiff"), "--address", address,
                 "--restrict-to-mask"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.tiff")), reference.restore(img))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "small.png")
    assert main(["restore", str(src), str(tmp_path / "x.png"), "--address", address,
                 "--mask", str(tmp_path / "small.png")]) == 1
    assert "5x5" in capsys.readouterr().err
    dead = f"tcp://127.0.0.1:{free_port()}"
    assert main(["restore", str(src), str(tmp_path / "x.png"), "--address", dead]) == 3
    assert "python -m server" in capsys.readouterr().err


def test_demo_without_weights_says_so(no_default_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["demo", "--address", f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path / "d.png")])
    assert rc == 2
    assert "no default weights" in capsys.readouterr().err
    assert not (tmp_path / "d.png").exists()


def test_demo_with_weights_writes_the_result(weights_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    rc = main(["demo", "--address", f"tcp://127.0.0.1:{free_port()}", "--weights", str(weights_path),
               "--device", "cpu", "--out", str(tmp_path / "d.png")])
    assert rc == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "d.png") in out
    assert "grace_hopper_old.png" in out and "python -m gimp_plugin install" in out
    restored = np.asarray(Image.open(tmp_path / "d.png"))
    sample, mask = bundled_sample()
    original = np.asarray(Image.open(sample))
    assert mask is not None and np.asarray(Image.open(mask)).any()
    assert restored.shape == original.shape and not np.array_equal(restored, original)
