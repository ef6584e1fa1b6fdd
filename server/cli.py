"""``python -m server`` (``oldphoto-server``): serve, or restore files, or run the demo.

    python -m server [--bind ADDR] [--weights FILE] [--device auto|cpu|cuda] ...
    python -m server info [--address ADDR]
    python -m server restore IN OUT [--mask MASK] [--address ADDR | --in-process --weights FILE]
    python -m server demo [IMAGE] [--out OUT] [--weights FILE]

The serve flags are generated from ServerConfig's fields (server.config).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from .client import DEFAULT_ADDRESS, Client, ClientError, ServerUnavailable
from .config import ServerConfig, config_fields, is_local_address

SUBCOMMANDS = ("serve", "info", "restore", "demo")
EXIT_USAGE, EXIT_NO_SERVER, EXIT_FAILED = 2, 3, 1


# -- flags from ServerConfig ------------------------------------------------------
def flag_name(field_name: str) -> str:
    """ServerConfig field -> command-line flag (max_pixels -> --max-pixels)."""
    return "--" + field_name.replace("_", "-")


def add_config_flags(parser: argparse.ArgumentParser, only: Optional[Sequence[str]] = None) -> None:
    """One flag per ServerConfig field (or per field named in ``only``), with its
    default, type and help taken from the dataclass."""
    for f in config_fields():
        if only is not None and f.name not in only:
            continue
        kw: dict[str, Any] = {"dest": f.name, "default": f.default, "help": f.metadata.get("help", "")}
        if isinstance(f.default, bool):
            kw["action"] = "store_true"
        else:
            kw["type"] = type(f.default) if f.default is not None else str
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            kw["help"] += f" (default: {f.default})" if f.default is not None else ""
        parser.add_argument(flag_name(f.name), **kw)


def config_from_args(ns: argparse.Namespace) -> ServerConfig:
    """The ServerConfig that parsed serve flags describe."""
    return ServerConfig(**{f.name: getattr(ns, f.name) for f in config_fields()})


# -- shared helpers -------------------------------------------------------------------
def _err(msg: str) -> None:
    print(f"oldphoto-server: {msg}", file=sys.stderr, flush=True)


def load_restorer(weights: Optional[str], device: str = "auto", precision: str = "auto"):
    """Load a weight file (default: the shipped weights) onto a device. Raises
    oldphoto_model.WeightsError with a clear message when there are none."""
    from oldphoto_model import Restorer, default_weights_path, load_model
    path = weights if weights else default_weights_path()
    return Restorer(load_model(path), device=device, precision=precision)


def _load_or_explain(weights: Optional[str], device: str, precision: str):
    from oldphoto_model import WeightsError
    try:
        return load_restorer(weights, device, precision)
    except WeightsError as e:
        hint = "" if weights else " (--weights FILE)"
        _err(f"cannot load weights: {e}{hint}")
    except RuntimeError as e:   # e.g. --device cuda without CUDA
        _err(str(e))
    return None


def progress_printer(stream=None) -> Callable[[float, str], None]:
    """A progress callback that draws a bar on a terminal, one line per stage elsewhere."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    last = {"stage": None}

    def show(fraction: float, stage: str) -> None:
        if tty:
            n = int(fraction * 30)
            stream.write(f"\r[{'#' * n}{' ' * (30 - n)}] {fraction * 100:5.1f}% {stage:<18}")
            if fraction >= 1.0:
                stream.write("\n")
        elif stage != last["stage"]:
            stream.write(f"{fraction * 100:5.1f}% {stage}\n")
        last["stage"] = stage
        stream.flush()
    return show


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt()


# -- serve ----------------------------------------------------------------------------
def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oldphoto-server",
        description="Serve the old-photo restoration model to the GIMP plug-ins over ZeroMQ "
                    "(protocol: docs/protocol.md). Other commands: info, restore, demo "
                    "(`python -m server COMMAND --help`).")
    add_config_flags(p)
    return p


def cmd_serve(argv: Sequence[str]) -> int:
    """Load the model, listen, serve until Ctrl-C/SIGTERM. Returns the exit status."""
    ns = serve_parser().parse_args(argv)
    cfg = config_from_args(ns)
    try:
        cfg.validate()
    except ValueError as e:
        _err(str(e))
        return EXIT_USAGE
    if not is_local_address(cfg.bind):
        _err(f"WARNING: listening on {cfg.bind}, a non-loopback address: anyone who can reach it "
             "can send jobs to this server (there is no authentication)")
    restorer = _load_or_explain(cfg.weights, cfg.device, cfg.precision)
    if restorer is None:
        return EXIT_USAGE
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from .app import Server, precision_name, weights_identity
    server = Server(cfg, restorer)
    try:
        endpoint = server.bind()
    except OSError as e:
        _err(f"{e} (is another server already running there? `python -m server info`)")
        return EXIT_FAILED
    wid = weights_identity(restorer)
    print(f"oldphoto-server listening on {endpoint} | device {restorer.device} "
          f"({precision_name(restorer)}) | weights {wid.get('short_id', '?')} ({wid.get('path', '?')}) "
          f"| protocol {server.info()['protocol']} | Ctrl-C stops", flush=True)
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (service managers, kill) shuts down as cleanly as Ctrl-C
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("oldphoto-server stopped", flush=True)
    return 0


