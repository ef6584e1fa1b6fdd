# -*- coding: utf-8 -*-
"""The wire format of the old-photo server protocol, written once (docs/protocol.md).

Versions, operations, reply types, error codes, limits and the msgpack header
encoding. The server (server.protocol, server.app), the client (server.client)
and the copy the installer puts beside a GIMP plug-in (``oldphoto_wire.py``)
all import this module, so it runs unchanged on Python 2.7 and 3 and needs
nothing but msgpack.
"""
from __future__ import absolute_import, division, print_function, unicode_literals

import msgpack

#: 2: the ``detect`` operation and ``restore``'s ``detect`` field (a version-1 server would
#: ignore the field and restore without a mask, so the version tells the two apart).
PROTOCOL_VERSION = 2
DEFAULT_PORT = 5587
DEFAULT_ADDRESS = "tcp://127.0.0.1:5587"
START_HINT = ("Start the restoration server first: run `python -m server` "
              "(or `oldphoto-server`) in a terminal and leave it running.")

# operations
OP_PING = "ping"
OP_INFO = "info"
OP_RESTORE = "restore"
OP_CANCEL = "cancel"
OP_ECHO = "echo"          # transport test: validates like restore, returns the pixels
OP_DETECT = "detect"      # find the scratches: returns the mask (and the probability map)
OPS = (OP_PING, OP_INFO, OP_RESTORE, OP_CANCEL, OP_ECHO, OP_DETECT)

#: Frames an operation takes after the header: (at least, at most).
OP_FRAMES = {OP_PING: (0, 0), OP_INFO: (0, 0), OP_CANCEL: (0, 0), OP_RESTORE: (1, 2), OP_ECHO: (1, 2),
             OP_DETECT: (1, 1)}
#: The most frames any request may have, header included.
MAX_FRAMES = 1 + max(hi for _lo, hi in OP_FRAMES.values())

# reply types (the "type" field of every message the server sends)
T_OK = "ok"               # final reply of an operation (restore: plus the result frame)
T_ACCEPTED = "accepted"   # restore queued: carries the job id and queue position
T_PROGRESS = "progress"   # a running (or waiting) job's progress: fraction and stage
T_ERROR = "error"         # final reply of a failed operation: code and message

# error codes (stable; the message is for humans)
E_MALFORMED = "malformed_header"      # header is not a msgpack map of the documented fields
E_FRAME_COUNT = "frame_count"         # wrong number of frames for the op
E_SIZE_MISMATCH = "size_mismatch"     # a frame's length differs from what the header says
E_UNSUPPORTED = "unsupported_format"  # dtype or channel count the model cannot take
E_TOO_LARGE = "too_large"             # image or message beyond the server's limits
E_MASK_SHAPE = "mask_shape"           # mask dimensions differ from the image's
E_BAD_OPTION = "bad_option"           # unknown option or a value of the wrong type/range
E_UNKNOWN_OP = "unknown_op"
E_VERSION = "version_mismatch"
E_BUSY = "busy"                       # queue, connection or unread-reply limit reached: try later
E_UNKNOWN_JOB = "unknown_job"         # cancel of a job that is not queued or running
E_OOM = "out_of_memory"               # the job did not fit even on the low-memory path
E_CANCELLED = "cancelled"             # by cancel, a vanished client or the server shutting down
E_INTERNAL = "internal"               # a bug: the message says what
E_SOCKET_TYPE = "socket_type"         # a REQ (or other enveloped) socket: connect a DEALER
E_NO_DETECTOR = "detection_unavailable"   # detect (or restore with detect) on a server without a detector
# client-side only (never on the wire)
E_UNAVAILABLE = "server_unavailable"
E_TIMEOUT = "timeout"
E_CLIENT_INPUT = "client_input"
E_SECURITY = "security"               # CURVE key missing, malformed or not the server's
E_ADDRESS = "bad_address"             # a server address that cannot work (check_address)

ERROR_CODES = (E_MALFORMED, E_FRAME_COUNT, E_SIZE_MISMATCH, E_UNSUPPORTED, E_TOO_LARGE,
               E_MASK_SHAPE, E_BAD_OPTION, E_UNKNOWN_OP, E_VERSION, E_BUSY, E_UNKNOWN_JOB,
               E_OOM, E_CANCELLED, E_INTERNAL, E_SOCKET_TYPE, E_NO_DETECTOR)

DTYPE_U8 = "u8"
#: 16 bits per sample, little-endian (16-bit scans keep their depth through a restore)
DTYPE_U16 = "u16"
#: bytes per sample of each pixel dtype
DTYPE_BYTES = {DTYPE_U8: 1, DTYPE_U16: 2}

# limits
MAX_ID_LEN = 128                  # request and job ids
MAX_HEADER_BYTES = 65536          # default cap on a request header (the server's max_header_bytes)
MAX_REPLY_HEADER_BYTES = 1 << 20  # what a client accepts from a server
MAX_ECHOED_CHARS = 40             # a header value quoted in an error message is cut to this


class HeaderError(ValueError):
    """A header frame that is too big or not a msgpack map (a ValueError)."""


