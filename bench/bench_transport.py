"""Transport overhead and end-to-end latency of the model server.

    python bench/bench_transport.py [--weights FILE] [--device auto|cpu|cuda] [--sizes 256,512]

1. Transport: a 6000 x 4000 RGBA layer (96 MB) sent to a server in another process
   and back with the ``echo`` op (validated like a restore; the model step is
   skipped), over tcp:// loopback and ipc://, against a plain in-memory copy.
2. End to end: restore latency through the server (client -> server -> model ->
   client) against the same restore in this process, same device and precision.

Without ``--weights`` it uses the shipped default weights; ``--weights random``
uses the paper's full-width architecture with random weights written to a temporary
file (time only: its output is not a restoration).
Prints Markdown tables.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from server.client import Client  # noqa: E402


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def in_thread(fn, *args):
    """Run ``fn`` in a fresh thread, as the server's worker runs the model."""
    t = threading.Thread(target=fn, args=args)
    t.start()
    t.join()


def start_server(bind: str, weights: str, device: str, precision: str) -> subprocess.Popen:
    """``python -m server`` in its own process, as a user would run it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    log = tempfile.TemporaryFile(mode="w+")     # its per-job log lines stay out of the tables
    proc = subprocess.Popen([sys.executable, "-m", "server", "--bind", bind, "--weights", weights,
                             "--device", device, "--precision", precision, "--max-pixels", "40000000"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()
    if "listening" not in line:
        proc.kill()
        log.seek(0)
        raise SystemExit(f"server did not start: {line!r} {log.read()[-2000:]}")
    return proc


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    proc.wait(30)


def bench_transport(weights: str, repeat: int, width: int, height: int) -> list[tuple]:
    """Rows of (path, bytes moved, median seconds)."""
    rng = np.random.default_rng(0)
    layer = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    mask = rng.integers(0, 256, (height, width), dtype=np.uint8)
    nbytes = layer.nbytes
    dst = np.empty_like(layer)
    rows = [("plain memory copy (np.copyto into a reused buffer)", nbytes,
             median_time(lambda: np.copyto(dst, layer), repeat)),
            ("plain memory copy into a new bytes object (tobytes)", nbytes,
             median_time(lambda: layer.tobytes(), repeat))]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, bind in (("tcp loopback", "tcp://127.0.0.1:55871"), ("ipc", f"ipc://{tmp}/bench.sock")):
            proc = start_server(bind, weights, "cpu", "fp32")
            try:
                with Client(bind, timeout=120) as cl:
                    cl.ping()
                    assert cl.echo(layer, width, height, 4) == layer.tobytes(), "echo returned other bytes"
                    rows.append((f"echo round trip via server, {kind}", 2 * nbytes,
                                 median_time(lambda: cl.echo(layer, width, height, 4), repeat)))
                    rows.append((f"echo round trip via server + mask, {kind}", 2 * nbytes + mask.nbytes,
                                 median_time(lambda: cl.echo(layer, width, height, 4, mask=mask), repeat)))
            finally:
                stop_server(proc)
    return rows


def bench_end_to_end(weights: str, device: str, precision: str, sizes: list[int], repeat: int) -> list[tuple]:
    from server.cli import load_restorer
    restorer = load_restorer(weights, device, precision)
    rows = []
    proc = start_server("tcp://127.0.0.1:55872", weights, device, precision)
    try:
        with Client("tcp://127.0.0.1:55872", timeout=3600) as cl:
            for s in sizes:
                rng = np.random.default_rng(s)
                img = rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
                mask = np.zeros((s, s), np.uint8)
                mask[s // 3: s // 3 + 4, :] = 255            # a horizontal scratch
                mask[:, s // 2: s // 2 + 3] = 255            # and a vertical one
                for _ in range(2):                            # warm-up (allocator, oneDNN kernels)
                    restorer.restore(img, mask)
                    cl.restore(img.tobytes(), s, s, 3, mask.tobytes())
                t_main, t_thread, t_srv = [], [], []
                for _ in range(repeat):                       # interleaved: all see the same machine load
                    t_main.append(median_time(lambda: restorer.restore(img, mask), 1))
                    t_thread.append(median_time(lambda: in_thread(restorer.restore, img, mask), 1))
                    t_srv.append(median_time(lambda: cl.restore(img.tobytes(), s, s, 3, mask.tobytes()), 1))
                rows.append((f"{s}x{s} RGB + scratch mask", statistics.median(t_main),
                             statistics.median(t_thread), statistics.median(t_srv)))
    finally:
        stop_server(proc)
    return rows, f"{restorer.device} {str(restorer.dtype).replace('torch.', '')}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", help="weight file (default: the shipped default weights; 'random': the paper's "
                                     "full-width architecture with random weights, timing only)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    p.add_argument("--sizes", default="256,512", help="square image sides for the end-to-end part")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--width", type=int, default=6000)
    p.add_argument("--height", type=int, default=4000)
    p.add_argument("--skip-end-to-end", action="store_true")
    ns = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = ns.weights
        if weights is None:
            from oldphoto_model import default_weights_path
            weights = label = str(default_weights_path())
        elif weights == "random":
            import torch

            from oldphoto_model import ModelConfig, RestorationModel, save_model
            torch.manual_seed(0)
            model = RestorationModel(ModelConfig())
            torch.nn.init.normal_(model.mapping.global_branch.nu.weight, std=0.02)
            weights = str(save_model(model, Path(tmp) / "random-default-architecture.pt",
                                     metadata={"purpose": "benchmark timing only, random weights"}))
            label = "default architecture, random weights (timing only)"
        else:
            label = weights
        print(f"## Transport: {ns.width}x{ns.height} RGBA ({ns.width * ns.height * 4 / 1e6:.0f} MB), "
              f"median of {ns.repeat}\n")
        print("| path | bytes moved | time | GB/s |\n|---|---:|---:|---:|")
        for name, moved, t in bench_transport(weights, ns.repeat, ns.width, ns.height):
            print(f"| {name} | {moved / 1e6:.0f} MB | {t * 1000:.1f} ms | {moved / t / 1e9:.2f} |")
        if ns.skip_end_to_end:
            return
        sizes = [int(s) for s in ns.sizes.split(",") if s]
        rows, where = bench_end_to_end(weights, ns.device, ns.precision, sizes, max(1, ns.repeat // 2))
        print(f"\n## End to end: restore through the server vs in-process ({where}; {label}), "
              f"median of {max(1, ns.repeat // 2)}\n")
        print("| image | in-process, main thread | in-process, worker thread | through server | "
              "server minus worker thread |\n|---|---:|---:|---:|---:|")
        for name, t_main, t_thread, t_srv in rows:
            print(f"| {name} | {t_main:.3f} s | {t_thread:.3f} s | {t_srv:.3f} s | "
                  f"{(t_srv - t_thread) * 1000:+.0f} ms |")


if __name__ == "__main__":
    main()
