"""Attention restricted to intact keys: the core of the partial nonlocal block.

For queries q_i, keys k_j and values v_j (rows are positions, columns channels)
and a key mask ``intact`` (True where m_j = 0), every function here computes

    out_i = sum_j s_ij v_j,   s_ij = intact_j exp(q_i . k_j) / sum_k intact_k exp(q_i . k_k)

with no 1/sqrt(d) scale (the paper's f_ij = exp(theta^T phi)). Restricting the
softmax to intact keys is the same as gathering the intact keys first, which is
what the fast paths do. When no key is intact the result is defined as zero
(the original implementation's renormalisation of an all-zero row gives zero
too): a defect with nothing to borrow from receives nothing from this branch.
"""
from __future__ import annotations

import warnings
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F

Backend = Literal["auto", "chunked", "sdpa", "full_matrix"]

#: Default budget for one query chunk's score matrix, in elements (16 MiB in fp32;
#: measured a little faster than 64 MiB on a 2-core CPU: the chunk stays in cache).
DEFAULT_CHUNK_ELEMENTS = 1 << 22


def masked_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                               intact: torch.Tensor) -> torch.Tensor:
    """Plain float64 reference: the full score matrix, masked softmax, as the formula."""
    q64, k64, v64 = q.double(), k.double(), v.double()
    if not bool(intact.any()):
        return torch.zeros(q.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
    scores = q64 @ k64.T
    scores = scores.masked_fill(~intact.bool()[None, :], float("-inf"))
    return (torch.softmax(scores, dim=1) @ v64).to(v.dtype)


def _full_matrix(q, k, v, intact):
    """The original implementation's way: softmax over all keys, zero the defect
    columns, renormalise rows. Builds the whole Nq x Nk matrix; kept only as the
    baseline the benchmark compares against."""
    w = torch.softmax(q @ k.T, dim=1) * intact.to(q.dtype)[None, :]
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return w @ v


def _chunked(q, k, v, chunk_elements):
    rows = max(1, chunk_elements // max(1, k.shape[0]))
    kt = k.T
    # training needs autograd (a list of chunks); inference writes into one buffer
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    out = [] if grad else torch.empty(q.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
    for s in range(0, q.shape[0], rows):
        scores = q[s:s + rows] @ kt
        if scores.dtype in (torch.float16, torch.bfloat16):
            # unscaled logits are large: normalise in fp32
            scores = scores.float()
        probs = torch.softmax(scores, dim=1).to(v.dtype)
        if grad:
            out.append(probs @ v)
        else:
            torch.matmul(probs, v, out=out[s:s + rows])
    return torch.cat(out) if grad else out


def _sdpa(q, k, v):
    """Fused attention without the math fallback (which would build the matrix)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    allowed = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]
    if hasattr(SDPBackend, "CUDNN_ATTENTION") and q.is_cuda:
        allowed.append(SDPBackend.CUDNN_ATTENTION)
    with sdpa_kernel(allowed):
        return F.scaled_dot_product_attention(q[None, None], k[None, None], v[None, None],
                                              scale=1.0)[0, 0]


_SDPA_OK: dict[tuple, bool] = {}


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, intact: torch.Tensor,
                     backend: Backend = "auto",
                     chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
                     tick: Optional[Callable[[float], None]] = None, blocks: int = 16) -> torch.Tensor:
    """Exact attention over intact keys in O(Nq + Nk) extra memory.

    q: (Nq, C), k: (Nk, C), v: (Nk, Cv), intact: (Nk,) bool. ``backend``:
    ``chunked`` processes queries in chunks of at most ``chunk_elements`` scores;
    ``sdpa`` uses PyTorch's fused kernels (flash / memory-efficient) and raises if
    none supports the shapes; ``auto`` tries ``sdpa`` and falls back to ``chunked``
    (remembering the failure per device, dtype and head size; CUDA's flash kernel
    stops at head size 256, the CPU one measured 1.3-1.5x faster than chunks); ``full_matrix`` is the
    original O(Nq * Nk) approach, for benchmarks only.

    With ``tick``, queries run in up to ``blocks`` blocks (rows are independent,
    so the result is the same) and ``tick(fraction done)`` is called after each:
    on a large photo the attention is minutes of CPU time, and progress and
    cancellation must not wait for all of it.
    """
    if tick is not None and q.shape[0] > 1:
        rows = -(-q.shape[0] // max(1, blocks))
        parts = []
        for s in range(0, q.shape[0], rows):
            parts.append(masked_attention(q[s:s + rows], k, v, intact, backend, chunk_elements))
            tick(min(1.0, (s + rows) / q.shape[0]))
        return torch.cat(parts)
    intact = intact.bool()
    if backend == "full_matrix":
        if not bool(intact.any()):
            return torch.zeros(q.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
        return _full_matrix(q, k, v, intact)
    idx = intact.nonzero().squeeze(1)
    if idx.numel() == 0 or q.shape[0] == 0:
        return torch.zeros(q.shape[0], v.shape[1], dtype=v.dtype, device=v.device)
    if idx.numel() != k.shape[0]:
        k, v = k.index_select(0, idx), v.index_select(0, idx)
    if backend == "sdpa":
        return _sdpa(q, k, v)
    if backend == "auto" and q.shape[1] == v.shape[1] and not (torch.is_grad_enabled() and q.requires_grad):
        key = (q.device.type, q.dtype, q.shape[1])
        if _SDPA_OK.get(key, True):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")   # "kernel not used" notes; we fall back
                    out = _sdpa(q, k, v)
                _SDPA_OK[key] = True
                return out
            except RuntimeError:
                _SDPA_OK[key] = False
    if backend not in ("auto", "chunked"):
        raise ValueError(f"unknown attention backend {backend!r}")
    return _chunked(q, k, v, chunk_elements)
