"""Malformed requests get typed errors and never hurt the server (real sockets)."""
from __future__ import annotations

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server import client as proto
from server.client import Client

from .helpers import random_image

V = proto.PROTOCOL_VERSION


class Raw:
    """A bare DEALER socket: sends any frames, reads one reply header."""

    def __init__(self, address):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def ask(self, frames, timeout_ms=5000):
        self.sock.send_multipart(frames)
        assert self.sock.poll(timeout_ms), "no reply"
        parts = self.sock.recv_multipart()
        if parts[0] == b"" and len(parts) > 1:   # the answer to a REQ-style envelope keeps it
            parts = parts[1:]
        return proto.unpack_header(parts[0]), parts[1:]

    def close(self):
        self.sock.close(0)


@pytest.fixture()
def raw(address):
    r = Raw(address)
    yield r
    r.close()


def pack(h):
    return msgpack.packb(h, use_bin_type=True)


def restore_header(**over):
    h = {"v": V, "id": "r1", "op": "restore", "width": 8, "height": 6, "channels": 3, "dtype": "u8",
         "mask": False, "options": {}}
    h.update(over)
    return {k: v for k, v in h.items() if v is not _DROP}


_DROP = object()
PIX = bytes(8 * 6 * 3)
MASK = bytes(8 * 6)

# (name, frames, expected code)
CASES = [
    ("empty header", [b""], proto.E_MALFORMED),
    ("not msgpack", [b"\xc1\xc1\xc1"], proto.E_MALFORMED),
    ("truncated msgpack", [pack(restore_header())[:-3], PIX], proto.E_MALFORMED),
    ("trailing bytes", [pack({"v": V, "op": "ping"}) + b"\x00"], proto.E_MALFORMED),
    ("header is a list", [pack([1, "ping"])], proto.E_MALFORMED),
    ("header is an int", [pack(5)], proto.E_MALFORMED),
    ("non-string map key", [b"\x81\x01\x02"], proto.E_MALFORMED),
    ("header too big", [pack({"v": V, "op": "ping", "pad": "x" * 70000})], proto.E_MALFORMED),
    ("array bomb", [b"\xdd\xff\xff\xff\xff"], proto.E_MALFORMED),
    ("no version", [pack({"op": "ping"})], proto.E_MALFORMED),
    ("old version", [pack({"v": V - 1, "op": "ping"})], proto.E_VERSION),
    ("version as float", [pack({"v": float(V), "op": "ping"})], proto.E_VERSION),
    ("version as bool", [pack({"v": True, "op": "ping"})], proto.E_VERSION),
    ("too many frames", [pack({"v": V, "op": "ping"})] + [b"x"] * 40, proto.E_FRAME_COUNT),
    ("REQ envelope", [b"", pack({"v": V, "op": "ping"})], proto.E_SOCKET_TYPE),
    ("future version", [pack({"v": V + 1, "op": "ping"})], proto.E_VERSION),
    ("version as string", [pack({"v": str(V), "op": "ping"})], proto.E_VERSION),
    ("no op", [pack({"v": V})], proto.E_MALFORMED),
    ("op not a string", [pack({"v": V, "op": 3})], proto.E_MALFORMED),
    ("unknown op", [pack({"v": V, "op": "format_disk"})], proto.E_UNKNOWN_OP),
    ("ping with frames", [pack({"v": V, "op": "ping"}), b"x"], proto.E_FRAME_COUNT),
    ("cancel without job", [pack({"v": V, "op": "cancel"})], proto.E_MALFORMED),
    ("cancel unknown job", [pack({"v": V, "op": "cancel", "job": "nope"})], proto.E_UNKNOWN_JOB),
    ("no pixel frame", [pack(restore_header())], proto.E_FRAME_COUNT),
    ("extra frame", [pack(restore_header()), PIX, MASK], proto.E_FRAME_COUNT),
    ("mask declared, missing", [pack(restore_header(mask=True)), PIX], proto.E_FRAME_COUNT),
    ("pixels short", [pack(restore_header()), PIX[:-1]], proto.E_SIZE_MISMATCH),
    ("pixels long", [pack(restore_header()), PIX + b"\x00"], proto.E_SIZE_MISMATCH),
    ("lying width", [pack(restore_header(width=9)), PIX], proto.E_SIZE_MISMATCH),
    ("lying channels", [pack(restore_header(channels=4)), PIX], proto.E_SIZE_MISMATCH),
    ("mask wrong size", [pack(restore_header(mask=True)), PIX, MASK[:-8]], proto.E_MASK_SHAPE),
    ("mask with channels", [pack(restore_header(mask=True)), PIX, MASK * 3], proto.E_MASK_SHAPE),
    ("float dtype", [pack(restore_header(dtype="f32")), PIX], proto.E_UNSUPPORTED),
    ("16-bit frame of 8-bit size", [pack(restore_header(dtype="u16")), PIX], proto.E_SIZE_MISMATCH),
    ("16-bit frame one byte short", [pack(restore_header(dtype="u16")), (PIX * 2)[:-1]], proto.E_SIZE_MISMATCH),
    ("dtype not a string", [pack(restore_header(dtype=16)), PIX * 2], proto.E_UNSUPPORTED),
    ("big-endian dtype", [pack(restore_header(dtype="u16be")), PIX * 2], proto.E_UNSUPPORTED),
    ("5 channels", [pack(restore_header(channels=5)), bytes(8 * 6 * 5)], proto.E_UNSUPPORTED),
    ("0 channels", [pack(restore_header(channels=0)), b""], proto.E_UNSUPPORTED),
    ("huge dimensions", [pack(restore_header(width=100000, height=100000)), PIX], proto.E_TOO_LARGE),
    ("huge pixel count", [pack(restore_header(width=2000, height=2000)), PIX], proto.E_TOO_LARGE),
    ("2**64 width", [pack(restore_header(width=2**64 - 1)), PIX], proto.E_TOO_LARGE),
    ("negative width", [pack(restore_header(width=-8)), PIX], proto.E_MALFORMED),
    ("zero height", [pack(restore_header(height=0)), b""], proto.E_MALFORMED),
    ("width as string", [pack(restore_header(width="8")), PIX], proto.E_MALFORMED),
    ("width as float", [pack(restore_header(width=8.0)), PIX], proto.E_MALFORMED),
    ("width as bool", [pack(restore_header(width=True)), PIX], proto.E_MALFORMED),
    ("width missing", [pack(restore_header(width=_DROP)), PIX], proto.E_MALFORMED),
    ("mask flag as int", [pack(restore_header(mask=1)), PIX, MASK], proto.E_MALFORMED),
    ("options a list", [pack(restore_header(options=[1])), PIX], proto.E_BAD_OPTION),
    ("unknown option", [pack(restore_header(options={"x": 1})), PIX], proto.E_BAD_OPTION),
    ("threshold as string", [pack(restore_header(options={"mask_threshold": "1"})), PIX], proto.E_BAD_OPTION),
    ("threshold out of range", [pack(restore_header(options={"mask_threshold": 300})), PIX], proto.E_BAD_OPTION),
    ("restrict as int", [pack(restore_header(options={"restrict_to_mask": 1})), PIX], proto.E_BAD_OPTION),
    ("echo lying size", [pack(dict(restore_header(), op="echo")), PIX[:5]], proto.E_SIZE_MISMATCH),
]


