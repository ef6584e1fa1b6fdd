"""Scratch detection through a real server (loopback TCP): the ``detect`` operation,
``restore`` with ``detect``, ``info``'s ``detection``, typed errors, and a server
without a detector that still restores."""
from __future__ import annotations

import numpy as np
import pytest

from oldphoto_model.detect import detect
from server import client as proto
from server.app import Server
from server.client import Client, ServerError
from server.config import ServerConfig

from .conftest import make_restorer
from .helpers import TEST_LIMITS, random_image, random_mask
from .test_robustness import Raw, pack

V = proto.PROTOCOL_VERSION


def _detect(address, img, **kw):
    h, w, c = img.shape
    with Client(address, timeout=60) as cl:
        m, p, meta = cl.detect(img.tobytes(), w, h, c, **kw)
    return (np.frombuffer(m, np.uint8).reshape(h, w),
            None if p is None else np.frombuffer(p, np.uint8).reshape(h, w), meta)


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["gray", "gray+alpha", "rgb", "rgba"])
def test_detect_matches_in_process(det_server, local_detector, channels):
    img = random_image(channels + 20, 45, 61, channels)
    mask, prob, meta = _detect(det_server.endpoint, img, probability=True)
    want_prob, want_mask = detect(img, local_detector)          # the file's threshold, 0.22
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_array_equal(prob, np.rint(want_prob * 255).astype(np.uint8))
    assert 0 < (mask > 0).mean() < 1, "the test needs a partial mask"
    assert meta["threshold"] == 0.22 and meta["probability"] is True
    assert meta["flagged"] == pytest.approx((mask > 0).mean(), abs=1e-6)
    assert (meta["width"], meta["height"], meta["channels"]) == (61, 45, channels)
    assert meta["detector"].startswith("det.pt@") and meta["v"] == V


def test_detect_threshold_and_mask_only(det_server, local_detector):
    img = random_image(30, 40, 40, 3)
    loose, none, meta = _detect(det_server.endpoint, img, threshold=0.2)
    assert none is None and meta["threshold"] == 0.2 and meta["probability"] is False
    np.testing.assert_array_equal(loose, detect(img, local_detector, 0.2)[1])
    strict, _, _ = _detect(det_server.endpoint, img, threshold=0.26)
    assert (strict > 0).sum() < (loose > 0).sum()


def test_restore_with_detect_uses_the_detected_mask(det_server, local_detector, reference):
    img = random_image(31, 40, 48, 3)
    h, w, c = img.shape
    found = detect(img, local_detector)[1]
    stages = []
    with Client(det_server.endpoint, timeout=60) as cl:
        data, meta = cl.restore(img.tobytes(), w, h, c, detect=True, options={"grow": 1},
                                progress=lambda f, s: stages.append((f, s)))
        plain, plain_meta = cl.restore(img.tobytes(), w, h, c, options={"grow": 1})
        mask = random_mask(3, h, w)   # a mask sent along wins over detection
        given, given_meta = cl.restore(img.tobytes(), w, h, c, mask=mask.tobytes(), detect=True)
    from oldphoto_model import RestoreOptions
    from oldphoto_model.detect import DETECT_GROW
    out = np.frombuffer(data, np.uint8).reshape(img.shape)
    np.testing.assert_array_equal(out, reference.restore(img, found, RestoreOptions(grow=1 + DETECT_GROW)))
    assert not np.array_equal(out, np.frombuffer(plain, np.uint8).reshape(img.shape))
    assert meta["mask_source"] == "detected" and meta["flagged"] == pytest.approx((found > 0).mean(), abs=1e-6)
    assert plain_meta["mask_source"] == "none" and given_meta["mask_source"] == "request"
    np.testing.assert_array_equal(np.frombuffer(given, np.uint8).reshape(img.shape), reference.restore(img, mask))
    fractions = [f for f, s in stages if s != "queued"]
    assert fractions == sorted(fractions) and "detect" in {s for _, s in stages}


def test_info_says_whether_detection_is_available(det_server, address):
    with Client(det_server.endpoint) as cl:
        info = cl.info()
    assert info["protocol"] == V == 2 and "detect" in info["ops"]
    d = info["detection"]
    assert d["available"] is True and d["threshold"] == 0.22
    assert d["weights"]["short_id"].startswith("det.pt@") and "path" not in d["weights"]
    with Client(address) as cl:          # the session's server has no detector
        d = cl.info()["detection"]
    assert d == {"available": False, "reason": "this server was started without a scratch detector"}


def test_without_a_detector_detect_is_a_typed_error_and_restores_go_on(address, reference):
    img = random_image(32, 24, 32, 3)
    h, w, c = img.shape
    with Client(address, timeout=60) as cl:
        with pytest.raises(ServerError) as e:
            cl.detect(img.tobytes(), w, h, c)
        assert e.value.code == proto.E_NO_DETECTOR == "detection_unavailable"
        assert "without a scratch detector" in e.value.message and "mask" in e.value.message
        with pytest.raises(ServerError) as e:
            cl.restore(img.tobytes(), w, h, c, detect=True)
        assert e.value.code == proto.E_NO_DETECTOR
        data, meta = cl.restore(img.tobytes(), w, h, c)              # restores still work
        np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(img.shape), reference.restore(img))
        mask = random_mask(4, h, w)                                  # detect with a mask: no detector needed
        data, meta = cl.restore(img.tobytes(), w, h, c, mask=mask.tobytes(), detect=True)
        assert meta["mask_source"] == "request"
        assert cl.ping()["protocol"] == V


