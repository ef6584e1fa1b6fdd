"""A real restoration server (``python -m server``) in a subprocess, for plug-in tests,
and the reference result the plug-ins must reproduce. Imports torch only inside
the functions that need it (the plug-in package itself never does)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_weights(path: Path, seed: int = 0) -> Path:
    """A tiny random-weight model file (tests only)."""
    import torch

    from oldphoto_model import MappingConfig, ModelConfig, RestorationModel, VAEConfig, save_model
    torch.manual_seed(seed)
    m = RestorationModel(ModelConfig(vae=VAEConfig(channels=16),
                                     mapping=MappingConfig(latent_channels=16, width=32)))
    if m.mapping.global_branch is not None:   # nu starts at zero: make the mask matter
        for p in m.mapping.global_branch.nu.parameters():
            torch.nn.init.normal_(p, std=0.2)
    save_model(m, str(path), metadata={"purpose": "test, random weights"})
    return Path(path)


def make_detector(path: Path, seed: int = 0) -> Path:
    """A tiny random-weight scratch detector (tests only) whose file's threshold is the
    median probability it gives a random photo, so its masks are neither empty nor full."""
    import numpy as np
    import torch

    from oldphoto_model.archs.detector import DetectorConfig, ScratchDetector
    from oldphoto_model.detect import detect, save_detector
    torch.manual_seed(seed)
    m = ScratchDetector(DetectorConfig(width=4, levels=2)).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    sample = np.random.default_rng(seed).integers(30, 220, (64, 64, 3), dtype=np.uint8)
    threshold = round(float(np.median(detect(sample, m, 0.5)[0])), 4)
    save_detector(m, str(path), metadata={"purpose": "test, random weights", "threshold": threshold})
    return Path(path)


class ServerProcess:
    """``python -m server --bind ADDRESS --weights W --device cpu --precision fp32`` (and
    ``--detector D`` when given: a file, or "none"; else the shipped scratch detector)."""

    def __init__(self, weights: Path, address: str | None = None, cwd: Path | None = None,
                 extra_args: list[str] | None = None, server_key: str | None = None,
                 detector: str | Path | None = None):
        self.extra_args = list(extra_args or []) + (["--detector", str(detector)] if detector else [])
        self.server_key = server_key     # a CURVE server's public key, for the readiness ping
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.weights = Path(weights)
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, timeout: float = 90.0) -> "ServerProcess":
        """Start and wait until it answers a ping; RuntimeError with its output when it cannot."""
        import tempfile
        fd, log = tempfile.mkstemp(prefix="oldphoto-server-", suffix=".log")
        self.log_path = Path(log)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = str(root) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "server", "--bind", self.address, "--weights", str(self.weights),
             "--device", "cpu", "--precision", "fp32", *self.extra_args],
            stdout=fd, stderr=subprocess.STDOUT, cwd=str(self.cwd or root), env=env)
        os.close(fd)
        from server.client import Client, ClientError
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}): {self.output()[-1500:]}")
            c = Client(self.address, server_key=self.server_key)
            try:
                c.ping(timeout=1.0)
                return self
            except ClientError:
                pass
            finally:
                c.close()
        self.stop()
        raise RuntimeError(f"the server did not answer within {timeout:.0f} s: {self.output()[-1500:]}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def reference(weights: Path, pixels, mask=None, restrict: bool = False, region=None,
              options: dict | None = None):
    """What the plug-in's new layer must hold, computed without the server:
    oldphoto_model.restore on the region sent, with ``restrict_to_mask`` when
    ``restrict`` and the other RestoreOptions in ``options`` (the model package's
    whole contract), pasted into the original."""
    import numpy as np

    from oldphoto_model import RestoreOptions, load_model, restore
    img = np.asarray(pixels)
    h, w = img.shape[:2]
    x, y, rw, rh = region or (0, 0, w, h)
    crop = np.ascontiguousarray(img[y:y + rh, x:x + rw])
    m = None if mask is None else np.ascontiguousarray(np.asarray(mask)[y:y + rh, x:x + rw])
    out = restore(crop, m, model=load_model(str(weights)), device="cpu", precision="fp32",
                  options=RestoreOptions(restrict_to_mask=bool(restrict), **(options or {})))
    full = img.copy()
    full[y:y + rh, x:x + rw] = out
    return full
