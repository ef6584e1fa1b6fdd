"""Stage 3: the mapping network T between the frozen VAEs, on (degraded + mask, clean) pairs.

    L_T = latent_l1 * |T(z_x) - z_y|_1 + image LSGAN on G_B(T(z_x))
          + feat_match * FM + perceptual * P(G_B(T(z_x)), y)      (TTUR: G 1e-4, D 4e-4)
          (+ image_l1 * |G_B(T(z_x)) - y|_1 + image_grad_l1 * |grad G_B(T(z_x)) - grad y|_1
           + hole_l1 * |G_B(T(z_x)) - y|_1 over the defect pixels,
          off by default: the CPU presets' stand-in for the perceptual term when no VGG19
          weights exist)
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto_model.archs import VAEEncoder
from oldphoto_model.config import AttentionOptions
from oldphoto_model.model import RestorationModel

from ..archs import MultiScaleDiscriminator
from ..checkpoint import latest_checkpoint, read_checkpoint
from ..config import Config
from ..dist import DistContext
from ..losses import gradient_l1, masked_l1
from .common import (
    adam,
    autocast,
    build_perceptual,
    discriminator_loss,
    image_terms,
    linear_decay,
    requires_grad,
    unwrap,
    uses_image_discriminator,
    wrap,
)


def load_vae_part(run_dir: str | Path, stage: str, part: str, module: nn.Module) -> nn.Module:
    """Load ``encoder``/``decoder`` of a finished VAE stage's last checkpoint into ``module``."""
    ckpt = latest_checkpoint(Path(run_dir) / stage)
    if ckpt is None:
        raise FileNotFoundError(f"no checkpoint of stage {stage!r} in {Path(run_dir) / stage}: run it first")
    sd = read_checkpoint(ckpt)["modules"]["vae"]
    module.load_state_dict({k[len(part) + 1:]: v for k, v in sd.items() if k.startswith(part + ".")})
    return module


class MappingStage:
    def __init__(self, cfg: Config, ctx: DistContext, log=print) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, "mapping"
        self.steps = cfg.mapping.steps
        dev = ctx.device
        run = cfg.train.run_dir
        # the inference model itself, so training runs the product's forward pass
        # (prefill, E_A, mask to latent, T, G_B); only its mapping network learns
        self.model = RestorationModel(cfg.model).to(dev)
        load_vae_part(run, "vae-a", "encoder", self.model.encoder_a).eval()
        load_vae_part(run, "vae-b", "decoder", self.model.decoder_b).eval()
        self.enc_b = load_vae_part(run, "vae-b", "encoder", VAEEncoder(cfg.model.vae)).to(dev).eval()
        for m in (self.model.encoder_a, self.model.decoder_b, self.enc_b):
            requires_grad(m, False)
        self.mapping = self.model.mapping
        self.d_img = MultiScaleDiscriminator(3, cfg.disc.ndf, cfg.disc.n_layers, cfg.disc.num_d).to(dev)
        self.modules = {"mapping": self.mapping, "d_img": self.d_img}
        self.opt_g = adam(self.mapping.parameters(), cfg.optim.lr_mapping_g, cfg)
        self.opt_d = adam(self.d_img.parameters(), cfg.optim.lr_mapping_d, cfg)
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        self.schedulers = {k: linear_decay(o, self.steps, cfg.optim.decay_start) for k, o in self.optimizers.items()}
        # batches without any defect leave the nonlocal block unused
        self.mapping_ddp = wrap(self.mapping, ctx, find_unused=True)
        self.d_img_ddp = wrap(self.d_img, ctx)
        # full attention, not hole-only: gradients must reach every position of O
        self.attn = AttentionOptions(backend=cfg.train.attention_backend, hole_only=False)
        self.perceptual = build_perceptual(cfg, self.enc_b, log)
        self.use_d = uses_image_discriminator(cfg)

    def restore(self, x: torch.Tensor, mask: torch.Tensor, net: nn.Module | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T(z_x), G_B(T(z_x))) for degraded x and image-size mask."""
        w = self.model.translate(x, mask, self.attn, net or self.mapping_ddp)
        return w, self.model.decoder_b(w)

    def train_step(self, batch: dict[str, torch.Tensor], amp) -> dict[str, float]:
        L = self.cfg.loss
        x, y, mask = batch["degraded"], batch["clean"], batch["mask"]
        requires_grad(self.d_img, False)
        with autocast(self.ctx.device, amp):
            with torch.no_grad():
                z_y = self.enc_b(y)
            w, y_hat = self.restore(x, mask)
            losses = {"lat_l1": F.l1_loss(w.float(), z_y.float())}
            g = L.latent_l1 * losses["lat_l1"]
            if L.image_l1 > 0:
                losses["img_l1"] = F.l1_loss(y_hat.float(), y.float())
                g = g + L.image_l1 * losses["img_l1"]
            if L.image_grad_l1 > 0:
                losses["grad_l1"] = gradient_l1(y_hat, y)
                g = g + L.image_grad_l1 * losses["grad_l1"]
            if L.hole_l1 > 0:
                losses["hole_l1"] = masked_l1(y_hat, y, mask)
                g = g + L.hole_l1 * losses["hole_l1"]
            g = g + image_terms(self.cfg, self.d_img, self.perceptual, y_hat, y, losses)
        self.opt_g.zero_grad(set_to_none=True)
        g.backward()
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.mapping.parameters(), self.cfg.optim.grad_clip)
        self.opt_g.step()
        if self.use_d:
            requires_grad(self.d_img, True)
            with autocast(self.ctx.device, amp):
                losses["d_img"] = discriminator_loss(self.d_img_ddp, y, y_hat)
            self.opt_d.zero_grad(set_to_none=True)
            losses["d_img"].backward()
            self.opt_d.step()
            self.schedulers["d"].step()
        self.schedulers["g"].step()
        return {k: float(v.detach()) for k, v in losses.items()}

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Degraded | mask | restored | clean, per sample."""
        x, y, mask = batch["degraded"], batch["clean"], batch["mask"]
        _, y_hat = self.restore(x, mask, unwrap(self.mapping))
        m3 = mask.expand_as(x) * 2 - 1
        return [[x[i], m3[i], y_hat[i], y[i]] for i in range(min(4, x.shape[0]))]
