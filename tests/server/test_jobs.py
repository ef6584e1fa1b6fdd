"""Job handling: cancel (queued and running), vanishing clients, busy, out of memory."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from oldphoto_model import Restorer, load_model
from server import client as proto
from server.app import Server
from server.client import Cancelled, Client, ServerError
from server.config import ServerConfig

from .helpers import TEST_LIMITS, random_image, random_mask

BIG = 512        # a 512 x 512 restore takes long enough (~0.5-1 s) to be caught running


def _send_restore(cl: Client, img, mask=None) -> str:
    h, w, c = img.shape
    header, frames = cl._image_request(proto.OP_RESTORE, img.tobytes(), w, h, c,
                                       None if mask is None else mask.tobytes(), None)
    return cl.send(header, frames)


def _wait_for(cl: Client, rid: str, kind: str, stage: str = None, timeout: float = 30.0) -> dict:
    """Read this request's messages until one of ``kind`` (and ``stage``) arrives."""
    deadline = time.time() + timeout
    sock = cl._socket()
    while time.time() < deadline:
        if not sock.poll(100):
            continue
        parts = sock.recv_multipart()
        h = proto.unpack_header(parts[0])
        if h.get("id") == rid and h["type"] == kind and (stage is None or h.get("stage") == stage):
            return h
        if h.get("id") == rid and h["type"] in ("ok", "error") and kind not in ("ok", "error"):
            raise AssertionError(f"job ended before {kind}/{stage}: {h}")
    raise AssertionError(f"no {kind} for {rid} within {timeout} s")


def _wait_all(cl: Client, wanted: set, timeout: float = 30.0) -> None:
    """Read messages until each (request id, type, stage or None) in ``wanted`` has arrived."""
    deadline, left, sock = time.time() + timeout, set(wanted), cl._socket()
    while left and time.time() < deadline:
        if sock.poll(100):
            h = proto.unpack_header(sock.recv_multipart()[0])
            left -= {(h.get("id"), h["type"], h.get("stage")), (h.get("id"), h["type"], None)}
    assert not left, f"not seen within {timeout} s: {left}"


def _final(cl: Client, rid: str, timeout: float = 60.0) -> dict:
    deadline = time.time() + timeout
    sock = cl._socket()
    while time.time() < deadline:
        if sock.poll(100):
            parts = sock.recv_multipart()
            h = proto.unpack_header(parts[0])
            if h.get("id") == rid and h["type"] in ("ok", "error"):
                return h
    raise AssertionError("no final reply")


def _stats(address) -> dict:
    with Client(address) as cl:
        return cl.info()["stats"]


def test_cancel_a_running_job(address):
    before = _stats(address)
    with Client(address) as a, Client(address) as b:
        rid = _send_restore(a, random_image(1, BIG, BIG, 3), random_mask(1, BIG, BIG))
        job = _wait_for(a, rid, "accepted")["job"]
        _wait_for(a, rid, "progress", "encode")
        assert b.cancel(job)["state"] == "running"
        final = _final(a, rid)
    assert final["type"] == "error" and final["code"] == proto.E_CANCELLED
    after = _stats(address)
    assert after.get("cancelled", 0) == before.get("cancelled", 0) + 1
    assert after.get("completed", 0) == before.get("completed", 0)


def test_cancel_a_queued_job(address, reference):
    with Client(address) as a, Client(address) as b:
        rid_a = _send_restore(a, random_image(2, BIG, BIG, 3))
        _wait_for(a, rid_a, "progress", "start")
        small = random_image(3, 16, 16, 3)
        rid_b = _send_restore(b, small)
        accepted = _wait_for(b, rid_b, "accepted")
        assert accepted["ahead"] == 1
        with Client(address) as c:
            assert c.cancel(accepted["job"])["state"] == "queued"
            with pytest.raises(ServerError) as e:
                c.cancel(accepted["job"])            # gone now
            assert e.value.code == proto.E_UNKNOWN_JOB
        final_b = _final(b, rid_b)
        final_a = _final(a, rid_a)
    assert final_b["type"] == "error" and final_b["code"] == proto.E_CANCELLED
    assert "queued" in final_b["message"]
    assert final_a["type"] == "ok"               # the job ahead was not disturbed


