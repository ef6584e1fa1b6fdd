"""The inference model: y = G_B(T(E_A(x), m))."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .archs import MappingNetwork, VAEDecoder, VAEEncoder
from .config import AttentionOptions, ModelConfig
from .fill import harmonic_fill


def prefill(x: torch.Tensor, defect: torch.Tensor | None) -> torch.Tensor:
    """The encoder's input: x with its defect pixels replaced by the smoothest fill
    from the intact pixels around them (``fill.harmonic_fill``), so the scratch's own
    colour never reaches the network. defect: (N, 1, H, W), 1 = defect, or None."""
    if defect is None or not bool((defect > 0.5).any()):
        return x
    return harmonic_fill(x, 1.0 - (defect > 0.5).to(x.dtype))


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

    def translate(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                  opts: AttentionOptions = AttentionOptions(), mapping: nn.Module | None = None) -> torch.Tensor:
        """The restored latent T(E_A(prefill(x)), m). ``mapping`` replaces ``self.mapping``
        (training passes its DDP wrapper)."""
        z = self.encoder_a(prefill(x, mask))
        m = None if mask is None else mask_to_latent(mask, self.config.multiple)
        return (self.mapping if mapping is None else mapping)(z, m, opts)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                opts: AttentionOptions = AttentionOptions()) -> torch.Tensor:
        """x: (N, 3, H, W) in [-1, 1], H and W multiples of ``config.multiple``;
        mask: (N, 1, H, W), 1 = defect, or None. Returns (N, 3, H, W) in [-1, 1].
        The plain reference of the whole forward pass: the restore pipeline's lean
        executor and the training stage both follow it (tests compare them)."""
        return self.decoder_b(self.translate(x, mask, opts))
