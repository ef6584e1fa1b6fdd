"""The tone estimator: one global colour correction for a faded scan.

Fading, yellowing, sepia toning, a lifted black level and a lost contrast change the
whole photo the same way, so they are undone by one affine colour map

    out = M [r, g, b, 1]^T        (M: 3 x 4, per photo)

The estimator predicts M from the photo's tone statistics alone: per channel (R, G,
B, luma and the two colour differences R - G and B - G) 17 quantiles, the mean and
the standard deviation, taken on a small thumbnail (``ToneConfig.thumb``), normalised
by the training set's feature mean and spread (stored with the weights), then a
three-layer MLP. Statistics, not a convolutional view of the content: on the
project's 178 training photos a small CNN learned the photos themselves and gained
less on unseen ones (docs/MODEL.md, "Tone estimator").

The last layer starts at zero, so an untrained estimator is the identity map.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

#: Quantile levels of every feature channel: the extremes (a print's black and white)
#: and 15 evenly spaced levels in between.
QUANTILES = (0.002,) + tuple(round(0.01 + 0.07 * i, 2) for i in range(15)) + (0.998,)
#: Luma weights (ITU-R 601), as everywhere in the project.
LUMA = (0.299, 0.587, 0.114)
#: Feature channels: R, G, B, luma, R - G, B - G.
CHANNELS = 6
N_FEATURES = CHANNELS * (len(QUANTILES) + 2)


@dataclass(frozen=True)
class ToneConfig:
    """Architecture of the tone estimator (stored in its weight file)."""

    hidden: int = 64     # width of the two hidden layers
    thumb: int = 64      # side of the square thumbnail the statistics are taken on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ToneConfig":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown tone-estimator config fields: {sorted(unknown)}")
        cfg = cls(**d)
        if not (isinstance(cfg.hidden, int) and 1 <= cfg.hidden <= 4096
                and isinstance(cfg.thumb, int) and 8 <= cfg.thumb <= 1024):
            raise ValueError(f"tone-estimator config out of range: {d}")
        return cfg


def tone_features(thumb: torch.Tensor) -> torch.Tensor:
    """(N, 3, h, w) thumbnails in [0, 1] -> (N, N_FEATURES) statistics."""
    y = (thumb * torch.tensor(LUMA, dtype=thumb.dtype, device=thumb.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    v = torch.cat([thumb, y, thumb[:, :1] - thumb[:, 1:2], thumb[:, 2:3] - thumb[:, 1:2]], 1).flatten(2)
    q = torch.quantile(v, torch.tensor(QUANTILES, dtype=v.dtype, device=v.device), dim=2)   # (Q, N, C)
    return torch.cat([q.permute(1, 2, 0).flatten(1), v.mean(2), v.std(2)], 1)


def apply_colour_matrix(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """M [r, g, b, 1]^T per pixel: x (N, 3, H, W), m (N, 3, 4)."""
    return torch.einsum("nij,njhw->nihw", m[:, :, :3], x) + m[:, :, 3:, None]


class ToneEstimator(nn.Module):
    """Thumbnail statistics -> a 3 x 4 colour matrix per photo (module docstring)."""

    def __init__(self, config: ToneConfig = ToneConfig()) -> None:
        super().__init__()
        self.config = config
        h = config.hidden
        last = nn.Linear(h, 12)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(N_FEATURES, h), nn.LeakyReLU(0.1), nn.Linear(h, h), nn.LeakyReLU(0.1),
                                 last)
        # the training set's feature statistics (set once by training, stored with the weights)
        self.feature_mean: torch.Tensor
        self.feature_std: torch.Tensor
        self.register_buffer("feature_mean", torch.zeros(N_FEATURES))
        self.register_buffer("feature_std", torch.ones(N_FEATURES))

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] -> (N, 3, 4) colour matrices."""
        f = (tone_features(thumb) - self.feature_mean) / self.feature_std
        eye = torch.eye(3, 4, dtype=thumb.dtype, device=thumb.device)
        return eye + self.mlp(f).view(-1, 3, 4)
