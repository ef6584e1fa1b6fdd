"""Draws the scratch masks of a few real old photos (``../shared/real_old``), once,
as a person would with GIMP's selection tools: the coordinates below were read off
the scans (in the original's pixels). ``evaluate`` loads the PNGs (long side 512,
white = defect) and scales them to the photo. Re-run: ``python bench/real_masks/draw_masks.py``."""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 512

#: name -> (original size, shapes): ("line", width, points...) or ("box", x0, y0, x1, y1)
MASKS = {
    # Migrant Mother: a crease across the tent, top right (its two dark edges), and dust specks
    # (drawn from just below the print's black frame line: a selection reaching into the
    # white margin above would be filled with the margin's white)
    "ddcolor_09": ((1000, 1247), [("line", 6, (849, 22), (803, 84), (754, 152)),
                                  ("line", 6, (888, 22), (842, 84), (780, 172)),
                                  ("box", 879, 19, 887, 26), ("box", 889, 252, 897, 262)]),
    # the archive's "SHORPY" mark burnt into the scan (a rectangle selection)
    "ddcolor_12": ((1000, 696), [("box", 25, 660, 76, 678)]),
    "ddcolor_07": ((1000, 553), [("box", 931, 512, 971, 528)]),
}


def draw(size: tuple[int, int], shapes: list) -> Image.Image:
    s = SIZE / max(size)
    im = Image.new("L", (round(size[0] * s), round(size[1] * s)), 0)
    d = ImageDraw.Draw(im)
    for shape in shapes:
        if shape[0] == "line":
            pts = [(x * s, y * s) for x, y in shape[2:]]
            d.line(pts, fill=255, width=max(1, round(shape[1] * s)) + 1)
        else:
            x0, y0, x1, y1 = shape[1:]
            d.rectangle((x0 * s - 1, y0 * s - 1, x1 * s + 1, y1 * s + 1), fill=255)
    return im


def main() -> int:
    for name, (size, shapes) in MASKS.items():
        draw(size, shapes).convert("1").save(HERE / f"{name}.png", optimize=True)
        print(HERE / f"{name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