@pytest.mark.parametrize("name,frames,code", CASES, ids=[c[0] for c in CASES])
def test_each_malformed_message_gets_its_typed_error(raw, name, frames, code):
    header, extra = raw.ask(frames)
    assert header["type"] == "error", header
    assert header["code"] == code, header
    assert isinstance(header["message"], str) and header["message"]
    assert extra == []


def test_request_id_is_echoed_in_errors(raw):
    header, _ = raw.ask([pack(restore_header(id="abc", width=9)), PIX])
    assert header["id"] == "abc" and header["code"] == proto.E_SIZE_MISMATCH


# -- property-based: hundreds of random messages ----------------------------------------
json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70).filter(lambda i: -2**63 <= i < 2**64)
    | st.floats(allow_nan=False) | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10)

FIELDS = ["v", "op", "id", "width", "height", "channels", "dtype", "mask", "options", "job"]


@st.composite
def broken_restore(draw):
    """A restore header with one or more fields replaced by random values, and frames
    whose count and sizes may lie. Guaranteed invalid: the pixel frame never fits."""
    h = restore_header()
    for key in draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=4, unique=True)):
        if draw(st.booleans()):
            h[key] = draw(json_like)
        else:
            h.pop(key, None)
    n_frames = draw(st.integers(0, 3))
    frames = [draw(st.binary(max_size=64)) for _ in range(n_frames)]
    if h.get("op") == "restore" and n_frames >= 1:
        # a valid-looking request must not slip through: make the pixel frame too short
        w, hh, c = (h.get(k) for k in ("width", "height", "channels"))
        if all(isinstance(v, int) and not isinstance(v, bool) for v in (w, hh, c)) and w * hh * c > 0:
            frames[0] = frames[0][: max(0, w * hh * c - 1)]
    return [pack(h)] + frames


def random_frames():
    return st.one_of(
        st.lists(st.binary(max_size=200), min_size=1, max_size=4),            # random bytes
        st.builds(lambda h, rest: [pack(h)] + rest, json_like, st.lists(st.binary(max_size=50), max_size=3)),
        st.builds(lambda b, cut: [b[:cut]], st.builds(pack, st.dictionaries(st.text(max_size=8), json_like)),
                  st.integers(0, 40)),                                        # truncated msgpack
        broken_restore(),
    )


def _is_valid_ping_like(frames):
    """The few random messages that happen to be valid requests (ping/info)."""
    try:
        h = msgpack.unpackb(frames[0], raw=False)
    except Exception:
        return False
    return isinstance(h, dict) and h.get("v") == 1 and h.get("op") in ("ping", "info") and len(frames) == 1


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(frames=random_frames())
def test_fuzz_every_bad_message_gets_a_typed_error(address, frames):
    r = Raw(address)
    try:
        header, extra = r.ask(frames)
    finally:
        r.close()
    if _is_valid_ping_like(frames):
        assert header["type"] == "ok"
        return
    assert header["type"] == "error", (frames, header)
    assert header["code"] in proto.ERROR_CODES, header
    assert header["code"] not in (proto.E_INTERNAL, proto.E_CANCELLED, proto.E_OOM), header
    assert extra == []


def test_server_still_serves_after_the_abuse(address, reference):
    """Runs after the fuzz test in this module: a valid restore still comes back right."""
    img = random_image(42, 24, 20, 3)
    with Client(address) as cl:
        data, _ = cl.restore(img.tobytes(), 20, 24, 3)
        stats = cl.info()["stats"]
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(24, 20, 3), reference.restore(img))
    assert stats.get("failed", 0) == 0


def test_oversized_frame_drops_only_that_peer(server, address):
    """A frame above the server's MAXMSGSIZE makes ZeroMQ drop that connection (no
    reply is possible); the server keeps serving everyone else."""
    r = Raw(address)
    r.sock.send_multipart([pack(restore_header()), bytes(server.config.max_frame_bytes + 1)])
    assert not r.sock.poll(500)
    r.close()
    with Client(address) as cl:
        assert cl.ping()["type"] == "ok"
