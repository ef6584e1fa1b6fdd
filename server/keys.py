"""The server's CURVE key pair: made on first start, kept in a private folder.

Remote clients authenticate the server (and encrypt everything) with its public
key; see docs/protocol.md, "Remote use". Loopback needs none of this.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import zmq
import zmq.auth

from .wire import is_curve_key

KEY_NAME = "server"


def default_key_dir() -> Path:
    """``$XDG_CONFIG_HOME/oldphoto-server/curve`` (default ~/.config/...)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "oldphoto-server" / "curve"


def server_keypair(key_dir: Optional[str] = None) -> tuple[str, str]:
    """(public, secret) Z85 keys from ``key_dir``, made there on first use. The folder
    is private to the user (0700) and so is the secret key file (0600)."""
    folder = Path(key_dir) if key_dir else default_key_dir()
    secret_file = folder / f"{KEY_NAME}.key_secret"
    if not secret_file.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
        old = os.umask(0o077)          # the secret file is never readable by others, not even briefly
        try:
            zmq.auth.create_certificates(str(folder), KEY_NAME)
        finally:
            os.umask(old)
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None or not is_curve_key(public.decode("ascii")):
        raise OSError(f"{secret_file}: not a CURVE secret key file (delete it to make a new key pair)")
    return public.decode("ascii"), secret.decode("ascii")
