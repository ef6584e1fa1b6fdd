"""Device and precision selection."""
from __future__ import annotations

import functools

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(pref: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU. An explicit ``cuda`` without CUDA raises."""
    if isinstance(pref, torch.device):
        return pref
    if pref == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(pref)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but this PyTorch build sees no CUDA GPU")
    return dev


@functools.lru_cache(maxsize=1)
def cpu_bf16_flags() -> frozenset[str]:
    """The CPU's bf16 matrix features (``amx_bf16``, ``avx512_bf16``) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = set()
            for line in f:
                if line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
                    break
    except OSError:
        return frozenset()
    return frozenset(flags & {"amx_bf16", "avx512_bf16"})


def select_precision(device: torch.device, pref: str = "auto") -> torch.dtype:
    """Compute dtype for autocast. ``auto``: bf16 on CUDA GPUs that support it (else
    fp16); on CPU bf16 where the CPU has bf16 matrix instructions (AMX-BF16 or
    AVX512-BF16), else fp32. With the shipped weights bf16 is 1.2-1.5x faster here
    (AVX512-BF16) and within 62.5 dB PSNR of fp32 (max one grey level);
    docs/BENCHMARKS.md has the measurements."""
    if pref not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {pref!r}")
    if pref != "auto":
        return _DTYPES[pref]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_bf16_flags() else torch.float32
