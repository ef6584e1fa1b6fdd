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
import pickle
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_write
from .config import MappingConfig, ModelConfig, VAEConfig
from .errors import WeightsError
from .model import RestorationModel

FORMAT = "oldphoto-restoration-weights"
VERSION = 1
PARTS = ("encoder_a", "mapping", "decoder_b")
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "default.pt"
#: The shipped scratch detector (its own format: oldphoto_model.detect).
DEFAULT_DETECTOR = Path(__file__).resolve().parent / "weights" / "detector.pt"

#: The inclusive range every integer field of a stored config must lie in. Checked
#: before any network is built: a tiny file must not make the loader build (and
#: allocate) a network of arbitrary width or depth. Wide enough for every model this
#: project can train (the paper's mapping width is 512, the default VAE 64).
CONFIG_BOUNDS: dict[type, dict[str, tuple[int, int]]] = {
    VAEConfig: {"in_channels": (1, 4), "channels": (1, 1024), "n_downsample": (0, 6),
                "n_res_blocks": (0, 32)},
    MappingConfig: {"latent_channels": (1, 1024), "width": (1, 4096), "n_res_local": (0, 32),
                    "n_res_global": (0, 32)},
}


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


def default_detector_path() -> Path:
    """The embedded scratch-detector weights (docs/MODEL.md, "Scratch detector"); a clear
    WeightsError when this installation lacks them. Restoring needs no detector: only
    automatic scratch detection is unavailable without it."""
    if not DEFAULT_DETECTOR.is_file():
        raise WeightsError(str(DEFAULT_DETECTOR),
                           "no scratch-detector weights in this installation: reinstall the package, "
                           "train them with `python -m training detect`, or pass a detector file "
                           "explicitly (restoring with a mask or a selection works without them)")
    return DEFAULT_DETECTOR


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


def read_payload(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` of a weight or checkpoint file; every failure
    is a WeightsError naming the file. torch's own advice for a refused file ("set
    weights_only=False") is never passed on: following it could run the file's code."""
    name = str(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e):
            raise WeightsError(name, "not a readable weight file: it holds Python objects other than "
                                     "tensors and plain values, which are never loaded (they could run "
                                     "code); use a weight file made by this project") from None
        raise WeightsError(name, f"not a readable weight file (damaged: {str(e)[:120]})") from None
    except Exception as e:  # torch raises many types for a damaged archive
        reason = str(e).split("\n", 1)[0][:200]
        raise WeightsError(name, f"not a readable weight file ({type(e).__name__}: {reason})") from None


def check_config_bounds(config: ModelConfig, name: str) -> None:
    """WeightsError when a size field of ``config`` is not an integer in CONFIG_BOUNDS
    or ``use_nonlocal`` not a bool (``norm`` is checked by the config itself)."""
    for part, sub in (("vae", config.vae), ("mapping", config.mapping)):
        for f in fields(sub):
            value = getattr(sub, f.name)
            if f.name in CONFIG_BOUNDS[type(sub)]:
                lo, hi = CONFIG_BOUNDS[type(sub)][f.name]
                if type(value) is not int or not lo <= value <= hi:
                    raise WeightsError(name, f"invalid config: {part}.{f.name} = {str(value)[:40]} "
                                             f"is outside {lo}..{hi}")
            elif f.name == "use_nonlocal" and type(value) is not bool:
                raise WeightsError(name, f"invalid config: {part}.use_nonlocal must be true or false")


def _tensor_shapes(name: str, part: str, got: Any) -> dict[str, tuple[int, ...]]:
    """Shapes of a stored state dict; WeightsError for anything but name -> tensor."""
    if not isinstance(got, dict):
        raise WeightsError(name, f"missing network {part!r}")
    bad = [k for k, v in got.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(name, f"network {part!r} holds entries that are not tensors: {str(bad[:3])[:120]}")
    return {k: tuple(v.shape) for k, v in got.items()}


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
    payload = read_payload(p, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        fmt = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise WeightsError(name, f"not an oldphoto weight file (format {fmt!r}, expected {FORMAT!r})")
    version = payload.get("version")
    if type(version) is not int or version > VERSION or version < 1:
        raise WeightsError(name, f"format version {version!r} is not supported (this build reads 1..{VERSION})")
    try:
        config = ModelConfig.from_dict(json.loads(payload["config"]))
        metadata = json.loads(payload.get("metadata", "{}"))
    except (KeyError, TypeError, ValueError, RecursionError) as e:
        raise WeightsError(name, f"invalid config: {type(e).__name__}: {str(e)[:200]}") from None
    check_config_bounds(config, name)
    # the shapes the config implies, from a network on the meta device (no memory),
    # against the stored tensors: a small file asking for a huge network fails here
    try:
        with torch.device("meta"):
            skeleton = RestorationModel(config)
    except Exception as e:   # a config value the networks cannot take (e.g. a non-text norm)
        raise WeightsError(name, f"invalid config: {type(e).__name__}: {str(e)[:200]}") from None
    for part in PARTS:
        got = _tensor_shapes(name, part, payload.get(part))
        expected = {k: tuple(v.shape) for k, v in getattr(skeleton, part).state_dict().items()}
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        shapes = [f"{k}: file {got[k]} vs config {v}" for k, v in expected.items() if k in got and got[k] != v]
        if missing or extra or shapes:
            detail = "; ".join(filter(None, [
                f"missing {missing[:5]}" if missing else "",
                f"unexpected {extra[:5]}" if extra else "",
                f"shape mismatch {shapes[:3]}" if shapes else ""]))
            raise WeightsError(name, f"network {part!r} does not match the stored config: {detail}")
    del skeleton
    model = RestorationModel(config)     # now known to be exactly as big as the file's tensors
    try:
        for part in PARTS:
            module = getattr(model, part)
            expected = module.state_dict()
            module.load_state_dict({k: v.to(expected[k].dtype) for k, v in payload[part].items()})
    except Exception as e:    # e.g. tensors of a dtype that cannot become float
        raise WeightsError(name, f"network {part!r} cannot be loaded: {type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    model.eval()
    # an attribute the model class does not declare (nn.Module's typing allows only tensors and modules)
    setattr(model, "weights_info", WeightsInfo(path=name, sha256=_sha256(p), config=config, metadata=metadata))
    return model
