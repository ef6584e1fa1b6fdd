"""GIMP 2.10 runs the gimpfu plug-in, the shared module and the client on Python 2.7."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..py27 import find_python27
from .test_gimpfu_plugin import TUNING

ROOT = Path(__file__).resolve().parents[2]
NO_PYC = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")   # Python 2 writes .pyc beside sources
PY2_FILES = [ROOT / "gimp_plugin/gimp2/oldphoto_restore.py", ROOT / "gimp_plugin/common/oldphoto_common.py",
             ROOT / "server/client.py", ROOT / "server/wire.py", ROOT / "gimp_plugin/testing/gimpfu_stub/gimp.py",
             ROOT / "gimp_plugin/testing/gimpfu_stub/gimpfu.py"]


def test_vermin_says_python_2_7():
    pytest.importorskip("vermin", reason="vermin is in the test extras: pip install -e .[test]")
    r = subprocess.run([sys.executable, "-c", "import sys; from vermin import main; sys.exit(main())", "-t=2.7-", "-t=3.6-", "--no-tips", "--violations",
                        *map(str, PY2_FILES)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_real_python27_compiles_and_runs_common(tmp_path):
    """With a real 2.7 at hand (optional): compile every file and exercise the shared
    module's pure-Python byte handling."""
    py = find_python27()
    if py is None:
        pytest.skip("no Python 2.7 interpreter here (vermin covers it)")
    for f in PY2_FILES:
        shutil.copy(f, tmp_path / f.name)
    code = (
        "import py_compile, sys\n"
        "for f in %r: py_compile.compile(f, doraise=True)\n"
        "sys.path.insert(0, %r)\n"
        "import oldphoto_common as c\n"
        "b = bytes(bytearray(range(24)))\n"
        "assert c.crop(b, 4, 2, 1, 1, 2, 2) == bytes(bytearray([10, 11, 12, 13, 18, 19, 20, 21]))\n"
        "d = bytearray(24); c.paste(d, 4, 2, 1, 1, 2, 2, b'\\x01' * 8)\n"
        "assert c.mask_bbox(bytes(bytearray([0, 0, 0, 0, 0, 5, 0, 0])), 4, 2) == (1, 1, 1, 1)\n"
        "assert c.options_from({'use_selection': 0})['use_selection'] is False\n"
        "try:\n    c.import_client()\nexcept c.PluginError as e:\n    assert sys.executable in e.message\n"
        "print('ok')\n" % ([str(tmp_path / f.name) for f in PY2_FILES], str(tmp_path)))
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, cwd=str(tmp_path), timeout=60,
                       env=NO_PYC)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


def test_gimpfu_plugin_on_real_python27_against_server(tmp_path, server):
    """Where a Python 2.7 with pyzmq and msgpack exists (GIMP 2.10's situation): the
    installed 2.10 plug-in, on the gimpfu stub, restores through the real server."""
    import numpy as np

    from gimp_plugin import installer
    from gimp_plugin.testing.server_process import reference
    from server.client import crop_plan
    py = find_python27(("zmq", "msgpack"))
    if py is None:
        pytest.skip("no Python 2.7 with pyzmq and msgpack here (python2.7 -m pip install 'pyzmq<20' "
                    "'msgpack<1.1', or set OLDPHOTO_PYTHON27); vermin covers the syntax")
    dest = tmp_path / "plug-ins"
    installer.install("2.10", dest)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    sel = np.zeros((60, 80), np.uint8)
    sel[30:33, 10:70] = 255
    sel[29, 10:70] = 90
    (tmp_path / "photo.raw").write_bytes(img.tobytes())
    (tmp_path / "sel.raw").write_bytes(sel.tobytes())
    stub = installer.HERE / "testing" / "gimpfu_stub"
    code = (
        "import sys\n"
        "sys.path[:0] = [%r, %r]\n"
        "import gimp, gimpfu, oldphoto_restore\n"
        "d = %r\n"
        "image = gimp.Image(80, 60, gimp.RGB)\n"
        "layer = gimp.Layer(image, 'photo', 80, 60, gimp.RGB_IMAGE)\n"
        "image.insert_layer(layer)\n"
        "layer.get_pixel_rgn(0, 0, 80, 60, True, False)[0:80, 0:60] = open(d + '/photo.raw', 'rb').read()\n"
        "image.selection.get_pixel_rgn(0, 0, 80, 60, True, False)[0:80, 0:60] = open(d + '/sel.raw', 'rb').read()\n"
        "gimpfu.pdb.python_fu_oldphoto_restore(image, layer, True, True, False, %r, '', *%r)\n"
        "assert [l.name for l in image.layers] == ['photo (restored)', 'photo']\n"
        "open(d + '/new.raw', 'wb').write(image.layers[0].pixels())\n"
        "print(sys.version_info[:2])\n" % (str(stub), str(dest), str(tmp_path), server.address, TUNING))
    r = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=120, env=NO_PYC)
    assert r.returncode == 0 and "(2, 7)" in r.stdout, r.stdout + r.stderr
    got = np.frombuffer((tmp_path / "new.raw").read_bytes(), np.uint8).reshape(img.shape)
    want = reference(server.weights, img, sel, True, crop_plan(80, 60, (10, 29, 60, 4)))
    assert np.array_equal(got, want)