# -- info ------------------------------------------------------------------------------
def cmd_info(argv: Sequence[str]) -> int:
    """Print a running server's ``info`` as JSON. Returns the exit status."""
    p = argparse.ArgumentParser(prog="oldphoto-server info", description="Ask a running server what it serves.")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"server address (default {DEFAULT_ADDRESS})")
    ns = p.parse_args(argv)
    try:
        with Client(ns.address, timeout=10.0) as c:
            print(json.dumps(c.info(), indent=2, sort_keys=True, default=str))
    except ServerUnavailable as e:
        _err(e.message)
        return EXIT_NO_SERVER
    except ClientError as e:
        _err(str(e))
        return EXIT_FAILED
    return 0


# -- restore ----------------------------------------------------------------------------
_MODES = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}


def read_image(path: str):
    """-> (uint8 array H x W x C, Pillow mode, save kwargs that keep metadata).
    8-bit modes other than L/LA/RGB/RGBA are converted (with a note); deeper ones refused."""
    import numpy as np
    from PIL import Image
    im = Image.open(path)
    im.load()
    keep = {k: im.info[k] for k in ("icc_profile", "dpi") if k in im.info}
    mode = im.mode
    if mode not in _MODES:
        if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
            raise ValueError(f"{path}: {mode} images are not 8-bit; only 8-bit images are supported")
        has_alpha = mode in ("PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
        target = ("RGBA" if has_alpha else "RGB") if mode not in ("1",) else "L"
        _err(f"note: {path} is mode {mode}; restoring it as {target}")
        im = im.convert(target)
    arr = np.array(im, dtype=np.uint8)    # a writable copy (the pipeline makes tensors of it)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr), im.mode, keep


def read_mask(path: str, size: "tuple[int, int]"):
    """A defect mask file as uint8 H x W (white = defect); ValueError unless it is ``size`` (w, h)."""
    import numpy as np
    from PIL import Image
    m = Image.open(path)
    if m.size != tuple(size):
        raise ValueError(f"mask {path} is {m.size[0]}x{m.size[1]}, the image is {size[0]}x{size[1]}")
    return np.ascontiguousarray(np.asarray(m.convert("L"), dtype=np.uint8))


def write_image(path: str, arr, mode: str, keep: dict) -> None:
    """Write ``arr`` (H x W x C) in ``mode``; the format comes from the file name."""
    from PIL import Image
    img = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, mode=mode)
    ext = Path(path).suffix.lower()
    kw = dict(keep)
    if ext in (".jpg", ".jpeg"):
        if mode in ("LA", "RGBA"):
            raise ValueError(f"{path}: JPEG cannot store the alpha channel of a {mode} image; "
                             "write PNG or TIFF")
        kw["quality"] = 95
    img.save(path, **kw)


def restore_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oldphoto-server restore",
        description="Restore an image file through a running server (or in this process with "
                    "--in-process). Reads and writes 8-bit PNG, JPEG, TIFF and what else Pillow "
                    "handles; keeps the image mode.")
    p.add_argument("input", metavar="IN")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--mask", help="grayscale image of IN's size, white = defect (scratches to inpaint)")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help=f"server address (default {DEFAULT_ADDRESS})")
    p.add_argument("--in-process", action="store_true", help="run the model here instead of in a server")
    add_config_flags(p, only=("weights", "device", "precision"))
    p.add_argument("--mask-threshold", type=int, default=128, help="mask values >= this are defects (default 128)")
    p.add_argument("--restrict-to-mask", action="store_true", help="change only the masked pixels")
    p.add_argument("--overwrite", action="store_true", help="allow OUT to be the same file as IN")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the server (default 3600)")
    return p


def cmd_restore(argv: Sequence[str]) -> int:
    """Restore one image file through a server or in-process. Returns the exit status."""
    ns = restore_parser().parse_args(argv)
    try:
        return _restore_file(ns)
    except ServerUnavailable as e:
        _err(e.message)
        return EXIT_NO_SERVER
    except (ValueError, OSError, ClientError) as e:
        _err(str(e))
        return EXIT_FAILED


