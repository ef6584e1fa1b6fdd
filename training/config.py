"""Every number of the training package: typed dataclasses, presets, and CLI flags
generated from them.

A run's configuration is ``preset`` + ``--section.field value`` overrides. The
resolved config is written as JSON next to each stage's checkpoints, so any run can
be read back or repeated (``--config run/config.json``).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from oldphoto_model.config import MappingConfig, ModelConfig, VAEConfig


def default_cache_dir() -> str:
    """``$OLDPHOTO_CACHE`` or ``~/.cache/oldphoto``: downloads, photos, crops (never in git)."""
    return os.environ.get("OLDPHOTO_CACHE") or str(Path.home() / ".cache" / "oldphoto")


@dataclass
class DataConfig:
    """Where photos come from and how training crops are cut."""

    cache_dir: str = field(default_factory=default_cache_dir)
    clean_dirs: list[str] = field(default_factory=list)   # extra folders of clean photos (domain Y)
    real_dirs: list[str] = field(default_factory=list)    # real old photos (domain R); [] = <cache>/real
    # where prepare-data copies the manifest's real old photos from before downloading them;
    # "" = ../shared/real_old next to the checkout if it exists
    real_source_dir: str = ""
    real_manifest: str = ""        # TSV of real old photos (file, sha256, URL parts); "" = the shipped one
    eval_dir: str = ""             # folder of evaluation photos; "" = <cache>/eval
    synthetic: bool = False        # procedural images instead of photos (tests only)
    synthetic_count: int = 24
    crop: int = 256
    short_side_min: int = 512      # photos are shrunk to a random short side first:
    short_side_max: int = 1080     # native-size wallpaper tiles are often pure bokeh
    crops_per_photo: int = 40
    flat_std_min: float = 0.045    # crops whose luma std (0..1) is below are dropped
    gray_prob: float = 0.35        # most old photos are monochrome
    sepia_prob: float = 0.15
    flip_prob: float = 0.5
    num_workers: int = 4           # a 256^2 sample takes ~0.1-0.2 s of CPU to synthesise
    # prepare-data's sources: debian | pypi | real (the manifest's real old photos, domain R)
    sources: list[str] = field(default_factory=lambda: ["debian", "pypi", "real"])


@dataclass
class DegradeConfig:
    """Synthetic degradation (the original implementation's ranges; each basic op with probability p)."""

    p: float = 0.7
    blur_kernels: list[int] = field(default_factory=lambda: [3, 5, 7])
    blur_sigma: list[float] = field(default_factory=lambda: [1.0, 5.0])
    noise_sigma: list[float] = field(default_factory=lambda: [5.0, 50.0])   # /255
    salt_pepper_max: float = 0.01
    resample_scale: list[float] = field(default_factory=lambda: [0.5, 1.0])
    jpeg_quality: list[int] = field(default_factory=lambda: [40, 100])
    # ageing effects the paper blends in and the released code omits
    p_fade: float = 0.35
    p_exposure: float = 0.3
    p_grain: float = 0.35
    p_paper: float = 0.3
    p_halftone: float = 0.08
    # structured defects (the mapping stage's scratch training)
    p_defects: float = 0.6         # share of samples that get structured defects at all
    max_defects: int = 5
    defect_kinds: list[str] = field(default_factory=lambda: [
        "stamp", "curve", "dust", "crack", "hole"])


@dataclass
class LossConfig:
    """Loss weights (defaults: the original implementation's) and the perceptual-loss choice."""

    rec_l1: float = 10.0           # VAE reconstruction (alpha of the paper)
    kl: float = 1.0                # reduced VAE: mean(h^2)
    latent_noise: float = 1.0      # std of the noise the reduced VAE decodes with (h + n)
    latent_gan: float = 1.0        # VAE_A domain alignment (LSGAN on the latent)
    image_gan: float = 1.0         # multi-scale PatchGAN LSGAN on images
    feat_match: float = 10.0
    perceptual: float = 10.0
    latent_l1: float = 60.0        # mapping: ||T(z_x) - z_y||_1
    image_l1: float = 0.0          # mapping: ||G_B(T(z_x)) - y||_1 (not in the paper; CPU preset)
    # mapping: L1 between the finite differences of G_B(T(z_x)) and y (not in the paper):
    # a pixel L1 alone is content with a blur; this one charges every softened edge
    image_grad_l1: float = 0.0
    # mapping: L1 of G_B(T(z_x)) - y over the defect pixels only (mean over them; not in the
    # paper): defects are a few % of a crop, so the whole-image terms barely charge a poor fill
    hole_l1: float = 0.0
    vgg_weights: str = ""          # torchvision vgg19 state-dict file; "" = none
    # without a VGG19 file: "off" | "encoder_b" (features of the frozen clean-domain
    # encoder) | "random_vgg"; docs/TRAINING.md has the measurement behind the default
    perceptual_fallback: str = "off"
    vgg_layer_weights: list[float] = field(default_factory=lambda: [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0])


@dataclass
class DiscConfig:
    """PatchGAN and latent discriminators."""

    ndf: int = 64
    n_layers: int = 3
    num_d: int = 2
    latent_ndf: int = 64


@dataclass
class OptimConfig:
    lr: float = 2e-4               # VAEs, generator and discriminators
    beta1: float = 0.5
    beta2: float = 0.999
    lr_mapping_g: float = 1e-4     # TTUR of the mapping stage
    lr_mapping_d: float = 4e-4
    decay_start: float = 0.5       # linear decay to zero over the last half of the steps
    grad_clip: float = 0.0         # 0 = off


@dataclass
class StageConfig:
    """Length and bookkeeping of one training stage."""

    steps: int = 100_000
    batch_size: int = 8


@dataclass
class DetectConfig:
    """The scratch detector stage (``python -m training detect``, oldphoto_model.archs.detector).

    Samples are the mapping stage's: clean crops through ``degrade`` (``degrade.p_defects``
    of them get structured defects, the rest none), the exact defect mask as the target."""

    width: int = 16                # channels of the detector's first level
    levels: int = 2
    steps: int = 20_000
    batch_size: int = 16
    crop: int = 256                # its own crop side (the restoration stages use data.crop)
    lr: float = 1e-3
    # defect pixels are ~1-5 % of a sample's pixels: BCE weights them up, and the soft
    # dice term (over the whole batch, so clean samples count their false alarms) is
    # indifferent to the imbalance
    pos_weight: float = 3.0
    dice: float = 1.0
    # share of samples shown as the clean crop itself with an empty mask: sharp, undamaged
    # photos are what the detector fires on most (its false alarms on clean photos were
    # three times those on aged ones), and the degradation chain never shows them
    pristine: float = 0.0
    # share of those pristine crops brightened until their highlights clip to flat white
    # (a blown sky, sunlit pavement): the real scans' most flagged areas looked like holes
    overexposed: float = 0.0
    # share of samples cut from the real old photos (domain R, ``data.real_dirs`` or
    # <cache>/real) with synthetic defects drawn on top and only those marked: the scans'
    # own grain, halftone, paper and lettering are seen unmarked (the synthetic ageing
    # lacks them, and they were most of the false alarms on real scans)
    real: float = 0.0
    # file stems of real photos kept out of the detector's samples: the ones with known
    # real damage (their unmarked scratches would be taught as clean) and a held-out set
    # the real-scan false alarms are measured on
    real_holdout: list[str] = field(default_factory=list)
    # defects drawn as for a photo this many times (uniform in [low, high]) the crop's size:
    # holes and stamps are sized by the photo, so on a 192-px crop they came out 2-3 times
    # narrower than on a whole photo at evaluate's 512 px, and wide holes went unfound
    defect_scale: list[float] = field(default_factory=lambda: [1.0, 1.0])
    # the kinds that scale applies to: holes (flat white, wide on a whole photo); stamps
    # drawn that large fill a crop with texture and taught skin and foliage as defects
    scaled_kinds: list[str] = field(default_factory=lambda: ["hole"])
    # share of samples with scratch-like strokes drawn into the scene before the ageing,
    # unmarked: the real scans' ropes, wires and specks of light were taken for scratches
    scene_lines: float = 0.0
    # scanner noise laid over the whole sample after the defects (Gaussian, per sample a
    # sigma uniform in [0, scan_noise] levels of 255, shared by the channels): the synthetic
    # defects are painted after the photo's grain, so a flat, noise-free patch read as a
    # defect and real scans' smooth highlights (sunlit pavement, snow) were flagged; a real
    # scratch is scanned with the print and carries the same noise
    scan_noise: float = 0.0
    # ... and the scanner's softness: each sample mixed (weight uniform in [0, 1]) with its
    # Gaussian blur of this many px, so a defect is no crisper than the picture under it
    scan_blur: float = 0.0
    threshold: float = 0.5         # stored in the weight file's metadata
    # a detector weight file to start from when the run has no checkpoint, grown to this
    # width and depth with the same function (training.grow)
    init_from: str = ""


@dataclass
class FillTrainConfig:
    """The learned fill stage (``python -m training fill``, oldphoto_model.archs.fill).

    Samples: clean crops aged by ``degrade``'s unstructured chain, then 1..max_defects
    structured defects (always at least one); the target is the aged crop without them,
    so the network learns to fill in the scan's own tone. Loss: L1 over the mask."""

    width: int = 24
    levels: int = 3
    # the network sees the defect pixels as scanned (oldphoto_model.archs.fill.FillConfig);
    # off for the shipped file: a blind fill cannot bring back what covered the photo
    see_through: bool = False
    steps: int = 6000
    batch_size: int = 8
    crop: int = 192
    lr: float = 1e-3
    # holes and brush stamps are sized by the photo: drawn as for a photo up to this many
    # times the crop (192-px crops of 512-px evaluation photos: up to 2.7)
    defect_scale: list[float] = field(default_factory=lambda: [1.0, 2.7])
    scaled_kinds: list[str] = field(default_factory=lambda: ["hole", "stamp", "text"])
    # the degrade chain's kinds plus lettering laid over the print (watermarks, dates): a
    # selection over such lettering must come back without a ghost of the letters
    defect_kinds: list[str] = field(default_factory=lambda: [
        "stamp", "curve", "dust", "crack", "hole", "text"])
    # the mask grown by 0..grow_max pixels: selections are drawn loose, detected masks are
    # grown, so intact pixels inside the mask must come through
    grow_max: int = 3
    # ... and in this share of the samples by grow_max+1..loose_max pixels: a lasso or a
    # rectangle drawn around a watermark or a stain holds many intact pixels, which the fill
    # must pass through while it removes the defect
    loose_p: float = 0.3
    loose_max: int = 12
    # a fill weight file to start from when the run has no checkpoint, grown to this width
    # and depth with the same function (training.grow): a larger fill without starting over
    init_from: str = ""


@dataclass
class ToneTrainConfig:
    """The tone estimator stage (``python -m training tone``, oldphoto_model.archs.tone).

    Pairs of thumbnails (a photo view through ``degrade``, and clean) are made once
    into a bank; the estimator then fits the bank (training/stages/tone.py)."""

    hidden: int = 64               # width of the estimator's hidden layers
    thumb: int = 64                # thumbnail side the statistics are taken on
    view: int = 256                # long side of a training view before degradation
    samples: int = 24_000          # pairs in the bank
    chunk: int = 2_000             # pairs per bank file
    holdout: int = 2_000           # the bank's last pairs, held out and reported
    steps: int = 6_000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05


@dataclass
class TrainConfig:
    """Loop settings shared by the three stages."""

    run_dir: str = "runs/default"
    seed: int = 1234
    device: str = "auto"           # auto | cpu | cuda
    amp: str = "auto"              # auto (bf16 on CUDA) | bf16 | off
    channels_last: str = "auto"    # auto (on CUDA) | on | off
    log_every: int = 50
    ckpt_every: int = 2000
    sample_every: int = 2000
    progress: bool = True
    threads: int = 0               # torch CPU threads; 0 = PyTorch's choice
    backend: str = "auto"          # DDP: auto (nccl on CUDA, gloo on CPU) | gloo | nccl
    attention_backend: str = "auto"
    dump_rank_weights: bool = False  # each rank writes rank<r>.pt at the end (DDP consistency tests)


@dataclass
class EvalConfig:
    seed: int = 2020
    max_side: int = 512
    photos: int = 0                # 0 = all
    telea_radius: int = 5
    grid_photos: int = 4           # rows of the small side-by-side grid (grid_small.png)
    grid_crop: int = 160           # its crops, taken around each mask's centre, at full resolution
    precision: str = "auto"        # the product's default (bf16 on CPUs with bf16 instructions)
    ablations: bool = False        # also the restore options' ablation rows (docs/MODEL.md)
    real_dir: str = ""             # real old photos for the contact sheets; "" = ../shared/real_old if present
    real_max_side: int = 512
    real_photos: int = 0           # 0 = all
    detail_max_side: int = 1024    # real_detail.jpg: photos restored at up to this size, crops shown 1:1
    detail_crop: int = 160         # its crops: the window of each photo with the most fine detail
    recipe_telea_radius: int = 3   # the classical hand recipe: Telea r3 + non-local means h5 + stretch
    recipe_nlm_h: float = 5.0
    recipe_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    detector: str = ""             # scratch detector for the "detected mask" row: "" = the shipped one, "none" = skip
    tone: str = ""                 # tone estimator of the model rows: "" = the shipped one, "none" = without
    fill: str = ""                 # learned fill of the model rows: "" = the shipped one, "none" = harmonic fill only


@dataclass
class Config:
    """The whole training configuration."""

    preset: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    disc: DiscConfig = field(default_factory=DiscConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    vae_a: StageConfig = field(default_factory=StageConfig)
    vae_b: StageConfig = field(default_factory=StageConfig)
    mapping: StageConfig = field(default_factory=lambda: StageConfig(steps=150_000, batch_size=4))
    detect: DetectConfig = field(default_factory=DetectConfig)
    tone: ToneTrainConfig = field(default_factory=ToneTrainConfig)
    fill: FillTrainConfig = field(default_factory=FillTrainConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# --------------------------------------------------------------------------- presets

def _default() -> Config:
    return Config(preset="default")


def _small() -> Config:
    """A CPU-sized model and schedule: narrower mapping, fewer steps (hours, not days)."""
    c = Config(preset="small")
    c.model = ModelConfig(vae=VAEConfig(channels=32), mapping=MappingConfig(latent_channels=32, width=128,
                                                                             n_res_local=3, n_res_global=2))
    c.disc = DiscConfig(ndf=32, latent_ndf=32)
    c.data.crop = 128
    c.data.num_workers = 2
    c.vae_a = StageConfig(steps=3000, batch_size=8)
    c.vae_b = StageConfig(steps=3000, batch_size=8)
    c.mapping = StageConfig(steps=4000, batch_size=8)
    c.train.run_dir = "runs/small"
    c.train.ckpt_every = 500
    c.train.sample_every = 500
    return c


def _cpu() -> Config:
    """The recipe of the previous default weights (docs/MODEL.md): the ``small`` networks,
    trained in about 1.5 hours on a 2-core CPU; ``cpu-sharp`` builds on it. The image discriminators are off (they cost
    half of every step and need far more steps than this to help); the mapping gets a
    pixel L1 on the decoded image in place of the perceptual term (no VGG19 weights here);
    the networks have no instance norm."""
    c = _small()
    c.preset = "cpu"
    # without instance norm: IN erases each crop's tone and colour, which the VAEs then
    # could not reconstruct in this budget (L1 0.30 vs 0.15 after 200 steps, docs/MODEL.md)
    c.model = ModelConfig(vae=dataclasses.replace(c.model.vae, norm="none"),
                          mapping=dataclasses.replace(c.model.mapping, norm="none"))
    c.loss.image_gan = 0.0
    c.loss.feat_match = 0.0
    c.loss.image_l1 = 10.0
    c.optim.lr_mapping_g = 2e-4
    c.vae_a = StageConfig(steps=1300, batch_size=8)
    c.vae_b = StageConfig(steps=2600, batch_size=8)
    c.mapping = StageConfig(steps=3000, batch_size=8)
    c.detect = DetectConfig(steps=3000, batch_size=8, crop=128)
    c.train.run_dir = "runs/cpu"
    c.train.log_every = 25
    c.train.ckpt_every = 200
    c.train.sample_every = 700
    return c


def _cpu_sharp() -> Config:
    """The recipe of the shipped default weights (docs/MODEL.md): the ``cpu`` recipe with
    a sharper latent and a mapping that is charged for blur. The VAEs decode
    h + N(0, 0.1²) with a KL weight of 0.01 (the paper's sigma 1 / KL 1 left G_B(E_B(y))
    at ~22.5 dB; this reaches 26.0 dB after 1,500 steps), the mapping's image L1 weight
    is 20 plus an image-gradient L1 of weight 20, and the 21 real old photos are domain R."""
    c = _cpu()
    c.preset = "cpu-sharp"
    c.loss.latent_noise = 0.1
    c.loss.kl = 0.01
    c.loss.image_l1 = 20.0
    c.loss.image_grad_l1 = 20.0
    c.vae_a = StageConfig(steps=700, batch_size=8)
    c.vae_b = StageConfig(steps=1500, batch_size=8)
    c.mapping = StageConfig(steps=3800, batch_size=8)
    c.train.run_dir = "runs/cpu-sharp"
    c.train.ckpt_every = 100
    c.train.sample_every = 300
    return c


def _smoke() -> Config:
    """Tiny everything, procedural images: for tests; runs each stage in seconds on a CPU."""
    c = Config(preset="smoke")
    c.model = ModelConfig(vae=VAEConfig(channels=8, n_res_blocks=1),
                          mapping=MappingConfig(latent_channels=8, width=16, n_res_local=1, n_res_global=1))
    c.disc = DiscConfig(ndf=8, n_layers=2, num_d=2, latent_ndf=8)
    c.data.synthetic = True
    c.data.synthetic_count = 6
    c.data.crop = 32
    c.data.short_side_min = 40
    c.data.short_side_max = 64
    c.data.crops_per_photo = 2
    c.data.num_workers = 0
    c.vae_a = StageConfig(steps=3, batch_size=2)
    c.vae_b = StageConfig(steps=3, batch_size=2)
    c.mapping = StageConfig(steps=3, batch_size=2)
    c.detect = DetectConfig(width=4, steps=3, batch_size=2, crop=32)
    c.tone = ToneTrainConfig(hidden=8, thumb=16, view=48, samples=24, chunk=10, holdout=4, steps=3, batch_size=4)
    c.fill = FillTrainConfig(width=4, levels=2, steps=3, batch_size=2, crop=32)
    c.train.run_dir = "runs/smoke"
    c.train.log_every = 1
    c.train.ckpt_every = 2
    c.train.sample_every = 2
    c.train.threads = 1
    c.eval.max_side = 64
    c.eval.photos = 2
    c.eval.real_photos = 2
    c.eval.real_max_side = 64
    c.eval.detail_max_side = 96
    c.eval.detail_crop = 32
    return c


PRESETS = {"default": _default, "small": _small, "cpu": _cpu, "cpu-sharp": _cpu_sharp, "smoke": _smoke}


def preset(name: str) -> Config:
    """A fresh Config of the named preset."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return PRESETS[name]()


# --------------------------------------------------------------------------- CLI flags

def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _leaves(cls, prefix: str = ""):
    """(dotted name, type) of every scalar/list field of a dataclass tree."""
    for f in fields(cls):
        t = _hints(cls)[f.name]
        name = f"{prefix}{f.name}"
        if is_dataclass(t):
            yield from _leaves(t, name + ".")
        elif name != "preset":
            yield name, t


def _parser_for(t):
    origin = typing.get_origin(t)
    if origin is list:
        (inner,) = typing.get_args(t)
        return inner, "+"
    return t, None


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--section.field`` flag per leaf of ``Config`` (values default to the preset)."""
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS),
                        help="base configuration (default: %(default)s)")
    parser.add_argument("--config", default=None, help="resolved config JSON of an earlier run to start from")
    base = Config()
    for name, t in _leaves(Config):
        value = _get(base, name)
        typ, nargs = _parser_for(t)
        dest = "cfg:" + name
        if typ is bool:
            parser.add_argument(f"--{name}", dest=dest, action=argparse.BooleanOptionalAction,
                                default=None, help=f"(default: {value})")
        else:
            parser.add_argument(f"--{name}", dest=dest, type=typ, nargs=nargs, default=None,
                                metavar=typ.__name__.upper(), help=f"(default: {value})")


def _get(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _set(obj, dotted: str, value) -> Any:
    """Set a dotted field, rebuilding frozen dataclasses (the model config) on the way."""
    head, _, rest = dotted.partition(".")
    # obj is a config instance, never a class: `not isinstance(obj, type)` tells mypy (replace takes instances)
    if not rest:
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type) \
                and getattr(type(obj), "__dataclass_params__").frozen:
            return dataclasses.replace(obj, **{head: value})
        setattr(obj, head, value)
        return obj
    child = _set(getattr(obj, head), rest, value)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type) \
            and getattr(type(obj), "__dataclass_params__").frozen:
        return dataclasses.replace(obj, **{head: child})
    setattr(obj, head, child)
    return obj


