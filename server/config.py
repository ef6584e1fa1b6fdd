"""ServerConfig: every setting of the server in one typed dataclass.

The command-line flags of ``python -m server`` are generated from these fields
(server.cli.add_config_flags), so a setting is declared once, here.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, fields
from typing import Any, Optional
from urllib.parse import urlsplit

from .wire import DEFAULT_ADDRESS, MAX_HEADER_BYTES


def _opt(help: str, **kw: Any) -> dict[str, Any]:
    return {"help": help, **kw}


@dataclass
class ServerConfig:
    """Settings of one server process."""

    bind: str = field(default=DEFAULT_ADDRESS, metadata=_opt(
        "ZeroMQ address to listen on: tcp://HOST:PORT (default port 5587) or ipc:///path"))
    weights: Optional[str] = field(default=None, metadata=_opt(
        "weight file (default: the weights shipped with oldphoto_model)"))
    detector: Optional[str] = field(default=None, metadata=_opt(
        "scratch-detector weight file for detect and restore with detection (default: the one shipped "
        "with oldphoto_model; when the default is missing the server still restores, without detection; "
        "'none': no detection)"))
    device: str = field(default="auto", metadata=_opt(
        "where the model runs", choices=("auto", "cpu", "cuda")))
    precision: str = field(default="auto", metadata=_opt(
        "compute precision", choices=("auto", "fp32", "bf16", "fp16")))
    max_pixels: int = field(default=40_000_000, metadata=_opt(
        "largest image accepted, in pixels (width x height)"))
    max_side: int = field(default=16384, metadata=_opt("largest width or height accepted"))
    queue_size: int = field(default=8, metadata=_opt(
        "jobs that may wait behind the running one; a full queue answers 'busy'"))
    max_header_bytes: int = field(default=MAX_HEADER_BYTES, metadata=_opt(
        "largest msgpack header accepted"))
    max_jobs_per_client: int = field(default=2, metadata=_opt(
        "restore jobs one connection may have waiting or running; more answer 'busy'"))
    max_peers: int = field(default=64, metadata=_opt(
        "connections served at once; requests on further ones answer 'busy' and those connections "
        "are closed (lowered to what the open-file limit allows)"))
    idle_timeout: float = field(default=300.0, metadata=_opt(
        "seconds after which a connection that has neither sent nor been sent anything, and has no "
        "job, is closed (0: never)"))
    max_unread_bytes: int = field(default=0, metadata=_opt(
        "bytes of replies one connection may leave unread, counting the results its jobs will send; "
        "echo and restore requests beyond that answer 'busy' (0: max_jobs_per_client results at the "
        "pixel limit)"))
    max_unread_total_bytes: int = field(default=0, metadata=_opt(
        "the same for all connections together (0: four times max_unread_bytes)"))
    shutdown_grace: float = field(default=10.0, metadata=_opt(
        "seconds shutdown waits for a running model step before exiting anyway"))
    allow_remote: bool = field(default=False, metadata=_opt(
        "allow binding to a non-loopback address; the server then requires CURVE encryption"))
    curve: str = field(default="auto", metadata=_opt(
        "CURVE encryption and server authentication: auto (on for non-loopback addresses), on, off "
        "(off is refused for non-loopback addresses)", choices=("auto", "on", "off")))
    key_dir: Optional[str] = field(default=None, metadata=_opt(
        "folder of the server's CURVE key pair, made on first start "
        "(default: ~/.config/oldphoto-server/curve)"))

    def validate(self) -> None:
        """Raise ValueError for settings that cannot work."""
        for name in ("max_pixels", "max_side", "max_header_bytes", "max_jobs_per_client", "max_peers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("queue_size", "shutdown_grace", "idle_timeout", "max_unread_bytes",
                     "max_unread_total_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.bind.startswith(("tcp://", "ipc://", "inproc://")):
            raise ValueError(f"bind address must start with tcp://, ipc:// or inproc://, got {self.bind!r}")
        if not is_local_address(self.bind):
            if not self.allow_remote:
                raise ValueError(f"{self.bind} is not a loopback address: pass --allow-remote to "
                                 "listen on the network (clients then need the server's public key)")
            if self.curve == "off":
                raise ValueError(f"{self.bind} is not a loopback address: remote use requires CURVE "
                                 "encryption (--curve auto or on), never plain text")

    @property
    def max_frame_bytes(self) -> int:
        """Largest frame a valid request can hold (a 16-bit RGBA image at the pixel limit)."""
        return self.max_pixels * 8

    @property
    def max_message_bytes(self) -> int:
        """Largest whole request: header, 16-bit RGBA pixels and mask at the pixel limit."""
        return self.max_header_bytes + self.max_pixels * 9

    @property
    def unread_cap(self) -> int:
        """Bytes of replies one connection may leave unread (max_unread_bytes or its default);
        never below one largest reply, which could otherwise never be sent."""
        cap = self.max_unread_bytes or self.max_jobs_per_client * self.max_frame_bytes
        return max(cap, self.max_frame_bytes)

    @property
    def unread_total_cap(self) -> int:
        """Bytes of replies all connections together may leave unread."""
        return max(self.max_unread_total_bytes or 4 * self.unread_cap, self.unread_cap)

    @property
    def uses_curve(self) -> bool:
        """Whether the ROUTER socket runs CURVE (always for a non-loopback address)."""
        return self.curve == "on" or (self.curve == "auto" and not is_local_address(self.bind))


def is_local_address(address: str) -> bool:
    """True for ipc/inproc addresses and tcp on a loopback host (127.0.0.0/8, ::1, localhost)."""
    if not address.startswith("tcp://"):
        return True
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:      # '*', an interface name, a DNS name: not provably local
        return False


def config_fields() -> list:
    """The dataclass fields of ServerConfig (for flag generation and its test)."""
    return list(fields(ServerConfig))
