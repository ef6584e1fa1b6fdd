"""Synthetic degradation: clean photo -> (degraded, clean, scratch mask), deterministic per seed.

Two families (after the paper and its original implementation, plus scanned textures):

* unstructured, whole-image: blur, noise (Gaussian, speckle, salt-and-pepper),
  down-up resampling, JPEG, colour fading / yellowing / sepia, uneven exposure,
  film grain, paper texture, halftone. Float images HxWx3 in [0, 1].
* structured defects: texture stamps (scratch, dust, crack, fibre brushes),
  procedural curves, dust, cracks, paper holes and lettering laid over the photo
  (watermarks, dates, captions: semi-transparent text with an outline or shadow). They work on uint8 images and
  return the exact mask of the pixels they changed; they run last so no later
  operation moves a defect away from its mask.

Every function takes a ``numpy.random.Generator``; ``degrade(clean, seed, ...)``
is a pure function of its arguments.
"""
from __future__ import annotations

import functools
import glob
import io
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..config import DegradeConfig

FloatImage = np.ndarray   # HxWx3 float32 in [0, 1]
U8Image = np.ndarray      # HxWx3 uint8

#: faint alpha below this is dropped: such pixels are left untouched, not half-marked
ALPHA_MIN = 0.12


@dataclass
class Textures:
    """Real texture material; empty lists fall back to procedural stand-ins."""

    brushes: list[np.ndarray] = field(default_factory=list)   # float HxW, 1 = paint
    papers: list[np.ndarray] = field(default_factory=list)    # float HxW gray in [0, 1]


# --------------------------------------------------------------------------- helpers

def to_float(img: U8Image) -> FloatImage:
    return img.astype(np.float32) / 255.0


def to_u8(img: FloatImage) -> U8Image:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def luma(img: FloatImage) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _gauss_kernel(k: int, sigma: float) -> np.ndarray:
    x = np.arange(k, dtype=np.float32) - (k - 1) / 2
    g = np.exp(-x * x / (2 * sigma * sigma))
    return g / g.sum()


