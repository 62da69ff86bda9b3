"""SynthFace: the book's embedded default data, faces rendered from the procedural 3DMM.

The real benchmarks cannot be downloaded by code, so every chapter runs by default on faces rendered
from :func:`falign.synthface.morphable.builtin_model`: random identity, expression, pose, skin tone, hair,
lighting, background clutter, occluders, blur and noise, with exact ground truth. The "photo-like"
preset also turns on :mod:`falign.synthface.realism`'s effects (each a :class:`SynthFaceConfig` knob,
off elsewhere): real-photo backgrounds, skin texture, strong beards, thick brows, glasses and hands, coloured and
second lights, grey, low-resolution and JPEG images. Presets mirror the
papers' protocols (a near-frontal "common" and a hard "challenging" 300-W-like set, a large-pose
AFLW-PIFA-like set, ...); ``synthface(preset, split, n)`` returns a :class:`FaceDataset`,
``synthface_arrays`` the same faces as stacked arrays for fast training, and
``get_dataset("synthetic", split, preset=..., n=..., size=...)`` goes through the registry.
``falign.data`` re-exports the two functions, so ``falign.synthface.dataset`` is the *function*; import
the module's other names with ``from falign.synthface.dataset import PRESETS, render_shapes``.

Ground truth, per face
----------------------
* ``landmarks68``: the 68 iBUG landmark vertices projected with the camera ``M``; every other scheme
  is derived with :func:`falign.measure.landmarks.convert` (``landmarks`` holds the preset's scheme).
* ``visible68``: not self-occluded (the vertex passes the z-buffer test of
  :func:`falign.synthface.render.vertex_visibility` against face, skull, ears and neck at one of its 3x3
  pixels, see :func:`_draw`), not under an occluder, and inside the image. Landmarks are
  3D-consistent (AFLW/PIFA convention): at large yaw the far jaw is hidden, it does not slide to
  the silhouette as 300-W's annotators place it.
* ``box``: the tight box around all 68 projected landmarks, hidden ones included (300-W's ground-truth
  boxes are built the same way). ``detector_box``: that box with its centre and size jittered, the
  stand-in for 300-W's ``bb_detector`` that the chapters crop with.
* ``params``: ``M`` (2, 4) and ``p`` (228,) such that ``morphable.project(M, model.shape(p))`` gives
  the mesh in image pixels; ``pose``: yaw, pitch, roll in degrees (conventions of
  :func:`falign.synthface.morphable.pose_to_M`).

Determinism and caching
-----------------------
Faces are drawn in blocks of :data:`BLOCK`; each block's generators are seeded from (seed, preset,
split, block index; the realism effects get a stream of their own), so different splits never share faces and a split's faces do not depend on the
render batch size. Face parameters are drawn on the CPU (identical on every device); per-pixel
randomness (backgrounds, occluders, noise) uses a generator on the rendering device, so GPU images
differ from CPU images and the device kind is part of the fingerprint. Arrays are cached in
``cache_dir()/synthface/<fingerprint>.npz``; the fingerprint hashes the configuration, the request and
the source of the generator's modules, so editing the generator regenerates. A sidecar JSON holding
the file's checksum is written after the npz; a cache that fails any check is rebuilt with a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from falign.base import memory as allocator, atomic_files as atomic, paths
from falign.synthface import mesh as facemesh, morphable, realism, render
from falign.data.registry import DatasetSpec, register
from falign.data.sample import FaceDataset, Sample
from falign.measure.landmarks import convert, convert_visibility

__all__ = ["BLOCK", "LIKE", "PRESETS", "Preset", "SynthFaceConfig", "draw_faces", "render_shapes",
           "synthface", "synthface_arrays"]

BLOCK = 64  # faces per random block: each block has its own seeds
_W0 = 149.0  # width (model units) of the mean face's landmark box: jaw end to jaw end


# --- configuration ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SynthFaceConfig:
    """The distribution one split draws faces from.

    Angles (degrees) are drawn in the range ``(lo, hi)``: uniformly when the matching ``*_std`` is
    None, else from a normal of that std centred on the range, truncated to it. ``identity`` scales
    the model's identity sigmas, ``expression`` is the range of a per-face factor on the expression
    sigmas. Sizes and offsets are fractions of the image side; blur sigmas are pixels at 128 px
    (scaled with the image size).
    """

    yaw: tuple[float, float] = (-90.0, 90.0)
    yaw_std: float | None = None
    pitch: tuple[float, float] = (-30.0, 30.0)
    pitch_std: float | None = 10.0
    roll: tuple[float, float] = (-30.0, 30.0)
    roll_std: float | None = 8.0
    identity: float = 1.0
    expression: tuple[float, float] = (0.3, 1.3)
    occlusion: float = 0.2  # probability that a face gets an occluder
    occluders: tuple[str, ...] = ("bar", "blob")
    face_width: tuple[float, float] = (0.45, 0.65)  # frontal landmark-box width / image width
    offset: float = 0.08  # max shift of the face centre from the image centre
    ambient: tuple[float, float] = (0.3, 0.6)
    diffuse: tuple[float, float] = (0.4, 0.8)
    light_angle: float = 60.0  # max angle between the light and the camera axis
    noise: tuple[float, float] = (0.0, 0.03)  # std of pixel noise, intensities in [0, 1]
    blur: tuple[float, float] = (0.3, 0.8)  # Gaussian blur sigma of the blurred faces
    blur_prob: float = 0.5  # share of faces that are blurred (the others are sharp)
    detector_shift: float = 0.05  # std of the detector box centre shift, fraction of the box size
    detector_scale: float = 0.07  # std of the log of the detector box width and height factors
    # Realism (falign.synthface.realism), all off by default: probabilities per face, amplitudes.
    photo_backgrounds: float = 0.0  # share of backgrounds cropped from real photos (no faces in them)
    albedo_detail: float = 0.0  # max amplitude of the skin texture (uneven tone, pores, freckles)
    beard: float = 0.0  # share of faces with a strong beard or stubble
    brows: float = 0.0  # share of faces with thicker, darker brows (up to twice the plain brow's height)
    light_colour: float = 0.0  # std of the light's warm-cool colour cast
    extra_light: float = 0.0  # share of faces lit by a second directional light
    grey: float = 0.0  # share of black-and-white images
    jpeg: float = 0.0  # share of JPEG-compressed images
    jpeg_quality: tuple[int, int] = (20, 90)
    low_res: float = 0.0  # share of images shrunk to 25-60 % and enlarged back


@dataclass(frozen=True)
class Preset:
    """A family of splits mirroring one benchmark: scheme, split configs, default split sizes (those
    of the real benchmark) and composite splits (name -> parts and their proportions)."""

    scheme: str
    splits: dict[str, SynthFaceConfig]
    sizes: dict[str, int]
    composite: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    description: str = ""

    @property
    def split_names(self) -> tuple[str, ...]:
        return (*self.splits, *self.composite)


_FRONTAL = SynthFaceConfig(
    yaw=(-30.0, 30.0), yaw_std=12.0, pitch=(-20.0, 20.0), pitch_std=7.0, roll=(-20.0, 20.0),
    roll_std=6.0, expression=(0.2, 0.7), occlusion=0.05, ambient=(0.4, 0.65), diffuse=(0.35, 0.6),
    light_angle=45.0, noise=(0.0, 0.02), blur=(0.3, 0.6), blur_prob=0.3)
# 300-W's challenging (iBUG) faces rarely turn beyond about 60 degrees: further, the outer eye corners
# nearly coincide in the image and the inter-ocular NME that the 300-W protocol uses blows up.
_CHALLENGING = SynthFaceConfig(
    yaw=(-60.0, 60.0), pitch=(-40.0, 40.0), pitch_std=15.0, roll=(-45.0, 45.0), roll_std=15.0,
    expression=(1.0, 2.0), occlusion=0.5, ambient=(0.2, 0.5), diffuse=(0.5, 0.95), light_angle=80.0,
    noise=(0.0, 0.05), blur=(0.3, 1.2), blur_prob=0.6)
_WIDE = SynthFaceConfig(  # covers both: mostly moderate, down to the challenging extremes
    yaw=(-70.0, 70.0), yaw_std=40.0, pitch=(-40.0, 40.0), pitch_std=12.0, roll=(-45.0, 45.0),
    roll_std=10.0,
    expression=(0.2, 2.0), occlusion=0.25, ambient=(0.2, 0.65), diffuse=(0.35, 0.9), light_angle=70.0,
    noise=(0.0, 0.05), blur=(0.3, 1.2))
# The 300-W challenge's private test set (300 indoor and 300 outdoor photos) spans the same poses,
# expressions and occlusions as the training set; what separates its halves in the generator is the
# light. Indoor: soft light from near the camera (high ambient, weak diffuse, narrow light angle) with
# more sensor noise and blur, as in dim rooms. Outdoor: hard directional sunlight (low ambient, strong
# diffuse, light up to 85 degrees off the camera axis, deep shadows), sharp and with little noise.
_INDOOR = dataclasses.replace(_WIDE, ambient=(0.45, 0.7), diffuse=(0.25, 0.5), light_angle=35.0,
                              noise=(0.02, 0.06), blur=(0.5, 1.2), blur_prob=0.6)
_OUTDOOR = dataclasses.replace(_WIDE, ambient=(0.1, 0.3), diffuse=(0.7, 1.0), light_angle=85.0,
                               noise=(0.0, 0.02), blur=(0.3, 0.6), blur_prob=0.2)
_LARGE_POSE = SynthFaceConfig(pitch=(-35.0, 35.0), pitch_std=12.0, roll=(-40.0, 40.0), roll_std=12.0)
# Photo-like: _WIDE's faces with what real photos vary in and the plain generator holds fixed. Most
# in-the-wild backgrounds are real scenes (0.7; the rest keep the procedural clutter, which also
# varies); skin texture on every face, up to 30 % (tone is uneven at all scales); beards on about a
# third of men; brows thicker than the plain generator's thin ones (6 mm at their inner end; real brows are
# often twice that) on half the faces; glasses and hands are common in 300-W/AFLW (occlusion 0.35, four kinds); light casts
# of about 10 % (tungsten against daylight); a second light (window, lamp, flash) on 40 %; archive
# photos in grey (15 %); half of web photos re-encoded as JPEG; small faces enlarged (20 %); more
# noise and blur on half of them.
_PHOTO = dataclasses.replace(
    _WIDE, photo_backgrounds=0.7, albedo_detail=0.3, beard=0.15, brows=0.5, occlusion=0.35,
    occluders=("bar", "blob", "glasses", "hand"), light_colour=0.1, extra_light=0.4, grey=0.15, jpeg=0.5,
    low_res=0.2, blur_prob=0.5, noise=(0.0, 0.05))
_PHOTO_TEST = dataclasses.replace(_PHOTO, **{k: getattr(_FRONTAL, k) for k in (
    "yaw", "yaw_std", "pitch", "pitch_std", "roll", "roll_std")})

PRESETS: dict[str, Preset] = {
    "300w-like": Preset(
        "ibug68", {"train": _WIDE, "common": _FRONTAL, "challenging": _CHALLENGING, "indoor": _INDOOR,
                   "outdoor": _OUTDOOR},
        {"train": 3148, "common": 554, "challenging": 135, "full": 689, "indoor": 300, "outdoor": 300,
         "private": 600},
        {"full": (("common", 554), ("challenging", 135)), "private": (("indoor", 300), ("outdoor", 300))},
        "300-W: train covers all conditions; common is near-frontal with mild expressions, "
        "challenging has large poses, strong expressions and frequent occlusion; full = both. The "
        "challenge's private set: indoor (soft near-camera light, noisier, blurrier) and outdoor (hard "
        "directional light, sharp), both with the training set's poses; private = both."),
    "aflw-pifa-like": Preset(
        "aflw-pifa34", {"train": _LARGE_POSE, "test": _LARGE_POSE}, {"train": 3901, "test": 1299},
        description="AFLW-PIFA: yaw uniform in +-90 degrees, 34 points with visibility."),
    "afw-like": Preset(
        "afw6", {"train": _LARGE_POSE, "test": dataclasses.replace(_LARGE_POSE, occlusion=0.15)},
        {"train": 2000, "test": 468},
        description="AFW: in-the-wild faces, yaw up to +-90 degrees, 6 points."),
    "lfpw5-like": Preset(
        "five",
        {"train": dataclasses.replace(_FRONTAL, expression=(0.2, 1.0), occlusion=0.1), "test": _FRONTAL},
        {"train": 10000, "test": 3466}, description="Sun et al.'s LFPW/LFW lists: near-frontal, 5 points."),
    "photo-like": Preset(
        "ibug68", {"train": _PHOTO, "test": _PHOTO_TEST}, {"train": 3148, "test": 600},
        description="300-W-like faces made to look photographed: real-photo backgrounds, skin texture, "
        "beards, thick brows, glasses and hands, coloured and second lights, grey, low-resolution and JPEG images; "
        "train has 300-W train's poses, test near-frontal ones."),
}
# Real dataset name -> its SynthFace stand-in (the functions accept either name).
LIKE = {"300w": "300w-like", "aflw-pifa": "aflw-pifa-like", "afw": "afw-like", "lfpw5": "lfpw5-like"}


def _preset(name: str) -> Preset:
    """The preset called ``name`` (or standing in for the real dataset ``name``)."""
    name = LIKE.get(name, name)
    if name not in PRESETS:
        raise ValueError(f"unknown SynthFace preset {name!r}; presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def _config(preset: str, split: str, overrides: dict) -> SynthFaceConfig:
    """A plain split's configuration with ``overrides`` applied; bad names are a clear error."""
    spec = _preset(preset)
    if split not in spec.splits:
        raise ValueError(f"SynthFace preset {preset!r} has no split {split!r}; splits: "
                         f"{', '.join(spec.split_names)}")
    try:
        return dataclasses.replace(spec.splits[split], **overrides)
    except TypeError:
        names = [f.name for f in dataclasses.fields(SynthFaceConfig)]
        raise ValueError(f"unknown SynthFace option(s) {sorted(set(overrides) - set(names))}; "
                         f"options: {', '.join(names)}") from None


