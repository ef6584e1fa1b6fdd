# -*- coding: utf-8 -*-
"""Client of the old-photo restoration server.

With ``wire.py`` (the protocol's constants and header encoding, re-exported
here) this is all a GIMP plug-in needs to talk to the server. The installer
copies the two files into a plug-in folder (as ``oldphoto_client.py`` and
``oldphoto_wire.py``); they run unchanged on Python 2.7 (GIMP 2.10's gimpfu) and
Python 3: stdlib + pyzmq + msgpack only, no Python-3-only syntax. The wire
format is described in docs/protocol.md.

Typical use::

    with Client() as c:
        c.ping()                      # ServerUnavailable within ~2 s if no server
        out, meta = c.restore(pixels, w, h, 4, mask=sel,
                              options={"restrict_to_mask": True},
                              progress=lambda f, stage: ...)
"""
from __future__ import absolute_import, division, print_function, unicode_literals

import struct
import sys
import time
import uuid

try:
    import msgpack  # noqa: F401  (wire.py needs it: fail here, with the message below)
    import zmq
except ImportError as _e:   # name the interpreter: GIMP's Python is often not the user's
    raise ImportError("the old-photo client needs pyzmq and msgpack in the Python that runs it "
                      "(%s): %s. Install them with: %s -m pip install pyzmq msgpack"
                      % (sys.executable, _e, sys.executable))

# every protocol name is re-exported (``from .wire import *``); the ones used here are named too
try:   # inside the server package; the installer copies wire.py as oldphoto_wire.py
    from .wire import *  # noqa: F401,F403  (the protocol's names, written once in wire.py)
    from .wire import (
        DEFAULT_ADDRESS,
        DTYPE_BYTES,
        DTYPE_U8,
        E_ADDRESS,
        E_CANCELLED,
        E_CLIENT_INPUT,
        E_FRAME_COUNT,
        E_INTERNAL,
        E_SECURITY,
        E_TIMEOUT,
        E_TOO_LARGE,
        E_UNAVAILABLE,
        OP_CANCEL,
        OP_DETECT,
        OP_ECHO,
        OP_INFO,
        OP_PING,
        OP_RESTORE,
        PROTOCOL_VERSION,
        START_HINT,
        T_ACCEPTED,
        T_ERROR,
        T_OK,
        T_PROGRESS,
        AddressError,
        check_address,
        clip,
        is_curve_key,
        pack_header,
        unpack_header,
    )
except (ImportError, ValueError):   # Python 3 / Python 2 without a parent package
    from oldphoto_wire import *  # type: ignore  # noqa: F401,F403
    from oldphoto_wire import (  # type: ignore
        DEFAULT_ADDRESS,
        DTYPE_BYTES,
        DTYPE_U8,
        E_ADDRESS,
        E_CANCELLED,
        E_CLIENT_INPUT,
        E_FRAME_COUNT,
        E_INTERNAL,
        E_SECURITY,
        E_TIMEOUT,
        E_TOO_LARGE,
        E_UNAVAILABLE,
        OP_CANCEL,
        OP_DETECT,
        OP_ECHO,
        OP_INFO,
        OP_PING,
        OP_RESTORE,
        PROTOCOL_VERSION,
        START_HINT,
        T_ACCEPTED,
        T_ERROR,
        T_OK,
        T_PROGRESS,
        AddressError,
        check_address,
        clip,
        is_curve_key,
        pack_header,
        unpack_header,
    )

#: Context kept around a selection's bounding box by default (pixels); see crop_plan.
DEFAULT_CROP_MARGIN = 128


class ClientError(Exception):
    """Any failure seen by the client. ``code`` is one of the E_* codes."""

    def __init__(self, code, message):
        Exception.__init__(self, "%s: %s" % (code, message))
        self.code = code
        self.message = message


class ServerUnavailable(ClientError):
    """No server answered at the address; the message says how to start one."""

    def __init__(self, address, detail=""):
        msg = "no restoration server answers at %s%s. %s" % (
            address, (" (" + detail + ")") if detail else "", START_HINT)
        ClientError.__init__(self, E_UNAVAILABLE, msg)
        self.address = address


