"""What the two-band merge (oldphoto_model/bands.py) costs next to the network.

Restores a photo-like image with a scratch mask at each size with the shipped
weights, once as the network alone (tone 1, detail 0: the merge is skipped) and
once at the defaults, in one process, and prints both times and their ratio.

    python bench/bench_merge.py --sizes 512 1024
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from oldphoto_model import RestoreOptions, Restorer, load_model  # noqa: E402


def photo(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth shapes, texture and a few scratches."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = np.stack([0.4 + 0.3 * np.sin(6 * xx), 0.5 - 0.2 * yy, 0.3 + 0.3 * xx * yy], -1)
    img = np.clip((img + rng.normal(0, 0.03, img.shape)) * 255, 0, 255).astype(np.uint8)
    mask = np.zeros((side, side), np.uint8)
    for i in range(5):
        r = int(side * (0.1 + 0.18 * i))
        mask[r:r + 3, side // 10: side - side // 10] = 255
    return img, mask


def best_of(n: int, f) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    restorer = Restorer(load_model(), "auto", "auto")
    print(f"device {restorer.device}, precision {restorer.dtype}")
    print("| size | network only (s) | defaults with the merge (s) | ratio |")
    print("|---|---|---|---|")
    for side in args.sizes:
        img, mask = photo(side)
        plain = best_of(args.repeat, lambda: restorer.restore(img, mask, RestoreOptions(tone=1.0, detail=0.0)))
        merged = best_of(args.repeat, lambda: restorer.restore(img, mask, RestoreOptions()))
        print(f"| {side}² | {plain:.2f} | {merged:.2f} | {merged / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
