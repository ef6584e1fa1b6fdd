"""Server side of the wire protocol: decode and validate requests, build replies.

Everything a client sends is checked here before it reaches the model; every
problem becomes a ``ProtocolError`` with one of the stable codes of
``server.wire``. Headers are msgpack maps decoded with explicit size caps;
nothing is ever unpickled. The format is documented in docs/protocol.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from oldphoto_model import InputError, RestoreOptions

from .config import ServerConfig
from .wire import (
    DTYPE_BYTES,
    DTYPE_U8,
    DTYPE_U16,
    E_BAD_OPTION,
    E_FRAME_COUNT,
    E_MALFORMED,
    E_MASK_SHAPE,
    E_SIZE_MISMATCH,
    E_TOO_LARGE,
    E_UNKNOWN_OP,
    E_UNSUPPORTED,
    E_VERSION,
    MAX_FRAMES,
    MAX_ID_LEN,
    OP_CANCEL,
    OP_DETECT,
    OP_ECHO,
    OP_INFO,
    OP_PING,
    OP_RESTORE,
    OPS,
    PROTOCOL_VERSION,
    T_ERROR,
    HeaderError,
    clip,
    is_protocol_version,
    pack_header,
    unpack_header,
)

#: Options a restore accepts: name -> (type, default, description). Sent in ``info``.
#: The defaults are the model package's (``RestoreOptions``), which also checks ranges.
_DEFAULTS = RestoreOptions()
OPTIONS: dict[str, tuple[type, Any, str]] = {
    "mask_threshold": (int, _DEFAULTS.mask_threshold, "mask values >= this (1..255) count as defects"),
    "restrict_to_mask": (bool, _DEFAULTS.restrict_to_mask, "blend the result into the original with the soft "
                                                          "mask, so only the selection changes"),
    "grow": (int, _DEFAULTS.grow, "grow the defect mask by this many pixels (0..64) before restoring"),
    "match_tone": (bool, _DEFAULTS.match_tone, "with restrict_to_mask: the fill takes the tone of the "
                                               "unrestored surroundings (no tinted patch or seam)"),
    "detail": (float, _DEFAULTS.detail, "0..1: how much of the photo's own fine detail is kept "
                                        "outside the mask"),
    "tone": (float, _DEFAULTS.tone, "0..1: how much of the network's tone and colour correction is "
                                    "applied outside the mask (0 keeps the photo's own tone; fills are "
                                    "restored either way)"),
    "sharpen": (float, _DEFAULTS.sharpen, "0..2: how much the photo's strong edges are steepened "
                                          "(0: no sharpening; the default gives back what denoising "
                                          "takes)"),
    "black_point": (float, _DEFAULTS.black_point, "0..1: how much of a faded photo's lifted black level is "
                                                  "taken out (whole photo only)"),
    "auto_tone": (float, _DEFAULTS.auto_tone, "0..1: how much of the tone estimator's correction of fading, "
                                              "tint, lifted blacks and lost contrast is applied (whole photo "
                                              "only)"),
    "learned_fill": (bool, _DEFAULTS.learned_fill, "fill the defects with the learned fill's refinement of "
                                                   "their smooth (harmonic) fill (off, or without a "
                                                   "learned-fill file: the harmonic fill)"),
}


class ProtocolError(Exception):
    """A request the server refuses: ``code`` (stable) and a human ``message``."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass
class Request:
    """A validated request. For restore/echo/detect, ``image`` (H, W, C) and ``mask`` (H, W)
    are read-only views of the received frames (no copy). ``detect``: a restore without a
    mask should find the scratches itself; ``threshold`` (None: the detector's own) and
    ``probability`` (send the probability map too) belong to ``detect``."""

    op: str
    id: Any
    job: Optional[str] = None
    image: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    options: dict[str, Any] = field(default_factory=dict)
    detect: bool = False
    threshold: Optional[float] = None
    probability: bool = False


def decode_header(data: bytes, max_bytes: int) -> dict:
    """msgpack map -> dict, every container and string capped by the frame's size."""
    if len(data) == 0:
        raise ProtocolError(E_MALFORMED, "empty header frame")
    if len(data) > max_bytes:
        raise ProtocolError(E_MALFORMED, f"header of {len(data)} bytes exceeds {max_bytes}")
    try:
        return unpack_header(data, max_bytes, strict_map_key=True)
    except HeaderError as e:
        raise ProtocolError(E_MALFORMED, str(e)) from None
    except Exception as e:  # msgpack raises several types (ExtraData, FormatError, ...)
        raise ProtocolError(E_MALFORMED, f"header is not valid msgpack ({type(e).__name__})") from None


