"""``python -m server`` (``oldphoto-server``): serve, or restore files, or run the demo.

    python -m server [--bind ADDR] [--weights FILE] [--device auto|cpu|cuda] ...
    python -m server info [--address ADDR]
    python -m server restore IN OUT [--mask MASK] [--address ADDR | --in-process --weights FILE]
    python -m server restore IN... OUTDIR [--mask MASKDIR] [--recursive] [--ext png]   (batch)
    python -m server restore IN OUT --detect                 (scratches found by the detector)
    python -m server detect IN MASK_OUT [--probability PROB_OUT] [--threshold T] [--in-process]
    python -m server demo [IMAGE] [--out OUT] [--weights FILE]

The serve flags are generated from ServerConfig's fields (server.config).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import batch
from .batch import Job, read_image, read_mask, write_image
from .client import DEFAULT_ADDRESS, Client, ClientError, ServerUnavailable
from .config import ServerConfig, config_fields
from .wire import DTYPE_U8, DTYPE_U16, AddressError, check_address

SUBCOMMANDS = ("serve", "info", "restore", "detect", "demo")
EXIT_USAGE, EXIT_NO_SERVER, EXIT_FAILED, EXIT_INTERRUPTED = 2, 3, 1, 130


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


def _load_detector_or_explain(path: Optional[str], device: Any = "cpu"):
    """The scratch detector (``path`` or the shipped one) for ``--in-process`` on ``device``
    (``auto``, ``cpu``, ``cuda`` or a torch device), or None after saying why."""
    from oldphoto_model import select_device

    from .app import load_detector_or_reason
    try:
        device = select_device(device)
    except RuntimeError as e:    # --device cuda without CUDA
        _err(str(e))
        return None
    detector, why = load_detector_or_reason(path, device)
    if detector is None:
        _err(f"cannot find scratches: {why}" + ("" if path else " (--detector FILE)"))
    return detector


def progress_printer(stream=None) -> Callable[[float, str], None]:
    """A progress callback that draws a bar on a terminal, one line per stage elsewhere."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    last: dict[str, Optional[str]] = {"stage": None}

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


def server_address(text: str) -> str:
    """argparse type of --address: a mistyped address is a usage error at once
    (server.wire.check_address says what was meant), never a wait."""
    try:
        return check_address(text)
    except AddressError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_address_flag(parser: argparse.ArgumentParser, help: str = "") -> None:
    """--address: where the server listens, checked as it is parsed."""
    parser.add_argument("--address", default=DEFAULT_ADDRESS, type=server_address,
                        help=help or f"server address (default {DEFAULT_ADDRESS})")


def add_restore_option_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per restore option of the protocol (server.protocol.OPTIONS: type,
    default and help are the model's RestoreOptions, written once there)."""
    from .protocol import OPTIONS
    for name, (typ, default, text) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default,
                                help=f"{text} (default: {'on' if default else 'off'})")
        else:
            parser.add_argument(flag, dest=name, type=typ, default=default, metavar=typ.__name__.upper(),
                                help=f"{text} (default: {default})")


def restore_options(ns: argparse.Namespace) -> dict:
    """The protocol's restore options as parsed by add_restore_option_flags."""
    from .protocol import OPTIONS
    return {name: getattr(ns, name) for name in OPTIONS}


def add_server_key_flag(parser: argparse.ArgumentParser) -> None:
    """--server-key: the CURVE public key of a server on another machine."""
    parser.add_argument("--server-key", default=os.environ.get("OLDPHOTO_SERVER_KEY"),
                        help="public key of a server on another machine (the 40 characters it printed "
                             "at start-up, or its server.key file; default $OLDPHOTO_SERVER_KEY); "
                             "not needed on this computer")


