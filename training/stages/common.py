"""Pieces every stage shares: optimisers, the LR schedule, autocast, the perceptual term."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ..archs import load_vgg19
from ..checkpoint import latest_checkpoint, read_checkpoint
from ..config import Config
from ..dist import DistContext
from ..losses import PerceptualLoss, encoder_features, feature_matching, lsgan


def adam(params, lr: float, cfg: Config) -> torch.optim.Adam:
    return torch.optim.Adam(params, lr=lr, betas=(cfg.optim.beta1, cfg.optim.beta2))


def linear_decay(opt: torch.optim.Optimizer, total: int, decay_start: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Constant, then linear to zero over the last (1 - decay_start) of the steps (pix2pixHD)."""
    start = int(total * decay_start)

    def factor(step: int) -> float:
        if step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / max(1, total - start))
    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def wrap(module: nn.Module, ctx: DistContext, find_unused: bool = False) -> nn.Module:
    """DDP when distributed; the plain module otherwise."""
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(module, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, DDP) else module


def amp_dtype(cfg: Config, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default; explicit ``bf16`` also on CPU; ``off`` = fp32."""
    if cfg.train.amp == "off":
        return None
    if cfg.train.amp == "bf16" or (cfg.train.amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def use_channels_last(cfg: Config, device: torch.device) -> bool:
    return cfg.train.channels_last == "on" or (cfg.train.channels_last == "auto" and device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def build_perceptual(cfg: Config, frozen_encoder_b: nn.Module | None, log) -> PerceptualLoss | None:
    """VGG19 when a state-dict file is given; otherwise ``loss.perceptual_fallback``."""
    if cfg.loss.perceptual <= 0:
        log("perceptual loss: off (weight 0)")
        return None
    if cfg.loss.vgg_weights:
        log(f"perceptual loss: VGG19 from {cfg.loss.vgg_weights}")
        return PerceptualLoss(load_vgg19(cfg.loss.vgg_weights), cfg.loss.vgg_layer_weights)
    choice = cfg.loss.perceptual_fallback
    if choice == "random_vgg":
        log("perceptual loss: no VGG19 weights given -> randomly initialised VGG19 features")
        torch.manual_seed(cfg.train.seed)
        return PerceptualLoss(load_vgg19(None), cfg.loss.vgg_layer_weights)
    if choice == "encoder_b" and frozen_encoder_b is not None:
        log("perceptual loss: no VGG19 weights given -> features of the frozen clean-domain encoder E_B")
        return PerceptualLoss(encoder_features(frozen_encoder_b), [1.0])
    log(f"perceptual loss: no VGG19 weights given -> off (loss.perceptual_fallback={choice!r}; "
        "see docs/TRAINING.md)")
    return None


def uses_image_discriminator(cfg: Config) -> bool:
    """False when both adversarial weights are 0: the stages then never run the PatchGAN."""
    return cfg.loss.image_gan > 0 or cfg.loss.feat_match > 0


def image_terms(cfg: Config, d_img: nn.Module, perceptual: PerceptualLoss | None, fake: torch.Tensor,
                real: torch.Tensor, losses: dict[str, torch.Tensor]) -> torch.Tensor | float:
    """The generator's image-space terms shared by every stage: LSGAN + feature matching on
    ``d_img`` (when weighted) and the perceptual term (when built). Adds each to ``losses``
    and returns their weighted sum (0.0 when none applies)."""
    L = cfg.loss
    g: torch.Tensor | float = 0.0
    if uses_image_discriminator(cfg):
        pf = d_img(fake)
        with torch.no_grad():
            pr = d_img(real)
        losses["gan"], losses["fm"] = lsgan(pf, True), feature_matching(pf, pr)
        g = g + L.image_gan * losses["gan"] + L.feat_match * losses["fm"]
    if perceptual is not None:
        losses["perc"] = perceptual(fake, real)
        g = g + L.perceptual * losses["perc"]
    return g


def discriminator_loss(d_img: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """LSGAN loss of the multi-scale image discriminator on one batch of real and one of
    (detached) fake images, run through it together."""
    out = d_img(torch.cat([real, fake.detach()]))
    n = real.shape[0]
    return 0.5 * (lsgan([[o[-1][:n]] for o in out], True) + lsgan([[o[-1][n:]] for o in out], False))


NetT = TypeVar("NetT", bound=nn.Module)


def trained_network(cfg: Config, stage: str, key: str, net: NetT) -> tuple[NetT, int]:
    """``net`` with the weights of ``RUN_DIR/<stage>/last.pt`` (module ``key``) and that
    checkpoint's step; a clear error when the stage has not run."""
    folder = Path(cfg.train.run_dir) / stage
    ckpt = latest_checkpoint(folder)
    if ckpt is None:
        raise FileNotFoundError(f"no {stage} checkpoint in {folder}: run `python -m training {stage}` first")
    payload = read_checkpoint(ckpt)
    net.load_state_dict(payload["modules"][key])
    return net, int(payload["step"])


class SingleNetworkStage:
    """A stage that trains one network with Adam and the linear decay (the scratch
    detector, the learned fill): ``modules``, ``optimizers`` and ``schedulers`` as the loop
    wants them; ``net_ddp`` for the forward pass, ``optimise`` for the update."""

    def __init__(self, cfg: Config, ctx: DistContext, name: str, key: str, net: nn.Module, lr: float,
                 steps: int, what: str, log=print) -> None:
        self.cfg, self.ctx, self.name = cfg, ctx, name
        self.steps = steps
        self.net = net.to(ctx.device)
        log(f"{what}, {sum(p.numel() for p in self.net.parameters()) / 1e3:.0f} k parameters")
        self.modules = {key: self.net}
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr)
        self.optimizers = {"g": self.opt}          # "g": the loop logs this optimiser's learning rate
        self.schedulers = {"g": linear_decay(self.opt, steps, cfg.optim.decay_start)}
        self.net_ddp = wrap(self.net, ctx)

    def optimise(self, loss: torch.Tensor) -> None:
        """One Adam step on ``loss``, then the schedule's."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.schedulers["g"].step()