def _sep_conv(img: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """Separable convolution with reflect padding (HxW or HxWxC)."""
    r = len(kern) // 2
    pad = [(r, r), (r, r)] + [(0, 0)] * (img.ndim - 2)
    p = np.pad(img, pad, mode="reflect")
    h, w = img.shape[:2]
    tmp = sum(kern[i] * p[i:i + h] for i in range(len(kern)))
    return sum(kern[i] * tmp[:, i:i + w] for i in range(len(kern))).astype(np.float32)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency random field in [0, 1] (bicubic upsampled random grid)."""
    g = rng.random((cells, cells)).astype(np.float32)
    im = Image.fromarray(g, mode="F").resize((w, h), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(im, dtype=np.float32), 0, 1)


def _pil_resample(rng: np.random.Generator) -> Image.Resampling:
    return [Image.Resampling.NEAREST, Image.Resampling.BILINEAR, Image.Resampling.BICUBIC,
            Image.Resampling.LANCZOS][int(rng.integers(4))]


# --------------------------------------------------------------------------- unstructured

def gaussian_blur(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    k = int(rng.choice(cfg.blur_kernels))
    sigma = float(rng.uniform(cfg.blur_sigma[0], cfg.blur_sigma[1]))
    return _sep_conv(img, _gauss_kernel(k, sigma))


def noise(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """Gaussian, speckle (multiplicative) or salt-and-pepper noise."""
    kind = int(rng.integers(3))
    if kind == 0:
        sigma = rng.uniform(cfg.noise_sigma[0], cfg.noise_sigma[1]) / 255.0
        out = img + rng.normal(0, sigma, img.shape).astype(np.float32)
    elif kind == 1:
        sigma = rng.uniform(cfg.noise_sigma[0], cfg.noise_sigma[1]) / 255.0
        out = img * (1 + rng.normal(0, sigma, img.shape).astype(np.float32))
    else:
        amount = rng.uniform(0, cfg.salt_pepper_max)
        u = rng.random(img.shape[:2])
        out = img.copy()
        out[u < amount / 2] = 0.0
        out[(u >= amount / 2) & (u < amount)] = 1.0
    return np.clip(out, 0, 1).astype(np.float32)


def resample(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """Down-scale by a random factor, then back up (loss of detail, resampling artefacts)."""
    h, w = img.shape[:2]
    s = rng.uniform(cfg.resample_scale[0], cfg.resample_scale[1])
    small = (max(1, round(w * s)), max(1, round(h * s)))
    im = Image.fromarray(to_u8(img)).resize(small, _pil_resample(rng)).resize((w, h), _pil_resample(rng))
    return to_float(np.asarray(im))


def jpeg(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    buf = io.BytesIO()
    Image.fromarray(to_u8(img)).save(buf, format="JPEG", quality=q)
    return to_float(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))


def fade(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """Colour fading, yellowing or sepia toning, with lifted blacks and lower contrast."""
    kind = int(rng.integers(3))
    out = img
    if kind == 0:      # faded: towards the mean colour, desaturated
        m = out.mean(axis=(0, 1), keepdims=True)
        out = m + (out - m) * rng.uniform(0.45, 0.85)
        y = luma(out)[..., None]
        out = y + (out - y) * rng.uniform(0.3, 0.9)
    elif kind == 1:    # yellowed
        tint = np.array([1.0, rng.uniform(0.88, 0.97), rng.uniform(0.62, 0.85)], dtype=np.float32)
        out = out * tint
    else:              # sepia
        y = luma(out)[..., None]
        sep = np.concatenate([y * 1.07, y * 0.74, y * 0.43], axis=-1) + np.array([0.08, 0.08, 0.06], np.float32)
        out = out + (sep - out) * rng.uniform(0.5, 1.0)
    lift = rng.uniform(0.0, 0.18)
    out = lift + out * (1 - lift - rng.uniform(0, 0.1))
    return np.clip(out, 0, 1).astype(np.float32)


def uneven_exposure(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """A smooth gain field: vignetting, light leaks, uneven development."""
    h, w = img.shape[:2]
    gain = 0.65 + 0.7 * _smooth_field(rng, h, w, int(rng.integers(2, 5)))
    if rng.random() < 0.5:     # vignette
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2)) / math.sqrt(2)
        gain = gain * (1 - rng.uniform(0.2, 0.6) * r ** 2)
    return np.clip(img * gain[..., None], 0, 1).astype(np.float32)


def film_grain(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """Monochrome, clumped, strongest in the mid-tones (no package ships real grain)."""
    h, w = img.shape[:2]
    clump = int(rng.integers(1, 3))
    g = rng.normal(0, 1, ((h + clump - 1) // clump, (w + clump - 1) // clump)).astype(np.float32)
    g = np.repeat(np.repeat(g, clump, 0), clump, 1)[:h, :w]
    g = _sep_conv(g, _gauss_kernel(3, 0.6))
    y = luma(img)
    amp = rng.uniform(0.03, 0.1) * (0.3 + 2.8 * y * (1 - y))
    return np.clip(img + (g * amp)[..., None], 0, 1).astype(np.float32)


def paper_texture(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig,
                  textures: Textures | None = None) -> FloatImage:
    """Multiply by a paper scan (a random crop) or a procedural fibre field."""
    h, w = img.shape[:2]
    if textures and textures.papers:
        tex = textures.papers[int(rng.integers(len(textures.papers)))]
        reps = (math.ceil(h / tex.shape[0]), math.ceil(w / tex.shape[1]))
        tex = np.tile(tex, reps) if reps != (1, 1) else tex
        y0 = int(rng.integers(tex.shape[0] - h + 1))
        x0 = int(rng.integers(tex.shape[1] - w + 1))
        t: np.ndarray = tex[y0:y0 + h, x0:x0 + w].astype(np.float32)
    else:
        fields = [_smooth_field(rng, h, w, c) * wgt for c, wgt in ((4, 0.5), (16, 0.3), (max(2, w // 3), 0.2))]
        t = fields[0] + fields[1] + fields[2]
    t = (t - t.mean()) / (t.std() + 1e-6)
    strength = rng.uniform(0.03, 0.1)
    return np.clip(img * (1 + strength * t)[..., None], 0, 1).astype(np.float32)


def halftone(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig) -> FloatImage:
    """A printed-dot screen (photos reproduced in print), partly blended in."""
    h, w = img.shape[:2]
    period = rng.uniform(2.5, 5.0)
    ang = math.radians(rng.choice([15.0, 45.0, 75.0]))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx * math.cos(ang) + yy * math.sin(ang)) * 2 * math.pi / period
    v = (-xx * math.sin(ang) + yy * math.cos(ang)) * 2 * math.pi / period
    screen = (np.cos(u) + np.cos(v)) / 4 + 0.5
    dots = (img > screen[..., None]).astype(np.float32)
    dots = _sep_conv(dots, _gauss_kernel(3, 0.7))
    return (img + (dots - img) * rng.uniform(0.2, 0.5)).astype(np.float32)


BASIC_OPS: dict[str, Callable] = {"blur": gaussian_blur, "noise": noise, "resample": resample, "jpeg": jpeg}


# --------------------------------------------------------------------------- structured defects

def blend_defect(img: U8Image, alpha: np.ndarray, color: np.ndarray) -> tuple[U8Image, np.ndarray]:
    """Paint ``color`` with coverage ``alpha``; returns the image and the exact mask of the
    pixels whose uint8 value changed. Faint coverage is dropped, not painted."""
    a = np.where(alpha >= ALPHA_MIN, np.clip(alpha, 0, 1), 0.0).astype(np.float32)[..., None]
    out = np.clip(np.rint(img.astype(np.float32) * (1 - a) + color.astype(np.float32) * 255.0 * a), 0, 255)
    out = out.astype(np.uint8)
    return out, np.any(out != img, axis=-1)


def _defect_color(rng: np.random.Generator, light_prob: float = 0.75) -> np.ndarray:
    """Scratches on prints are mostly light (emulsion gone), sometimes dark (dirt)."""
    if rng.random() < light_prob:
        v = rng.uniform(0.82, 1.0)
        return np.array([v, v, v * rng.uniform(0.9, 1.0)], np.float32)
    v = rng.uniform(0.0, 0.2)
    return np.array([v, v, v], np.float32)


def _supersampled_canvas(h: int, w: int, ss: int = 2):
    canvas = Image.new("L", (w * ss, h * ss), 0)
    return canvas, ImageDraw.Draw(canvas), ss


def _finish(canvas: Image.Image, h: int, w: int) -> np.ndarray:
    return np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0


def _bezier(rng: np.random.Generator, h: int, w: int, ss: int, n: int = 40) -> list[tuple[float, float]]:
    p = rng.uniform([-0.1 * w, -0.1 * h], [1.1 * w, 1.1 * h], size=(4, 2)) * ss
    t = np.linspace(0, 1, n)[:, None]
    pts = ((1 - t) ** 3) * p[0] + 3 * ((1 - t) ** 2) * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]
    pts += rng.normal(0, 0.6 * ss, pts.shape)     # hand-drawn wobble
    return [tuple(q) for q in pts]


def curve_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Procedural scratches: one to three long thin Bezier curves."""
    canvas, draw, ss = _supersampled_canvas(h, w)
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(1, 4)) * ss // 2 + 1
        draw.line(_bezier(rng, h, w, ss), fill=int(rng.integers(180, 256)), width=width, joint="curve")
    return _finish(canvas, h, w)