# -- serve ----------------------------------------------------------------------------
def serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oldphoto-server",
        description="Serve the old-photo restoration model to the GIMP plug-ins over ZeroMQ "
                    "(protocol: docs/protocol.md). Other commands: info, restore, detect, demo "
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
    restorer = _load_or_explain(cfg.weights, cfg.device, cfg.precision)
    if restorer is None:
        return EXIT_USAGE
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    from .app import Server, load_detector_or_reason, network_identity, precision_name, weights_identity
    detector, why = load_detector_or_reason(cfg.detector, restorer.device)
    if detector is None and cfg.detector and cfg.detector.lower() != "none":   # a file named: say so at once
        _err(f"cannot load the scratch detector: {why}")
        return EXIT_USAGE
    server = Server(cfg, restorer, detector, why)
    try:
        endpoint = server.bind()
    except OSError as e:
        _err(f"{e} (is another server already running there? `python -m server info`)")
        return EXIT_FAILED
    wid = weights_identity(restorer)
    print(f"oldphoto-server listening on {endpoint} | device {restorer.device} "
          f"({precision_name(restorer)}) | weights {wid.get('short_id', '?')} ({wid.get('path', '?')}) "
          f"| protocol {server.info()['protocol']} | Ctrl-C stops", flush=True)
    print(f"scratch detection: {network_identity(detector).get('short_id')}" if detector is not None
          else f"scratch detection unavailable ({why}); restoring works as before", flush=True)
    print(f"automatic tone: {network_identity(restorer.tone).get('short_id')}" if restorer.tone is not None
          else "automatic tone unavailable (no tone estimator installed): auto_tone does nothing", flush=True)
    print(f"learned fill: {network_identity(restorer.fill).get('short_id')}" if restorer.fill is not None
          else "learned fill unavailable (none installed): defects get the harmonic fill", flush=True)
    if server.public_key:
        print(f"CURVE encryption on; clients need the server's public key {server.public_key} "
              f"(--server-key, or the plug-in's 'Server public key' setting)", flush=True)
    signals = {"count": 0}

    def on_signal(signum: int, frame: Any) -> None:
        # no exception into the I/O loop: it stops at its next turn and tells every
        # client; a second Ctrl-C only stops waiting for a long model step
        signals["count"] += 1
        server.request_stop(hurry=signals["count"] > 1)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)    # service managers, kill: as clean as Ctrl-C
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    print("oldphoto-server stopped", flush=True)
    if server.worker_stuck:
        # a model step is still running in C code: interpreter shutdown under it can
        # abort the process, so leave now; the clients were told
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


# -- info ------------------------------------------------------------------------------
def cmd_info(argv: Sequence[str]) -> int:
    """Print a running server's ``info`` as JSON. Returns the exit status."""
    p = argparse.ArgumentParser(prog="oldphoto-server info", description="Ask a running server what it serves.")
    add_address_flag(p)
    add_server_key_flag(p)
    ns = p.parse_args(argv)
    try:
        with Client(ns.address, timeout=10.0, server_key=ns.server_key) as c:
            print(json.dumps(c.info(), indent=2, sort_keys=True, default=str))
    except ServerUnavailable as e:
        _err(e.message)
        return EXIT_NO_SERVER
    except ClientError as e:
        _err(str(e))
        return EXIT_FAILED
    return 0


# -- restore ----------------------------------------------------------------------------
def restore_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oldphoto-server restore",
        description="Restore photos through a running server (or in this process with --in-process). "
                    "One file: IN OUT. Many: folders, files or quoted patterns ('album/*.jpg') and an OUT "
                    "folder; photos already restored there are skipped, so after Ctrl-C the same command "
                    "continues. Reads PNG, JPEG, TIFF and what else Pillow handles and keeps the image mode "
                    "(16-bit photos keep 16 bits in PNG and TIFF results; 16-bit colour needs OpenCV; else 8 bits, "
                    "with a note). Results are written "
                    "atomically (never half-written).")
    p.add_argument("inputs", metavar="IN", nargs="+", help="photo, folder of photos, or pattern")
    p.add_argument("output", metavar="OUT", help="result file, or folder for several photos")
    p.add_argument("--mask", help="grayscale image of IN's size, white = defect (scratches to inpaint); "
                                  "with several photos a folder of masks matched by name (PHOTO.png or "
                                  "PHOTO_mask.png, any image extension); photos without one get none")
    p.add_argument("--detect", action="store_true",
                   help="photos without a mask: find their scratches with the scratch detector and inpaint "
                        "those (`python -m server detect` shows what it finds)")
    p.add_argument("--recursive", action="store_true", help="folders: include their subfolders (OUT mirrors them)")
    p.add_argument("--ext", help="several photos: write this format (e.g. png; default: each photo's own)")
    add_address_flag(p)
    add_server_key_flag(p)
    p.add_argument("--in-process", action="store_true", help="run the model here instead of in a server")
    add_config_flags(p, only=("weights", "detector", "device", "precision"))
    add_restore_option_flags(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing results (also OUT = IN); without it an existing OUT is refused "
                        "and, with several photos, skipped as already done")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for the server per photo "
                                                                   "(default 3600)")
    return p


