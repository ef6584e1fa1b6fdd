"""Restore latency and peak memory: this package's attention vs the original full matrix.

Each case runs in a fresh subprocess so its peak memory is its own. Random
weights at the default (paper) configuration unless --weights is given.

    python bench/bench_restore.py                       # CPU table
    python bench/bench_restore.py --sizes 256 512 1024 2048 4096 --device cuda
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

METHODS = {
    # name: (attention backend, hole_only, precision)
    "original (full matrix, fp32)": ("full_matrix", False, "fp32"),
    "ours fp32": ("auto", True, "fp32"),
    "ours bf16+channels_last": ("auto", True, "bf16"),
    "ours fp16": ("auto", True, "fp16"),
}


def run_case(size: int, mask_kind: str, method: str, device: str, weights: str | None) -> dict:
    import numpy as np
    import torch
    from masks import blotch_mask, scratch_mask

    from oldphoto_model import AttentionOptions, RestorationModel, Restorer, load_model

    backend, hole_only, precision = METHODS[method]
    torch.manual_seed(0)
    model = load_model(weights) if weights else RestorationModel()
    if not weights:
        for p in model.mapping.global_branch.nu.parameters():
            torch.nn.init.normal_(p, std=0.02)
    r = Restorer(model, device=device, precision=precision,
                 attention=AttentionOptions(backend=backend, hole_only=hole_only))
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    mask = scratch_mask(size, size, 0.03) if mask_kind == "scratch 3%" else blotch_mask(size, size, 0.30)
    r.restore(img[:64, :64], mask[:64, :64])      # warm-up: kernel selection, allocator
    if r.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = r.restore(img, mask)
    if r.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    peak = (torch.cuda.max_memory_allocated() if r.device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"seconds": dt, "peak_bytes": peak, "checksum": int(out.astype(np.int64).sum())}


def full_matrix_bytes(size: int) -> int:
    """The original's attention matrix: (H*W/16)^2 float32."""
    return (size * size // 16) ** 2 * 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--masks", nargs="+", default=["scratch 3%", "blotch 30%"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS)[:3], choices=list(METHODS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--max-matrix-gib", type=float, default=6.0,
                    help="skip the full-matrix baseline where its matrix alone exceeds this")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        size, mask_kind, method = json.loads(args.case)
        print(json.dumps(run_case(size, mask_kind, method, args.device, args.weights)))
        return
    import torch
    print(f"# torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
          f"weights {args.weights or 'random (default config)'}")
    header = "| size | mask | method | seconds | peak memory (GiB) | vs original |"
    print(header)
    print("|" + "---|" * 6)
    for size in args.sizes:
        for mask_kind in args.masks:
            base = None
            for method in args.methods:
                if method.startswith("original") and full_matrix_bytes(size) > args.max_matrix_gib * 2**30:
                    print(f"| {size}² | {mask_kind} | {method} | — | needs > "
                          f"{full_matrix_bytes(size) / 2**30:.0f} GiB for the matrix alone | |", flush=True)
                    continue
                cmd = [sys.executable, __file__, "--device", args.device, "--case",
                       json.dumps([size, mask_kind, method])] + (["--weights", args.weights] if args.weights else [])
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    err = (proc.stderr.strip().splitlines() or ["killed"])[-1][:80]
                    print(f"| {size}² | {mask_kind} | {method} | failed: {err} | | |", flush=True)
                    continue
                res = json.loads(proc.stdout.strip().splitlines()[-1])
                if method.startswith("original"):
                    base = res["seconds"]
                ratio = f"{base / res['seconds']:.1f}×" if base and not method.startswith("original") else ""
                print(f"| {size}² | {mask_kind} | {method} | {res['seconds']:.2f} | "
                      f"{res['peak_bytes'] / 2**30:.2f} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