class AddressError(ValueError):
    """A server address that cannot work; the message says what is wrong and, where
    it can guess, what was meant (a ValueError)."""


ADDRESS_SCHEMES = ("tcp://", "ipc://", "inproc://")


def check_address(address, connect=True):
    """``address`` (stripped) when ZeroMQ can use it, else AddressError naming the fix.

    tcp://HOST:PORT (PORT 1..65535; IPv6 hosts in brackets), ipc://PATH or
    inproc://NAME. ``connect``: the address is connected to, so the wildcard port
    ``*`` and port 0 are refused (a server may bind them). Checked before any
    socket exists: ZeroMQ's own "Invalid argument" names no fix, and a socket left
    open after a failed connect makes closing its context wait forever."""
    if isinstance(address, bytes):   # Python 2 str, or bytes from a caller
        address = address.decode("utf-8", "replace")
    text = ("%s" % (address if address is not None else "")).strip()
    if not text:
        raise AddressError("the server address is empty; the default is %s" % DEFAULT_ADDRESS)
    if not text.startswith(ADDRESS_SCHEMES):
        if "://" in text:
            raise AddressError("server address %s: the transport must be tcp://, ipc:// or inproc://"
                               % clip(text))
        guess = "tcp://" + text + ("" if _split_port(text)[1] else ":%d" % DEFAULT_PORT)
        raise AddressError("server address %s lacks tcp:// at the front: did you mean %s?"
                           % (clip(text), guess))
    if not text.startswith("tcp://"):
        if not text.split("://", 1)[1]:
            raise AddressError("server address %s names no socket file after the transport"
                               % clip(text))
        return text
    host, port = _split_port(text[len("tcp://"):])
    if not host:
        raise AddressError("server address %s names no host: e.g. tcp://127.0.0.1:%d"
                           % (clip(text), DEFAULT_PORT))
    if port is None:
        raise AddressError("server address %s lacks the port: did you mean %s:%d?"
                           % (clip(text), text, DEFAULT_PORT))
    wild = port in ("*", "0") and not connect
    if not wild and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise AddressError("server address %s: the port %s is not a number from 1 to 65535 "
                           "(the default is %d)" % (clip(text), clip(port), DEFAULT_PORT))
    return text


def _split_port(hostport):
    """'HOST:PORT' -> (HOST, PORT text or None); '[v6]:PORT' keeps the brackets."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            return hostport, None
        rest = hostport[end + 1:]
        return hostport[:end + 1], (rest[1:] if rest.startswith(":") else None)
    if ":" not in hostport:
        return hostport, None
    host, port = hostport.rsplit(":", 1)
    return host, port


def clip(value, limit=MAX_ECHOED_CHARS):
    """``value`` as text for an error message, cut to ``limit`` characters: a client's
    header fields are quoted, never echoed whole."""
    try:
        text = value if isinstance(value, type("")) else repr(value)
    except Exception:
        text = "<%s>" % type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def is_protocol_version(value):
    """True only for the integer PROTOCOL_VERSION (not True, not 1.0)."""
    return type(value) is int and value == PROTOCOL_VERSION


#: The 85 characters of Z85, the text form of CURVE keys (40 characters per key).
Z85_CHARS = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
             ".-:+=^!/*?&<>()[]{}@%$#")


def is_curve_key(text):
    """True for a CURVE key in Z85 text: 40 characters of the Z85 alphabet."""
    return (isinstance(text, type("")) and len(text) == 40
            and all(ch in Z85_CHARS for ch in text))


_PY2 = bytes is str


def _native_text(obj):
    """On Python 2, plain ``str`` (what plug-in code writes without unicode_literals)
    becomes unicode, so msgpack sends text rather than bin; containers recursively."""
    if not _PY2:
        return obj
    if isinstance(obj, bytes):
        return obj.decode("utf-8")
    if isinstance(obj, dict):
        return dict((_native_text(k), _native_text(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return [_native_text(v) for v in obj]
    return obj


def pack_header(header):
    """msgpack-encode a header map (text keys and strings, bin type for bytes;
    Python 2 ``str`` is sent as text)."""
    return msgpack.packb(_native_text(header), use_bin_type=True)


def unpack_header(data, max_bytes=MAX_REPLY_HEADER_BYTES, **extra):
    """Decode a header frame with every string, binary, array and map capped by the
    frame's size (nothing is ever unpickled). HeaderError when it is too big or not
    a map; msgpack's own errors (ValueError and others) when it is not msgpack. ``extra`` goes to
    msgpack.unpackb (the server adds strict_map_key)."""
    n = len(data)
    if n > max_bytes:
        raise HeaderError("header of %d bytes exceeds %d" % (n, max_bytes))
    obj = msgpack.unpackb(data, raw=False, use_list=True, max_str_len=n, max_bin_len=n,
                          max_array_len=n, max_map_len=n, max_ext_len=n, **extra)
    if not isinstance(obj, dict):
        raise HeaderError("header must be a msgpack map, got %s" % type(obj).__name__)
    return obj


__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")] + [
    "AddressError", "HeaderError", "check_address", "clip", "is_curve_key", "is_protocol_version",
    "pack_header", "unpack_header"]