def _restore_file(ns: argparse.Namespace) -> int:
    import numpy as np
    src, dst = Path(ns.input), Path(ns.output)
    if not src.is_file():
        raise ValueError(f"{src}: no such file")
    if (dst.exists() and os.path.samefile(src, dst)) and not ns.overwrite:
        raise ValueError(f"{dst} is the input file: choose another OUT or pass --overwrite")
    image, mode, keep = read_image(str(src))
    h, w, c = image.shape
    mask = read_mask(ns.mask, (w, h)) if ns.mask else None
    options = {"mask_threshold": ns.mask_threshold, "restrict_to_mask": ns.restrict_to_mask}
    progress = progress_printer()
    t0 = time.monotonic()
    if ns.in_process:
        restorer = _load_or_explain(ns.weights, ns.device, ns.precision)
        if restorer is None:
            return EXIT_USAGE
        from .worker import restore_image
        out, _ = restore_image(restorer, image, mask, options, progress)
        where = f"in-process on {restorer.device}"
    else:
        with Client(ns.address, timeout=ns.timeout) as client:
            data, meta = client.restore(image.tobytes(), w, h, c,
                                        mask=None if mask is None else mask.tobytes(),
                                        options=options, progress=progress)
        out = np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)
        where = f"via {ns.address} on {meta.get('device')}"
    write_image(str(dst), out, mode, keep)
    print(f"restored {src} -> {dst} ({w}x{h} {mode}, {where}, {time.monotonic() - t0:.2f} s)", flush=True)
    return 0


# -- demo ---------------------------------------------------------------------------------
def bundled_sample() -> "tuple[Path, Optional[Path]]":
    """The aged sample photo shipped in ``server/samples/`` and its defect mask (made by
    ``python -m training make-sample``)."""
    folder = Path(__file__).resolve().parent / "samples"
    photos = [p for p in sorted(folder.glob("*.png")) if not p.stem.endswith("_mask")]
    if not photos:
        raise FileNotFoundError(f"no sample photo in {folder}: this installation is incomplete; "
                                "pass a photo to restore (demo IMAGE)")
    mask = photos[0].with_name(photos[0].stem + "_mask.png")
    return photos[0], mask if mask.exists() else None


def cmd_demo(argv: Sequence[str]) -> int:
    """Restore a sample end to end and write the result. Returns the exit status."""
    import numpy as np
    p = argparse.ArgumentParser(
        prog="oldphoto-server demo",
        description="Restore a sample photo end to end: through a running server if one answers, "
                    "else through a server started in this process on a free port.")
    p.add_argument("image", nargs="?", help="photo to restore (default: the bundled aged sample and its mask)")
    p.add_argument("--mask", help="defect mask for IMAGE (white = defect)")
    p.add_argument("--out", default="oldphoto-demo-restored.png", help="result file (default %(default)s)")
    p.add_argument("--address", default=DEFAULT_ADDRESS, help="use the server running here if it answers")
    add_config_flags(p, only=("weights", "device", "precision"))
    ns = p.parse_args(argv)

    server = None
    meta: dict = {}
    try:
        # find or start a server before touching any file: no weights, no output
        client = Client(ns.address, timeout=3600.0)
        try:
            client.ping(timeout=0.5)
            via = f"the running server at {ns.address}"
        except ServerUnavailable:
            client.close()
            restorer = _load_or_explain(ns.weights, ns.device, ns.precision)
            if restorer is None:
                return EXIT_USAGE
            from .app import Server
            server = Server(ServerConfig(bind="tcp://127.0.0.1:*", weights=ns.weights), restorer)
            endpoint = server.start()
            client = Client(endpoint, timeout=3600.0)
            via = f"a server started here at {endpoint}"
        if ns.image:
            src, mask_file = Path(ns.image), Path(ns.mask) if ns.mask else None
        else:
            src, mask_file = bundled_sample()
        image, mode, _ = read_image(str(src))
        h, w, c = image.shape
        mask = read_mask(str(mask_file), (w, h)) if mask_file else None
        print(f"restoring {src} ({w}x{h}) through {via}", flush=True)
        with client:
            data, meta = client.restore(image.tobytes(), w, h, c, mask=None if mask is None else mask.tobytes(),
                                        progress=progress_printer())
        out = np.frombuffer(data, dtype=np.uint8).reshape(h, w, c)
        write_image(ns.out, out, mode, {})
    except (ValueError, OSError, ClientError) as e:
        _err(str(e))
        return EXIT_FAILED
    finally:
        if server is not None:
            server.stop()
    print(f"wrote {os.path.abspath(ns.out)} ({meta.get('seconds')} s on {meta.get('device')}, "
          f"weights {meta.get('weights')})", flush=True)
    print("next: install the GIMP plug-in with `python -m gimp_plugin install`, start the server with "
          "`python -m server`, then use Filters > Enhance > Restore Old Photo... in GIMP", flush=True)
    return 0


# -- entry point ---------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point: ``serve`` unless the first argument names another command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv and argv[0] in SUBCOMMANDS else "serve"
    rest = argv[1:] if argv and argv[0] in SUBCOMMANDS else argv
    return {"serve": cmd_serve, "info": cmd_info, "restore": cmd_restore, "demo": cmd_demo}[cmd](rest)


__all__ = ["main", "add_config_flags", "config_from_args", "load_restorer", "read_image", "read_mask", "write_image",
           "bundled_sample", "serve_parser", "restore_parser"]
