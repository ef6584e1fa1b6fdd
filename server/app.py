"""The server: one ROUTER socket, an I/O loop that answers at once, a model worker.

``ping``, ``info``, ``cancel`` and ``echo`` are answered by the I/O loop
directly, so they stay quick while a long job runs; ``restore`` and ``detect``
are validated here and queued for the worker (server.worker). A client that vanishes harms
nobody: ROUTER_MANDATORY turns a send to a gone peer into an error, upon which
its job is cancelled, and replies never block the loop (NOBLOCK).
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Optional, Sequence

import zmq

from oldphoto_model import Restorer
from oldphoto_model import __version__ as model_version
from oldphoto_model.archs.detector import ScratchDetector
from oldphoto_model.detect import DEFAULT_TILE, model_threshold

from . import __version__, keys, protocol
from .config import ServerConfig
from .peers import MONITOR_EVENTS, Connections, UnreadReplies, mb
from .protocol import ProtocolError
from .wire import (
    DTYPE_BYTES,
    E_BUSY,
    E_CANCELLED,
    E_INTERNAL,
    E_NO_DETECTOR,
    E_SOCKET_TYPE,
    E_UNKNOWN_JOB,
    OPS,
    PROTOCOL_VERSION,
    T_ACCEPTED,
    T_OK,
)
from .worker import Busy, Job, Worker

log = logging.getLogger("oldphoto.server")

_BATCH = 64   # messages handled per socket per loop turn, so neither side starves
_SWEEP_S = 0.25   # how often idle and over-the-cap connections are looked for


def weights_identity(restorer: Restorer) -> dict[str, Any]:
    """``network_identity`` of the restorer's model plus its path (empty if unknown).
    The path is for this machine's log; ``info`` sends the file name only."""
    wi = getattr(restorer.model, "weights_info", None)
    return {} if wi is None else {"path": wi.path, **network_identity(restorer.model)}


def network_identity(net: Optional[Any]) -> dict[str, Any]:
    """File name, sha256, short id and metadata of a helper network's weights (the scratch
    detector's, the tone estimator's, the learned fill's; empty if unknown)."""
    wi = getattr(net, "weights_info", None)
    if wi is None:
        return {}
    return {"name": os.path.basename(wi.path), "sha256": wi.sha256, "short_id": wi.short_id,
            "metadata": wi.metadata}


def load_detector_or_reason(path: Optional[str], device: Any = "cpu") -> tuple[Optional[ScratchDetector], str]:
    """The scratch detector of ``path`` (None: the shipped one; "none": no detector) on
    ``device``, or (None, why not): a server without a detector still restores; it answers ``detect`` with
    ``detection_unavailable`` and that reason."""
    from oldphoto_model import WeightsError
    from oldphoto_model.detect import load_detector
    if path is not None and path.lower() == "none":
        return None, "the server was started with --detector none"
    try:
        return load_detector(path).to(device), ""
    except WeightsError as e:
        return None, f"no scratch detector: {e.reason} ({os.path.basename(e.path)})"