def cmd_restore(argv: Sequence[str]) -> int:
    """Restore one photo or a batch through a server or in-process. Returns the exit status."""
    ns = restore_parser().parse_args(argv)
    try:
        return _restore(ns)
    except ServerUnavailable as e:
        _err(e.message)
        return EXIT_NO_SERVER
    except (ValueError, OSError, ClientError) as e:
        _err(str(e))
        return EXIT_FAILED


def _plan(ns: argparse.Namespace) -> "tuple[list[Job], bool]":
    """(jobs, batch?) with every path problem raised before any work."""
    if not batch.is_batch(ns.inputs, ns.output):
        src, dst = Path(ns.inputs[0]), Path(ns.output)
        if not src.is_file():
            raise batch.PathProblem(f"{src}: no such file")
        if ns.mask and not Path(ns.mask).is_file():
            raise batch.PathProblem(f"{ns.mask}: no such mask file")
        if ns.mask and ns.detect:
            raise batch.PathProblem("--mask and --detect: give the mask, or let the detector find the "
                                    "scratches, not both")
        batch.check_output(dst, ns.overwrite, batch.peek_mode(str(src), batch.holds_16bit(dst)), source=src)
        return [Job(src, dst, Path(ns.mask) if ns.mask else None)], False
    jobs = batch.plan(ns.inputs, ns.output, ns.mask, ns.ext, ns.recursive)
    Path(ns.output).mkdir(exist_ok=True)
    return jobs, True


def _restorer_fn(ns: argparse.Namespace, stack: contextlib.ExitStack) -> "Optional[batch.RestoreFn]":
    """The restore step shared by every photo: one model in this process, or one client."""
    options = restore_options(ns)
    if ns.in_process:
        restorer = _load_or_explain(ns.weights, ns.device, ns.precision)
        if restorer is None:
            return None
        detector = _load_detector_or_explain(ns.detector, restorer.device) if ns.detect else None
        if ns.detect and detector is None:
            return None
        from oldphoto_model import Cancelled, RestoreOptions
        from oldphoto_model.detect import restore_detected

        from .worker import restore_image

        def local(image, mask, progress, should_cancel):
            def report(fraction: float, stage: str) -> None:
                if should_cancel():
                    raise Cancelled("interrupted")
                progress(fraction, stage)
            if detector is not None and mask is None:
                out, info = restore_detected(restorer, detector, image, RestoreOptions(**options), report)
                return out, f"in-process on {restorer.device}, {_flagged(info['flagged'])}"
            out, _ = restore_image(restorer, image, mask, options, report)
            return out, f"in-process on {restorer.device}"
        return local
    client = stack.enter_context(Client(ns.address, timeout=ns.timeout, server_key=ns.server_key))
    client.ping()     # no server: said once, before the first photo
    if ns.detect:
        _require_detection(client, ns.address)

    def remote(image, mask, progress, should_cancel):
        out, meta = remote_restore(client, image, mask, options=options, progress=progress,
                                   should_cancel=should_cancel, detect=ns.detect and mask is None)
        where = f"via {ns.address} on {meta.get('device')}"
        if meta.get("mask_source") == "detected":
            where += f", {_flagged(meta.get('flagged', 0.0))}"
        return out, where
    return remote


def remote_restore(client: Client, image: Any, mask: Any, **kw: Any) -> "tuple[Any, dict]":
    """``client.restore`` of an H x W x C uint8 or uint16 array (16 bits go as the wire's
    little-endian u16) -> (result array of the same shape and dtype, reply meta)."""
    import numpy as np
    h, w, c = image.shape
    wide = image.dtype == np.uint16
    data, meta = client.restore(image.astype("<u2").tobytes() if wide else image.tobytes(), w, h, c,
                                mask=None if mask is None else mask.tobytes(),
                                dtype=DTYPE_U16 if wide else DTYPE_U8, **kw)
    out = np.frombuffer(data, dtype="<u2" if wide else np.uint8).reshape(h, w, c)
    return out.astype(image.dtype, copy=False), meta


def _flagged(share: float) -> str:
    return f"detected scratches on {100 * share:.2f} % of the pixels"


def _require_detection(client: Client, address: str) -> None:
    """ValueError (said before any photo) when the server cannot find scratches."""
    detection = client.info().get("detection")
    if not isinstance(detection, dict) or not detection.get("available"):
        why = detection.get("reason") if isinstance(detection, dict) else "it predates scratch detection"
        raise ValueError(f"the server at {address} cannot find scratches: {why}")


