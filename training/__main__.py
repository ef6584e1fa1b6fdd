"""``python -m training [COMMAND] [--preset NAME] [--section.field VALUE ...]``: train the
restoration model, export the server's weight file and evaluate it."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .config import Config, add_config_flags, resolve

COMMANDS = {
    "prepare-data": "fetch photos, textures and real old photos into the cache, build the crop set",
    "show-degradations": "write a PNG contact sheet of synthetic degradations",
    "vae-a": "train VAE_A (degraded + real old photos, latent domain alignment)",
    "vae-b": "train VAE_B (clean photos)",
    "mapping": "train the mapping network between the frozen VAEs",
    "detect": "train the scratch detector on the synthetic defects; writes RUN_DIR/detector.pt",
    "tone": "train the tone estimator (fading, tint, lifted blacks, contrast) on synthetic fades; "
            "writes RUN_DIR/tone.pt",
    "fill": "train the learned fill of the defects (refines their harmonic fill); writes RUN_DIR/fill.pt",
    "export": "write the server's weight file and check that the restore pipeline loads it",
    "evaluate": "PSNR/SSIM of the weights on the evaluation photos vs degraded input and Telea",
    "eval-detect": "precision/recall/F1/IoU and false alarms of the scratch detector vs a classical "
                   "one; overlay sheet of the real old photos",
    "average": "average the weights of helper-network files of one kind (fine-tunes of one file): "
               "python -m training average --out OUT A.pt B.pt ...",
    "make-sample": "write the demo's aged sample photo and its defect mask to server/samples/",
    "all": "every training step above in order (the default)",
}


DESCRIPTION = """\
Train the old-photo restoration model, export the weight file the server loads,
and evaluate it. Without COMMAND every step runs in order (all).

Every command takes --preset NAME, the base configuration:
  default  the original implementation's sizes (meant for a GPU)
  small    narrower networks, a few thousand steps
  cpu      the recipe of the shipped weights (about 80 minutes on 2 CPU cores)
  smoke    tiny networks on procedural images: an end-to-end check in seconds
and --section.field VALUE to change any single setting, e.g. --train.run_dir runs/mine.
python -m training COMMAND --help lists every setting with its default.
Outputs go to the run folder (--train.run_dir; the preset's default is runs/PRESET)."""


#: stages that write a helper network's file, with --out: (what, default file name in RUN_DIR)
_EXPORTS = {"detect": ("detector weight", "detector.pt"), "tone": ("tone-estimator", "tone.pt"),
            "fill": ("learned-fill", "fill.pt")}


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    add_config_flags(common)
    p = argparse.ArgumentParser(prog="python -m training", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, help_ in COMMANDS.items():
        sp = sub.add_parser(name, parents=[common], help=help_, description=help_)
        if name in _EXPORTS:
            what, file = _EXPORTS[name]
            sp.add_argument("--out", default=None, help=f"{what} file to write (default RUN_DIR/{file})")
        if name == "eval-detect":
            sp.add_argument("--weights", default=None,
                            help="detector weight file (default RUN_DIR/detector.pt, else the shipped one)")
            sp.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval-detect)")
        if name in ("export", "all"):
            sp.add_argument("--out", default=None, help="weight file to write (default RUN_DIR/weights.pt)")
            sp.add_argument("--fp16", action="store_true", help="store the weights in float16 (half the size)")
        if name == "evaluate":
            sp.add_argument("--weights", default=None, help="weight file (default RUN_DIR/weights.pt)")
            sp.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval)")
        if name == "average":
            sp.add_argument("inputs", nargs="+", help="weight files to average (two or more, one kind)")
            sp.add_argument("--out", required=True, help="weight file to write")
            sp.add_argument("--threshold", type=float, default=None,
                            help="detector files: the threshold to store (default: the first file's)")
        if name == "make-sample":
            sp.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "server" / "samples"),
                            help="folder to write (default: the server package's samples)")
            sp.add_argument("--seed", type=int, default=None, help="degradation seed (default: the shipped one)")
        if name == "show-degradations":
            sp.add_argument("--out", default="degradations.png", help="PNG to write")
            sp.add_argument("--rows", type=int, default=6)
    return p


