"""The inference model: y = G_B(T(E_A(x), m))."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .archs import MappingNetwork, VAEDecoder, VAEEncoder
from .config import AttentionOptions, ModelConfig


def mask_to_latent(mask: torch.Tensor, scale: int) -> torch.Tensor:
    """Binary image-size mask (N, 1, H, W) -> latent size (N, 1, H/scale, W/scale).

    A latent position is a defect when any pixel of its scale x scale footprint is
    (the rule of the original implementation: partly covered counts as defect).
    """
    if mask.shape[-2] % scale or mask.shape[-1] % scale:
        raise ValueError(f"mask size {tuple(mask.shape[-2:])} is not a multiple of {scale}")
    return F.max_pool2d((mask > 0.5).to(torch.float32), scale, stride=scale)


class RestorationModel(nn.Module):
    """Domain-A encoder, mapping network and domain-B decoder, built from a ModelConfig."""

    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.config = config
        self.encoder_a = VAEEncoder(config.vae)
        self.mapping = MappingNetwork(config.mapping)
        self.decoder_b = VAEDecoder(config.vae)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                opts: AttentionOptions = AttentionOptions()) -> torch.Tensor:
        """x: (N, 3, H, W) in [-1, 1], H and W multiples of ``config.multiple``;
        mask: (N, 1, H, W), 1 = defect, or None. Returns (N, 3, H, W) in [-1, 1]."""
        z = self.encoder_a(x)
        m = None if mask is None else mask_to_latent(mask, self.config.multiple)
        return self.decoder_b(self.mapping(z, m, opts))