def _restore(ns: argparse.Namespace) -> int:
    jobs, many = _plan(ns)

    def done(job: Job, where: str, seconds: float) -> None:
        print(f"restored {job.src} -> {job.dst} ({where}, {seconds:.2f} s)", flush=True)

    with contextlib.ExitStack() as stack:
        restore = _restorer_fn(ns, stack)
        if restore is None:
            return EXIT_USAGE
        result = batch.run_jobs(jobs, restore, overwrite=ns.overwrite, skip_existing=many and not ns.overwrite,
                                fatal=(ServerUnavailable,), on_done=done, keep_16bit=True)
    if many:
        print(result.summary(len(jobs)), flush=True)
    elif result.failed:
        _err(result.failed[0][1])
    elif result.stopped_by:
        _err(result.stopped_by)
    if result.stopped_by:
        return EXIT_NO_SERVER
    if result.interrupted:
        if not many:
            _err("interrupted; nothing was written")
        return EXIT_INTERRUPTED
    return EXIT_FAILED if result.failed else 0


# -- detect ------------------------------------------------------------------------------------
def detect_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oldphoto-server detect",
        description="Find the scratches, cracks, dust and spots of a photo with the scratch detector and "
                    "write them as a mask (white = scratch, black = intact), e.g. to check or edit before "
                    "`restore --mask`. Through a running server, or in this process with --in-process. "
                    "Written atomically; an existing file is replaced only with --overwrite.")
    p.add_argument("input", metavar="IN", help="photo")
    p.add_argument("output", metavar="MASK_OUT", help="mask to write (PNG or another lossless format)")
    p.add_argument("--probability", metavar="PROB_OUT",
                   help="also write the detector's probability map (gray: 0 = surely intact, 255 = surely a scratch)")
    p.add_argument("--threshold", type=float, default=None,
                   help="probability (0..1) from which a pixel counts as a scratch (default: the detector's own, "
                        "chosen for few false alarms; lower finds more scratches and more false ones)")
    add_address_flag(p)
    add_server_key_flag(p)
    p.add_argument("--in-process", action="store_true", help="run the detector here instead of in a server")
    add_config_flags(p, only=("detector", "device"))
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the server (default 600)")
    return p


def cmd_detect(argv: Sequence[str]) -> int:
    """Write the detected scratch mask of one photo. Returns the exit status."""
    import numpy as np
    ns = detect_parser().parse_args(argv)
    if ns.threshold is not None and not 0.0 <= ns.threshold <= 1.0:
        _err(f"--threshold must be from 0 to 1, got {ns.threshold}")
        return EXIT_USAGE
    try:
        src, outs = Path(ns.input), [Path(ns.output)] + ([Path(ns.probability)] if ns.probability else [])
        if not src.is_file():
            raise batch.PathProblem(f"{src}: no such file")
        if len(outs) == 2 and outs[0].absolute() == outs[1].absolute():
            raise batch.PathProblem(f"{outs[0]}: MASK_OUT and --probability name the same file")
        for out in outs:      # every path problem before any work
            batch.check_output(out, ns.overwrite, "L", source=src)
        image, _mode, _ = read_image(str(src))
        h, w, c = image.shape
        if ns.in_process:
            detector = _load_detector_or_explain(ns.detector, ns.device)
            if detector is None:
                return EXIT_USAGE
            from oldphoto_model.detect import model_threshold

            from .worker import detect_image
            threshold = model_threshold(detector) if ns.threshold is None else ns.threshold
            prob, mask, _ = detect_image(detector, image, threshold)
            prob_u8: Optional[np.ndarray] = np.rint(prob * 255.0).astype(np.uint8)
            where = f"in-process, threshold {threshold:g}"
        else:
            with Client(ns.address, timeout=ns.timeout, server_key=ns.server_key) as client:
                client.ping()
                _require_detection(client, ns.address)
                m, p, meta = client.detect(image.tobytes(), w, h, c, threshold=ns.threshold,
                                           probability=bool(ns.probability), progress=progress_printer())
            mask = np.frombuffer(m, np.uint8).reshape(h, w)
            prob_u8 = None if p is None else np.frombuffer(p, np.uint8).reshape(h, w)
            where = f"via {ns.address} on {meta.get('device')}, threshold {meta.get('threshold')}"
        write_image(str(outs[0]), mask[:, :, None], "L", {}, overwrite=ns.overwrite)
        if ns.probability and prob_u8 is not None:
            write_image(str(outs[1]), prob_u8[:, :, None], "L", {}, overwrite=ns.overwrite)
    except ServerUnavailable as e:
        _err(e.message)
        return EXIT_NO_SERVER
    except (ValueError, OSError, ClientError) as e:
        _err(str(e))
        return EXIT_FAILED
    share = float(np.count_nonzero(mask)) / mask.size
    print(f"wrote {outs[0]} ({w}x{h}, {_flagged(share)}; {where})"
          + (f" and {outs[1]}" if ns.probability else ""), flush=True)
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


