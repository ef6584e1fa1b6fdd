"""Typed configuration of the restoration networks.

One place for every architectural number; the weight file stores the resolved
``ModelConfig`` so a file always rebuilds exactly the network it was saved from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

NORMS = ("instance", "none")


def _check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r}: choose from {NORMS}")


@dataclass(frozen=True)
class VAEConfig:
    """Encoder/decoder of one domain (as in the original implementation: ~0.87 M parameters each)."""

    in_channels: int = 3
    channels: int = 64          # width of every layer; also the latent width
    n_downsample: int = 2       # latent is H / 2**n_downsample
    n_res_blocks: int = 4
    norm: str = "instance"      # "instance" (the paper) | "none" (keeps each image's tone)

    def __post_init__(self) -> None:
        _check_norm(self.norm)

    @property
    def latent_channels(self) -> int:
        return self.channels

    @property
    def scale(self) -> int:
        return 2 ** self.n_downsample


@dataclass(frozen=True)
class MappingConfig:
    """Latent mapping network T with the partial nonlocal block."""

    latent_channels: int = 64
    width: int = 512            # channel width of the body and of the attention
    n_res_local: int = 6        # rho_local: residual blocks of the local branch
    n_res_global: int = 3       # rho_global: residual blocks after the attention
    use_nonlocal: bool = True   # False: local branch only (no scratch handling)
    norm: str = "instance"      # of the head, local branch and tail: "instance" | "none"

    def __post_init__(self) -> None:
        _check_norm(self.norm)

    @property
    def global_radius(self) -> int:
        """Receptive-field radius of rho_global (two 3x3 convs per block)."""
        return 2 * self.n_res_global


@dataclass(frozen=True)
class ModelConfig:
    """The three inference networks: domain-A encoder, mapping, domain-B decoder."""

    vae: VAEConfig = field(default_factory=VAEConfig)
    mapping: MappingConfig = field(default_factory=MappingConfig)

    def __post_init__(self) -> None:
        if self.mapping.latent_channels != self.vae.latent_channels:
            raise ValueError(
                f"mapping.latent_channels={self.mapping.latent_channels} does not match "
                f"vae latent width {self.vae.latent_channels}")

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this."""
        return self.vae.scale

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        def build(klass, sub):
            if not isinstance(sub, dict):
                raise ValueError(f"{klass.__name__}: expected a mapping, got {type(sub).__name__}")
            names = {f.name for f in fields(klass)}
            unknown = set(sub) - names
            if unknown:
                raise ValueError(f"{klass.__name__}: unknown keys {sorted(unknown)}")
            return klass(**sub)
        if not isinstance(d, dict) or set(d) - {"vae", "mapping"}:
            raise ValueError(f"ModelConfig: expected keys 'vae' and 'mapping', got {d!r:.200}")
        return cls(vae=build(VAEConfig, d.get("vae", {})),
                   mapping=build(MappingConfig, d.get("mapping", {})))


@dataclass(frozen=True)
class AttentionOptions:
    """Run-time choices for the partial nonlocal block; they never change the result
    beyond floating-point rounding (tests check each against the plain reference)."""

    backend: str = "auto"           # auto | chunked | sdpa | full_matrix (baseline only)
    hole_only: bool = True          # compute the global branch only where it reaches the mask
    chunk_elements: int = 1 << 22   # score-matrix budget per query chunk
    tile: int = 0                   # latent tile side for hole-only rho_global; 0 = cheapest
