"""Exact, memory-lean execution of the convolutional stages for large photos.

The plain ``module(x)`` keeps several full-size temporaries alive (a padded
copy, the conv output, a separate instance-norm output). Here every conv runs
in horizontal bands written into one preallocated output, the reflect padding
is built per band from its neighbouring rows, and instance norm, ReLU and Tanh
work in place. Instance norm needs statistics over the whole map, so tiling is
by rows of whole layers: the result is the same as the plain forward (checked
by tests/model/test_lean.py), with peak memory about one input plus one output
of the widest layer instead of three or four.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .archs.blocks import ResBlock

#: Elements of one band's input (all channels); bounds the per-band workspace.
DEFAULT_BAND_ELEMENTS = 1 << 24


def _reflect_rows(n: int, lo: int, hi: int, device) -> torch.Tensor:
    """Row indices lo..hi-1 of a map with n rows, reflected at both edges."""
    idx = torch.arange(lo, hi, device=device).abs()
    return torch.where(idx >= n, 2 * (n - 1) - idx, idx)


def _padding(conv: nn.Conv2d | nn.ConvTranspose2d) -> tuple[int, int]:
    """conv.padding as (rows, columns)."""
    padding = conv.padding
    if isinstance(padding, str):    # 'same'/'valid': the band arithmetic needs numbers
        raise TypeError(f"string padding {padding!r} is not supported")
    return (padding[0], padding[1]) if isinstance(padding, tuple) else (padding, padding)


def _conv_banded(x: torch.Tensor, conv: nn.Conv2d, reflect: int, band_elems: int) -> torch.Tensor:
    """conv(ReflectionPad2d(reflect)(x)) in row bands (the conv's own zero padding kept)."""
    kh = conv.kernel_size[0]
    sh = conv.stride[0]
    ph, pw = _padding(conv)
    n, c, h, w = x.shape
    hp = h + 2 * reflect + 2 * ph                      # rows after both paddings
    ho = (hp - kh) // sh + 1
    wo = (w + 2 * reflect + 2 * pw - conv.kernel_size[1]) // conv.stride[1] + 1
    rows_per_band = max(1, band_elems // max(1, c * (w + 2 * reflect) * sh) - kh)
    if ho <= rows_per_band:                           # one band: the plain op
        xp = F.pad(x, (reflect,) * 4, mode="reflect") if reflect else x
        return conv(xp)
    out = None
    for o0 in range(0, ho, rows_per_band):
        o1 = min(ho, o0 + rows_per_band)
        # padded-coordinate rows [o0*s, (o1-1)*s + k), then strip the zero padding
        r0, r1 = o0 * sh - ph - reflect, (o1 - 1) * sh + kh - ph - reflect
        inner0, inner1 = max(r0, -reflect), min(r1, h + reflect)
        band = x.index_select(2, _reflect_rows(h, inner0, inner1, x.device))
        if reflect:
            band = F.pad(band, (reflect, reflect, 0, 0), mode="reflect")
        band = F.pad(band, (pw, pw, inner0 - r0, r1 - inner1))   # the conv's zero padding
        y = F.conv2d(band, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)
        if out is None:
            out = torch.empty((n, y.shape[1], ho, wo), dtype=y.dtype, device=y.device,
                              memory_format=torch.channels_last if x.is_contiguous(
                                  memory_format=torch.channels_last) and c > 1 else torch.contiguous_format)
        out[:, :, o0:o1] = y
    assert out is not None          # ho > rows_per_band, so the loop ran
    return out


def _convT_banded(x: torch.Tensor, conv: nn.ConvTranspose2d, band_elems: int) -> torch.Tensor:
    """ConvTranspose2d in bands of input rows; each band's output rows that depend
    only on rows inside the band (plus a halo) are kept."""
    k, s, p = conv.kernel_size[0], conv.stride[0], _padding(conv)[0]
    n, c, h, w = x.shape
    ho = (h - 1) * s - 2 * p + k + conv.output_padding[0]
    rows_per_band = max(1, band_elems // max(1, c * w))
    if h <= rows_per_band:
        return conv(x)
    halo = -(-k // s)
    out = None
    for i0 in range(0, h, rows_per_band):
        i1 = min(h, i0 + rows_per_band)
        a0, a1 = max(0, i0 - halo), min(h, i1 + halo)
        y = F.conv_transpose2d(x[:, :, a0:a1], conv.weight, conv.bias, s, 0, 0, conv.groups, conv.dilation)
        # output rows o (after cropping p) owned by this band: inputs i0..i1-1 cover o in [i0*s - p, i1*s - p)
        o0, o1 = max(0, i0 * s - p), min(ho, i1 * s - p) if i1 < h else ho
        u0 = o0 + p - a0 * s                            # row in y's uncropped coordinates
        y = y[:, :, u0:u0 + (o1 - o0), p:p + (y.shape[3] - 2 * p) if p else None]
        if out is None:
            out = torch.empty((n, y.shape[1], ho, y.shape[3]), dtype=y.dtype, device=y.device,
                              memory_format=torch.channels_last if x.is_contiguous(
                                  memory_format=torch.channels_last) else torch.contiguous_format)
        out[:, :, o0:o1] = y
    assert out is not None          # h > rows_per_band, so the loop ran
    return out


def _flat(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A (N, positions, C) or (N, C, positions) view without copying, and its position dim."""
    if t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        return t.permute(0, 2, 3, 1).reshape(t.shape[0], -1, t.shape[1]), 1
    return t.reshape(t.shape[0], t.shape[1], -1), 2


def instance_norm_(x: torch.Tensor, eps: float = 1e-5, band_elements: int = DEFAULT_BAND_ELEMENTS
                   ) -> torch.Tensor:
    """In-place instance norm without affine.

    Statistics are plain sums (several times faster than Welford's var_mean on
    CPU) of x minus a per-channel shift taken from a subsample, which avoids the
    cancellation of E[x^2] - E[x]^2; accumulated in fp32 (fp64 for fp64) over
    row bands, so no full-size temporary is made."""
    n, c, h, w = x.shape
    acc = torch.promote_types(x.dtype, torch.float32)
    shift = x[:, :, ::max(1, h // 16), ::max(1, w // 16)].to(acc).mean(dim=(2, 3), keepdim=True)
    s1 = torch.zeros(n, c, dtype=acc, device=x.device)
    s2 = torch.zeros(n, c, dtype=acc, device=x.device)
    rows = max(1, band_elements // max(1, c * w))
    for r0 in range(0, h, rows):
        d = x[:, :, r0:r0 + rows].to(acc) - shift
        flat, dim = _flat(d)
        s1 += flat.sum(dim)
        s2 += (flat * flat).sum(dim)
    mean_d = s1 / (h * w)
    var = (s2 / (h * w) - mean_d * mean_d).clamp_min(0)
    mean = (shift.view(n, c) + mean_d).view(n, c, 1, 1)
    return x.sub_(mean.to(x.dtype)).mul_(torch.rsqrt(var + eps).view(n, c, 1, 1).to(x.dtype))


def count_layers(module: nn.Module) -> int:
    """How many times ``lean_forward`` calls ``tick`` for ``module``."""
    leaves = [m for m in module.modules() if not list(m.children())]
    return sum(1 for m in leaves if not isinstance(m, nn.ReflectionPad2d)) or 1


def lean_forward(module: nn.Module, x: torch.Tensor, band_elements: int = DEFAULT_BAND_ELEMENTS,
                 tick: Optional[Callable[[], None]] = None, _owned: bool = False) -> torch.Tensor:
    """Run ``module`` (a Sequential of the layer types of ``archs``) on x exactly as
    ``module(x)`` would, with in-place elementwise layers and banded convolutions.
    Inference only (in-place ops). ``x`` is never modified. ``tick()`` is called
    after every layer (progress, and a place where a cancel can raise)."""
    tick = tick or (lambda: None)
    if isinstance(module, nn.Sequential):
        layers = list(module)
        i = 0
        owned = _owned
        while i < len(layers):
            layer = layers[i]
            following = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.ReflectionPad2d) and isinstance(following, nn.Conv2d):
                pad = layer.padding
                if len(set(pad)) != 1:
                    raise ValueError(f"asymmetric padding {pad} is not supported")
                x = _conv_banded(x, following, pad[0], band_elements)
                tick()
                owned, i = True, i + 2
                continue
            x = lean_forward(layer, x, band_elements, tick, owned)
            if not isinstance(layer, (nn.Sequential, ResBlock)):
                tick()
            owned = owned or not isinstance(layer, (nn.ReLU, nn.Tanh, nn.InstanceNorm2d))
            i += 1
        return x
    if isinstance(module, ResBlock):
        y = lean_forward(module.body, x, band_elements, tick)
        return y.add_(x)
    if isinstance(module, nn.Conv2d):
        return _conv_banded(x, module, 0, band_elements)
    if isinstance(module, nn.ConvTranspose2d):
        return _convT_banded(x, module, band_elements)
    if isinstance(module, nn.InstanceNorm2d) and not module.affine and not module.track_running_stats:
        return instance_norm_(x if _owned else x.clone(), module.eps)
    if isinstance(module, nn.ReLU):
        return x.relu_() if _owned else torch.relu(x)
    if isinstance(module, nn.Tanh):
        return x.tanh_() if _owned else torch.tanh(x)
    return module(x)