def demo_output(src: Path, home: Optional[Path] = None) -> Path:
    """Where the demo writes by default: ``~/Pictures/oldphoto-demo/`` when there is a
    Pictures folder, else ``oldphoto-demo/`` in the temporary folder; a new name each run
    (``NAME-restored.png``, ``NAME-restored-2.png``, ...) so nothing is ever replaced."""
    pictures = (home or Path.home()) / "Pictures"
    folder = (pictures if pictures.is_dir() else Path(tempfile.gettempdir())) / "oldphoto-demo"
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        cand = folder / f"{src.stem}-restored{'' if n == 1 else f'-{n}'}.png"
        if not os.path.lexists(cand):
            return cand
        n += 1


def cmd_demo(argv: Sequence[str]) -> int:
    """Restore a sample end to end and write the result. Returns the exit status."""
    p = argparse.ArgumentParser(
        prog="oldphoto-server demo",
        description="Restore a sample photo end to end: through a running server if one answers, "
                    "else through a server started in this process on a free port.")
    p.add_argument("image", nargs="?", help="photo to restore (default: the bundled aged sample and its mask)")
    p.add_argument("--mask", help="defect mask for IMAGE (white = defect)")
    p.add_argument("--out", help="result file (default: a new file in ~/Pictures/oldphoto-demo/, or in "
                                 "the temporary folder's oldphoto-demo/ without a Pictures folder)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_address_flag(p, "use the server running here if it answers")
    add_server_key_flag(p)
    add_config_flags(p, only=("weights", "device", "precision"))
    ns = p.parse_args(argv)

    server = None
    meta: dict = {}
    try:
        if ns.image:
            src, mask_file = Path(ns.image), Path(ns.mask) if ns.mask else None
            if not src.is_file():
                raise batch.PathProblem(f"{src}: no such file")
        else:
            src, mask_file = bundled_sample()
        if ns.out:   # path problems first: no server started, no model loaded for nothing
            out_path = Path(ns.out)
            batch.check_output(out_path, ns.overwrite, source=src)
        # find or start a server before writing anything: no weights, no output
        client = Client(ns.address, timeout=3600.0, server_key=ns.server_key)
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
        if not ns.out:
            out_path = demo_output(src)
        image, mode, _ = read_image(str(src), batch.holds_16bit(out_path))
        h, w, c = image.shape
        mask = read_mask(str(mask_file), (w, h)) if mask_file else None
        batch.check_output(out_path, ns.overwrite, mode, source=src)
        print(f"restoring {src} ({w}x{h}) through {via}", flush=True)
        with client:
            out, meta = remote_restore(client, image, mask, progress=progress_printer())
        write_image(str(out_path), out, mode, {}, overwrite=ns.overwrite)
    except (ValueError, OSError, ClientError) as e:
        _err(str(e))
        return EXIT_FAILED
    finally:
        if server is not None:
            server.stop()
    print(f"wrote {os.path.abspath(out_path)} ({meta.get('seconds')} s on {meta.get('device')}, "
          f"weights {meta.get('weights')})", flush=True)
    print("next: install the GIMP plug-in with: python -m gimp_plugin install; start the server with: "
          "python -m server; then use Filters > Enhance > Restore Old Photo... in GIMP", flush=True)
    return 0


# -- entry point ---------------------------------------------------------------------------
def main(argv: Optional[Sequence[str]] = None) -> int:
    """Console entry point: ``serve`` unless the first argument names another command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv and argv[0] in SUBCOMMANDS else "serve"
    rest = argv[1:] if argv and argv[0] in SUBCOMMANDS else argv
    return {"serve": cmd_serve, "info": cmd_info, "restore": cmd_restore, "detect": cmd_detect,
            "demo": cmd_demo}[cmd](rest)


__all__ = ["main", "add_config_flags", "config_from_args", "load_restorer", "read_image", "read_mask", "write_image",
           "bundled_sample", "serve_parser", "restore_parser", "detect_parser"]