def test_client_should_cancel_raises_cancelled(address, reference):
    seen = []
    t0 = time.time()
    with Client(address) as cl:
        img = random_image(4, BIG, BIG, 3)
        with pytest.raises(Cancelled):
            cl.restore(img.tobytes(), BIG, BIG, 3, progress=lambda f, s: seen.append(s),
                       should_cancel=lambda: "encode" in seen)
    assert time.time() - t0 < 30
    # the same address serves the next request with the right result
    small = random_image(5, 20, 20, 3)
    with Client(address) as cl:
        data, _ = cl.restore(small.tobytes(), 20, 20, 3)
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(20, 20, 3), reference.restore(small))


def test_vanishing_client_harms_nobody(address, reference):
    before = _stats(address)
    gone = Client(address)
    rids = [_send_restore(gone, random_image(6 + k, BIG, BIG, 3)) for k in range(2)]   # one runs, one waits
    # both requests must have reached the server before the client vanishes (LINGER 0
    # would otherwise discard the second one's bytes still in flight)
    _wait_all(gone, {(rids[0], "progress", "start"), (rids[1], "accepted", None)})
    gone.close()                                  # like GIMP killing the plug-in: LINGER 0, no goodbye
    img = random_image(8, 28, 36, 4)
    with Client(address) as cl:
        data, meta = cl.restore(img.tobytes(), 36, 28, 4)
        for _ in range(100):
            if cl.info()["queue"] == {"queued": 0, "running": 0}:
                break
            time.sleep(0.1)
        assert cl.info()["queue"] == {"queued": 0, "running": 0}
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(28, 36, 4), reference.restore(img))
    after = _stats(address)
    finished = sum(after.get(k, 0) - before.get(k, 0) for k in ("dropped", "completed"))
    assert finished == 3                          # the two orphans (dropped or done) + ours
    assert after.get("dropped", 0) > before.get("dropped", 0)   # the queued orphan never ran


@pytest.fixture()
def small_queue_server(weights_path):
    srv = Server(ServerConfig(bind="tcp://127.0.0.1:*", **dict(TEST_LIMITS, queue_size=1)),
                 Restorer(load_model(weights_path), "cpu", "fp32"))
    srv.start()
    yield srv
    srv.stop()


def test_full_queue_answers_busy_and_ping_stays_quick(small_queue_server):
    addr = small_queue_server.endpoint
    with Client(addr) as a:
        r1 = _send_restore(a, random_image(1, BIG, BIG, 3))
        job1 = _wait_for(a, r1, "accepted")["job"]
        r2 = _send_restore(a, random_image(2, BIG, BIG, 3))
        job2 = _wait_for(a, r2, "accepted")["job"]
        r3 = _send_restore(a, random_image(3, 16, 16, 3))
        final3 = _final(a, r3)
        t0 = time.time()
        with Client(addr) as b:                # answered by the I/O thread while the model runs
            b.ping()
            assert b.info()["queue"]["queued"] == 1
        assert time.time() - t0 < 3.0           # ping alone gives up after 1.5 s
        for job in (job2, job1):
            a.cancel(job)
    assert final3["type"] == "error" and final3["code"] == proto.E_BUSY


class OOMOnce(Restorer):
    """Simulates a GPU running out of memory (impossible to provoke on a CPU test
    machine): fails whenever the attention chunk budget is the default one, or always."""

    always = False

    def restore_tensor(self, *a, **kw):
        if self.always or self.attention.chunk_elements > (1 << 20):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")
        return super().restore_tensor(*a, **kw)


@pytest.mark.parametrize("always", [False, True], ids=["low-memory-retry", "typed-error"])
def test_out_of_memory_retries_or_reports_and_the_server_survives(weights_path, reference, always):
    restorer = OOMOnce(load_model(weights_path), "cpu", "fp32")
    restorer.always = always
    img = random_image(11, 24, 24, 3)
    mask = random_mask(11, 24, 24)
    with Server(ServerConfig(bind="tcp://127.0.0.1:*", **TEST_LIMITS), restorer) as srv:
        addr = srv.start()
        with Client(addr) as cl:
            if always:
                with pytest.raises(ServerError) as e:
                    cl.restore(img.tobytes(), 24, 24, 3, mask.tobytes())
                assert e.value.code == proto.E_OOM and "smaller" in e.value.message
            else:
                data, meta = cl.restore(img.tobytes(), 24, 24, 3, mask.tobytes())
                assert meta["low_memory"] is True
                # the retry's small attention chunks: the same result up to rounding
                got = np.frombuffer(data, np.uint8).reshape(24, 24, 3).astype(int)
                assert np.abs(got - reference.restore(img, mask)).max() <= 1
            assert cl.ping()["type"] == "ok"
