"""``export``: the three trained parts -> the server's weight file, then a load-and-restore check."""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import torch

from oldphoto_model import Restorer, load_model, save_model
from oldphoto_model.model import RestorationModel

from .checkpoint import latest_checkpoint, read_checkpoint
from .config import Config
from .data.real_photos import domain_r_source


def _modules(run_dir: Path, stage: str) -> dict:
    ckpt = latest_checkpoint(run_dir / stage)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint of stage {stage!r} in {run_dir / stage}: train it first")
    return read_checkpoint(ckpt)


def export(cfg: Config, out: str | Path | None = None, dtype: torch.dtype = torch.float32) -> Path:
    """Assemble E_A (vae-a), T (mapping) and G_B (vae-b) into ``RestorationModel``, save it with
    ``oldphoto_model.save_model`` and check that ``load_model`` + ``Restorer`` restore with it."""
    run = Path(cfg.train.run_dir)
    model = RestorationModel(cfg.model)
    a, b, t = _modules(run, "vae-a"), _modules(run, "vae-b"), _modules(run, "mapping")

    def part(sd: dict, prefix: str) -> dict:
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    model.encoder_a.load_state_dict(part(a["modules"]["vae"], "encoder."))
    model.decoder_b.load_state_dict(part(b["modules"]["vae"], "decoder."))
    model.mapping.load_state_dict(t["modules"]["mapping"])
    meta = {"trained_by": "python -m training", "preset": cfg.preset,
            "steps": {"vae-a": a["step"], "vae-b": b["step"], "mapping": t["step"]},
            "data": {"synthetic": cfg.data.synthetic, "real_dirs": bool(domain_r_source(cfg.data)[0])},
            "perceptual": cfg.loss.vgg_weights and "vgg19" or cfg.loss.perceptual_fallback,
            "exported": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path = save_model(model, Path(out) if out else run / "weights.pt", meta, dtype)
    check_weights(path, model)
    return path


def check_weights(path: str | Path, reference: RestorationModel | None = None) -> None:
    """Load ``path`` the way the server does and restore a small image with a mask."""
    loaded = load_model(path)
    rng = np.random.default_rng(0)
    img = (rng.random((37, 45, 3)) * 255).astype(np.uint8)          # odd size: exercises padding
    mask = np.zeros((37, 45), np.uint8)
    mask[10:14, 5:40] = 255
    out = Restorer(loaded, "cpu", "fp32").restore(img, mask)
    if out.shape != img.shape or out.dtype != np.uint8:
        raise RuntimeError(f"{path}: restore returned {out.shape} {out.dtype}")
    if reference is not None:
        for name in ("encoder_a", "mapping", "decoder_b"):
            for (k, v), w in zip(getattr(reference, name).state_dict().items(),
                                 getattr(loaded, name).state_dict().values()):
                if not torch.allclose(v.float(), w.float(), atol=1e-3, rtol=1e-3):
                    raise RuntimeError(f"{path}: {name}.{k} differs after reload")