def from_dict(cls, d: dict[str, Any]):
    """Rebuild a dataclass tree from ``asdict`` output; unknown keys raise ValueError."""
    hints = _hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    kwargs = {}
    for k, v in d.items():
        t = hints[k]
        kwargs[k] = from_dict(t, v) if is_dataclass(t) else v
    return cls(**kwargs)


def resolve(args: argparse.Namespace) -> Config:
    """Preset (or --config file) plus the explicitly given flags."""
    if getattr(args, "config", None):
        cfg = from_dict(Config, json.loads(Path(args.config).read_text()))
    else:
        cfg = preset(getattr(args, "preset", "default"))
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``{"train.seed": 3, ...}`` applied to a copy of ``cfg``; the model config is re-validated."""
    cfg = copy.deepcopy(cfg)
    valid = dict(_leaves(Config))
    model = cfg.model.to_dict()       # frozen and cross-checked: rebuilt once, after all overrides
    for name, value in overrides.items():
        if name not in valid:
            raise ValueError(f"unknown config field {name!r}")
        if name.startswith("model."):
            _, sub, leaf = name.split(".")
            model[sub][leaf] = value
        else:
            cfg = _set(cfg, name, value)
    cfg.model = ModelConfig.from_dict(model)
    return cfg


def save_config(cfg: Config, directory: str | os.PathLike) -> Path:
    """Write ``config.json`` into ``directory`` (atomically)."""
    from oldphoto_model.atomic import atomic_write_bytes
    path = Path(directory) / "config.json"
    atomic_write_bytes(path, cfg.to_json().encode())
    return path
