"""Warm starts for a larger helper network: a trained ``SmallUNet`` (the learned fill, the
scratch detector) copied into a wider and/or deeper one that computes the same function.

Training a larger network from scratch on two CPU cores costs days; grown from a trained
one it starts where that one ended and can only spend its new capacity on what the
smaller one got wrong. The embedding is exact because the U-Net has no normalisation
layer and uses ReLU:

- **wider**: every conv keeps the old weights on the old channels; the new output
  channels get the default random initialisation (so they carry signal and receive
  gradients), and every weight *from* a new channel *to* an old one is zero, so the old
  channels, the head and thus the output are unchanged until training moves those zeros;
- **deeper**: the new bottom levels are initialised at random, and the decoder block that
  joins them to the old bottom level is an identity on its skip input (a 3x3 kernel with
  a single 1 at its centre, twice; its input is already a ReLU output, so the ReLUs pass
  it unchanged) and zero on the upsampled new level.

``grow_unet`` is checked against the small network on random inputs (tests/training).
"""
from __future__ import annotations

import torch
from torch import nn

from oldphoto_model.archs.unet import SmallUNet


def _conv_pair(block: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d]:
    """The two convs of one of the U-Net's double-conv blocks (conv, ReLU, conv, ReLU)."""
    assert isinstance(block, nn.Sequential)
    first, second = block[0], block[2]
    assert isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)
    return first, second


@torch.no_grad()
def _embed(new: nn.Conv2d, old: nn.Conv2d, in_map: list[int]) -> None:
    """new's weights on old's output channels (the first ones) and on the input channels
    ``in_map`` (old input channel j -> new input channel in_map[j]): old's; every other
    weight into an old output channel zero; the new output channels keep their init."""
    n_out = old.out_channels
    new.weight[:n_out].zero_()
    new.weight[:n_out, in_map] = old.weight
    assert new.bias is not None and old.bias is not None
    new.bias[:n_out] = old.bias


@torch.no_grad()
def _identity(conv: nn.Conv2d, offset: int) -> None:
    """conv(x) = x[offset : offset + out_channels] (a 3x3 kernel's centre, bias 0)."""
    conv.weight.zero_()
    assert conv.bias is not None
    conv.bias.zero_()
    k = conv.kernel_size[0] // 2
    for c in range(conv.out_channels):
        conv.weight[c, offset + c, k, k] = 1.0


def grow_unet(small: SmallUNet, large: SmallUNet) -> SmallUNet:
    """Copy the trained ``small`` into ``large`` (same in/out channels, width and levels
    each at least small's) so that ``large`` computes the same function; returns
    ``large``. Raises ValueError when ``large`` is not at least as wide and deep."""
    if large.levels < small.levels or any(a > b for a, b in zip(small.chans, large.chans)) \
            or _conv_pair(large.enc[0])[0].in_channels != _conv_pair(small.enc[0])[0].in_channels \
            or large.head.out_channels != small.head.out_channels:
        raise ValueError(f"cannot grow a U-Net with channels {small.chans} into one with {large.chans} "
                         "(it must have the same inputs and outputs and be at least as wide and deep)")
    ls, ll = small.levels, large.levels
    for i in range(ls + 1):                                    # encoders present in both
        a_new, b_new = _conv_pair(large.enc[i])
        a_old, b_old = _conv_pair(small.enc[i])
        _embed(a_new, a_old, list(range(a_old.in_channels)))
        _embed(b_new, b_old, list(range(b_old.in_channels)))
    for i in range(ls):                                        # decoders present in both
        a_new, b_new = _conv_pair(large.dec[i])
        a_old, b_old = _conv_pair(small.dec[i])
        up_old, up_new = small.chans[i + 1], large.chans[i + 1]
        in_map = list(range(up_old)) + [up_new + j for j in range(small.chans[i])]
        _embed(a_new, a_old, in_map)
        _embed(b_new, b_old, list(range(b_old.in_channels)))
    if ll > ls:
        # the decoder joining the new levels to the old bottom passes that bottom through
        a_new, b_new = _conv_pair(large.dec[ls])
        _identity(a_new, offset=large.chans[ls + 1])
        _identity(b_new, offset=0)
    _embed(large.head, small.head, list(range(small.head.in_channels)))
    return large
