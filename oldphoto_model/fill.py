"""Smooth hole filling: a masked image pyramid ("push-pull") and the harmonic fill.

Three uses in the restore contract, all plain tensor maths with no learned part:

- **Pre-fill** (``fill_holes``): before the encoder sees a photo, the defect pixels
  (white scratch lines, dust, holes) are replaced by a smooth interpolation of the
  intact pixels around them. The encoder then never sees the scratch's own colour,
  the network starts from a plausible fill and only has to add what a smooth fill
  lacks (texture, edges, the restored tone). Training does the same, so the
  network learns exactly that refinement.
- **Tone matching** (``smooth_offset``): with "only the selected area changes" the
  fill must continue the *unrestored* surroundings. The low-frequency difference
  between the original and the restored photo, measured outside the selection and
  interpolated across it, is added to the restored pixels inside.
- **Harmonic fill** (``harmonic_fill``): the restored result's defect pixels are
  replaced by the smoothest surface that meets the intact pixels around them
  (Laplace's equation, solved by conjugate gradients from the push-pull fill). On
  the evaluation set it is closer to the lost pixels than the network's own fill or
  OpenCV's Telea (docs/MODEL.md): a scratch hides what was under it, and the best
  guess in the least-squares sense is smooth.

Push-pull costs O(pixels): each pyramid level is a quarter of the one below. The
harmonic fill costs O(defect pixels) per iteration.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-6


def fill_holes(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Fill the pixels where ``known`` is 0 from the pixels where it is 1.

    x: (N, C, H, W) float; known: (N, 1, H, W) in [0, 1] (1 = intact). Known pixels
    are returned unchanged; each unknown pixel gets the mask-weighted average of the
    intact pixels of the finest pyramid level whose cell around it holds any,
    bilinearly blended across levels (so fills are smooth, without block edges).
    An image without any intact pixel is returned as it is.
    """
    known = known.to(x.dtype).clamp(0, 1)
    levels = []
    v, k = x * known, known
    while True:
        levels.append((v, k))
        if max(v.shape[-2:]) <= 1:
            break
        v = F.avg_pool2d(v, 2, ceil_mode=True)
        k = F.avg_pool2d(k, 2, ceil_mode=True)
    v, k = levels[-1]
    colour = v / k.clamp_min(_EPS)
    for v, k in reversed(levels[:-1]):
        up = F.interpolate(colour, size=v.shape[-2:], mode="bilinear", align_corners=False)
        # a cell's own average counts as much as the share of it that is known
        colour = torch.where(k > _EPS, v / k.clamp_min(_EPS), up) * k + up * (1 - k)
    nothing = (known.flatten(1).amax(1) <= 0).view(-1, 1, 1, 1)
    return torch.where((known >= 1) | nothing, x, colour)


def box_blur(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Separable box filter of side 2 * radius + 1 with replicated borders."""
    if radius <= 0:
        return x
    k = 2 * radius + 1
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.avg_pool2d(x, (1, k), stride=1)
    return F.avg_pool2d(x, (k, 1), stride=1)


def smooth_offset(target: torch.Tensor, source: torch.Tensor, known: torch.Tensor,
                  radius: int = 4) -> torch.Tensor:
    """The low-frequency correction that makes ``source`` match ``target`` where
    ``known`` is 1, interpolated smoothly where it is 0.

    target, source: (N, C, H, W); known: (N, 1, H, W) in {0, 1}. The difference is
    averaged over intact pixels in a (2r+1)² box (normalised convolution, so noise
    and grain do not carry into the offset), then hole-filled with ``fill_holes``.
    """
    known = known.to(target.dtype)
    diff = (target - source) * known
    num, den = box_blur(diff, radius), box_blur(known, radius)
    have = den > 1e-3
    local = num / den.clamp_min(1e-3)
    return fill_holes(torch.where(have, local, torch.zeros_like(local)), have.to(target.dtype))


def _neighbours(unknown: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Flat indices of the True pixels of an (H, W) mask, and for each of the 4
    directions the flat index of that neighbour (H * W outside the image: one past
    the last pixel, where the callers keep a zero row)."""
    h, w = unknown.shape
    idx = unknown.flatten().nonzero().squeeze(1)   # on unknown's device
    r, c = idx // w, idx % w
    out = []
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        rr, cc = r + dr, c + dc
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        out.append(torch.where(inside, rr * w + cc, torch.full_like(idx, h * w)))
    return idx, out


def harmonic_fill(x: torch.Tensor, known: torch.Tensor, iterations: int = 200,
                  tol: float = 1e-4) -> torch.Tensor:
    """Fill the pixels where ``known`` is 0 with the harmonic interpolation of the rest.

    x: (N, C, H, W) float; known: (N, 1, H, W), 1 = intact (values < 0.5 count as
    unknown). Solves Laplace's equation on the unknown pixels (4-neighbour, the intact
    neighbours as boundary values, the image border reflecting) by Jacobi-preconditioned
    conjugate gradients started from ``fill_holes``; stops after ``iterations`` or when
    the residual falls below ``tol`` times its start. Known pixels are returned
    unchanged; an image with no intact pixel is returned as it is.
    """
    # the push-pull fill is both the start and the result (a new tensor, written in place)
    out = fill_holes(x, (known >= 0.5).to(x.dtype))
    n_img, ch, h, w = x.shape
    for i in range(n_img):
        unknown = known[i, 0] < 0.5
        if not bool(unknown.any()) or bool(unknown.all()):
            continue
        idx, nbrs = _neighbours(unknown)
        n = idx.numel()
        dev, f32 = x.device, torch.float32
        # position of each pixel in the unknown vector; known pixels and the image's
        # outside point at row n, a zero row appended to u (so A u is 4 plain gathers)
        pos = torch.full((h * w + 1,), n, dtype=torch.long, device=dev)
        pos[idx] = torch.arange(n, device=dev)
        zero_row = torch.zeros(1, ch, dtype=f32, device=dev)
        flat = torch.cat([x[i].reshape(ch, -1).t().to(f32), zero_row])
        degree = torch.zeros(n, 1, dtype=f32, device=dev)
        b = torch.zeros(n, ch, dtype=f32, device=dev)
        links = []
        for nb in nbrs:
            degree += (nb < h * w).to(f32)[:, None]
            p = pos[nb]
            b += flat[nb] * (p == n).to(f32)[:, None]    # intact neighbours (outside: the zero row)
            links.append(p)

        def apply(u: torch.Tensor) -> torch.Tensor:
            """A u, with A = the graph Laplacian restricted to the unknown pixels."""
            ext = torch.cat([u, zero_row])
            return degree * u - (ext[links[0]] + ext[links[1]] + ext[links[2]] + ext[links[3]])
        u = out[i].reshape(ch, -1).t()[idx].to(f32)
        inv_d = 1.0 / degree
        r = b - apply(u)
        z = r * inv_d
        d = z.clone()
        rz = (r * z).sum(0)
        r0 = r.norm(dim=0).clamp_min(1e-30)
        for _ in range(iterations):
            if bool((r.norm(dim=0) <= tol * r0).all()):
                break
            ad = apply(d)
            alpha = rz / (d * ad).sum(0).clamp_min(1e-30)
            u += alpha * d
            r -= alpha * ad
            z = r * inv_d
            rz_new = (r * z).sum(0)
            d = z + (rz_new / rz.clamp_min(1e-30)) * d
            rz = rz_new
        o = out[i].reshape(ch, -1)
        o[:, idx] = u.t().to(x.dtype)
    return out