def _request_id(header: dict) -> Any:
    rid = header.get("id")
    if rid is None or (isinstance(rid, (str, bytes)) and len(rid) <= MAX_ID_LEN) or \
            (isinstance(rid, int) and not isinstance(rid, bool) and -2**63 <= rid < 2**64):
        return rid
    return None   # an id we would not echo back safely


def _int_field(header: dict, name: str, rid: Any) -> int:
    v = header.get(name)
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError(E_MALFORMED, f"'{name}' must be an integer, got {type(v).__name__}", rid)
    return v


def _options(raw: Any, rid: Any) -> dict[str, Any]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ProtocolError(E_BAD_OPTION, f"'options' must be a map, got {type(raw).__name__}", rid)
    out = {name: default for name, (_, default, _) in OPTIONS.items()}
    for k, v in raw.items():
        if k not in OPTIONS:
            raise ProtocolError(E_BAD_OPTION, f"unknown option {clip(k)}; supported: "
                                f"{', '.join(OPTIONS)}", rid)
        typ = OPTIONS[k][0]
        if typ is int and (not isinstance(v, int) or isinstance(v, bool)):
            raise ProtocolError(E_BAD_OPTION, f"option '{k}' must be an integer", rid)
        if typ is bool and not isinstance(v, bool):
            raise ProtocolError(E_BAD_OPTION, f"option '{k}' must be true or false", rid)
        if typ is float:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v != v:
                raise ProtocolError(E_BAD_OPTION, f"option '{k}' must be a number", rid)
            v = float(v)
        out[k] = v
    if not 1 <= out["mask_threshold"] <= 255:
        raise ProtocolError(E_BAD_OPTION, f"mask_threshold must be in 1..255, got {out['mask_threshold']}", rid)
    try:
        RestoreOptions(**out)
    except InputError as e:
        raise ProtocolError(E_BAD_OPTION, str(e), rid) from None
    return out


def dtype_name(pixels: np.ndarray) -> str:
    """The wire's dtype of a uint8 or uint16 pixel array."""
    return DTYPE_U16 if pixels.dtype.itemsize == 2 else DTYPE_U8


def pixel_frame(pixels: np.ndarray) -> np.ndarray:
    """A pixel array as the wire sends it: u16 little-endian (no copy where that is native)."""
    return pixels.astype("<u2", copy=False) if pixels.dtype.itemsize == 2 else pixels


