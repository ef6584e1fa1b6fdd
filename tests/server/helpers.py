"""Helpers shared by the server tests (images, masks, ports)."""
from __future__ import annotations

import socket

import numpy as np

#: Server limits in the tests: small, so "too large" needs no big frames.
TEST_LIMITS = dict(max_pixels=1_000_000, max_side=2048, queue_size=8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def random_image(seed: int, h: int, w: int, c: int) -> np.ndarray:
    """A smooth image with noise (the model sees something photo-like), H x W x C."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx / (5 + seed % 7)) * np.cos(yy / 9.0)
    img = base[..., None] + rng.normal(0, 20, (h, w, c))
    if c in (2, 4):
        img[..., -1] = rng.integers(0, 256, (h, w))   # alpha: arbitrary, must come back untouched
    return np.clip(img, 0, 255).astype(np.uint8)


def random_mask(seed: int, h: int, w: int) -> np.ndarray:
    """A scratch-like mask with feathered edges (values between 0 and 255)."""
    rng = np.random.default_rng(seed + 1000)
    m = np.zeros((h, w), np.uint8)
    x = int(rng.integers(2, max(3, w - 6)))
    m[:, x:x + 3] = 255
    m[:, max(0, x - 1)] = 100
    m[h // 3: h // 3 + 2, :] = 200
    return m
