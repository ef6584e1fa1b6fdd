"""What the harmonic fill (oldphoto_model/fill.py) costs: push-pull alone against
push-pull + conjugate gradients, per image size and share of defect pixels.

    python bench/bench_fill.py --sizes 512 1024 2048 --shares 0.02 0.1 0.3

The masks are hairline scratches (share ~2 %) or, above it, scratches plus a grid of
square holes making up the share. Times are one run each, on whatever this machine
is doing; the ratio to push-pull, measured in the same run, is the figure to quote.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oldphoto_model.fill import fill_holes, harmonic_fill  # noqa: E402


def defects(side: int, share: float, seed: int = 0) -> torch.Tensor:
    """(1, 1, side, side) with 1 on the defects: scratches, then square holes up to ``share``."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(side, side)
    for _ in range(max(1, side // 100)):
        r = int(torch.randint(0, side - 3, (1,), generator=g))
        m[r:r + 2, side // 10: side - side // 10] = 1
    hole = max(4, side // 16)
    while float(m.mean()) < share - 0.01:
        r, c = (int(v) for v in torch.randint(0, side - hole, (2,), generator=g))
        m[r:r + hole, c:c + hole] = 1
    return m[None, None]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    ap.add_argument("--shares", type=float, nargs="+", default=[0.02, 0.1, 0.3])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"{'size':>6} {'defects':>8} {'push-pull s':>12} {'harmonic s':>11} {'ratio':>6}")
    for side in a.sizes:
        x = torch.rand(1, 3, side, side) * 2 - 1
        for share in a.shares:
            d = defects(side, share)
            t0 = time.perf_counter()
            fill_holes(x, 1 - d)
            t1 = time.perf_counter()
            harmonic_fill(x, 1 - d)
            t2 = time.perf_counter()
            print(f"{side:>6} {float(d.mean()):>7.1%} {t1 - t0:>12.3f} {t2 - t1:>11.3f} {(t2 - t1) / (t1 - t0):>6.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
