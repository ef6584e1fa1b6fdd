"""One large photo through the restore pipeline: wall time and peak RSS (for the
"2048x2048 in 24 GiB on the CPU" check).  python bench/big_photo.py 2048 [precision]"""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from masks import scratch_mask  # noqa: E402

from oldphoto_model import RestorationModel, Restorer  # noqa: E402

size = int(sys.argv[1]) if len(sys.argv) > 1 else 2048
precision = sys.argv[2] if len(sys.argv) > 2 else "auto"
torch.manual_seed(0)
model = RestorationModel()
for p in model.mapping.global_branch.nu.parameters():
    torch.nn.init.normal_(p, std=0.02)
r = Restorer(model, device="auto", precision=precision)
img = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
mask = scratch_mask(size, size, 0.03)
t = time.perf_counter()
out = r.restore(img, mask, progress=lambda f, s: print(f"  {f:4.0%} {s} {time.perf_counter() - t:7.1f}s", flush=True))
dt = time.perf_counter() - t
peak = (torch.cuda.max_memory_allocated() if r.device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(f"{size}x{size} RGB, 3% scratch mask ({(mask > 0).mean():.1%}), {r.device} {r.dtype}: "
      f"{dt:.1f} s, peak {'GPU' if r.device.type == 'cuda' else 'RSS'} {peak / 2**30:.2f} GiB, "
      f"output {out.shape} finite={bool(np.isfinite(out).all())}")
