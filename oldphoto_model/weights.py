"""The weight file: one format for the three inference networks and their config.

Layout (a ``torch.save`` dict of plain types and tensors only, so it loads with
``torch.load(weights_only=True)``; see docs/WEIGHTS.md):

    format     "oldphoto-restoration-weights"
    version    1
    config     JSON text of ModelConfig.to_dict()
    metadata   JSON text: free-form provenance (training command, steps, data, ...)
    encoder_a  state dict of the domain-A VAE encoder
    mapping    state dict of the mapping network
    decoder_b  state dict of the domain-B VAE decoder

Tensors may be stored in float16 to keep the file small; they load as float32.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .config import ModelConfig
from .errors import WeightsError
from .model import RestorationModel

FORMAT = "oldphoto-restoration-weights"
VERSION = 1
PARTS = ("encoder_a", "mapping", "decoder_b")
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"


@dataclass(frozen=True)
class WeightsInfo:
    """Identity of a loaded weight file."""

    path: str
    sha256: str
    config: ModelConfig
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return f"{Path(self.path).name}@{self.sha256[:12]}"


def default_weights_path() -> Path:
    """The embedded default weights (docs/MODEL.md); a clear WeightsError when this
    installation lacks them (e.g. a source tree without the file)."""
    if not DEFAULT_WEIGHTS.is_file():
        raise WeightsError(str(DEFAULT_WEIGHTS),
                           "no default weights in this installation: reinstall the package, train them "
                           "with `python -m training`, or pass a weight file explicitly")
    return DEFAULT_WEIGHTS


def save_model(model: RestorationModel, path: str | os.PathLike, metadata: dict[str, Any] | None = None,
               dtype: torch.dtype = torch.float32) -> Path:
    """Write ``model`` atomically (oldphoto_model.atomic) in the documented format."""
    path = Path(path)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": json.dumps(model.config.to_dict(), sort_keys=True),
        "metadata": json.dumps(metadata or {}, sort_keys=True),
    }
    for part in PARTS:
        sd = getattr(model, part).state_dict()
        payload[part] = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
                         for k, v in sd.items()}
    atomic_write(path, lambda f: torch.save(payload, f))
    return path


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_model(path: str | os.PathLike | None = None, map_location: str | torch.device = "cpu") -> RestorationModel:
    """Load a weight file (default: the shipped default weights) into a new
    ``RestorationModel`` in eval mode.

    The model's ``weights_info`` attribute holds the file's identity. Every
    problem raises ``WeightsError`` naming the file and what is wrong.
    """
    p = default_weights_path() if path is None else Path(path)
    name = str(p)
    if not p.exists():
        raise WeightsError(name, "file not found")
    if not p.is_file():
        raise WeightsError(name, "not a regular file")
    try:
        payload = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for a damaged archive
        raise WeightsError(name, f"not a readable weight file ({type(e).__name__}: {str(e)[:200]})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise WeightsError(name, f"not an oldphoto weight file (format {fmt!r}, expected {FORMAT!r})")
    version = payload.get("version")
    if not isinstance(version, int) or version > VERSION or version < 1:
        raise WeightsError(name, f"format version {version!r} is not supported (this build reads 1..{VERSION})")
    try:
        config = ModelConfig.from_dict(json.loads(payload["config"]))
        metadata = json.loads(payload.get("metadata", "{}"))
    except (KeyError, TypeError, ValueError) as e:
        raise WeightsError(name, f"invalid config: {e}") from e
    model = RestorationModel(config)
    for part in PARTS:
        if part not in payload or not isinstance(payload[part], dict):
            raise WeightsError(name, f"missing network {part!r}")
        module = getattr(model, part)
        expected = module.state_dict()
        got = payload[part]
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shapes = [f"{k}: file {tuple(got[k].shape)} vs config {tuple(v.shape)}"
                  for k, v in expected.items() if k in got and tuple(got[k].shape) != tuple(v.shape)]
        if missing or extra or shapes:
            detail = "; ".join(filter(None, [
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {extra[:5]}" if extra else "",
                f"shape mismatch {shapes[:3]}" if shapes else ""]))
            raise WeightsError(name, f"network {part!r} does not match the stored config: {detail}")
        module.load_state_dict({k: v.to(expected[k].dtype) for k, v in got.items()})
    model.eval()
    model.weights_info = WeightsInfo(path=name, sha256=_sha256(p), config=config, metadata=metadata)
    return model
