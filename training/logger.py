"""Progress bar, scalar logs (tensorboard when installed, else CSV) and sample grids."""
from __future__ import annotations

import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from oldphoto_model.atomic import atomic_write_bytes


class ProgressBar:
    """One line on stderr: step, losses, throughput. No dependency on tqdm."""

    def __init__(self, total: int, start: int, enabled: bool = True, prefix: str = "") -> None:
        self.total, self.enabled, self.prefix = total, enabled, prefix
        self.t0, self.s0 = time.perf_counter(), start
        # a terminal gets one redrawn line; a log file a line per tenth of the run
        self.tty = sys.stderr.isatty()
        self.shown_tenth = -1

    def update(self, step: int, losses: dict[str, float], images_per_step: int) -> str:
        dt = max(1e-9, time.perf_counter() - self.t0)
        done = step + 1 - self.s0
        rate = done * images_per_step / dt
        eta = (self.total - step - 1) * dt / max(1, done)
        width = 24
        fill = int(width * (step + 1) / max(1, self.total))
        text = (f"\r{self.prefix} [{'#' * fill}{'.' * (width - fill)}] {step + 1}/{self.total} "
                + " ".join(f"{k}={v:.4g}" for k, v in losses.items())
                + f" | {rate:.1f} img/s eta {eta / 60:.1f} min")
        tenth = 10 * (step + 1) // max(1, self.total)
        if self.enabled and self.tty:
            sys.stderr.write(text)
            sys.stderr.flush()
        elif self.enabled and tenth != self.shown_tenth:
            self.shown_tenth = tenth
            sys.stderr.write(text[1:] + "\n")
            sys.stderr.flush()
        return text

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def _csv_text(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


class ScalarLog:
    """Appends scalars to ``log.csv`` (always) and tensorboard (when importable)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "log.csv"
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
            self.tb = SummaryWriter(str(directory / "tb"))
        except Exception:
            pass
        self.fields: list[str] | None = None
        if self.path.is_file():
            with open(self.path) as f:
                header = f.readline().strip()
            self.fields = header.split(",") if header else None

    def write(self, step: int, scalars: dict[str, float]) -> None:
        row = {"step": step, **scalars}
        if self.fields is None:
            self.fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)
        elif any(k not in self.fields for k in row):
            # a resumed run with a new loss term: widen the header, older rows get blanks
            self.fields += [k for k in row if k not in self.fields]
            with open(self.path, newline="") as f:
                old = [r + [""] * (len(self.fields) - len(r)) for r in list(csv.reader(f))[1:]]
            atomic_write_bytes(self.path, _csv_text([self.fields] + old).encode())
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def tensor_to_u8(t: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> uint8 HxWx3."""
    a = ((t.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte()
    return a.permute(1, 2, 0).numpy()


def save_grid(rows: list[list[np.ndarray]], path: Path, pad: int = 2, labels: list[str] | None = None) -> Path:
    """Rows of equally sized uint8 HxWx3 images -> one PNG; ``labels`` name the columns
    in a header strip above them (wrapped to the column's width)."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            if im.ndim == 2:
                im = np.repeat(im[..., None], 3, -1)
            grid[pad + i * (h + pad):pad + i * (h + pad) + h, pad + j * (w + pad):pad + j * (w + pad) + w] = im
    image = Image.fromarray(grid)
    if labels:
        image = _with_header(image, labels[:ncol], w, pad)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _with_header(grid: Image.Image, labels: list[str], col_w: int, pad: int) -> Image.Image:
    """``grid`` under a white strip holding each column's label, centred and word-wrapped."""
    from PIL import ImageDraw, ImageFont
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(grid)

    def width(text: str) -> float:
        return draw.textlength(text, font=font)

    wrapped = []
    for label in labels:
        lines, line = [], ""
        for word in label.split():
            if line and width(line + " " + word) > col_w:
                lines.append(line)
                line = word
            else:
                line = (line + " " + word).strip()
        wrapped.append(lines + [line])
    line_h = int(sum(font.getbbox("Ag")[1::2]) or 11) + 2
    strip = max(len(ls) for ls in wrapped) * line_h + 2 * pad
    out = Image.new("RGB", (grid.width, grid.height + strip), "white")
    out.paste(grid, (0, strip))
    draw = ImageDraw.Draw(out)
    for j, lines in enumerate(wrapped):
        for k, text in enumerate(lines):
            x = pad + j * (col_w + pad) + max(0.0, (col_w - width(text)) / 2)
            draw.text((x, pad + k * line_h), text, fill="black", font=font)
    return out