def _image(header: dict, frames: Sequence, cfg: ServerConfig, rid: Any
           ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    dtype = header.get("dtype", DTYPE_U8)
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise ProtocolError(E_UNSUPPORTED, f"dtype {clip(dtype)} is not supported (only "
                            f"{', '.join(repr(d) for d in DTYPE_BYTES)})", rid)
    size = DTYPE_BYTES[dtype]
    w, h, c = (_int_field(header, k, rid) for k in ("width", "height", "channels"))
    if c not in (1, 2, 3, 4):
        raise ProtocolError(E_UNSUPPORTED, f"channels must be 1 (gray), 2 (gray+alpha), 3 (RGB) "
                            f"or 4 (RGBA), got {c}", rid)
    if w < 1 or h < 1:
        raise ProtocolError(E_MALFORMED, f"image size must be positive, got {w}x{h}", rid)
    if w > cfg.max_side or h > cfg.max_side or w * h > cfg.max_pixels:
        raise ProtocolError(E_TOO_LARGE, f"image {w}x{h} exceeds the server's limits "
                            f"({cfg.max_pixels} pixels, {cfg.max_side} per side): restore a "
                            "smaller region", rid)
    has_mask = header.get("mask", False)
    if not isinstance(has_mask, bool):
        raise ProtocolError(E_MALFORMED, "'mask' must be true or false", rid)
    want = 2 if has_mask else 1
    if len(frames) != want:
        raise ProtocolError(E_FRAME_COUNT, f"expected {want} frame(s) after the header "
                            f"(pixels{', mask' if has_mask else ''}), got {len(frames)}", rid)
    pix = memoryview(frames[0])
    if pix.nbytes != w * h * c * size:
        raise ProtocolError(E_SIZE_MISMATCH, f"pixel frame holds {pix.nbytes} bytes, "
                            f"{w}x{h}x{c} {dtype} needs {w * h * c * size}", rid)
    # u16 is little-endian on the wire; the model takes native uint16 (no copy on
    # little-endian machines)
    image = (np.frombuffer(pix, dtype=np.uint8) if size == 1
             else np.frombuffer(pix, dtype="<u2").astype(np.uint16, copy=False)).reshape(h, w, c)
    mask = None
    if has_mask:
        mv = memoryview(frames[1])
        if mv.nbytes != w * h:
            mh = header.get("mask_height"), header.get("mask_width")
            raise ProtocolError(E_MASK_SHAPE, f"mask frame holds {mv.nbytes} bytes, the {w}x{h} "
                                f"image needs a {w}x{h} u8 mask ({w * h} bytes)"
                                + (f"; header says {clip(mh[1])}x{clip(mh[0])}" if None not in mh else ""),
                                rid)
        mask = np.frombuffer(mv, dtype=np.uint8).reshape(h, w)
    return image, mask


def parse_request(frames: Sequence, cfg: ServerConfig) -> Request:
    """Validate one request (the frames after the ROUTER identity). Raises ProtocolError."""
    if not frames:
        raise ProtocolError(E_FRAME_COUNT, "empty message: expected a header frame")
    # the whole message is sized before any frame is read: no op takes more frames
    # or bytes than an RGBA image with its mask at the pixel limit
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(E_FRAME_COUNT, f"{len(frames)} frames: no request has more than {MAX_FRAMES}")
    total = sum(memoryview(f).nbytes for f in frames)
    if total > cfg.max_message_bytes:
        raise ProtocolError(E_TOO_LARGE, f"message of {total} bytes exceeds the server's limit of "
                            f"{cfg.max_message_bytes}")
    header = decode_header(bytes(frames[0]), cfg.max_header_bytes)
    rid = _request_id(header)
    version = header.get("v")
    if version is None:
        raise ProtocolError(E_MALFORMED, "header lacks the protocol version 'v'", rid)
    if not is_protocol_version(version):   # 1.0 and True are not 1
        raise ProtocolError(E_VERSION, f"protocol version {clip(version)} is not supported: "
                            f"this server speaks version {PROTOCOL_VERSION}; update the plug-in "
                            "or the server so both match", rid)
    op = header.get("op")
    if not isinstance(op, str):
        raise ProtocolError(E_MALFORMED, "header lacks the operation 'op'", rid)
    if op not in OPS:
        raise ProtocolError(E_UNKNOWN_OP, f"unknown operation {clip(op)}; supported: {', '.join(OPS)}", rid)
    rest = frames[1:]
    if op in (OP_PING, OP_INFO, OP_CANCEL):
        if rest:
            raise ProtocolError(E_FRAME_COUNT, f"'{op}' takes no frames after the header, got {len(rest)}", rid)
        if op == OP_CANCEL:
            job = header.get("job")
            if not isinstance(job, str) or not 0 < len(job) <= MAX_ID_LEN:
                raise ProtocolError(E_MALFORMED, "'cancel' needs the job id string 'job'", rid)
            return Request(op, rid, job=job)
        return Request(op, rid)
    assert op in (OP_RESTORE, OP_ECHO, OP_DETECT)
    if op == OP_DETECT and header.get("mask", False) is not False:
        raise ProtocolError(E_MALFORMED, "'detect' takes the pixels only: 'mask' must be false or absent", rid)
    image, mask = _image(header, rest, cfg, rid)
    if op == OP_DETECT:
        return Request(op, rid, image=image, threshold=_threshold(header.get("threshold"), rid),
                       probability=_bool_field(header, "probability", rid))
    options = _options(header.get("options"), rid) if op == OP_RESTORE else {}
    detect = _bool_field(header, "detect", rid) if op == OP_RESTORE else False
    return Request(op, rid, image=image, mask=mask, options=options, detect=detect)


def _bool_field(header: dict, name: str, rid: Any) -> bool:
    """An optional true/false header field (absent: false)."""
    v = header.get(name, False)
    if not isinstance(v, bool):
        raise ProtocolError(E_MALFORMED, f"'{name}' must be true or false, got {type(v).__name__}", rid)
    return v


def _threshold(v: Any, rid: Any) -> Optional[float]:
    """``detect``'s optional threshold: a number in 0..1, or None for the detector's own."""
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
        raise ProtocolError(E_BAD_OPTION, f"'threshold' must be a number from 0 to 1, got {clip(v)}", rid)
    return float(v)


def reply(rid: Any, kind: str, **fields: Any) -> bytes:
    """A reply header: ``{"v", "id", "type", **fields}`` packed with msgpack."""
    return pack_header({"v": PROTOCOL_VERSION, "id": rid, "type": kind, **fields})


def error_reply(rid: Any, code: str, message: str, **fields: Any) -> bytes:
    """A typed error reply header."""
    return reply(rid, T_ERROR, code=code, message=message, **fields)


__all__ = ["OPTIONS", "ProtocolError", "Request", "decode_header", "parse_request", "reply",
           "error_reply", "OP_CANCEL", "OP_DETECT", "OP_ECHO", "OP_INFO", "OP_PING", "OP_RESTORE"]
