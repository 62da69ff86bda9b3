"""Landmark-consistent transforms, batched in torch.

Geometry is one 2 x 3 affine per sample that maps source pixels (x, y) to output pixels (u, v), both
0-based with pixel centres at integers. Crop, resize, rotation and flip compose into that single
matrix (:func:`chain`), so an image is resampled once (no blur from repeated warps) and landmarks go
through exactly the same matrix as the pixels. Predictions map back with :func:`uncrop_points`.

Mirroring changes which point is which (the subject's left eye lands where the right eye was), so
:func:`transform_landmarks` reorders points with the scheme's ``flip_perm`` wherever an affine
mirrors (negative determinant): index i keeps meaning the same landmark.

Every random function takes ``rng``: an int seed or a ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from falign.measure.landmarks import get_scheme

Tensor = torch.Tensor


# Affine algebra -----------------------------------------------------------------------------------

def _affines(values) -> Tensor:
    """(B, 2, 3) float32 from a (2, 3) or (B, 2, 3) array or tensor."""
    a = torch.as_tensor(values, dtype=torch.float32)
    return a[None] if a.ndim == 2 else a


def _matrix(m00, m01, m02, m10, m11, m12) -> Tensor:
    """(B, 2, 3) from six (B,) tensors (or scalars, broadcast)."""
    parts = torch.broadcast_tensors(*(torch.as_tensor(v, dtype=torch.float32) for v in
                                      (m00, m01, m02, m10, m11, m12)))
    return torch.stack(parts, -1).reshape(-1, 2, 3)


def _homogeneous(a: Tensor) -> Tensor:
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=a.dtype, device=a.device).expand(*a.shape[:-2], 1, 3)
    return torch.cat([a, bottom], -2)


def chain(*affines) -> Tensor:
    """Compose affines applied in the order given: ``chain(crop, rotate, flip)`` crops first.

    Shapes (2, 3) and (B, 2, 3) broadcast against each other.
    """
    out = _homogeneous(_affines(affines[0]).double())
    for a in affines[1:]:
        out = _homogeneous(_affines(a).double()).to(out.device) @ out
    return out[..., :2, :].float()


def invert_affine(affines) -> Tensor:
    """The inverse maps, (B, 2, 3): output pixels back to source pixels."""
    return torch.linalg.inv(_homogeneous(_affines(affines).double()))[..., :2, :].float()


def apply_affine(points, affines) -> Tensor:
    """Map points (B, N, 2) (or (N, 2) with one affine) through affines (B, 2, 3)."""
    pts = torch.as_tensor(points, dtype=torch.float32)
    a = _affines(affines).to(pts.device)
    out = pts.reshape(a.shape[0] if pts.ndim == 3 else 1, -1, 2) @ a[..., :2].transpose(-1, -2)
    return (out + a[..., None, :, 2]).reshape(pts.shape)


def is_flipped(affines) -> Tensor:
    """(B,) bool: which affines mirror the image (negative determinant)."""
    m = _affines(affines)[..., :2]
    return (m[..., 0, 0] * m[..., 1, 1] - m[..., 0, 1] * m[..., 1, 0]) < 0


def translation(tx, ty) -> Tensor:
    return _matrix(1.0, 0.0, tx, 0.0, 1.0, ty)


def rotation(degrees, centre) -> Tensor:
    """Rotate by ``degrees`` counter-clockwise as seen on screen (y points down) about ``centre``.

    ``degrees`` is a scalar or (B,); ``centre`` is (2,) or (B, 2) in pixels.
    """
    theta = torch.deg2rad(torch.as_tensor(degrees, dtype=torch.float32))
    c = torch.as_tensor(centre, dtype=torch.float32).reshape(-1, 2)
    cos, sin = torch.cos(theta), torch.sin(theta)
    cx, cy = c[:, 0], c[:, 1]
    return _matrix(cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)


def hflip(width: int) -> Tensor:
    """Mirror left-right within an image ``width`` pixels wide: pixel x goes to width - 1 - x."""
    return _matrix(-1.0, 0.0, width - 1.0, 0.0, 1.0, 0.0)


def crop_to_box(boxes, out_size: int, margin: float = 0.0) -> Tensor:
    """Affines mapping a square around each box onto an ``out_size`` x ``out_size`` crop.

    The square is centred on the box with side max(w, h) * (1 + 2 * margin): ``margin`` is the
    fraction of the box added on each side. Its outer edges land on the crop's outer pixel edges
    (-0.5 and out_size - 0.5), so the box centre lands on (out_size - 1) / 2.
    """
    b = torch.as_tensor(boxes, dtype=torch.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    side = (b[:, 2:] - b[:, :2]).amax(1) * (1 + 2 * margin)
    k = out_size / side
    mid = (out_size - 1) / 2
    zero = torch.zeros_like(k)
    return _matrix(k, zero, mid - k * centre[:, 0], zero, k, mid - k * centre[:, 1])


# Landmarks ---------------------------------------------------------------------------------------

def transform_landmarks(points, affines, visible=None, flip_perm=None) -> tuple[Tensor, Tensor | None]:
    """Points (B, N, 2) and visibility (B, N) through the affines, reordered where they mirror.

    A mirroring affine without ``flip_perm`` is an error: the points would silently swap meaning.
    """
    out = apply_affine(points, affines)
    vis = None if visible is None else torch.as_tensor(visible, dtype=torch.bool)
    flipped = is_flipped(affines).to(out.device)
    if not flipped.any():
        return out, vis
    if flip_perm is None:
        raise ValueError("an affine mirrors the image: pass the scheme's flip_perm to keep point identities")
    perm = torch.tensor(np.array(flip_perm), dtype=torch.long, device=out.device)
    out = torch.where(flipped[:, None, None], out[:, perm], out)
    if vis is not None:
        vis = torch.where(flipped[:, None], vis[:, perm], vis)
    return out, vis


def uncrop_points(points, affines, flip_perm=None) -> Tensor:
    """Predictions in crop coordinates (B, N, 2) back to original image coordinates.

    Undoes the geometry and, for mirrored crops, the reordering (``flip_perm`` is its own inverse).
    """
    out, _ = transform_landmarks(points, invert_affine(affines), flip_perm=flip_perm)
    return out


# Images ------------------------------------------------------------------------------------------

def _normaliser(size: int) -> tuple[float, float]:
    """Scale and offset of pixel x -> torch's normalised coordinate for ``align_corners=False``.

    There -1 and 1 are the outer pixel *edges*, so pixel centre i is at (2i + 1) / size - 1.
    """
    return 2.0 / size, 1.0 / size - 1.0


def warp_images(images: Tensor, affines, out_size: int | tuple[int, int],
                padding_mode: str = "zeros") -> Tensor:
    """Resample images (B, C, H, W) through affines (B, 2, 3) into (B, C, out_h, out_w), bilinear.

    Output pixel (u, v) takes the source value at invert_affine(A)(u, v). Downscaling by a large
    factor aliases: prefilter first (:func:`crop_batch` does).
    """
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    h, w = images.shape[-2:]
    sx_in, ox_in = _normaliser(w)
    sy_in, oy_in = _normaliser(h)
    sx_out, ox_out = _normaliser(out_w)
    sy_out, oy_out = _normaliser(out_h)
    to_pixels = _matrix(1 / sx_out, 0.0, -ox_out / sx_out, 0.0, 1 / sy_out, -oy_out / sy_out)
    to_normalised = _matrix(sx_in, 0.0, ox_in, 0.0, sy_in, oy_in)
    theta = chain(to_pixels, invert_affine(affines), to_normalised)
    theta = theta.expand(images.shape[0], 2, 3).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def _generator(rng, device="cpu") -> torch.Generator:
    if isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return torch.Generator(device=device).manual_seed(int(rng))
    raise TypeError(f"rng must be an int seed or a torch.Generator, got {rng!r}: "
                    "random transforms are seeded")


# Random geometry ---------------------------------------------------------------------------------

def jitter_boxes(boxes, shift: float, scale: float, *, rng, copies: int = 1, keep_first: bool = False) -> Tensor:
    """Imitate face-detector jitter: ``copies`` perturbed copies of every box, copy-major ((copies n, 4)).

    Each box's centre moves by up to ``shift`` times its width (x) and height (y), and its width and
    height are scaled independently by factors in [1 - scale, 1 + scale]; all uniform and
    independent. With ``keep_first`` copy 0 is the unperturbed box (PIFA's "variations", Sec. 4.1).
    Every chapter's box noise (PIFA's variations, RCSR's replicates, CCNN's windows) comes from here.
    """
    gen = _generator(rng)
    b = torch.as_tensor(np.asarray(boxes), dtype=torch.float32).reshape(-1, 4)
    size, centre = b[:, 2:] - b[:, :2], (b[:, :2] + b[:, 2:]) / 2
    out = [b] if keep_first else []
    for _ in range(copies - len(out)):
        c = centre + shift * size * (2 * torch.rand(b.shape[0], 2, generator=gen) - 1)
        half = size / 2 * (1 + scale * (2 * torch.rand(b.shape[0], 2, generator=gen) - 1))
        out.append(torch.cat([c - half, c + half], 1))
    return torch.cat(out)


# Batches of samples --------------------------------------------------------------------------------

def crop_batch(samples: Sequence, out_size: int, margin: float = 0.0, scheme=None) -> dict[str, Tensor]:
    """Crop a list of :class:`~falign.data.Sample` (any image sizes) around their boxes.

    Returns ``images`` (B, 3, S, S) float in [0, 1], ``landmarks`` (B, N, 2) and ``visible`` (B, N)
    in crop coordinates, and the ``affines`` (B, 2, 3) for :func:`uncrop_points`; ``scheme`` (a name
    or Scheme, default the samples' own) provides the flip permutation.
    """
    if len({s.scheme for s in samples}) != 1:
        raise ValueError(f"samples mix landmark schemes {sorted({s.scheme for s in samples})}")
    scheme = get_scheme(samples[0].scheme if scheme is None else scheme)
    affines = crop_to_box(np.stack([s.box for s in samples]), out_size, margin)
    images = torch.cat([crop_image(s.image, a, out_size) for s, a in zip(samples, affines)])
    landmarks, visible = transform_landmarks(
        np.stack([s.landmarks for s in samples]), affines, np.stack([s.visible for s in samples]),
        scheme.flip_perm)
    return {"images": images, "landmarks": landmarks, "visible": visible, "affines": affines}


def crop_image(image: np.ndarray, affine: Tensor, out_size: int) -> Tensor:
    """Warp one uint8 (H, W, C) image of any size to (1, C, S, S) floats in [0, 1]: cut out the source region first, and when shrinking, prefilter
    it (antialiased resize) so the bilinear warp samples a band-limited image."""
    h, w = image.shape[:2]
    corners = torch.tensor([[-0.5, -0.5], [out_size - 0.5, -0.5], [-0.5, out_size - 0.5],
                            [out_size - 0.5, out_size - 0.5]])
    src = apply_affine(corners, invert_affine(affine))
    m = affine[:, :2]
    k = math.sqrt(abs(float(m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0])))
    pad = 2 + math.ceil(1 / k)
    x0, y0 = (src.amin(0).floor().int() - pad).tolist()
    x1, y1 = (src.amax(0).ceil().int() + pad + 1).tolist()
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return torch.zeros(1, image.shape[2], out_size, out_size)
    region = torch.from_numpy(np.ascontiguousarray(image[y0:y1, x0:x1])).permute(2, 0, 1)[None].float() / 255
    to_region = translation(x0, y0)
    if k < 1:
        rh, rw = region.shape[-2:]
        nh, nw = max(1, math.ceil(rh * k)), max(1, math.ceil(rw * k))
        region = F.interpolate(region, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        sx, sy = nw / rw, nh / rh
        # antialiased resize maps region pixel x to (x + 0.5) * sx - 0.5; undo it, then shift back
        to_region = chain(_matrix(1 / sx, 0.0, 0.5 / sx - 0.5, 0.0, 1 / sy, 0.5 / sy - 0.5), to_region)
    return warp_images(region, chain(to_region, affine), out_size)