class BadAddress(ClientError):
    """The server address cannot work (no tcp://, no port, ...): said before any socket exists."""

    def __init__(self, message):
        ClientError.__init__(self, E_ADDRESS, message)


class TooLarge(ClientError):
    """The image is beyond the server's limits (its ``info``): found before sending,
    because ZeroMQ drops an oversized message without any answer. ``width``,
    ``height``, ``max_pixels`` and ``max_side`` let a caller word its own advice."""

    def __init__(self, address, width, height, channels, limits, detail=""):
        self.address, self.width, self.height = address, width, height
        self.max_pixels = int(limits.get("max_pixels") or 0)
        self.max_side = int(limits.get("max_side") or 0)
        pixels = width * height
        need = ["--max-pixels %d" % pixels] if self.max_pixels and pixels > self.max_pixels else []
        if self.max_side and max(width, height) > self.max_side:
            need.append("--max-side %d" % max(width, height))
        msg = ("the image is %dx%d pixels (%.1f megapixels), more than the server at %s accepts "
               "(at most %.1f megapixels and %d pixels per side)%s. Scale it down or restore a "
               "smaller part of it, or restart the server with a larger limit: python -m server %s"
               % (width, height, pixels / 1e6, address, self.max_pixels / 1e6, self.max_side,
                  (": " + detail) if detail else "", " ".join(need) or "--max-pixels %d" % pixels))
        ClientError.__init__(self, E_TOO_LARGE, msg)


def size_problem(width, height, channels, has_mask, limits, header_bytes=0, sample_bytes=1):
    """What in a ``width`` x ``height`` x ``channels`` image (and mask) the server's
    ``limits`` (info's map) refuse, as text; "" when it fits or the limits are unknown.
    The server's own rules (docs/protocol.md): each side, the pixel count, each
    frame and the whole message. ``sample_bytes``: 2 for 16-bit pixels."""
    def limit(name):
        v = limits.get(name) if isinstance(limits, dict) else None
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None
    side, pixels, frame, message = (limit(n) for n in ("max_side", "max_pixels", "max_frame_bytes",
                                                       "max_message_bytes"))
    n = width * height
    if side is not None and max(width, height) > side:
        return "a side of %d pixels is more than %d" % (max(width, height), side)
    if pixels is not None and n > pixels:
        return "%d pixels are more than %d" % (n, pixels)
    data = n * channels * sample_bytes
    if frame is not None and data > frame:
        return "the pixels take %d bytes, more than the %d of one message frame" % (data, frame)
    total = header_bytes + data + (n if has_mask else 0)
    if message is not None and total > message:
        return "the request takes %d bytes, more than the %d of one message" % (total, message)
    return ""


class SecurityError(ClientError):
    """The CURVE handshake failed: the server public key is missing, malformed or wrong."""

    def __init__(self, message):
        ClientError.__init__(self, E_SECURITY, message)


def server_key_from(value):
    """A server public key given as its 40 Z85 characters or as the path of the
    ``server.key`` file the server made; None for None or "". SecurityError
    when it is neither."""
    if value is None:
        return None
    text = _text(value).strip()
    if not text:
        return None
    if is_curve_key(text):
        return text
    try:
        with open(text, "rb") as f:
            for line in f.read().decode("utf-8", "replace").splitlines():
                line = line.strip()
                if line.startswith("public-key"):
                    key = line.split("=", 1)[1].strip().strip('"')
                    if is_curve_key(key):
                        return key
    except (IOError, OSError):
        pass
    raise SecurityError("%r is not a server public key: give the 40 characters the server "
                        "printed at start-up (\"public key ...\") or the path of its server.key file"
                        % clip(text))


#: Monitor events that mean "the connection was made but the handshake failed".
_HANDSHAKE_FAILED = [getattr(zmq, n, 0) for n in ("EVENT_HANDSHAKE_FAILED_NO_DETAIL",
                                                   "EVENT_HANDSHAKE_FAILED_PROTOCOL",
                                                   "EVENT_HANDSHAKE_FAILED_AUTH")]


class ServerError(ClientError):
    """The server answered with a typed error reply."""