def test_missing_detector_file_reason(weights_path, tmp_path):
    """A server whose detector file is missing starts, restores, and says why it cannot detect."""
    from server.app import load_detector_or_reason
    det, why = load_detector_or_reason(str(tmp_path / "gone.pt"))
    assert det is None and "file not found" in why and "gone.pt" in why
    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", **TEST_LIMITS), make_restorer(weights_path), det, why)
    srv.start()
    try:
        with Client(srv.endpoint, timeout=60) as cl:
            assert cl.info()["detection"] == {"available": False, "reason": why}
            img = random_image(33, 16, 16, 1)
            with pytest.raises(ServerError, match="file not found"):
                cl.detect(img.tobytes(), 16, 16, 1)
            cl.restore(img.tobytes(), 16, 16, 1)
    finally:
        srv.stop()


def _detect_header(**over):
    h = {"v": V, "id": "d1", "op": "detect", "width": 8, "height": 6, "channels": 3, "dtype": "u8"}
    h.update(over)
    return h


PIX = bytes(8 * 6 * 3)
BAD = [
    ("threshold above 1", [pack(_detect_header(threshold=1.5)), PIX], proto.E_BAD_OPTION),
    ("threshold negative", [pack(_detect_header(threshold=-0.1)), PIX], proto.E_BAD_OPTION),
    ("threshold NaN", [pack(_detect_header(threshold=float("nan"))), PIX], proto.E_BAD_OPTION),
    ("threshold as string", [pack(_detect_header(threshold="0.5")), PIX], proto.E_BAD_OPTION),
    ("threshold as bool", [pack(_detect_header(threshold=True)), PIX], proto.E_BAD_OPTION),
    ("probability as int", [pack(_detect_header(probability=1)), PIX], proto.E_MALFORMED),
    ("with a mask", [pack(_detect_header(mask=True)), PIX, bytes(48)], proto.E_MALFORMED),
    ("two frames", [pack(_detect_header()), PIX, bytes(48)], proto.E_FRAME_COUNT),
    ("no pixels", [pack(_detect_header())], proto.E_FRAME_COUNT),
    ("short pixels", [pack(_detect_header()), PIX[:-1]], proto.E_SIZE_MISMATCH),
    ("5 channels", [pack(_detect_header(channels=5)), bytes(240)], proto.E_UNSUPPORTED),
    ("too large", [pack(_detect_header(width=5000, height=5000)), PIX], proto.E_TOO_LARGE),
    ("restore detect as string", [pack(_detect_header(op="restore", detect="yes")), PIX], proto.E_MALFORMED),
    ("version 1", [pack(_detect_header(v=1)), PIX], proto.E_VERSION),
]


@pytest.mark.parametrize("name,frames,code", BAD, ids=[b[0] for b in BAD])
def test_bad_detect_requests_get_typed_errors(det_server, name, frames, code):
    raw = Raw(det_server.endpoint)
    try:
        header, extra = raw.ask(frames)
        assert header["type"] == "error" and header["code"] == code, header
        assert header["id"] == "d1" and not extra
        ok, _ = raw.ask([pack({"v": V, "op": "ping", "id": "p"})])     # and it keeps serving
        assert ok["type"] == "ok"
    finally:
        raw.close()


def test_cancel_a_queued_detect(det_server):
    """A detect job is a job like a restore: accepted behind the running one, cancellable
    while it waits, and the job ahead of it still finishes."""
    from .test_jobs import BIG, _final, _send_restore, _wait_for
    with Client(det_server.endpoint) as a, Client(det_server.endpoint) as b:
        rid_a = _send_restore(a, random_image(2, BIG, BIG, 3))
        _wait_for(a, rid_a, "progress", "start")
        img = random_image(35, 64, 64, 3)
        header, frames = b._image_request(proto.OP_DETECT, img.tobytes(), 64, 64, 3, None, None)
        rid_b = b.send(header, frames)
        accepted = _wait_for(b, rid_b, "accepted")
        assert accepted["ahead"] == 1
        assert a.cancel(accepted["job"])["state"] == "queued"
        final_b = _final(b, rid_b)
        final_a = _final(a, rid_a)
    assert final_b["type"] == "error" and final_b["code"] == proto.E_CANCELLED
    assert final_a["type"] == "ok"


def test_protocol_doc_names_every_op_and_error_code():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    assert f"# Model server protocol — version {V}" in doc
    for op in proto.OPS:
        assert f"### `{op}`" in doc, f"docs/protocol.md has no section for {op}"
    for code in proto.ERROR_CODES:
        assert f"| `{code}` |" in doc, f"docs/protocol.md has no row for error {code}"


def test_detect_out_of_memory_retries_in_small_tiles(det_server, local_detector, monkeypatch):
    """An out-of-memory error in the detector is retried once in small tiles (the same
    result, low_memory true); a second one ends the job with out_of_memory and the server
    goes on."""
    from oldphoto_model.detect import DEFAULT_TILE
    from server import worker
    real, tiles = worker.detect, []

    def flaky(image, model, threshold=None, tile=DEFAULT_TILE, progress=None):
        tiles.append(tile)
        if tile == DEFAULT_TILE or fail_always:
            raise RuntimeError("CPU: out of memory (simulated)")
        return real(image, model, threshold, tile, progress)
    monkeypatch.setattr(worker, "detect", flaky)
    fail_always = False
    img = random_image(36, 40, 40, 3)
    mask, _, meta = _detect(det_server.endpoint, img)
    assert tiles == [DEFAULT_TILE, worker.LOW_MEMORY_TILE] and meta["low_memory"] is True
    np.testing.assert_array_equal(mask, detect(img, local_detector)[1])
    fail_always = True
    with pytest.raises(ServerError) as e:
        _detect(det_server.endpoint, img)
    assert e.value.code == proto.E_OOM
    monkeypatch.setattr(worker, "detect", real)
    assert _detect(det_server.endpoint, img)[2]["low_memory"] is False
