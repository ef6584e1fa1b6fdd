"""Building blocks shared by the VAEs and the mapping network."""
from __future__ import annotations

import torch
from torch import nn


def norm(channels: int) -> nn.Module:
    """Instance norm without affine parameters, as the original implementation."""
    return nn.InstanceNorm2d(channels, affine=False)


def conv_norm_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1,
                   reflect_pad: int | None = None, normalize: bool = True) -> list[nn.Module]:
    """Reflect-padded conv, instance norm (unless ``normalize`` is False), ReLU."""
    pad = kernel // 2 if reflect_pad is None else reflect_pad
    layers: list[nn.Module] = []
    if pad:
        layers.append(nn.ReflectionPad2d(pad))
    return layers + [nn.Conv2d(cin, cout, kernel, stride)] + norm_relu(cout, normalize)


def norm_relu(channels: int, normalize: bool = True) -> list[nn.Module]:
    """Instance norm (unless ``normalize`` is False) and ReLU, to follow a conv."""
    return ([norm(channels)] if normalize else []) + [nn.ReLU(inplace=True)]


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3 reflect-padded convs.

    ``normalize=False`` drops the instance norms: the global branch of the
    partial nonlocal block uses that form so that each output position depends
    only on its 5x5 neighbourhood (which makes hole-only computation exact).
    """

    def __init__(self, channels: int, normalize: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3)]
        layers += norm_relu(channels, normalize) + [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3)]
        if normalize:
            layers.append(norm(channels))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)