#: commands that touch shared files once: under torchrun only rank 0 runs them
SINGLE_PROCESS = ("prepare-data", "show-degradations", "export", "evaluate", "make-sample", "eval-detect",
                  "average")


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
    elif command == "detect":
        from .stages import train_stage
        from .stages.detect import export_detector
        train_stage(cfg, command)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"[detect] wrote {export_detector(cfg, getattr(args, 'out', None))}", flush=True)
    elif command == "tone":
        from .stages import train_stage
        from .stages.tone import export_tone
        train_stage(cfg, command)
        if int(os.environ.get("RANK", "0")) == 0:
            log = lambda msg: print(f"[tone] {msg}", flush=True)  # noqa: E731
            log(f"wrote {export_tone(cfg, getattr(args, 'out', None), log)}")
    elif command == "fill":
        from .stages import train_stage
        from .stages.fill import export_fill
        train_stage(cfg, command)
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"[fill] wrote {export_fill(cfg, getattr(args, 'out', None))}", flush=True)
    elif command == "eval-detect":
        from .eval_detect import eval_detect
        out = Path(getattr(args, "out", None) or Path(cfg.train.run_dir) / "eval-detect")
        for path in eval_detect(cfg, getattr(args, "weights", None), out):
            print(f"[eval-detect] wrote {path}", flush=True)
    elif command == "export":
        from .export import export
        path = export(cfg, getattr(args, "out", None), torch.float16 if getattr(args, "fp16", False) else torch.float32)
        print(f"[export] wrote {path}; it loads with oldphoto_model.load_model and restores")
    elif command == "average":
        from .average import average_weight_files
        meta = {} if args.threshold is None else {"threshold": args.threshold}
        print(f"[average] wrote {average_weight_files(args.inputs, args.out, meta)}", flush=True)
    elif command == "make-sample":
        from .sample import SAMPLE_SEED, make_sample
        seed = SAMPLE_SEED if args.seed is None else args.seed
        for path in make_sample(cfg, args.out, seed):
            print(f"[make-sample] wrote {path}")
    elif command == "evaluate":
        from .evaluate import evaluate
        out = Path(getattr(args, "out", None) or Path(cfg.train.run_dir) / "eval")
        evaluate(cfg, getattr(args, "weights", None), out)
        print(f"[evaluate] wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'grid.png'} and "
              f"{out / 'grid_small.png'}", flush=True)




def outputs_summary(cfg: Config, weights: str | None = None) -> str:
    """Where a whole run put its results, for the person who started it."""
    run = Path(cfg.train.run_dir).resolve()
    return "\n".join([
        f"[all] done; outputs in {run}:",
        f"  weight file for the server:  {Path(weights).resolve() if weights else run / 'weights.pt'}"
        "  (python -m server --weights FILE)",
        f"  evaluation:                  {run / 'eval'} (results.md, grid.png, grid_small.png)",
        f"  per stage (checkpoint last.pt, log.csv, samples/, config.json): "
        f"{', '.join(str(run / s) for s in ('vae-a', 'vae-b', 'mapping'))}"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["all"] + argv
    args = build_parser().parse_args(argv)
    cfg = resolve(args)
    if args.command == "all":
        weights = getattr(args, "out", None)
        for c in ("prepare-data", "vae-a", "vae-b", "mapping", "export", "evaluate"):
            if c == "evaluate":
                args.weights, args.out = weights, None
            run(cfg, c, args)
        if int(os.environ.get("RANK", "0")) == 0:
            print(outputs_summary(cfg, weights), flush=True)
    else:
        run(cfg, args.command, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
