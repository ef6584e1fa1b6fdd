"""The training loop shared by the three stages. Read top to bottom:

    set up (device, DDP, seeds) -> build the stage -> resume from last.pt if present
    -> for each step: batch, forward/backward/step (inside the stage), log, sample, checkpoint
    -> final checkpoint.

Batches and noise depend only on (seed, step, rank), which is what makes a resumed
run bit-identical to an uninterrupted one on CPU.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ..config import Config, save_config
from ..data.dataset import StepSampler, TrainingSamples
from ..dist import DistContext, barrier, cleanup, mean_scalar, setup
from ..logger import ProgressBar, ScalarLog, save_grid, tensor_to_u8
from .common import amp_dtype, use_channels_last
from .detect import DetectStage
from .fill import FillStage
from .mapping import MappingStage
from .tone import ToneStage
from .vae import VAEStage

STAGES = ("vae-a", "vae-b", "mapping", "detect", "tone", "fill")


def build_stage(cfg: Config, ctx: DistContext, name: str, log=print):
    if name == "vae-a":
        return VAEStage(cfg, ctx, "a", log)
    if name == "vae-b":
        return VAEStage(cfg, ctx, "b", log)
    if name == "mapping":
        return MappingStage(cfg, ctx, log)
    if name == "detect":
        return DetectStage(cfg, ctx, log)
    if name == "tone":
        return ToneStage(cfg, ctx, log)
    if name == "fill":
        return FillStage(cfg, ctx, log)
    raise ValueError(f"unknown stage {name!r}; stages: {STAGES}")


def stage_config(cfg: Config, name: str):
    return {"vae-a": cfg.vae_a, "vae-b": cfg.vae_b, "mapping": cfg.mapping, "detect": cfg.detect, "tone": cfg.tone,
            "fill": cfg.fill}[name]


def step_seed(cfg: Config, step: int, rank: int) -> int:
    return (cfg.train.seed * 1_000_003 + step * 1009 + rank) % (2 ** 63)


def train_stage(cfg: Config, name: str, stop_after: int | None = None) -> Path:
    """Train one stage to ``steps`` (resuming from its ``last.pt``); returns the checkpoint path.
    ``stop_after`` ends the run early after that many steps (tests of kill-and-resume)."""
    ctx = setup(cfg.train.device, cfg.train.backend)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    out = Path(cfg.train.run_dir) / name
    log = (lambda msg: print(f"[{name}] {msg}", flush=True)) if ctx.is_main else (lambda msg: None)
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out)
    torch.manual_seed(cfg.train.seed)                      # identical initial weights on every rank
    stage = build_stage(cfg, ctx, name, log)
    amp = amp_dtype(cfg, ctx.device)
    channels_last = use_channels_last(cfg, ctx.device)
    if channels_last:
        for m in stage.modules.values():
            m.to(memory_format=torch.channels_last)
    sc = stage_config(cfg, name)
    total = sc.steps

    start = 0
    ckpt = latest_checkpoint(out)
    if ckpt is not None:
        payload = load_checkpoint(ckpt, modules=stage.modules, optimizers=stage.optimizers,
                                  schedulers=stage.schedulers, map_location=ctx.device)
        start = payload["step"]
        log(f"resumed from {ckpt} at step {start}")
    log(f"device {ctx.device}, world {ctx.world}, amp {amp}, channels_last {channels_last}, "
        f"steps {start}->{total}, batch {sc.batch_size}/rank")

    # a stage with its own sample set (the detector's crop size) provides it
    dataset = stage.dataset() if hasattr(stage, "dataset") else TrainingSamples(
        cfg, defects=(name == "mapping"), with_real=(name == "vae-a"), degraded=(name != "vae-b"))
    loader = DataLoader(dataset, batch_sampler=StepSampler(start, total, sc.batch_size, ctx.rank),
                        num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == "cuda")
    scalars = ScalarLog(out) if ctx.is_main else None
    bar = ProgressBar(total, start, cfg.train.progress and ctx.is_main, name)
    end = total if stop_after is None else min(total, start + stop_after)
    step = start
    t_last = time.perf_counter()
    for step, batch in zip(range(start, end), loader):
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        if channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) for k, v in batch.items()}
        torch.manual_seed(step_seed(cfg, step, ctx.rank))   # the VAE's sampling noise
        losses = stage.train_step(batch, amp)

        done = step + 1
        if done % cfg.train.log_every == 0 or done == end:
            losses = {k: mean_scalar(ctx, v) for k, v in losses.items()}
            now = time.perf_counter()
            if scalars is not None:
                scalars.write(done, {**losses, "lr": stage.optimizers["g"].param_groups[0]["lr"],
                                     "sec_per_step": (now - t_last) / cfg.train.log_every})
            t_last = now
        bar.update(step, losses, sc.batch_size * ctx.world)
        if ctx.is_main and (done % cfg.train.sample_every == 0 or done == end):
            rows = stage.sample_rows(batch)
            save_grid([[tensor_to_u8(t) for t in r] for r in rows], out / "samples" / f"step_{done:07d}.png")
        if done % cfg.train.ckpt_every == 0 or done == end:
            if ctx.is_main:
                save_checkpoint(out / "last.pt", step=done, modules=stage.modules, optimizers=stage.optimizers,
                                schedulers=stage.schedulers, extra={"stage": name, "preset": cfg.preset})
            barrier(ctx)
    bar.close()
    if cfg.train.dump_rank_weights:
        torch.save({k: m.state_dict() for k, m in stage.modules.items()}, out / f"rank{ctx.rank}.pt")
    if scalars is not None:
        scalars.close()
    log(f"finished at step {step + 1 if end > start else start}: {out / 'last.pt'}")
    cleanup(ctx)
    return out / "last.pt"
