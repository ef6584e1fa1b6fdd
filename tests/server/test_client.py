"""The client module alone: absent server, crop_plan, Python 2.7 compatibility."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from server.client import (
    DEFAULT_ADDRESS,
    DEFAULT_PORT,
    START_HINT,
    BadAddress,
    Client,
    ClientError,
    ServerUnavailable,
    TooLarge,
    crop_plan,
    size_problem,
)
from server.wire import AddressError, check_address

from ..py27 import find_python27
from .helpers import free_port, random_image, random_mask

CLIENT = Path(__file__).resolve().parents[2] / "server" / "client.py"


def test_constants():
    assert DEFAULT_PORT == 5587 and DEFAULT_ADDRESS == "tcp://127.0.0.1:5587"
    assert "python -m server" in START_HINT and "oldphoto-server" in START_HINT


@pytest.mark.parametrize("call", ["ping", "info", "restore"])
def test_absent_server_is_reported_within_3_s(call):
    address = f"tcp://127.0.0.1:{free_port()}"
    t0 = time.time()
    with Client(address) as cl, pytest.raises(ServerUnavailable) as e:
        if call == "restore":
            cl.restore(bytes(12), 2, 2, 3)
        else:
            getattr(cl, call)()
    assert time.time() - t0 < 3.0
    assert address in e.value.message and START_HINT in e.value.message
    assert e.value.code == "server_unavailable"


def test_client_checks_sizes_before_sending(address):
    with Client(address) as cl, pytest.raises(ClientError) as e:
        cl.restore(bytes(11), 2, 2, 3)
    assert e.value.code == "client_input"


def test_client_accepts_numpy_and_bytearray(address, reference):
    img = random_image(3, 12, 16, 3)
    with Client(address) as cl:
        a, _ = cl.restore(img, 16, 12, 3)
        b, _ = cl.restore(bytearray(img.tobytes()), 16, 12, 3)
    assert a == b == reference.restore(img).tobytes()


@pytest.mark.parametrize("bbox,margin,expected", [
    (None, 10, (0, 0, 100, 80)),                  # no selection: whole layer
    ((0, 0, 0, 0), 10, (0, 0, 100, 80)),          # empty selection: whole layer
    ((40, 30, 10, 10), 8, (32, 20, 28, 28)),      # grown by 8, snapped outwards to 4
    ((41, 31, 9, 9), 0, (40, 28, 12, 12)),
    ((2, 3, 5, 5), 16, (0, 0, 24, 24)),           # clipped at the top-left
    ((90, 70, 10, 10), 16, (72, 52, 28, 28)),     # clipped at the bottom-right
    ((-50, -50, 10, 10), 0, (0, 0, 100, 80)),     # outside the layer: whole layer
])
def test_crop_plan(bbox, margin, expected):
    assert crop_plan(100, 80, bbox, margin) == expected


def test_crop_plan_contains_the_box_with_margin():
    rng = np.random.default_rng(0)
    for _ in range(500):
        W, H = rng.integers(1, 300, 2)
        x, y = rng.integers(0, W), rng.integers(0, H)
        w, h = rng.integers(1, W - x + 1), rng.integers(1, H - y + 1)
        m = int(rng.integers(0, 50))
        cx, cy, cw, ch = crop_plan(W, H, (x, y, w, h), m)
        assert 0 <= cx <= max(0, x - m) and 0 <= cy <= max(0, y - m)
        assert min(W, x + w + m) <= cx + cw <= W and min(H, y + h + m) <= cy + ch <= H
        assert cx % 4 == 0 and cy % 4 == 0


def test_importing_the_client_does_not_import_torch():
    code = "import sys, server.client; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=CLIENT.parents[1]).stdout.split()
    assert out == ["False", "False"]


def test_client_is_python_2_7_compatible_per_vermin():
    vermin = shutil.which("vermin")
    if vermin is None:
        pytest.skip("vermin is not installed (pip install vermin); Python 2.7 syntax check not run")
    r = subprocess.run([vermin, "-t=2.7-", "-t=3.6-", "--no-tips", "--violations", str(CLIENT)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


PY2_SCRIPT = r"""
from __future__ import print_function
import sys, hashlib, time
import oldphoto_client as oc
addr, w, h, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pixels = open(sys.argv[5], "rb").read()
mask = open(sys.argv[6], "rb").read()
with oc.Client(addr) as cl:
    assert cl.ping()["protocol"] == oc.PROTOCOL_VERSION
    stages = []
    out, meta = cl.restore(pixels, w, h, c, mask=mask, options={"restrict_to_mask": True},
                           progress=lambda f, s: stages.append(s))
    assert isinstance(out, bytes) and stages[-1] == "done", stages
    print(hashlib.sha256(out).hexdigest())
    print(meta["device"])
