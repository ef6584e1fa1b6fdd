"""Reduced precision against fp32 on the same photo and weights.

    python bench/precision_check.py [--weights W.pt] [--size 256] [--device cpu]
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from masks import scratch_mask  # noqa: E402

from oldphoto_model import RestorationModel, Restorer, load_model  # noqa: E402

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--weights")
ap.add_argument("--size", type=int, default=256)
ap.add_argument("--device", default="cpu")
args = ap.parse_args()
torch.manual_seed(0)
if args.weights:
    model = load_model(args.weights)
else:
    model = RestorationModel()
    for p in model.mapping.global_branch.nu.parameters():
        torch.nn.init.normal_(p, std=0.02)
img = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
mask = scratch_mask(args.size, args.size, 0.03)
ref = Restorer(model, args.device, "fp32").restore(img, mask).astype(np.float64)
print(f"| precision | mean abs. difference to fp32 | max | PSNR vs fp32 |  ({args.weights or 'random weights'}, "
      f"{args.size}², 3 % scratch, {args.device})")
for prec in ("bf16", "fp16"):
    out = Restorer(model, args.device, prec).restore(img, mask).astype(np.float64)
    d = np.abs(out - ref)
    psnr = 10 * np.log10(255 ** 2 / max(1e-12, (d ** 2).mean()))
    print(f"| {prec} autocast | {d.mean():.2f} | {d.max():.0f} | {psnr:.1f} dB |")
