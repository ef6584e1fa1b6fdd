"""Stages 1 and 2: VAE_A on degraded (+ real old) photos, VAE_B on clean photos.

    L_VAE = kl * mean(h^2) + rec_l1 * |x - G(h + n)|_1 + image LSGAN + feat_match * FM (+ perceptual)
    (the image discriminator is skipped when image_gan and feat_match are both 0)
    VAE_A adds latent_gan * LSGAN of D_lat, which tells the latents of real old
    photos r from those of synthetic ones x: the encoder learns one shared space.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from oldphoto_model.archs import VAEDecoder, VAEEncoder

from ..archs import LatentDiscriminator, MultiScaleDiscriminator
from ..config import Config
from ..data.real_photos import domain_r_source
from ..dist import DistContext
from ..losses import kl_reduced, lsgan
from .common import (
    adam,
    autocast,
    build_perceptual,
    discriminator_loss,
    image_terms,
    linear_decay,
    requires_grad,
    uses_image_discriminator,
    wrap,
)


class VAE(nn.Module):
    """Encoder + decoder; training decodes h + N(0, sigma^2 I) (the reduced VAE, sigma = 1
    in the paper)."""

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.encoder = VAEEncoder(cfg.model.vae)
        self.decoder = VAEDecoder(cfg.model.vae)
        self.noise = cfg.loss.latent_noise

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.decoder(h + self.noise * torch.randn_like(h))


class VAEStage:
    """One VAE with its image discriminator (and, for domain A, the latent discriminator)."""

    def __init__(self, cfg: Config, ctx: DistContext, domain: str, log=print) -> None:
        assert domain in ("a", "b")
        self.cfg, self.ctx, self.domain = cfg, ctx, domain
        self.name = f"vae-{domain}"
        self.steps = (cfg.vae_a if domain == "a" else cfg.vae_b).steps
        dev = ctx.device
        self.vae = VAE(cfg).to(dev)
        self.d_img = MultiScaleDiscriminator(3, cfg.disc.ndf, cfg.disc.n_layers, cfg.disc.num_d).to(dev)
        self.modules: dict[str, nn.Module] = {"vae": self.vae, "d_img": self.d_img}
        d_params = list(self.d_img.parameters())
        if domain == "a":
            self.d_lat = LatentDiscriminator(cfg.model.vae.latent_channels, cfg.disc.latent_ndf).to(dev)
            self.modules["d_lat"] = self.d_lat
            d_params += list(self.d_lat.parameters())
            log(domain_r_source(cfg.data)[1])     # which real old photos, or the stand-in
        self.opt_g = adam(self.vae.parameters(), cfg.optim.lr, cfg)
        self.opt_d = adam(d_params, cfg.optim.lr, cfg)
        self.optimizers = {"g": self.opt_g, "d": self.opt_d}
        self.schedulers = {k: linear_decay(o, self.steps, cfg.optim.decay_start) for k, o in self.optimizers.items()}
        # DDP wrappers are used only where that network is being trained in the step
        self.vae_ddp = wrap(self.vae, ctx)
        self.d_img_ddp = wrap(self.d_img, ctx)
        self.d_lat_ddp = wrap(self.d_lat, ctx) if domain == "a" else None
        self.perceptual = build_perceptual(cfg, None, log)
        self.use_d = uses_image_discriminator(cfg)

    def inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.domain == "b":
            return batch["clean"]
        return torch.cat([batch["degraded"], batch["real"]])

    def train_step(self, batch: dict[str, torch.Tensor], amp) -> dict[str, float]:
        L = self.cfg.loss
        x = self.inputs(batch)
        n = x.shape[0] // 2
        # -- generator (the VAE)
        requires_grad(self.d_img, False)
        if self.domain == "a":
            requires_grad(self.d_lat, False)
        with autocast(self.ctx.device, amp):
            h, rec = self.vae_ddp(x)
            losses = {"rec": F.l1_loss(rec.float(), x.float()), "kl": kl_reduced(h)}
            g = L.rec_l1 * losses["rec"] + L.kl * losses["kl"]
            g = g + image_terms(self.cfg, self.d_img, self.perceptual, rec, x, losses)
            if self.domain == "a":
                # fool D_lat both ways: synthetic latents look real-old and vice versa
                pl = self.d_lat(h)
                losses["lat_g"] = 0.5 * (lsgan(pl[:n], True) + lsgan(pl[n:], False))
                g = g + L.latent_gan * losses["lat_g"]
        self.opt_g.zero_grad(set_to_none=True)
        g.backward()
        self._clip(self.vae)
        self.opt_g.step()
        # -- discriminators
        d = torch.zeros((), device=x.device)
        with autocast(self.ctx.device, amp):
            if self.use_d:
                requires_grad(self.d_img, True)
                losses["d_img"] = discriminator_loss(self.d_img_ddp, x, rec)
                d = d + losses["d_img"]
            if self.domain == "a":
                requires_grad(self.d_lat, True)
                assert self.d_lat_ddp is not None      # built for domain "a"
                pl = self.d_lat_ddp(h.detach())
                losses["d_lat"] = 0.5 * (lsgan(pl[:n], False) + lsgan(pl[n:], True))
                d = d + L.latent_gan * losses["d_lat"]
        self.schedulers["g"].step()
        if d.requires_grad:
            self.opt_d.zero_grad(set_to_none=True)
            d.backward()
            self.opt_d.step()
            self.schedulers["d"].step()
        self._last = (x.detach(), rec.detach())
        return {k: float(v.detach()) for k, v in losses.items()}

    def _clip(self, module: nn.Module) -> None:
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)

    @torch.no_grad()
    def sample_rows(self, batch: dict[str, torch.Tensor]) -> list[list[torch.Tensor]]:
        """Input | reconstruction from the mean latent, per sample."""
        x = self.inputs(batch)
        rec = self.vae.decoder(self.vae.encoder(x))     # self.vae is the plain module (vae_ddp wraps it)
        return [[x[i], rec[i]] for i in range(min(4, x.shape[0]))]