class Cancelled(ClientError):
    """The job was cancelled (by ``should_cancel`` or by a ``cancel`` call)."""

    def __init__(self, message="the job was cancelled"):
        ClientError.__init__(self, E_CANCELLED, message)


def _text(value):
    """Header strings as text on both Pythons (bytes only from odd servers)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def crop_plan(width, height, mask_bbox, margin=DEFAULT_CROP_MARGIN, align=4):
    """The region to send when only a selection needs restoring.

    ``mask_bbox`` is the selection's bounding box as ``(x, y, w, h)`` in layer
    coordinates (what ``pdb.gimp_drawable_mask_intersect`` returns after its
    first value), or None for "no selection". The box is grown by ``margin``
    pixels of context on each side (the model fills scratches from intact
    surroundings), its corners snapped outwards to multiples of ``align`` (the
    network works on multiples of 4; aligned crops avoid edge padding inside
    the photo) and clipped to the layer. Returns ``(x, y, w, h)``; with no
    selection or an empty one, the whole layer ``(0, 0, width, height)``.
    Crop the pixels and the mask to this region, restore, and paste the result
    back at ``(x, y)``.
    """
    width, height, margin, align = int(width), int(height), int(margin), max(1, int(align))
    if width <= 0 or height <= 0:
        raise ValueError("layer size must be positive, got %dx%d" % (width, height))
    if margin < 0:
        raise ValueError("margin must be >= 0, got %d" % margin)
    if mask_bbox is None:
        return (0, 0, width, height)
    bx, by, bw, bh = [int(v) for v in mask_bbox]
    if bw <= 0 or bh <= 0:
        return (0, 0, width, height)
    x0 = max(0, ((bx - margin) // align) * align)
    y0 = max(0, ((by - margin) // align) * align)
    x1 = min(width, -(-(bx + bw + margin) // align) * align)
    y1 = min(height, -(-(by + bh + margin) // align) * align)
    if x1 <= x0 or y1 <= y0:   # box entirely outside the layer
        return (0, 0, width, height)
    return (x0, y0, x1 - x0, y1 - y0)


def _buffer_len(buf):
    """Byte length of anything with the buffer interface (bytes, bytearray, numpy)."""
    try:
        m = memoryview(buf)
    except TypeError:      # Python 2 ``buffer`` objects
        return len(buf)
    n = getattr(m, "nbytes", None)   # Python 2's memoryview has none
    if n is None:
        n = m.itemsize
        for d in (m.shape or ()):
            n *= d
    return n


class Client(object):
    """A connection to the restoration server (a DEALER socket).

    ``timeout`` bounds how long one operation waits for its final reply, in
    seconds (None: wait forever); ``ping`` has its own short timeout so a
    missing server is reported quickly. ``server_key``: the server's CURVE
    public key (Z85 text or its ``server.key`` file) for a server on another
    machine; everything is then encrypted and the server authenticated.
    """

    POLL_MS = 50   # how often should_cancel is asked while a job runs

    def __init__(self, address=DEFAULT_ADDRESS, timeout=600.0, server_key=None):
        try:    # at once, before any socket: a mistyped address must never wait or hang
            self.address = check_address(address)
        except AddressError as e:
            raise BadAddress("%s" % e)
        self.timeout = timeout
        self.server_key = server_key_from(server_key)
        self._ctx = None
        self._sock = None
        self._monitor = None
        self._alive = False
        self._limits = None

    # -- socket handling --------------------------------------------------
    def _socket(self):
        if self._sock is None:
            if self._ctx is None:
                self._ctx = zmq.Context()
            s = self._ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)      # never hang on exit when the server is gone
            if self.server_key is not None:
                public, secret = zmq.curve_keypair()   # this connection's own, thrown away after
                s.setsockopt(zmq.CURVE_SERVERKEY, self.server_key.encode("ascii"))
                s.setsockopt(zmq.CURVE_PUBLICKEY, public)
                s.setsockopt(zmq.CURVE_SECRETKEY, secret)
            try:     # handshake failures tell "wrong key" from "no server" (see ping)
                self._monitor = s.get_monitor_socket()
            except (AttributeError, zmq.ZMQError):
                self._monitor = None
            try:
                s.connect(self.address)
            except zmq.ZMQError as e:
                # a socket left open would make closing the context wait forever
                self._close_socket(s)
                raise BadAddress("ZeroMQ cannot connect to %s: %s" % (self.address, e))
            self._sock = s
        return self._sock

    def _handshake_state(self):
        """What the monitor saw: "failed" when ZeroMQ reported a failed handshake (a key
        problem), "silent" when a connection was made but its handshake never finished
        (a stuck or flooded server, or no ZeroMQ at all), else None."""
        connected = failed = ok = False
        while self._monitor is not None and self._monitor.poll(0):
            try:
                msg = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:
                break
            event = struct.unpack("=hi", msg[0][:6])[0]
            connected = connected or event == zmq.EVENT_CONNECTED
            failed = failed or event in _HANDSHAKE_FAILED
            ok = ok or event == getattr(zmq, "EVENT_HANDSHAKE_SUCCEEDED", -1)
        if failed:
            return "failed"
        return "silent" if connected and not ok else None

    def _close_socket(self, sock):
        """Close ``sock`` and its monitor at once (linger 0)."""
        if self._monitor is not None:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(0)
            self._monitor = None
        sock.close(0)

    def _reset(self):
        """Drop the socket: late replies to abandoned requests die with it."""
        if self._sock is not None:
            self._close_socket(self._sock)
            self._sock = None
        self._alive = False
        self._limits = None

    def close(self):
        """Close the socket and the context (safe to call twice); never waits: every
        socket of the context is closed with linger 0 first."""
        self._reset()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    # -- messaging ---------------------------------------------------------
    def send(self, header, frames=()):
        """Send one request: header (a dict; ``v`` and ``id`` are added) plus raw frames.
        Returns the request id that the server's replies carry."""
        h = dict(header)
        h.setdefault("v", PROTOCOL_VERSION)
        rid = h.setdefault("id", "%s" % uuid.uuid4().hex)   # text on Python 2 too
        parts = [pack_header(h)] + list(frames)
        s = self._socket()
        # large pixel buffers go out without an extra copy
        s.send_multipart(parts, copy=len(parts) == 1 or sum(_buffer_len(p) for p in parts[1:]) < 65536)
        return rid

    def receive(self, request_id, timeout, should_cancel=None, on_message=None):
        """Wait for the final reply to ``request_id``; other requests' messages are
        dropped. ``on_message(header, frames)`` sees every message of this request,
        progress included. Returns ``(header, frames)`` of the final reply; raises
        ServerError for an error reply."""
        s = self._socket()
        deadline = None if timeout is None else time.time() + timeout
        while True:
            if should_cancel is not None and should_cancel():
                return None
            wait = self.POLL_MS if should_cancel is not None else 1000
            if deadline is not None:
                left = deadline - time.time()
                if left <= 0:
                    handshake = self._handshake_state()
                    self._reset()
                    err = ClientError(E_TIMEOUT, "no reply from %s within %.1f s" % (self.address, timeout))
                    err.refused = handshake == "failed"    # a key problem, not a missing server
                    err.silent = handshake == "silent"     # connected, but nothing answered
                    raise err
                wait = min(wait, max(1, int(left * 1000)))
            if not s.poll(wait, zmq.POLLIN):
                continue
            parts = s.recv_multipart(copy=False)
            try:
                header = unpack_header(parts[0].bytes)
            except Exception:
                continue           # not ours to understand; keep waiting
            if _text(header.get("id")) != request_id:
                continue           # a late reply to an abandoned request
            frames = parts[1:]
            if on_message is not None:
                on_message(header, frames)
            kind = _text(header.get("type"))
            if kind == T_ERROR:
                code = _text(header.get("code")) or E_INTERNAL
                message = _text(header.get("message")) or ""
                if code == E_CANCELLED:
                    raise Cancelled(message)
                raise ServerError(code, message)
            if kind == T_OK:
                return header, frames

    def call(self, op, fields=None, frames=(), timeout=None):
        """One request/reply of ``op``: returns ``(header, frames)`` of the reply."""
        h = dict(fields or {})
        h["op"] = op
        rid = self.send(h, frames)
        return self.receive(rid, self.timeout if timeout is None else timeout)

    # -- public operations -------------------------------------------------
    def ping(self, timeout=1.5):
        """Check the server answers; returns its reply (protocol and server version).
        Raises ServerUnavailable after ``timeout`` seconds without an answer."""
        try:
            header, _ = self.call(OP_PING, timeout=timeout)
        except ClientError as e:
            if e.code != E_TIMEOUT:
                raise
            refused = getattr(e, "refused", False)
            self._reset()
            if refused and self.server_key is not None:
                raise SecurityError(
                    "the server at %s refused the encrypted connection: the server public key is "
                    "wrong (copy the \"public key\" line the server printed at start-up), or that "
                    "server runs without CURVE (on the same computer no key is needed)" % self.address)
            if refused:
                raise SecurityError(
                    "the server at %s requires encryption: give its public key (the \"public key\" "
                    "line it printed at start-up)" % self.address)
            detail = "no answer to ping within %.1f s" % timeout
            if getattr(e, "silent", False):
                detail += "; something accepted the connection but never answered: a stuck or overloaded server?"
            raise ServerUnavailable(self.address, detail)
        self._alive = True
        return header

    def _ensure_server(self):
        if not self._alive:
            self.ping()

    def info(self):
        """Protocol and server version, device, weights identity, limits, options."""
        self._ensure_server()
        header, _ = self.call(OP_INFO)
        return header

    def cancel(self, job_id):
        """Cancel a queued or running job; returns the reply (``state`` it was in)."""
        self._ensure_server()
        header, _ = self.call(OP_CANCEL, {"job": job_id}, timeout=5.0)
        return header

    def limits(self):
        """The server's size limits (``info``'s ``limits``; {} from a server without
        them), asked once per connection."""
        if self._limits is None:
            limits = self.info().get("limits")
            self._limits = dict((_text(k), v) for k, v in limits.items()) if isinstance(limits, dict) else {}
        return self._limits

    def check_size(self, width, height, channels, has_mask=False, dtype=DTYPE_U8):
        """Raise TooLarge when the server would refuse (or silently drop) an image of
        this size; asks the server's limits first (``info``)."""
        limits = self.limits()
        problem = size_problem(int(width), int(height), int(channels), has_mask, limits, 1024,
                               DTYPE_BYTES.get(dtype, 1))
        if problem:
            raise TooLarge(self.address, int(width), int(height), int(channels), limits, problem)

    def supports_dtype(self, dtype):
        """Whether the server takes pixels of ``dtype`` (``info``'s ``dtypes``)."""
        return dtype == DTYPE_U8 or dtype in [_text(d) for d in (self.info().get("dtypes") or [])]

    def _image_request(self, op, pixels, width, height, channels, mask, options, dtype=DTYPE_U8):
        width, height, channels = int(width), int(height), int(channels)
        if channels not in (1, 2, 3, 4):
            raise ClientError(E_CLIENT_INPUT, "channels must be 1..4, got %d" % channels)
        if dtype not in DTYPE_BYTES:
            raise ClientError(E_CLIENT_INPUT, "dtype must be one of %s, got %r" % (sorted(DTYPE_BYTES), dtype))
        n, need = _buffer_len(pixels), width * height * channels * DTYPE_BYTES[dtype]
        if n != need:
            raise ClientError(E_CLIENT_INPUT, "pixels hold %d bytes, %dx%dx%d %s needs %d"
                              % (n, width, height, channels, dtype, need))
        frames = [pixels]
        header = {"op": op, "width": width, "height": height, "channels": channels,
                  "dtype": dtype, "mask": mask is not None, "options": dict(options or {})}
        if mask is not None:
            if _buffer_len(mask) != width * height:
                raise ClientError(E_CLIENT_INPUT, "mask holds %d bytes, %dx%d needs %d"
                                  % (_buffer_len(mask), width, height, width * height))
            frames.append(mask)
        self.check_size(width, height, channels, mask is not None, dtype)
        return header, frames

    def restore(self, pixels, width, height, channels, mask=None, options=None,
                progress=None, should_cancel=None, detect=False, dtype=DTYPE_U8):
        """Restore a layer: ``pixels`` are rows of ``width`` x ``channels`` samples
        (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) of ``dtype`` (``DTYPE_U8``, or ``DTYPE_U16``,
        little-endian, when ``supports_dtype`` says the server takes it); ``mask`` u8 width x height, 255 =
        defect, or None. ``options``: ``mask_threshold`` (int, default 128),
        ``restrict_to_mask`` (bool: only the selection changes). ``detect``: without a
        mask, the server finds the scratches itself (``info()["detection"]`` says whether
        it can; ServerError ``detection_unavailable`` otherwise). ``progress(fraction,
        stage)`` is called as the job advances; when ``should_cancel()`` returns
        True the job is cancelled and Cancelled is raised. Returns
        ``(result_bytes, meta)``, result in the same layout as ``pixels``."""
        self._ensure_server()
        header, frames = self._image_request(OP_RESTORE, pixels, width, height, channels,
                                             mask, options, dtype)
        if detect:
            header["detect"] = True
        h, fr = self._run_job(header, frames, progress, should_cancel)
        if len(fr) != 1:
            raise ServerError(E_FRAME_COUNT, "result has %d frames, expected 1" % len(fr))
        meta = dict((_text(k), v) for k, v in h.items())
        return fr[0].bytes, meta

    def detect(self, pixels, width, height, channels, threshold=None, probability=False,
               progress=None, should_cancel=None):
        """Find the scratches of a layer (pixels as for ``restore``). ``threshold``: 0..1,
        None for the detector's own (``info()["detection"]["threshold"]``); ``probability``:
        also return the probability map. Returns ``(mask_bytes, probability_bytes or None,
        meta)``: u8 width x height, mask 255 = scratch, probability 0..255 = 0..1;
        ``meta["flagged"]`` is the share of pixels marked. Progress and cancelling as for
        ``restore``."""
        self._ensure_server()
        header, frames = self._image_request(OP_DETECT, pixels, width, height, channels, None, None)
        del header["mask"], header["options"]
        if threshold is not None:
            header["threshold"] = float(threshold)
        if probability:
            header["probability"] = True
        h, fr = self._run_job(header, frames, progress, should_cancel)
        want = 2 if probability else 1
        if len(fr) != want:
            raise ServerError(E_FRAME_COUNT, "detect result has %d frames, expected %d" % (len(fr), want))
        n = int(width) * int(height)
        for f in fr:
            if len(f.bytes) != n:
                raise ServerError(E_FRAME_COUNT, "detect result frame holds %d bytes, expected %d"
                                  % (len(f.bytes), n))
        meta = dict((_text(k), v) for k, v in h.items())
        return fr[0].bytes, (fr[1].bytes if probability else None), meta

    def _run_job(self, header, frames, progress, should_cancel):
        """Send a queued job's request and wait for its final reply, relaying progress and
        cancelling it on the server when ``should_cancel()`` says so. Returns
        ``(header, frames)``."""
        rid = self.send(header, frames)
        state = {"job": None}

        def on_message(h, fr):
            kind = _text(h.get("type"))
            if kind == T_ACCEPTED:
                state["job"] = _text(h.get("job"))
                if progress is not None:
                    progress(0.0, "queued")
            elif kind == T_PROGRESS and progress is not None:
                progress(float(h.get("fraction", 0.0)), _text(h.get("stage")) or "")

        reply = self.receive(rid, self.timeout, should_cancel, on_message)
        if reply is None:      # should_cancel said so
            if state["job"] is not None:
                try:
                    self.call(OP_CANCEL, {"job": state["job"]}, timeout=2.0)
                except ClientError:
                    pass
            self._reset()      # the abandoned job's last messages must not reach a later call
            raise Cancelled("cancelled by the user")
        return reply

    def echo(self, pixels, width, height, channels, mask=None):
        """Transport test: the server validates the image like a restore and sends the
        pixels straight back without running the model. Returns the bytes."""
        self._ensure_server()
        header, frames = self._image_request(OP_ECHO, pixels, width, height, channels, mask, None)
        h, fr = self.call(OP_ECHO, header, frames)
        return fr[0].bytes