def precision_name(restorer: Restorer) -> str:
    """The restorer's compute dtype as the CLI spells it (fp32, bf16, fp16)."""
    return {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(
        str(restorer.dtype), str(restorer.dtype))



def unpredictable_routing_ids() -> None:
    """Seed the C library's rand() from os.urandom before a ROUTER socket is made.

    libzmq names peers that bring no routing id ``\\0`` + a counter that starts at
    rand(), which nobody seeds: the same value in every process. A client that
    claims the next counter value as its own routing id makes the next anonymous
    connection collide with it, and libzmq aborts the process (an assertion in
    socket_base.cpp). With an unpredictable start the next value is a 32-bit
    secret the server never reveals."""
    try:
        libc = ctypes.CDLL(None)
        libc.srand(ctypes.c_uint(int.from_bytes(os.urandom(4), "little")))
    except (OSError, AttributeError):   # no C library handle here (not Linux/macOS)
        log.warning("could not seed libzmq's routing-id counter")


def refuse_live_ipc(address: str) -> None:
    """OSError when another process already listens on the ipc:// path: libzmq would
    silently unlink its socket file and take the path over."""
    if not address.startswith("ipc://") or address == "ipc://*":
        return
    path = address[len("ipc://"):]
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except OSError:
        return          # a stale socket file of a server that is gone: libzmq replaces it
    finally:
        probe.close()
    raise OSError(f"cannot listen on {address}: another server is listening there")


def _drain(sock: zmq.Socket, handle) -> None:
    """Handle up to _BATCH waiting messages without blocking, so neither socket starves the other."""
    for _ in range(_BATCH):
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        handle(parts)

class Server:
    """Serves one Restorer on ``config.bind``.

    ``bind()`` then ``serve_forever()`` in the calling thread (``python -m server``),
    or ``start()``/``stop()`` to run it in a background thread (tests, demo).
    """

    def __init__(self, config: ServerConfig, restorer: Restorer, detector: Optional[ScratchDetector] = None,
                 detector_problem: str = "") -> None:
        config.validate()
        self.config = config
        self.restorer = restorer
        # the scratch detector (detect, restore with detect): optional; without it
        # ``detector_problem`` says why in ``info`` and in detection_unavailable errors
        self.detector = detector
        self.detector_problem = detector_problem or "this server was started without a scratch detector"
        self.context = zmq.Context()         # the worker's inproc sockets
        # the clients' socket has a context of its own, so that shutdown can wait for
        # the final replies to leave even while the worker is stuck in a model step
        self.net_context = zmq.Context()
        self.endpoint: Optional[str] = None
        self._router: Optional[zmq.Socket] = None
        self._events: Optional[zmq.Socket] = None
        self._worker: Optional[Worker] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.stats = {"requests": 0, "errors": 0}
        self.public_key: Optional[str] = None     # the CURVE public key, when CURVE is on
        self._hurry = threading.Event()
        self.worker_stuck = False   # after shutdown: a model step outlived shutdown_grace
        self._monitor: Optional[zmq.Socket] = None
        self.connections: Optional[Connections] = None
        self.unread = UnreadReplies()

    # -- lifecycle -------------------------------------------------------------
    def bind(self) -> str:
        """Bind the ROUTER socket and start the worker; returns the actual endpoint
        (a ``tcp://host:*`` wildcard resolves to the chosen port)."""
        refuse_live_ipc(self.config.bind)
        unpredictable_routing_ids()
        r = self.net_context.socket(zmq.ROUTER)
        r.setsockopt(zmq.LINGER, 0)
        r.setsockopt(zmq.ROUTER_MANDATORY, 1)       # gone peers raise instead of vanishing silently
        r.setsockopt(zmq.MAXMSGSIZE, max(self.config.max_frame_bytes, self.config.max_header_bytes))
        r.setsockopt(zmq.RCVHWM, 4)                 # requests one peer may have waiting in libzmq
        # every connection's accept and disconnect, with its file descriptor (server.peers)
        monitor_address = f"inproc://oldphoto-monitor-{uuid.uuid4().hex}"
        r.monitor(monitor_address, MONITOR_EVENTS)
        self._monitor = self.net_context.socket(zmq.PAIR)
        self._monitor.setsockopt(zmq.LINGER, 0)
        self._monitor.setsockopt(zmq.RCVHWM, 0)    # a lost disconnect event would leak a slot
        self._monitor.connect(monitor_address)
        self.connections = Connections(self.config.max_peers, self.config.idle_timeout)
        if self.config.uses_curve:
            self.public_key, secret = keys.server_keypair(self.config.key_dir)
            r.curve_server = True
            r.curve_publickey = self.public_key.encode()
            r.curve_secretkey = secret.encode()
        try:
            r.bind(self.config.bind)
        except zmq.ZMQError as e:
            r.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
            self.connections.close()
            r.close(0)
            raise OSError(f"cannot listen on {self.config.bind}: {e}") from None
        self._router = r
        self.endpoint = r.getsockopt_string(zmq.LAST_ENDPOINT)
        events_address = f"inproc://oldphoto-events-{uuid.uuid4().hex}"
        self._events = self.context.socket(zmq.PULL)
        self._events.setsockopt(zmq.LINGER, 0)
        self._events.bind(events_address)
        self._worker = Worker(self.restorer, self.context, events_address, self.config.queue_size,
                              self.config.max_jobs_per_client,
                              info={"device": str(self.restorer.device), "precision": precision_name(self.restorer),
                                    "weights": weights_identity(self.restorer).get("short_id", "")},
                              detector=self.detector)
        self._worker.start()
        return self.endpoint

    def start(self) -> str:
        """Bind and serve in a background thread; returns the endpoint."""
        endpoint = self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="oldphoto-io", daemon=True)
        self._thread.start()
        return endpoint

    def request_stop(self, hurry: bool = False) -> None:
        """Ask serve_forever to shut down (safe from a signal handler): every waiting
        and running job's client gets a final ``cancelled``. ``hurry`` (a second
        Ctrl-C) stops waiting for a running model step."""
        if hurry:
            self._hurry.set()
        self._stop.set()

    def stop(self) -> None:
        """Stop serving (from any thread) and release the sockets."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(self.config.shutdown_grace + 5)
            self._thread = None

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve until ``stop()`` or KeyboardInterrupt; always closes the sockets."""
        if self._router is None:
            self.bind()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._events, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        monitor, connections, worker = self._monitor, self.connections, self._worker
        router, events = self._router, self._events
        assert monitor is not None and connections is not None and worker is not None   # bind() made them
        assert router is not None and events is not None
        next_sweep = time.monotonic()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))   # wake up regularly to see stop()
                if monitor in ready:             # before requests: they look their connection up
                    _drain(monitor, connections.monitor_event)
                if events in ready:
                    _drain(events, self._forward)
                if router in ready:
                    _drain(router, self._receive)
                if time.monotonic() >= next_sweep:
                    connections.sweep(worker.identities_with_jobs())
                    next_sweep = time.monotonic() + _SWEEP_S
        finally:
            self._close()

    def _close(self) -> None:
        """Shut down: tell every waiting and running job's client ``cancelled``, give a
        running model step ``shutdown_grace`` seconds to stop, close the sockets."""
        stuck = False
        w = self._worker
        if w is not None and self._router is not None:
            events = self._events
            assert events is not None       # bind() made it before the worker
            queued, running = w.stop(wait=False)
            for job in queued:
                self._send(job.identity, protocol.error_reply(
                    job.request_id, E_CANCELLED, "the server is shutting down", job=job.id))
            deadline = time.monotonic() + self.config.shutdown_grace
            while w.is_alive() and time.monotonic() < deadline and not self._hurry.is_set():
                if events.poll(50):     # the running job's own final reply among them
                    _drain(events, self._forward)
            _drain(events, self._forward)
            stuck = w.is_alive()
            if stuck and running is not None:    # it never got to say so itself
                self._send(running.identity, protocol.error_reply(
                    running.request_id, E_CANCELLED, "the server is shutting down", job=running.id))
            self._router.setsockopt(zmq.LINGER, 1000)   # let the final replies leave
        self._worker = None
        if self._router is not None and self._monitor is not None:
            self._router.disable_monitor()
        for s in (self._router, self._events, self._monitor):
            if s is not None:
                s.close()
        self._router = self._events = self._monitor = None
        if self.connections is not None:
            self.connections.close()
        self.net_context.term()      # returns once the final replies left (LINGER: at most 1 s)
        if not stuck:   # term() would wait forever for a worker stuck inside one huge layer
            self.context.term()
        self.worker_stuck = stuck

    # -- sending -----------------------------------------------------------------
    def _send(self, identity: bytes, header: bytes, frames: Sequence = (), job_id: Optional[str] = None) -> bool:
        """Send without blocking; False when the peer is gone or not reading (its
        job, if any, is then cancelled: nobody is waiting for it). Data frames are
        counted as unread until libzmq has passed them on (server.peers)."""
        router = self._router
        assert router is not None           # replies are sent while serving, or by _close before it closes
        data = self.unread.tracked(frames)
        try:
            router.send_multipart([identity, header, *data], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as e:
            if e.errno not in (errno.EHOSTUNREACH, zmq.EAGAIN):
                log.warning("cannot send a reply: %s", e)
            if job_id is not None and self._worker is not None:
                self._worker.cancel(job_id, "client disconnected")
            return False
        self.unread.sent(identity, data)
        if self.connections is not None:
            self.connections.replied(identity)
        return True

    def _unread_refusal(self, identity: bytes, size: int) -> Optional[str]:
        """Why a request whose reply holds ``size`` bytes must wait (None: it may go):
        the replies this connection has not read, with the results its jobs will
        send, or those of all connections, would exceed their caps."""
        owed = self._worker.owed_bytes(identity) if self._worker is not None else 0
        mine = self.unread.pending(identity) + owed
        cap = self.config.unread_cap
        if mine + size > cap:
            return (f"this connection has {mb(mine)} of replies unread or on their way; with this "
                    f"one's {mb(size)} that exceeds {mb(cap)}: read them first")
        everyone = self.unread.total()
        cap = self.config.unread_total_cap
        if everyone + size > cap:
            return (f"the server holds {mb(everyone)} of replies that clients have not read (at most "
                    f"{mb(cap)}): try again later")
        return None

    def _forward(self, parts: list) -> None:
        """A worker message ``[job_id, identity, header, *frames]`` to its client."""
        job_id = parts[0].bytes.decode()
        self._send(parts[1].bytes, parts[2], parts[3:], job_id)

    # -- requests ----------------------------------------------------------------
    def _receive(self, parts: list) -> None:
        """One message from the ROUTER socket: ``[identity, *frames]``."""
        identity = parts[0].bytes
        try:
            fd = parts[0].get(zmq.SRCFD)    # the connection it came on (deprecated in libzmq, not removed)
        except zmq.ZMQError:
            fd = -1
        busy = self.connections.request(identity, fd) if self.connections is not None else None
        if busy is not None:       # over the peer cap: told the truth, then closed
            self.stats["requests"] += 1
            self.stats["errors"] += 1
            rid = None
            if parts[1:] and len(parts[1]) > 0:
                try:
                    rid = protocol.parse_request(parts[1:2], self.config).id
                except ProtocolError as e:
                    rid = e.request_id
            self._send(identity, protocol.error_reply(rid, E_BUSY, busy))
            return
        self._handle(identity, parts[1:])

    def _handle(self, identity: bytes, frames: list) -> None:
        self.stats["requests"] += 1
        rid = None
        if len(frames) >= 2 and len(frames[0]) == 0:
            # a REQ socket's envelope: answer inside one, or the REQ client waits forever
            self.stats["errors"] += 1
            self._send(identity, b"", [protocol.error_reply(
                None, E_SOCKET_TYPE, "this server speaks to DEALER sockets: a request is "
                "[header, *frames] without an empty delimiter frame (REQ sockets add one)")])
            return
        try:
            req = protocol.parse_request(frames, self.config)
            rid = req.id
            self._dispatch(identity, req, frames)
        except ProtocolError as e:
            self.stats["errors"] += 1
            self._send(identity, protocol.error_reply(e.request_id, e.code, e.message))
        except Exception as e:   # a bug must cost one request, never the server
            self.stats["errors"] += 1
            log.exception("internal error while handling a request")
            self._send(identity, protocol.error_reply(rid, E_INTERNAL, f"{type(e).__name__}: {str(e)[:300]}"))

    def _dispatch(self, identity: bytes, req: protocol.Request, frames: list) -> None:
        op = req.op
        worker = self._worker   # not None while serving (bind() made it)
        if op == protocol.OP_PING:
            self._send(identity, protocol.reply(req.id, T_OK, protocol=PROTOCOL_VERSION,
                                                server_version=__version__))
        elif op == protocol.OP_INFO:
            self._send(identity, protocol.reply(req.id, T_OK, **self.info()))
        elif op == protocol.OP_ECHO:
            why = self._unread_refusal(identity, len(frames[1]))   # the reply is as big as the pixels
            if why is not None:
                self._send(identity, protocol.error_reply(req.id, E_BUSY, why))
                return
            image = req.image
            assert image is not None        # parse_request gives echo its pixels
            self._send(identity, protocol.reply(req.id, T_OK, width=image.shape[1], height=image.shape[0],
                                                channels=image.shape[2],
                                                dtype=protocol.dtype_name(image)),
                       [frames[1]])
        elif op == protocol.OP_CANCEL:
            assert worker is not None and req.job is not None    # parse_request gives cancel its job id
            state, removed = worker.cancel(req.job)
            if state is None:
                self._send(identity, protocol.error_reply(req.id, E_UNKNOWN_JOB,
                                                          f"no queued or running job {req.job[:40]!r}"))
                return
            if removed is not None:    # never ran: its requester gets the final reply now
                self._send(removed.identity, protocol.error_reply(
                    removed.request_id, E_CANCELLED, "cancelled while queued", job=removed.id))
            self._send(identity, protocol.reply(req.id, T_OK, job=req.job, state=state))
        elif op in (protocol.OP_RESTORE, protocol.OP_DETECT):
            wants_detector = op == protocol.OP_DETECT or (req.detect and req.mask is None)
            if wants_detector and self.detector is None:
                self._send(identity, protocol.error_reply(
                    req.id, E_NO_DETECTOR, f"this server cannot find scratches: {self.detector_problem}. "
                    "Select the scratches (send a mask), or restart the server with the scratch detector"))
                return
            image = req.image
            assert worker is not None and image is not None     # parse_request gives these ops their pixels
            job = Job(identity, req.id, image, req.mask, req.options, kind=op, detect=req.detect,
                      threshold=req.threshold, probability=req.probability)
            why = self._unread_refusal(identity, job.reply_bytes)
            if why is not None:
                self._send(identity, protocol.error_reply(req.id, E_BUSY, why))
                return
            try:
                ahead = worker.submit(job)
            except Busy as e:
                self._send(identity, protocol.error_reply(req.id, E_BUSY, str(e)))
                return
            self._send(identity, protocol.reply(req.id, T_ACCEPTED, job=job.id, ahead=ahead), job_id=job.id)

    def detection_info(self) -> dict[str, Any]:
        """``info``'s ``detection``: whether ``detect`` (and ``restore`` with ``detect``) work,
        with the detector's threshold and weights, or the reason they do not."""
        if self.detector is None:
            return {"available": False, "reason": self.detector_problem}
        return {"available": True, "threshold": model_threshold(self.detector), "tile": DEFAULT_TILE,
                "weights": network_identity(self.detector)}

    def info(self) -> dict[str, Any]:
        """What ``info`` answers: versions, device, weights, limits, options, queue."""
        c = self.config
        w = self._worker
        return {
            "protocol": PROTOCOL_VERSION,
            "server_version": __version__,
            "model_version": model_version,
            "device": str(self.restorer.device),
            "precision": precision_name(self.restorer),
            "weights": {k: v for k, v in weights_identity(self.restorer).items() if k != "path"},
            "curve": self.public_key is not None,
            "limits": {"max_pixels": c.max_pixels, "max_side": c.max_side, "queue_size": c.queue_size,
                       "max_header_bytes": c.max_header_bytes, "max_frame_bytes": c.max_frame_bytes,
                       "max_message_bytes": c.max_message_bytes, "max_jobs_per_client": c.max_jobs_per_client,
                       "max_peers": self.connections.cap if self.connections else c.max_peers,
                       "idle_timeout": c.idle_timeout, "max_unread_bytes": c.unread_cap,
                       "max_unread_total_bytes": c.unread_total_cap},
            "ops": list(OPS),
            "channels": [1, 2, 3, 4],
            "dtypes": list(DTYPE_BYTES),
            "options": {k: {"type": t.__name__, "default": d, "help": h}
                        for k, (t, d, h) in protocol.OPTIONS.items()},
            "detection": self.detection_info(),
            # the tone estimator behind the auto_tone option (none: auto_tone does nothing)
            "tone": ({"available": True, "weights": network_identity(self.restorer.tone)}
                     if self.restorer.tone is not None else {"available": False}),
            # the learned fill behind the learned_fill option (none: the harmonic fill)
            "fill": ({"available": True, "weights": network_identity(self.restorer.fill)}
                     if self.restorer.fill is not None else {"available": False}),
            "queue": w.queue_state() if w else {"queued": 0, "running": 0},
            "stats": w.stats_snapshot() if w else {},
            "peers": self.connections.peers() if self.connections else 0,
            "time": time.time(),
        }
