"""Speed and memory of the scratch detector: ``python bench/bench_detect.py [--big]``.

Times ``oldphoto_model.detect.detect`` on a 1024^2 photo (the issue's target: <= 3 s on
the development CPU) with the shipped weights (random weights when none are shipped;
the time does not depend on them), and with ``--big`` a 24 MP scan (6000 x 4000), whose
peak resident memory is printed (target: within 24 GiB).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from oldphoto_model.archs.detector import ScratchDetector
from oldphoto_model.detect import DEFAULT_DETECTOR, DEFAULT_TILE, detect, load_detector


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's choice)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--tile", type=int, default=DEFAULT_TILE)
    ap.add_argument("--big", action="store_true", help="also a 6000 x 4000 scan")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    model = load_detector() if DEFAULT_DETECTOR.is_file() else ScratchDetector().eval()
    n_par = sum(p.numel() for p in model.parameters())
    print(f"detector {model.config}, {n_par / 1e3:.0f} k parameters, receptive radius "
          f"{model.config.receptive_radius} px, tile {a.tile}, torch threads {torch.get_num_threads()}")
    img = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    detect(img[:256, :256], model, tile=a.tile)                          # warm-up
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        detect(img, model, tile=a.tile)
        times.append(time.perf_counter() - t)
    print(f"1024x1024: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
          f"over {a.repeat} runs")
    if a.big:
        big = np.random.default_rng(1).integers(0, 256, (4000, 6000, 3), dtype=np.uint8)
        t = time.perf_counter()
        detect(big, model, tile=a.tile)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
        print(f"6000x4000 (24 MP): {time.perf_counter() - t:.1f} s, peak resident memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