# --- random parameters -----------------------------------------------------------------------------

def _seed(*parts) -> int:
    """A 63-bit seed from any parts: splits and blocks get unrelated streams."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _angle(g: torch.Generator, n: int, bounds, std) -> torch.Tensor:
    """Uniform in ``bounds``, or a normal of ``std`` around their middle truncated to them (drawn by
    inverting the CDF, so nothing piles up at the limits as clipping would)."""
    lo, hi = map(float, bounds)
    u = torch.rand(n, generator=g)
    if std is None or lo == hi:
        return lo + (hi - lo) * u
    mid = (lo + hi) / 2
    a, b = (torch.special.ndtr(torch.tensor((v - mid) / std)) for v in (lo, hi))
    return (mid + std * torch.special.ndtri(a + (b - a) * u)).clamp(lo, hi)


def _uniform(g: torch.Generator, shape, bounds) -> torch.Tensor:
    lo, hi = bounds
    return lo + (hi - lo) * torch.rand(shape, generator=g)


# Palettes (display RGB): albedo under full light. Skin from light to dark; hair; irises.
_SKIN = torch.tensor([[0.98, 0.84, 0.74], [0.92, 0.72, 0.60], [0.80, 0.58, 0.44], [0.62, 0.42, 0.30],
                      [0.44, 0.29, 0.20], [0.30, 0.20, 0.15]])
_HAIR = torch.tensor([[0.05, 0.04, 0.04], [0.16, 0.10, 0.07], [0.32, 0.20, 0.11], [0.70, 0.56, 0.36],
                      [0.58, 0.57, 0.55], [0.50, 0.22, 0.09]])
_HAIR_WEIGHTS = torch.tensor([0.35, 0.25, 0.15, 0.1, 0.08, 0.07])
_IRIS = torch.tensor([[0.28, 0.16, 0.08], [0.12, 0.08, 0.06], [0.22, 0.36, 0.50], [0.28, 0.36, 0.22]])


def draw_faces(cfg: SynthFaceConfig, n: int, seed: int) -> dict[str, torch.Tensor]:
    """Everything random about ``n`` faces except pixels, drawn on the CPU from one seed."""
    g = torch.Generator().manual_seed(seed)
    model = morphable.builtin_model()
    # Shape: identity ~ N(0, sigma); expression likewise, with the model's one-sided motions made
    # natural: the jaw only opens, the eyes close at most fully (2 sigma).
    p = torch.randn(n, model.n_params, generator=g) * model.sigma
    p[:, : model.n_id] *= cfg.identity
    p[:, model.n_id:] *= _uniform(g, (n, 1), cfg.expression)
    names = model.exp_names
    jaw = model.n_id + names.index("jaw_open")
    p[:, jaw] = p[:, jaw].abs()
    for eye in ("eye_close_left", "eye_close_right"):
        k = model.n_id + names.index(eye)
        p[:, k] = p[:, k].clamp(-model.sigma[k], 2 * model.sigma[k])
    faces = {
        "p": p,
        "yaw": _angle(g, n, cfg.yaw, cfg.yaw_std),
        "pitch": _angle(g, n, cfg.pitch, cfg.pitch_std),
        "roll": _angle(g, n, cfg.roll, cfg.roll_std),
        "width": _uniform(g, n, cfg.face_width),
        "shift": _uniform(g, (n, 2), (-cfg.offset, cfg.offset)),
    }
    # Appearance: skin tone anywhere on the palette, hair colour, iris colour, face details.
    t = torch.rand(n, generator=g) * (len(_SKIN) - 1)
    i = t.long().clamp(max=len(_SKIN) - 2)
    skin = torch.lerp(_SKIN[i], _SKIN[i + 1], (t - i)[:, None])
    faces["skin"] = skin * (1 + 0.06 * torch.randn(n, 3, generator=g)).clamp(0.8, 1.2)
    hair = _HAIR[torch.multinomial(_HAIR_WEIGHTS, n, replacement=True, generator=g)]
    faces["hair"] = hair * _uniform(g, (n, 1), (0.7, 1.3))
    faces["hairline"] = _uniform(g, n, (-60.0, 40.0))  # how far down the back the hair reaches
    faces["fringe"] = _uniform(g, n, (-25.0, 2.0))  # where the hair starts on the forehead
    faces["iris"] = _IRIS[torch.randint(len(_IRIS), (n,), generator=g)] * _uniform(g, (n, 1), (0.6, 1.1))
    faces["details"] = torch.rand(n, 6, generator=g)  # brow, lip, mouth tints; blush, beard, eye shadow
    # Light (camera axes: x right, y up, z toward the viewer): within light_angle of the camera
    # axis (spread evenly over the cone), from above two times in three; a coloured tint.
    polar = torch.deg2rad(cfg.light_angle * torch.rand(n, generator=g).sqrt())
    azimuth = _uniform(g, n, (-math.pi / 4, 5 * math.pi / 4))
    faces["light"] = torch.stack([polar.sin() * azimuth.cos(), polar.sin() * azimuth.sin(), polar.cos()], -1)
    tint = 1 + 0.08 * torch.randn(n, 3, generator=g)
    faces["ambient"] = _uniform(g, (n, 1), cfg.ambient) * tint
    faces["diffuse"] = _uniform(g, (n, 1), cfg.diffuse) * tint
    faces["noise"] = _uniform(g, n, cfg.noise)
    faces["blur"] = _uniform(g, n, cfg.blur) * (torch.rand(n, generator=g) < cfg.blur_prob)
    faces["detector"] = torch.randn(n, 4, generator=g) * torch.tensor(
        [cfg.detector_shift, cfg.detector_shift, cfg.detector_scale, cfg.detector_scale])
    return faces


# --- the scene: face, head and neck, albedo templates --------------------------------------------

def _ellipsoid_mesh(rows: int, cols: int):
    """Unit sphere as a latitude-longitude grid with poles: vertices (V, 3), outward triangles."""
    lat = torch.linspace(0, math.pi, rows + 2)[1:-1]
    lon = torch.linspace(0, 2 * math.pi, cols + 1)[:-1]
    ring = torch.stack([lat.sin()[:, None] * lon.sin(), lat.cos()[:, None].expand(-1, cols),
                        lat.sin()[:, None] * lon.cos()], -1).reshape(-1, 3)
    verts = torch.cat([ring, torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])])
    top, bottom = len(ring), len(ring) + 1
    r, c = torch.meshgrid(torch.arange(rows - 1), torch.arange(cols), indexing="ij")
    a, b = r * cols + c, r * cols + (c + 1) % cols
    quads = torch.cat([torch.stack([a, a + cols, b], -1), torch.stack([b, a + cols, b + cols], -1)])
    c = torch.arange(cols)
    caps = torch.cat([torch.stack([torch.full_like(c, top), c, (c + 1) % cols], -1),
                      torch.stack([torch.full_like(c, bottom), (rows - 1) * cols + (c + 1) % cols,
                                   (rows - 1) * cols + c], -1)])
    return verts, torch.cat([quads.reshape(-1, 3), caps])


def _tube_mesh(rows: int, cols: int):
    """Open vertical unit cylinder, y from 0 down to -1: vertices and outward triangles."""
    lon = torch.linspace(0, 2 * math.pi, cols + 1)[:-1]
    y = torch.linspace(0, -1, rows)
    verts = torch.stack([lon.sin().expand(rows, -1), y[:, None].expand(-1, cols),
                         lon.cos().expand(rows, -1)], -1).reshape(-1, 3)
    r, c = torch.meshgrid(torch.arange(rows - 1), torch.arange(cols), indexing="ij")
    a, b = r * cols + c, r * cols + (c + 1) % cols
    tris = torch.cat([torch.stack([a, a + cols, b], -1), torch.stack([b, a + cols, b + cols], -1)])
    return verts, tris.reshape(-1, 3)


# The face mesh is a mask wrapping 100 degrees around each side: an ellipsoid skull (the hair), two
# ears and a neck complete the head, so profiles have a back, ears and a throat. Sizes in model
# units (mm). They are drawn _BEHIND mm farther than they are, so wherever they overlap the face on
# screen the face wins: a skull that fills the head's outline would otherwise poke through the
# temples. The neck turns with the head's yaw but only _NECK_FOLLOWS of its pitch and roll.
_HEAD = dict(centre=(0.0, 32.0, -85.0), radii=(78.0, 115.0, 90.0))
_EAR = dict(centre=(74.0, 12.0, -98.0), radii=(9.0, 30.0, 17.0))
_NECK = dict(centre=(0.0, -40.0, -90.0), radii=(46.0, 280.0, 46.0))
_BEHIND = 25.0
_NECK_FOLLOWS = 0.3


@dataclass(frozen=True)
class _Scene:
    """Device-resident constants of the renderer: model, extra meshes, albedo templates."""

    model: morphable.MorphableModel
    triangles: torch.Tensor  # (F_all, 3): face, skull, ears, neck
    extra: torch.Tensor  # (V_extra, 3) skull, ear and neck vertices (the neck last), model units
    n_neck: int
    grid: tuple[int, int] | None  # (rows, cols) of the face mesh, for fast normals
    extra_normals: torch.Tensor  # (V_extra, 3) unnormalised normals of skull, ears, neck (model axes)
    hair_level: torch.Tensor  # (V_all,) hair where this exceeds a face's hairline (face: its own line)
    shade: torch.Tensor  # (V_all,) albedo factor: the shadowed underside of the head, the ears
    templates: torch.Tensor  # (V_face, K) per-vertex weights of the albedo colours
    brow_band: torch.Tensor  # (V_face,) skin under the realism knob ``brows``' thicker brows (mesh.brow_band)
    landmarks: torch.Tensor  # (68,) vertex indices
    anchor: torch.Tensor  # (4,) vertices measuring a face: jaw ends (width), chin, nose tip


def _placed(mesh, part: dict, mirror: float = 1.0, tube: bool = False):
    """Scale and place a unit mesh; with its exact (unnormalised) normals, ellipsoid or vertical
    elliptic tube: u / radii, which stay exact under a face's per-axis rescaling k as u / (radii k)."""
    unit, tris = mesh
    radii = torch.tensor(part["radii"])
    normals = unit / radii * (torch.tensor([1.0, 0.0, 1.0]) if tube else 1.0)
    centre = torch.tensor(part["centre"]) * torch.tensor([mirror, 1.0, 1.0])
    return unit * radii + centre, tris, normals