t0 = time.time()
try:
    oc.Client(sys.argv[7]).ping()
except oc.ServerUnavailable as e:
    assert "python -m server" in e.message
    print("unavailable %.1f" % (time.time() - t0))
"""


def test_client_runs_on_python_2_7(address, reference, tmp_path):
    py2 = find_python27(("zmq", "msgpack"))
    if py2 is None:
        pytest.skip("no Python 2.7 with pyzmq and msgpack here (set OLDPHOTO_PYTHON27); "
                    "vermin checks the syntax instead")
    shutil.copy(CLIENT, tmp_path / "oldphoto_client.py")     # the installer's copies
    shutil.copy(CLIENT.with_name("wire.py"), tmp_path / "oldphoto_wire.py")
    (tmp_path / "run.py").write_text(PY2_SCRIPT)
    img, mask = random_image(21, 30, 26, 4), random_mask(21, 30, 26)
    (tmp_path / "p.bin").write_bytes(img.tobytes())
    (tmp_path / "m.bin").write_bytes(mask.tobytes())
    r = subprocess.run([py2, "run.py", address, "26", "30", "4", "p.bin", "m.bin",
                        f"tcp://127.0.0.1:{free_port()}"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    digest, device, unavailable = r.stdout.strip().splitlines()
    from oldphoto_model import RestoreOptions
    expected = reference.restore(img, mask, RestoreOptions(restrict_to_mask=True))
    import hashlib
    assert digest == hashlib.sha256(expected.tobytes()).hexdigest()
    assert device == "cpu"
    assert float(unavailable.split()[1]) < 3.0


@pytest.mark.parametrize("address,meant", [
    ("localhost:5587", "did you mean tcp://localhost:5587?"),
    ("127.0.0.1:5587", "did you mean tcp://127.0.0.1:5587?"),
    ("tcp://127.0.0.1", "lacks the port: did you mean tcp://127.0.0.1:5587?"),
    ("tcp://host:notaport", "the port notaport is not a number from 1 to 65535"),
    ("tcp://127.0.0.1:0", "not a number from 1 to 65535"),
    ("tcp://:5587", "names no host"),
    ("http://127.0.0.1:5587", "tcp://, ipc:// or inproc://"),
    ("ipc://", "names no socket file"),
    ("", "empty"),
])
def test_mistyped_address_is_a_typed_error_at_once(address, meant):
    t0 = time.time()
    with pytest.raises(BadAddress) as e:
        Client(address)
    assert time.time() - t0 < 0.5
    assert e.value.code == "bad_address" and meant in e.value.message
    with pytest.raises(AddressError):      # the same check, for the CLI and the plug-ins
        check_address(address)


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:5587", " tcp://localhost:1 ", "tcp://[::1]:5587",
                                     "ipc:///tmp/oldphoto.sock", "inproc://x"])
def test_good_addresses_pass(address):
    assert check_address(address) == address.strip()
    assert check_address("tcp://127.0.0.1:*", connect=False) == "tcp://127.0.0.1:*"


def test_failed_connect_never_blocks_close():
    """An address ZeroMQ refuses at connect(): the socket is closed at once, so closing
    the client (its context) returns instead of waiting forever."""
    import threading
    done = []

    def run():
        c = Client(DEFAULT_ADDRESS)
        c.address = "localhost:5587"        # past the check: what ZeroMQ itself refuses
        try:
            c.ping(timeout=0.5)
        except BadAddress as e:
            done.append(e.message)
        c.close()
        done.append("closed")
    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5.0)
    assert done and done[-1] == "closed" and "cannot connect" in done[0], done


@pytest.fixture(scope="module")
def small_server(weights_path):
    """A server that accepts at most 1000 pixels and 50 per side."""
    from server.app import Server
    from server.config import ServerConfig

    from .conftest import make_restorer
    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", max_pixels=1000, max_side=50), make_restorer(weights_path))
    srv.start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("w,h,c,flags", [(200, 200, 4, "--max-pixels 40000 --max-side 200"),
                                          (40, 30, 3, "--max-pixels 1200"),
                                          (60, 10, 1, "--max-side 60")])
def test_image_beyond_the_limits_is_refused_before_sending(small_server, w, h, c, flags):
    """200x200 RGBA is beyond ZeroMQ's message cap there: sent, it would be dropped
    without any answer. The client asks ``info`` for the limits and says what to do."""
    with Client(small_server.endpoint, timeout=30) as cl:
        t0 = time.time()
        with pytest.raises(TooLarge) as e:
            cl.restore(bytes(w * h * c), w, h, c)
        assert time.time() - t0 < 2.0
        assert e.value.code == "too_large" and (e.value.width, e.value.height) == (w, h)
        assert e.value.max_pixels == 1000 and e.value.max_side == 50
        assert f"{w}x{h} pixels" in e.value.message and "python -m server " + flags in e.value.message
        with pytest.raises(TooLarge):
            cl.echo(bytes(w * h * c), w, h, c)
        assert len(cl.echo(bytes(20 * 20 * c), 20, 20, c)) == 20 * 20 * c    # what fits still goes


def test_size_problem_follows_each_limit():
    limits = {"max_pixels": 100, "max_side": 20, "max_frame_bytes": 300, "max_message_bytes": 450}
    assert size_problem(10, 10, 3, True, limits) == ""
    assert "side" in size_problem(21, 2, 1, False, limits)
    assert "101 pixels" in size_problem(101, 1, 1, False, {"max_pixels": 100})
    assert "frame" in size_problem(10, 10, 4, False, limits)
    assert "request" in size_problem(10, 10, 3, True, limits, header_bytes=100)
    assert size_problem(10 ** 5, 10 ** 5, 4, True, {}) == ""     # a server that gives no limits


@pytest.mark.parametrize("key", [None, "curve"])
def test_a_silent_server_is_no_key_problem(key):
    """A listener that accepts the connection but never finishes ZeroMQ's handshake (a
    stuck or flooded server) is reported as no answer, not as an encryption problem:
    only a handshake-failure event from ZeroMQ means a key problem."""
    import socket

    import zmq
    with socket.create_server(("127.0.0.1", 0)) as silent:   # the kernel accepts; nobody speaks
        address = "tcp://127.0.0.1:%d" % silent.getsockname()[1]
        server_key = zmq.curve_keypair()[0].decode() if key else None
        with Client(address, server_key=server_key) as cl, pytest.raises(ClientError) as e:
            cl.ping(timeout=0.5)
    assert isinstance(e.value, ServerUnavailable) and e.value.code == "server_unavailable", e.value.message
    assert "no answer to ping within 0.5 s" in e.value.message and "stuck or overloaded" in e.value.message


@pytest.mark.parametrize("tone,says", [(-0.1, "tone must be in 0..1"), (1.5, "tone must be in 0..1"),
                                       ("much", "option 'tone' must be a number"),
                                       (True, "option 'tone' must be a number")])
def test_tone_out_of_range_is_a_typed_bad_option(address, tone, says):
    """The server checks 'tone' (through RestoreOptions) before queueing anything."""
    from server.client import ServerError
    from server.wire import E_BAD_OPTION
    with Client(address) as cl, pytest.raises(ServerError) as e:
        cl.restore(random_image(2, 8, 8, 3).tobytes(), 8, 8, 3, options={"tone": tone})
    assert e.value.code == E_BAD_OPTION and says in e.value.message, e.value.message
    with Client(address) as cl:       # an integer is a number: 0 keeps the photo's own tone
        assert len(cl.restore(random_image(2, 8, 8, 3).tobytes(), 8, 8, 3, options={"tone": 0})[0]) == 8 * 8 * 3
