"""``python -m training [command] [--section.field value ...]``

Commands (default ``all``: every step in order):
  prepare-data       fetch photos and textures into the cache, build the crop set
  show-degradations  write a PNG contact sheet of synthetic degradations
  vae-a              train VAE_A (degraded + real old photos, latent domain alignment)
  vae-b              train VAE_B (clean photos)
  mapping            train the mapping network between the frozen VAEs
  export             write the server's weight file and check it loads and restores
  evaluate           benchmark the weight file on the evaluation photos
  make-sample        age the demo's sample photo (server/samples/) with the project's degradation
  all                prepare-data, vae-a, vae-b, mapping, export, evaluate
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import Config, add_config_flags, resolve

COMMANDS = {
    "prepare-data": "fetch photos and textures into the cache, build the crop set",
    "show-degradations": "write a PNG contact sheet of synthetic degradations",
    "vae-a": "train VAE_A (degraded + real old photos, latent domain alignment)",
    "vae-b": "train VAE_B (clean photos)",
    "mapping": "train the mapping network between the frozen VAEs",
    "export": "write the server's weight file and check that the restore pipeline loads it",
    "evaluate": "PSNR/SSIM of the weights on the evaluation photos vs degraded input and Telea",
    "make-sample": "write the demo's aged sample photo and its defect mask to server/samples/",
    "all": "every training step above in order (the default)",
}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_config_flags(common)
    p = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_ in COMMANDS.items():
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        if name in ("export", "all"):
            sp.add_argument("--out", default=None, help="weight file to write (default RUN_DIR/weights.pt)")
            sp.add_argument("--fp16", action="store_true", help="store the weights in float16 (half the size)")
        if name == "evaluate":
            sp.add_argument("--weights", default=None, help="weight file (default RUN_DIR/weights.pt)")
            sp.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval)")
        if name == "make-sample":
            sp.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "server" / "samples"),
                            help="folder to write (default: the server package's samples)")
            sp.add_argument("--seed", type=int, default=None, help="degradation seed (default: the shipped one)")
        if name == "show-degradations":
            sp.add_argument("--out", default="degradations.png", help="PNG to write")
            sp.add_argument("--rows", type=int, default=6)
    return p


#: commands that touch shared files once: under torchrun only rank 0 runs them
SINGLE_PROCESS = ("prepare-data", "show-degradations", "export", "evaluate", "make-sample")


def run(cfg: Config, command: str, args: argparse.Namespace) -> None:
    import torch
    if command in SINGLE_PROCESS and int(os.environ.get("RANK", "0")) != 0:
        return
    if command == "prepare-data":
        from .data.sources import prepare_data
        if cfg.data.synthetic:
            print("[prepare-data] --data.synthetic: nothing to fetch")
            return
        prepare_data(cfg.data, cfg.train.seed)
    elif command == "show-degradations":
        from .show import contact_sheet
        print(contact_sheet(cfg, args.out, args.rows))
    elif command in ("vae-a", "vae-b", "mapping"):
        from .stages import train_stage
        train_stage(cfg, command)
    elif command == "export":
        from .export import export
        path = export(cfg, getattr(args, "out", None), torch.float16 if getattr(args, "fp16", False) else torch.float32)
        print(f"[export] wrote {path}; it loads with oldphoto_model.load_model and restores")
    elif command == "make-sample":
        from .sample import SAMPLE_SEED, make_sample
        seed = SAMPLE_SEED if args.seed is None else args.seed
        for path in make_sample(cfg, args.out, seed):
            print(f"[make-sample] wrote {path}")
    elif command == "evaluate":
        from .evaluate import evaluate
        evaluate(cfg, getattr(args, "weights", None), getattr(args, "out", None))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["all"] + argv
    args = build_parser().parse_args(argv)
    cfg = resolve(args)
    if args.command == "all":
        for c in ("prepare-data", "vae-a", "vae-b", "mapping", "export", "evaluate"):
            if c == "evaluate":
                args.weights, args.out = getattr(args, "out", None), None
            run(cfg, c, args)
    else:
        run(cfg, args.command, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