def _grid_shape(model: morphable.MorphableModel) -> tuple[int, int] | None:
    """(rows, cols) if the face mesh is a row-major vertex grid cut into two triangles per cell, as
    the built-in face is (:mod:`falign.synthface.mesh`); None otherwise."""
    V = model.mean.shape[0]
    for cols in (c for c in range(2, V) if V % c == 0):
        rows = V // cols
        r, c = torch.meshgrid(torch.arange(rows - 1), torch.arange(cols - 1), indexing="ij")
        v00 = (r * cols + c).reshape(-1)
        grid = torch.cat([torch.stack([v00, v00 + 1, v00 + cols + 1], 1),
                          torch.stack([v00, v00 + cols + 1, v00 + cols], 1)])
        if torch.equal(grid, model.triangles):
            return rows, cols
    return None


def _face_normals(S: torch.Tensor, scene: _Scene) -> torch.Tensor:
    """(B, V, 3) unit normals of face shapes. On a grid mesh, the cross product of the surface's
    derivatives along the grid (central differences): the same normals as summing the adjacent
    triangles' (checked when the scene is built) at a tenth of the cost."""
    if scene.grid is None:
        return morphable.vertex_normals(S, scene.model.triangles)
    rows, cols = scene.grid
    d_row, d_col = torch.gradient(S.view(-1, rows, cols, 3), dim=(1, 2))
    n = torch.linalg.cross(d_col, d_row).view_as(S)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _templates(model: morphable.MorphableModel) -> torch.Tensor:
    """(V, 10) albedo weights: one column per label (skin, brow, lip, eye, iris, mouth, nostril),
    then smooth skin modulations (cheek blush, beard shadow, eye shadow) scaled per face."""
    labels = torch.nn.functional.one_hot(model.vertex_labels, len(morphable.VERTEX_LABELS)).float()
    x, y, z = model.mean.T
    ax = x.abs()

    def bump(cx, cy, sx, sy):
        return torch.exp(-0.5 * (((ax - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))

    skin = labels[:, 0]
    beard = torch.sigmoid((-20 - y) / 6) * (1 - bump(0, -33, 26, 9)) * (z > -60)
    mods = torch.stack([bump(42, 5, 14, 12), beard, bump(32, 42, 14, 7)], 1) * skin[:, None]
    return torch.cat([labels, mods], 1)


@functools.lru_cache(maxsize=4)
def _scene(device: str) -> _Scene:
    """The renderer's constants on one device, built once: the model, skull, ears and neck around
    it, hair and shadow maps and albedo templates."""
    model = morphable.builtin_model()
    V = model.mean.shape[0]
    parts = [_placed(_ellipsoid_mesh(18, 28), _HEAD), _placed(_ellipsoid_mesh(6, 10), _EAR, -1.0),
             _placed(_ellipsoid_mesh(6, 10), _EAR), _placed(_tube_mesh(6, 20), _NECK, tube=True)]
    offsets = np.cumsum([V] + [len(v) for v, _, _ in parts])
    triangles = torch.cat([model.triangles] + [t + o for (_, t, _), o in zip(parts, offsets)])
    extra = torch.cat([v for v, _, _ in parts])
    skull, n_ears, n_neck = parts[0][0], len(parts[1][0]) + len(parts[2][0]), len(parts[3][0])
    # Hair covers the skull above a level that falls toward the back (a face's "hairline" says how
    # far), and the face above a line that dips at the temples; ears and neck are skin.
    back = (-100 - skull[:, 2]).clamp(min=0)
    hair_level = torch.cat([model.mean[:, 1] + 0.3 * model.mean[:, 0].abs() - 95,
                            skull[:, 1] + 0.6 * back, torch.full((n_ears + n_neck,), -1e4)])
    # Shadow: the skull's underside and the neck lie below the jaw; ears are a little darker.
    shade = torch.cat([torch.ones(V), torch.where(skull[:, 1] < 0, 0.8, 1.0),
                       torch.full((n_ears,), 0.9), torch.full((n_neck,), 0.72)])
    lm = model.landmark_vertices["ibug68"]
    normals = torch.cat([n for _, _, n in parts])
    templates = _templates(model)
    band = torch.from_numpy(facemesh.brow_band(*model.mean.double().T.numpy())).float() * templates[:, 0]
    scene = _Scene(model, triangles, extra, n_neck, _grid_shape(model), normals, hair_level, shade,
                   templates, band, lm, lm[[0, 16, 8, 30]])
    if scene.grid is not None:  # the fast normals must agree with the triangle sums
        fast = _face_normals(model.mean[None], scene)[0]
        if (fast * morphable.vertex_normals(model.mean, model.triangles)).sum(-1).mean() < 0.98:
            scene = dataclasses.replace(scene, grid=None)
    fields = {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene)}
    return _Scene(**{k: v.to(device) if isinstance(v, (torch.Tensor, morphable.MorphableModel)) else v
                     for k, v in fields.items()})


# --- rendering -------------------------------------------------------------------------------------

_VIS_TOL = 3.0  # model units (mm): depth slack of the landmark z-buffer test (see _draw)
_NEIGHBOURS = torch.tensor([[dx, dy, 0.0] for dy in (-1, 0, 1) for dx in (-1, 0, 1)])[:, None]  # 3x3 px


def _albedo(scene: _Scene, f: dict) -> torch.Tensor:
    """(B, V_all, 3) per-vertex albedo: the face's label colours and skin details, hair and skin on
    the head, skin on the neck."""
    skin, hair, d = f["skin"], f["hair"], f["details"]
    dev = skin.device
    ones = torch.ones_like(skin)
    colours = torch.stack([
        skin,
        torch.lerp(skin, hair, 0.55 + 0.4 * d[:, :1]),  # brows: hair over skin
        skin * torch.tensor([0.9, 0.58, 0.58], device=dev) * (0.75 + 0.25 * d[:, 1:2]),  # lips
        ones * torch.tensor([0.93, 0.90, 0.86], device=dev),  # sclera
        f["iris"],
        ones * torch.tensor([0.30, 0.09, 0.09], device=dev) * (0.4 + 0.6 * d[:, 2:3]),  # open mouth
        skin * 0.35,  # nostrils
        skin * torch.tensor([0.10, -0.07, -0.05], device=dev) * d[:, 3:4],  # cheek blush
        _beard(f, skin * -0.45 * ((d[:, 4:5] - 0.6) / 0.4).clamp(min=0)),  # beard shadow on some faces
        skin * -0.2 * d[:, 5:6],  # eye shadow
    ], 1)
    V = scene.templates.shape[0]
    face = torch.einsum("vk,bkc->bvc", scene.templates, colours)
    if "brows" in f:  # the realism knob: skin around the brow turns brow-coloured on some faces
        face = face + scene.brow_band[None, :, None] * ((colours[:, 1] - skin) * f["brows"])[:, None]
    base = torch.cat([face, skin[:, None].expand(-1, len(scene.extra), -1)], 1)
    line = torch.cat([f["fringe"][:, None].expand(-1, V),
                      f["hairline"][:, None].expand(-1, len(scene.extra))], 1)
    hair_w = torch.sigmoid((scene.hair_level - line) / 4)[..., None]
    return torch.lerp(base, hair[:, None], hair_w).mul_(scene.shade[:, None]).clamp_(0, 1)


def _beard(f: dict, shadow: torch.Tensor) -> torch.Tensor:
    """The beard template's colour: the shadow, and with the realism knob ``beard`` on, a strong beard
    (toward the hair colour by ``f["beard"]``)."""
    return shadow + (f["hair"] - f["skin"]) * f["beard"] if "beard" in f else shadow


def _proportions(points: torch.Tensor) -> torch.Tensor:
    """(B, 3) width, height and depth of faces from (B, 4, 3) jaw ends, chin and nose tip."""
    middle = points[:, :2].mean(1)
    return torch.stack([(points[:, 1] - points[:, 0]).norm(dim=-1), middle[:, 1] - points[:, 2, 1],
                        points[:, 3, 2] - middle[:, 2]], 1)


def _rotation(M: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotation of a camera from :func:`morphable.pose_to_M`: rows x right, y up, toward
    the viewer, so ``R @ v`` turns model axes into camera axes."""
    r = torch.stack([M[:, 0, :3], -M[:, 1, :3]], 1)
    r = r / r.norm(dim=-1, keepdim=True)
    return torch.cat([r, torch.linalg.cross(r[:, 0], r[:, 1])[:, None]], 1)


def _complete_heads(scene: _Scene, S: torch.Tensor):
    """Skull, ears and neck for face shapes S (B, V, 3), scaled per axis like each face's width
    (jaw end to jaw end), height (jaw ends to chin) and depth (jaw ends to nose tip) about the jaw
    ends' middle. Returns all vertices (B, V_all, 3), the scales k (B, 1, 3) and the top of the neck."""
    mean_middle = scene.model.mean[scene.anchor[:2]].mean(0)
    k = (_proportions(S[:, scene.anchor]) / _proportions(scene.model.mean[scene.anchor][None]))[:, None]
    middle = S[:, scene.anchor[:2]].mean(1, keepdim=True)
    neck_top = middle + k * (torch.tensor(_NECK["centre"], device=S.device) - mean_middle)
    return torch.cat([S, middle + k * (scene.extra - mean_middle)], 1), k, neck_top


def _draw(scene: _Scene, f: dict, size: int, background: torch.Tensor) -> dict[str, torch.Tensor]:
    """Render faces ``f`` (tensors on the scene's device) over ``background`` (B, H, W, 3): shaded
    images, coverage mask, camera, 68 landmarks with self-occlusion visibility, tight boxes."""
    S = scene.model.shape(f["p"])
    S_all, k, neck_top = _complete_heads(scene, S)
    V, n_neck = S.shape[1], scene.n_neck
    # Camera: scale from the drawn face width; then shift so the landmark box lands on its centre.
    scale = f["width"] * size / _W0
    M = morphable.pose_to_M(scale, f["yaw"], f["pitch"], f["roll"], 0.0, 0.0)
    lm = morphable.project(M, S[:, scene.landmarks])
    lo, hi = lm.amin(1), lm.amax(1)
    shift = (size - 1) / 2 + f["shift"] * size - (lo + hi) / 2
    M[:, :, 3] = shift
    # The neck's camera: less pitch and roll, turning about the neck's top, which stays in place.
    M_neck = morphable.pose_to_M(scale, f["yaw"], _NECK_FOLLOWS * f["pitch"], _NECK_FOLLOWS * f["roll"],
                                 0.0, 0.0)
    M_neck[:, :, 3] = (morphable.project(M, neck_top) - morphable.project(M_neck, neck_top))[:, 0]
    R, R_neck = _rotation(M), _rotation(M_neck)
    # Screen vertices: x, y in pixels and depth (row 3 of R: model units, larger = nearer, so the
    # visibility slack is a distance), one product for the head and one for the neck (whose depth
    # matches the head's at its top); everything but the face is pushed _BEHIND.
    head, neck = S_all[:, :-n_neck], S_all[:, -n_neck:]
    zero = torch.zeros_like(scale)[:, None]
    neck_z = (neck_top @ (R[:, 2:] - R_neck[:, 2:]).transpose(1, 2))[:, 0]
    verts = torch.cat([
        torch.baddbmm(torch.cat([M[:, :, 3], zero], 1)[:, None], head,
                      torch.cat([M[:, :, :3], R[:, 2:]], 1).transpose(1, 2)),
        torch.baddbmm(torch.cat([M_neck[:, :, 3], neck_z], 1)[:, None], neck,
                      torch.cat([M_neck[:, :, :3], R_neck[:, 2:]], 1).transpose(1, 2)),
    ], 1)
    verts[:, V:, 2] -= _BEHIND
    raster = render.rasterize(verts, scene.triangles, size, size, cull_backfaces=True)
    # Shade in the head's model axes: the light (given in camera axes: x right, y up, toward the
    # viewer) turns by R^T, the neck's normals by R^T R_neck.
    extra = scene.extra_normals / k
    extra = extra / extra.norm(dim=-1, keepdim=True)
    extra[:, -n_neck:] = extra[:, -n_neck:] @ (R.transpose(1, 2) @ R_neck).transpose(1, 2)
    normals = torch.cat([_face_normals(S, scene), extra], 1)
    light = (f["light"][:, None] @ R)[:, 0]
    lights = (((f["light2"][:, None] @ R)[:, 0], f["diffuse2"]),) if "light2" in f else ()
    rgb, mask = render.render_mesh(verts, scene.triangles, _albedo(scene, f), normals, light,
                                   f["ambient"], f["diffuse"], size, size, background, raster=raster,
                                   lights=lights)
    # A landmark is self-occluded when the surface drawn around it is nearer than it everywhere in
    # its 3x3 pixels (by more than a slack): near a silhouette the surface is so steep that the
    # depth interpolated one pixel away differs by centimetres, while a landmark hidden behind the
    # nose or the cheek is covered all around.
    points = verts[:, scene.landmarks]
    around = (points[:, None] + _NEIGHBOURS.to(points.device)).flatten(1, 2)  # (B, 9 * 68, 3)
    visible = render.vertex_visibility(around, raster.depth, _VIS_TOL).view(len(S), 9, -1).any(1)
    x, y = points[..., 0].round(), points[..., 1].round()
    visible &= (x >= 0) & (x <= size - 1) & (y >= 0) & (y <= size - 1)
    return {"rgb": rgb, "mask": mask, "M": M, "landmarks68": lm + shift[:, None],
            "visible68": visible, "boxes": torch.cat([lo + shift, hi + shift], 1)}


def _occlude(out: dict, f: dict, cfg: SynthFaceConfig, g: torch.Generator, real: bool):
    """Occluders: the plain kinds from the pixel generator ``g`` (as ever), with ``real`` also skin
    texture first and the realism kinds (glasses, hands) from the face's realism draws."""
    rgb = realism.skin_texture(out["rgb"], out["mask"], f) if real else out["rgb"]
    plain = tuple(k for k in cfg.occluders if k not in realism.OCCLUDERS)
    share = cfg.occlusion * len(plain) / len(cfg.occluders) if real else cfg.occlusion
    if plain or not real:
        rgb, occluded = render.draw_occluders(rgb, g, share, plain, out["boxes"])
    else:
        occluded = torch.zeros_like(out["mask"])
    if real:
        rgb, more = realism.draw_occluders(rgb, f, out["landmarks68"], out["boxes"], f["skin"])
        occluded = occluded | more
    return rgb, occluded


def _finish(out: dict, f: dict, cfg: SynthFaceConfig, size: int, g: torch.Generator) -> dict:
    """One block's pixel randomness, in a fixed order: occluders (which also hide landmarks),
    blur, noise; then 8-bit images and the jittered detector boxes. With realism on (``f`` holds
    its draws): skin texture before the occluders, low resolution after the blur, grey after the
    noise, JPEG on the 8-bit image."""
    real = "texture" in f
    rgb, occluded = _occlude(out, f, cfg, g, real)
    xy = out["landmarks68"].round().long()
    x, y = xy[..., 0].clamp(0, size - 1), xy[..., 1].clamp(0, size - 1)
    under = occluded.flatten(1).gather(1, y * size + x)
    rgb = render.gaussian_blur(rgb, f["blur"] * (size / 128))
    rgb = realism.low_res(rgb, f) if real else rgb
    rgb = render.add_noise(rgb, f["noise"], g)
    rgb = realism.grey(rgb, f) if real else rgb
    box = out["boxes"]
    wh = box[:, 2:] - box[:, :2]
    centre = (box[:, :2] + box[:, 2:]) / 2 + f["detector"][:, :2] * wh.prod(1, keepdim=True).sqrt()
    half = wh * f["detector"][:, 2:].exp() / 2
    images = rgb.mul_(255).add_(0.5).to(torch.uint8)  # rounds: rgb is in [0, 1]
    return {**out, "images": realism.jpeg(images, f) if real else images,
            "visible68": out["visible68"] & ~under,
            "detector_boxes": torch.cat([centre - half, centre + half], 1)}


def _with_realism(faces: dict, cfg: SynthFaceConfig, seed: int) -> dict:
    """A block's faces with the realism draws added (a generator of their own, so the plain draws
    stay as they were) and the light's colour cast applied."""
    r = realism.draw(cfg, len(faces["p"]), torch.Generator().manual_seed(seed))
    return {**faces, **r, "ambient": faces["ambient"] * r["tint"], "diffuse": faces["diffuse"] * r["tint"]}


def _batch_blocks(size: int, device: torch.device) -> int:
    """Blocks drawn per step: many feed a GPU; on a CPU one block, rendered in chunks of about a
    million pixels (larger batches run slower there: their buffers fall out of the caches)."""
    return 16 if device.type == "cuda" else 1


def _chunk_faces(size: int, device: torch.device) -> int | None:
    """Faces per render call: all at once on a GPU (None), about a million pixels on a CPU."""
    return None if device.type == "cuda" else max(8, (1 << 20) // (size * size))


def _draw_chunks(scene: _Scene, f: dict, size: int, background: torch.Tensor) -> dict:
    """:func:`_draw` in chunks of :func:`_chunk_faces`, concatenated."""
    n = len(background)
    chunk = _chunk_faces(size, background.device) or n
    outs = [_draw(scene, {k: v[i:i + chunk] for k, v in f.items()}, size, background[i:i + chunk])
            for i in range(0, n, chunk)]
    return outs[0] if len(outs) == 1 else {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


_KEYS = ("images", "landmarks68", "visible68", "boxes", "detector_boxes", "M", "p", "pose")


def _generate(preset: str, split: str, cfg: SynthFaceConfig, n: int, size: int, seed: int,
              device: torch.device, keys: tuple[str, ...] = _KEYS) -> dict[str, np.ndarray]:
    """Render ``n`` faces of one split; numpy arrays with the 68-point ground truth (``keys``; the
    tests also ask for "mask", the face's coverage).

    Faces are drawn block by block (one seed per block), several blocks per step on a GPU; each
    block's pixel generator draws its background, then its occluders and noise."""
    if device.type == "cpu":
        allocator.keep_freed_memory()  # batch buffers are reused, not page-faulted in again
    scene = _scene(str(device))
    per_call = BLOCK * _batch_blocks(size, device)
    parts: dict[str, list] = {k: [] for k in keys}
    with tqdm(total=n, desc=f"SynthFace {preset}/{split}", unit="face", disable=n < 2048) as bar:
        for start in range(0, n, per_call):
            blocks = [(b, min(b + BLOCK, n)) for b in range(start, min(start + per_call, n), BLOCK)]
            drawn = [draw_faces(cfg, b1 - b0, _seed(seed, preset, split, b0 // BLOCK)) for b0, b1 in blocks]
            if realism.enabled(cfg):
                drawn = [_with_realism(d, cfg, _seed(seed, preset, split, b0 // BLOCK, "realism"))
                         for d, (b0, _) in zip(drawn, blocks)]
            f = {k: torch.cat([d[k] for d in drawn]).to(device) for k in drawn[0]}
            gens = [torch.Generator(device).manual_seed(_seed(seed, preset, split, b0 // BLOCK, "pixels"))
                    for b0, _ in blocks]
            background = torch.cat([render.random_backgrounds(b1 - b0, size, size, g)
                                    for (b0, b1), g in zip(blocks, gens)])
            if realism.enabled(cfg):
                background = realism.photo_backgrounds(background, f)
            out = _draw_chunks(scene, f, size, background)
            for (b0, b1), g in zip(blocks, gens):
                rows = slice(b0 - start, b1 - start)
                fb = {k: v[rows] for k, v in f.items()}
                block = _finish({k: v[rows] for k, v in out.items()}, fb, cfg, size, g)
                block["p"] = fb["p"]
                block["pose"] = torch.stack([fb["yaw"], fb["pitch"], fb["roll"]], 1)
                for k in keys:
                    parts[k].append(block[k].cpu())
                bar.update(b1 - b0)
    return {k: torch.cat(v).numpy() for k, v in parts.items()}


# --- fingerprints and the on-disk cache ------------------------------------------------------------

_GENERATOR_MODULES = ("falign.synthface.dataset", "falign.synthface.render", "falign.synthface.morphable",
                      "falign.synthface.mesh", "falign.synthface.realism")


@functools.lru_cache(maxsize=1)
def _code_version() -> str:
    """Hash of the generator's source: editing any module that shapes the images regenerates."""
    h = hashlib.sha256()
    for name in _GENERATOR_MODULES:
        h.update(Path(sys.modules[name].__file__).read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(preset: str, split: str, cfg: SynthFaceConfig, n: int, size: int, seed: int,
                 device: torch.device) -> str:
    payload = {"preset": preset, "split": split, "config": dataclasses.asdict(cfg), "n": n,
               "size": size, "seed": seed, "device": device.type, "code": _code_version()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _expected(n: int, size: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every cached array."""
    f32 = np.dtype(np.float32)
    return {"images": ((n, size, size, 3), np.dtype(np.uint8)), "landmarks68": ((n, 68, 2), f32),
            "visible68": ((n, 68), np.dtype(bool)), "boxes": ((n, 4), f32), "detector_boxes": ((n, 4), f32),
            "M": ((n, 2, 4), f32), "p": ((n, 228), f32), "pose": ((n, 3), f32)}


def _file_sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _load_cache(path: Path, expected: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (with a warning naming the file) if anything about them is off:
    missing or unreadable checksum sidecar, checksum mismatch, unreadable npz, keys, shapes, dtypes."""
    sidecar = path.with_suffix(".json")
    if not path.exists() and not sidecar.exists():
        return None
    try:
        if not sidecar.exists():
            raise ValueError("no checksum sidecar (interrupted write?)")
        if not path.exists():
            raise ValueError(f"the data file is missing beside {sidecar.name}")
        if _file_sha256(path) != json.loads(sidecar.read_text())["sha256"]:
            raise ValueError("checksum mismatch (truncated or corrupt file)")
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in expected if k in npz.files}
        missing = sorted(set(expected) - set(arrays))
        if missing:
            raise ValueError(f"missing arrays {missing}")
        wrong = {k: (a.shape, str(a.dtype)) for k, a in arrays.items() if (a.shape, a.dtype) != expected[k]}
        if wrong:
            raise ValueError(f"unexpected shapes or dtypes {wrong}")
        return arrays
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, EOFError) as err:
        warnings.warn(f"{path}: corrupt SynthFace cache ({err}); regenerating it", stacklevel=4)
        return None


def _save_cache(path: Path, arrays: dict[str, np.ndarray], about: dict) -> None:
    """npz first, then the sidecar with its checksum: a sidecar vouches for a complete file."""
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        digest = _file_sha256(tmp)
    atomic.write_text(path.with_suffix(".json"), json.dumps({**about, "sha256": digest}, indent=1) + "\n")


# --- public API ------------------------------------------------------------------------------------

def _split_arrays(preset: str, split: str, n: int, size: int, seed: int, cache: bool,
                  device: torch.device, overrides: dict) -> dict:
    """One plain split's 68-point arrays, from the cache or freshly rendered."""
    cfg = _config(preset, split, overrides)
    fp = _fingerprint(preset, split, cfg, n, size, seed, device)
    path = paths.cache_dir() / "synthface" / f"{fp}.npz"
    arrays = _load_cache(path, _expected(n, size)) if cache else None
    if arrays is None:
        arrays = _generate(preset, split, cfg, n, size, seed, device)
        if cache:
            about = {"preset": preset, "split": split, "n": n, "size": size, "seed": seed,
                     "device": device.type, "config": dataclasses.asdict(cfg)}
            _save_cache(path, arrays, about)
    arrays["subset"] = np.full(n, split)
    arrays["index"] = np.arange(n)
    arrays["fingerprint"] = fp
    return arrays


def synthface_arrays(preset: str = "300w-like", split: str = "train", n: int | None = None, size: int = 128,
                     seed: int = 0, cache: bool = True, device: str | torch.device = "cpu",
                     **overrides) -> dict:
    """``n`` SynthFace faces of ``preset``/``split`` as stacked numpy arrays (the fast path for training).

    Keys: images (n, size, size, 3) uint8; landmarks (n, N, 2) float32 and visible (n, N) bool in the
    preset's scheme; landmarks68, visible68 (the iBUG-68 master); boxes, detector_boxes (n, 4) x1 y1 x2
    y2; M (n, 2, 4); p (n, 228); pose (n, 3) yaw, pitch, roll degrees; subset and index (which split
    and which face of it each row is: composite splits like "full" concatenate their parts); and
    fingerprint (str). ``n`` defaults to the real benchmark's split size. ``overrides`` replace fields
    of the split's :class:`SynthFaceConfig` (e.g. ``yaw=(80, 80)``).
    """
    spec = _preset(preset)
    preset = LIKE.get(preset, preset)
    if split not in spec.split_names:
        raise ValueError(f"SynthFace preset {preset!r} has no split {split!r}; "
                         f"splits: {', '.join(spec.split_names)}")
    n = spec.sizes[split] if n is None else int(n)
    if n < 1 or not 8 <= size <= 256:
        raise ValueError(f"SynthFace needs n >= 1 and 8 <= size <= 256, got n={n}, size={size}")
    device = torch.device(device)
    if split in spec.composite:
        parts = spec.composite[split]
        total = sum(w for _, w in parts)
        counts = [round(n * w / total) for _, w in parts[:-1]]
        counts.append(n - sum(counts))
        pieces = [_split_arrays(preset, s, c, size, seed, cache, device, overrides)
                  for (s, _), c in zip(parts, counts) if c > 0]
        arrays = {k: np.concatenate([a[k] for a in pieces]) for k in (*_KEYS, "subset", "index")}
        joined = "+".join(a["fingerprint"] for a in pieces)
        arrays["fingerprint"] = hashlib.sha256(joined.encode()).hexdigest()[:20]
    else:
        arrays = _split_arrays(preset, split, n, size, seed, cache, device, overrides)
    arrays["landmarks"] = convert(arrays["landmarks68"], "ibug68", spec.scheme).astype(np.float32)
    arrays["visible"] = convert_visibility(arrays["visible68"], "ibug68", spec.scheme)
    return arrays


def synthface(preset: str = "300w-like", split: str = "train", n: int | None = None, size: int = 128,
              seed: int = 0, cache: bool = True, device: str | torch.device = "cpu",
              **overrides) -> FaceDataset:
    """SynthFace faces as a :class:`FaceDataset` named ``synthface:<preset>``; see :func:`synthface_arrays`.

    Each :class:`Sample` carries the preset's landmarks and visibility, the tight box, ``params``
    {"M", "p"}, ``pose`` and, in ``extra``, landmarks68/visible68 (to derive any scheme),
    detector_box (the box to crop with), subset (the part of a composite split)."""
    preset = LIKE.get(preset, preset)
    a = synthface_arrays(preset, split, n, size, seed, cache, device, **overrides)
    scheme = PRESETS[preset].scheme
    samples = [
        Sample(image=a["images"][i], landmarks=a["landmarks"][i], visible=a["visible"][i], box=a["boxes"][i],
               scheme=scheme, source=f"synthface:{preset}/{a['subset'][i]}/{a['index'][i]}",
               params={"M": a["M"][i], "p": a["p"][i]}, pose=a["pose"][i],
               extra={"landmarks68": a["landmarks68"][i], "visible68": a["visible68"][i],
                      "detector_box": a["detector_boxes"][i], "subset": str(a["subset"][i])})
        for i in range(len(a["images"]))
    ]
    counts = {str(s): int(c) for s, c in zip(*np.unique(a["subset"], return_counts=True))}
    return FaceDataset(samples, name=f"synthface:{preset}", split=split, scheme=scheme, counts=counts,
                       fingerprint=a["fingerprint"])


def render_shapes(p, yaw=0.0, pitch=0.0, roll=0.0, size: int = 128, width: float = 0.5,
                  light=(0.3, 0.4, 1.0), background: float = 0.9, device: str | torch.device = "cpu") -> dict:
    """Clean renders of given shape coefficients ``p`` (B, 228) for figures: one neutral skin tone,
    a fixed light, a flat background, no occluder, blur or noise. Angles are floats or (B,) arrays.
    Returns numpy images (B, size, size, 3) uint8, landmarks68 (B, 68, 2) and visible68 (B, 68)."""
    device = torch.device(device)
    scene = _scene(str(device))
    p = torch.as_tensor(np.asarray(p), dtype=torch.float32).reshape(-1, scene.model.n_params)
    B = len(p)

    def each(v):
        return torch.as_tensor(v, dtype=torch.float32).expand(B).clone()

    f = {"p": p, "yaw": each(yaw), "pitch": each(pitch), "roll": each(roll), "width": each(width),
         "shift": torch.zeros(B, 2), "skin": _SKIN[1].expand(B, 3), "hair": _HAIR[2].expand(B, 3),
         "hairline": torch.zeros(B), "fringe": torch.zeros(B), "iris": _IRIS[0].expand(B, 3),
         "details": torch.full((B, 6), 0.3),
         "light": torch.tensor(light, dtype=torch.float32).expand(B, 3), "ambient": torch.full((B, 1), 0.45),
         "diffuse": torch.full((B, 1), 0.6)}
    f = {k: v.to(device) for k, v in f.items()}
    out = _draw(scene, f, size, torch.full((B, size, size, 3), background, device=device))
    return {"images": out["rgb"].mul_(255).round_().to(torch.uint8).cpu().numpy(),
            "landmarks68": out["landmarks68"].cpu().numpy(), "visible68": out["visible68"].cpu().numpy()}


def _load(folder, split: str, preset: str = "300w-like", **options) -> FaceDataset:
    """Registry loader: ``get_dataset("synthetic", split, preset=..., n=..., size=..., seed=...)``."""
    return synthface(preset, split, **options)


register("synthetic", DatasetSpec(
    _load, ("train", "common", "challenging", "full", "test"), "ibug68",
    "SynthFace, generated (presets: " + ", ".join(PRESETS) + "; the scheme follows the preset)"))