def dust_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Specks and short hairs."""
    canvas, draw, ss = _supersampled_canvas(h, w)
    n = int(rng.integers(5, 12 + h * w // 800))
    for _ in range(n):
        x, y = rng.uniform(0, w * ss), rng.uniform(0, h * ss)
        if rng.random() < 0.8:
            r = rng.uniform(0.6, 2.5) * ss
            draw.ellipse([x - r, y - r * rng.uniform(0.5, 1.5), x + r, y + r], fill=int(rng.integers(150, 256)))
        else:
            ang = rng.uniform(0, 2 * math.pi)
            ln = rng.uniform(3, 12) * ss
            pts = [(x + math.cos(ang + 0.3 * math.sin(k)) * ln * k / 5, y + math.sin(ang) * ln * k / 5)
                   for k in range(6)]
            draw.line(pts, fill=int(rng.integers(150, 256)), width=ss)
    return _finish(canvas, h, w)


def crack_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Branching random walks: cracked emulsion."""
    canvas, draw, ss = _supersampled_canvas(h, w)
    stack = [(rng.uniform(0, w * ss), rng.uniform(0, h * ss), rng.uniform(0, 2 * math.pi), 0)]
    steps_left = 400
    while stack and steps_left > 0:
        x, y, ang, depth = stack.pop()
        length = int(rng.integers(8, 30))
        pts = [(x, y)]
        for _ in range(length):
            ang += rng.normal(0, 0.35)
            x += math.cos(ang) * 2 * ss
            y += math.sin(ang) * 2 * ss
            pts.append((x, y))
            steps_left -= 1
            if depth < 3 and rng.random() < 0.06:
                stack.append((x, y, ang + rng.choice([-1, 1]) * rng.uniform(0.4, 1.2), depth + 1))
        draw.line(pts, fill=int(rng.integers(170, 256)), width=max(1, ss - depth // 2))
    return _finish(canvas, h, w)


def hole_alpha(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Irregular free-form holes (thick strokes and blobs), fully covering, as the paper's."""
    canvas, draw, ss = _supersampled_canvas(h, w)
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(0, w * ss), rng.uniform(0, h * ss)
        width = int(rng.uniform(0.02, 0.08) * min(h, w) * ss) + 2
        pts = [(x, y)]
        for _ in range(int(rng.integers(2, 6))):
            ang = rng.uniform(0, 2 * math.pi)
            ln = rng.uniform(0.05, 0.25) * min(h, w) * ss
            x, y = x + math.cos(ang) * ln, y + math.sin(ang) * ln
            pts.append((x, y))
        draw.line(pts, fill=255, width=width, joint="curve")
        for px, py in pts:
            draw.ellipse([px - width / 2, py - width / 2, px + width / 2, py + width / 2], fill=255)
    a = _finish(canvas, h, w)
    return np.where(a >= 0.5, 1.0, 0.0).astype(np.float32)


def stamp_alpha(rng: np.random.Generator, h: int, w: int, textures: Textures | None = None) -> np.ndarray:
    """A real brush (scratch, dust, crack or fibre scan) at a random scale, angle and place;
    a procedural curve when no brushes are cached."""
    if not textures or not textures.brushes:
        return curve_alpha(rng, h, w)
    b = textures.brushes[int(rng.integers(len(textures.brushes)))]
    im = Image.fromarray(np.clip(b * 255, 0, 255).astype(np.uint8), mode="L")
    target = rng.uniform(0.3, 1.2) * max(h, w)
    s = target / max(im.size)
    im = im.resize((max(1, round(im.size[0] * s)), max(1, round(im.size[1] * s))), Image.Resampling.BILINEAR)
    im = im.rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BILINEAR, expand=True)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    canvas = Image.new("L", (w, h), 0)
    x0 = int(rng.integers(-im.size[0] // 2, max(1, w - im.size[0] // 2)))
    y0 = int(rng.integers(-im.size[1] // 2, max(1, h - im.size[1] // 2)))
    canvas.paste(im, (x0, y0))
    return np.asarray(canvas, dtype=np.float32) / 255.0 * rng.uniform(0.7, 1.0)


#: TrueType faces for lettering (Debian's fonts-dejavu and the like); PIL's own face without them
FONT_GLOBS = ("/usr/share/fonts/truetype/**/*.ttf", "/usr/share/fonts/TTF/*.ttf")
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


@functools.cache
def _font_files() -> tuple[str, ...]:
    return tuple(sorted({f for g in FONT_GLOBS for f in glob.glob(g, recursive=True) if "Math" not in f}))


def _font(rng: np.random.Generator, size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    fonts = _font_files()
    if fonts:
        return ImageFont.truetype(fonts[int(rng.integers(len(fonts)))], size)
    return ImageFont.load_default(size=size)


def text_layers(rng: np.random.Generator, h: int, w: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Lettering laid over a print or its scan (a watermark, a date, a caption): a few
    words, light or dark, often semi-transparent, usually with an outline or a drop
    shadow in the opposite tone. Two layers: (outline, its colour), (letters, colour)."""
    ss = 2
    size = max(8, int(rng.uniform(0.02, 0.08) * max(h, w))) * ss
    font = _font(rng, size)
    words = " ".join("".join(rng.choice(list(_LETTERS), int(rng.integers(2, 8))))
                     for _ in range(int(rng.integers(1, 3))))
    if rng.random() < 0.5:
        words = words.upper()
    x0, y0, x1, y1 = (int(v) for v in ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), words, font=font))
    pad = size // 2
    letters = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad), 0)
    outline = Image.new("L", letters.size, 0)
    ImageDraw.Draw(letters).text((pad - x0, pad - y0), words, font=font, fill=255)
    kind = rng.choice(["none", "outline", "shadow"], p=[0.3, 0.35, 0.35])
    if kind != "none":
        dx, dy = (0, 0) if kind == "outline" else (int(rng.integers(1, 3)) * ss, int(rng.integers(1, 3)) * ss)
        ImageDraw.Draw(outline).text((pad - x0 + dx, pad - y0 + dy), words, font=font, fill=255,
                                     stroke_width=int(rng.integers(1, 3)) * ss // 2 + 1)
    angle = float(rng.normal(0, 8)) if rng.random() < 0.3 else 0.0
    canvas_l, canvas_o = Image.new("L", (w * ss, h * ss), 0), Image.new("L", (w * ss, h * ss), 0)
    px = int(rng.integers(-letters.size[0] // 3, max(1, w * ss - letters.size[0] * 2 // 3)))
    py = int(rng.integers(-letters.size[1] // 3, max(1, h * ss - letters.size[1] * 2 // 3)))
    for im, canvas in ((letters, canvas_l), (outline, canvas_o)):
        canvas.paste(im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True), (px, py))
    light = rng.random() < 0.7
    tone = rng.uniform(0.85, 1.0) if light else rng.uniform(0.0, 0.2)
    shade = rng.uniform(0.0, 0.25) if light else rng.uniform(0.8, 1.0)
    opacity = rng.uniform(0.35, 1.0)
    return [(_finish(canvas_o, h, w) * opacity * rng.uniform(0.4, 1.0), np.full(3, shade, np.float32)),
            (_finish(canvas_l, h, w) * opacity, np.full(3, tone, np.float32))]


DEFECT_KINDS = ("stamp", "curve", "dust", "crack", "hole", "text")


def defect_layers(kind: str, rng: np.random.Generator, h: int, w: int,
                  textures: Textures | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """One structured defect of ``kind`` drawn for an h x w photo, as layers painted in
    order: (coverage HxW in [0, 1], RGB colour in [0, 1]) each."""
    if kind == "stamp":
        return [(stamp_alpha(rng, h, w, textures), _defect_color(rng))]
    if kind == "curve":
        return [(curve_alpha(rng, h, w), _defect_color(rng))]
    if kind == "dust":
        return [(dust_alpha(rng, h, w), _defect_color(rng, light_prob=0.5))]
    if kind == "crack":
        return [(crack_alpha(rng, h, w), _defect_color(rng, light_prob=0.6))]
    if kind == "hole":
        # the original's scratch training fills holes with white
        return [(hole_alpha(rng, h, w), np.array([1.0, 1.0, 1.0], np.float32))]
    if kind == "text":
        return text_layers(rng, h, w)
    raise ValueError(f"unknown defect kind {kind!r}; known: {DEFECT_KINDS}")


def scaled_window(alpha: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An h x w window of a larger coverage ``alpha`` (HxW, or HxWxL for L layers), placed
    so that a random covered pixel (when there is one) lies at a random spot inside it:
    the window shows the defect."""
    big_h, big_w = alpha.shape[:2]
    ys, xs = np.nonzero(alpha.reshape(big_h, big_w, -1).max(-1) > 0)
    if len(ys):
        k = int(rng.integers(len(ys)))
        y0 = int(np.clip(ys[k] - rng.integers(h), 0, big_h - h))
        x0 = int(np.clip(xs[k] - rng.integers(w), 0, big_w - w))
    else:
        y0, x0 = int(rng.integers(big_h - h + 1)), int(rng.integers(big_w - w + 1))
    return np.ascontiguousarray(alpha[y0:y0 + h, x0:x0 + w])


def apply_defect(img: U8Image, kind: str, rng: np.random.Generator,
                 textures: Textures | None = None, scale: float = 1.0) -> tuple[U8Image, np.ndarray]:
    """One structured defect of ``kind``; returns (image, exact mask of changed pixels).

    ``scale`` > 1: the defect is drawn as for a photo ``scale`` times the image's size and
    a window of it is laid on the image, so a training crop carries defects as wide as
    those of the whole photo it is cut from (holes and stamps are sized by the photo)."""
    h, w = img.shape[:2]
    if scale > 1.0:
        layers = defect_layers(kind, rng, round(h * scale), round(w * scale), textures)
        window = scaled_window(np.stack([a for a, _ in layers], -1), h, w, rng)
        layers = [(window[..., i], c) for i, (_, c) in enumerate(layers)]
    else:
        layers = defect_layers(kind, rng, h, w, textures)
    out = img
    for alpha, color in layers:
        out, _ = blend_defect(out, alpha, color)
    return out, np.any(out != img, axis=-1)


# --------------------------------------------------------------------------- the whole chain

def degrade_unstructured(img: FloatImage, rng: np.random.Generator, cfg: DegradeConfig,
                         textures: Textures | None = None, strong: bool = False) -> FloatImage:
    """The basic ops each with probability p in random order, then the ageing effects.
    ``strong`` applies every ageing effect (the stand-in for real old photos)."""
    for i in rng.permutation(len(BASIC_OPS)):
        name = list(BASIC_OPS)[i]
        if rng.random() < cfg.p:
            img = BASIC_OPS[name](img, rng, cfg)
    mult = 2.5 if strong else 1.0
    if rng.random() < min(1.0, cfg.p_fade * mult):
        img = fade(img, rng, cfg)
    if rng.random() < min(1.0, cfg.p_exposure * mult):
        img = uneven_exposure(img, rng, cfg)
    if rng.random() < min(1.0, cfg.p_paper * mult):
        img = paper_texture(img, rng, cfg, textures)
    if rng.random() < min(1.0, cfg.p_halftone * mult):
        img = halftone(img, rng, cfg)
    if rng.random() < min(1.0, cfg.p_grain * mult):
        img = film_grain(img, rng, cfg)
    return img


def add_defects(img: U8Image, rng: np.random.Generator, cfg: DegradeConfig,
                textures: Textures | None = None, scale: Mapping[str, float] | None = None,
                parts: list[tuple[str, np.ndarray]] | None = None) -> tuple[U8Image, np.ndarray]:
    """1..max_defects structured defects; the mask is the union of their exact masks.
    ``scale``: kind -> ``apply_defect``'s ``scale`` (kinds not named: 1).
    ``parts``: when given, each defect's (kind, exact mask) is appended to it."""
    mask = np.zeros(img.shape[:2], bool)
    for _ in range(int(rng.integers(1, cfg.max_defects + 1))):
        kind = cfg.defect_kinds[int(rng.integers(len(cfg.defect_kinds)))]
        img, m = apply_defect(img, kind, rng, textures, (scale or {}).get(kind, 1.0))
        mask |= m
        if parts is not None:
            parts.append((kind, m))
    return img, mask


def degrade(clean: U8Image, seed: int | tuple | list, cfg: DegradeConfig = DegradeConfig(),
            textures: Textures | None = None, defects: bool = True,
            strong: bool = False, defect_scale: Mapping[str, float] | None = None,
            parts: list[tuple[str, np.ndarray]] | None = None) -> tuple[U8Image, U8Image, np.ndarray]:
    """(degraded, clean, mask) for a uint8 HxWx3 photo; the same seed gives the same triple.

    The mask (bool HxW, True = defect) holds exactly the pixels changed by structured
    defects; it is empty when the sample drew none or ``defects`` is False.
    ``defect_scale``, ``parts``: ``add_defects``'s ``scale`` (kind -> scale) and ``parts``.
    """
    rng = np.random.default_rng(seed)
    img = to_u8(degrade_unstructured(to_float(clean), rng, cfg, textures, strong))
    mask = np.zeros(clean.shape[:2], bool)
    if defects and rng.random() < cfg.p_defects:
        img, mask = add_defects(img, rng, cfg, textures, defect_scale, parts)
    return img, clean, mask
