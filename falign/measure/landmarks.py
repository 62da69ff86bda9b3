"""Landmark schemes: what the N rows of a landmark array mean, and how schemes relate.

A `Scheme` names every point, carries the permutation that horizontal flipping needs, and the
indices the NME normalisers need. Notebooks refer to schemes by name (`get_scheme("ibug68")`),
never by bare index lists.

Conventions
-----------
* Points are (..., N, 2) arrays, 0-based pixels, x right, y down, pixel centres at integers.
* "left" and "right" in point names mean the *image* left and right of a frontal face (the
  viewer's side), as in Sun et al.'s five-point lists. In iBUG 68 the image-left eye is 36-41,
  which is the subject's right eye. Names from other annotation formats are read this way; a flip
  permutation does not depend on that reading, only the names do.
* Every scheme is defined on a *root* annotation: point i of a scheme is the mean of the root points
  `sources[i]` (a single index for a plain subset). The roots are the independent annotations
  ibug68, cofw29, aflw21, helen194 and menpo39; there is no exact correspondence between roots.
  `convert` works between schemes of one root whenever the source keeps, as plain points, every
  root point the target needs (ibug68 -> all its derived schemes, ibug51 -> ibug49, aflw21 ->
  aflw19, ...). Flip permutations and normaliser indices of derived schemes are derived from the
  root's, so they cannot drift apart.
* A converted point is visible only if *all* the points it is averaged from are visible: an eye
  centre computed from a half-hidden eye contour is not scored as a visible landmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Scheme:
    """A named landmark layout.

    flip_perm: after mirroring x, point i of the flipped face is point flip_perm[i] of the original
        (an involution); None when the layout is not mirror-symmetric or its symmetry is unknown.
    outer_eye_corners: (image-left eye outer corner, image-right eye outer corner), or None.
    eye_centre_groups: two index tuples whose means are the eye centres (pupils), or None.
    root, sources: point i is the mean of root points sources[i] (see the module docstring).
    """

    name: str
    point_names: tuple[str, ...]
    flip_perm: np.ndarray | None
    outer_eye_corners: tuple[int, int] | None
    eye_centre_groups: tuple[tuple[int, ...], tuple[int, ...]] | None
    root: str
    sources: tuple[tuple[int, ...], ...]
    description: str = ""

    def __post_init__(self):
        n = len(self.point_names)
        if len(set(self.point_names)) != n:
            raise ValueError(f"scheme {self.name!r}: point names are not unique")
        if len(self.sources) != n:
            raise ValueError(f"scheme {self.name!r}: {len(self.sources)} sources for {n} points")
        if self.flip_perm is not None:
            perm = np.array(self.flip_perm, dtype=np.int64)
            if (perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n))
                    or not np.array_equal(perm[perm], np.arange(n))):
                raise ValueError(f"scheme {self.name!r}: flip_perm must be an involutive "
                                 f"permutation of 0..{n - 1}")
            perm.setflags(write=False)
            object.__setattr__(self, "flip_perm", perm)

    @property
    def n_points(self) -> int:
        return len(self.point_names)

    def __repr__(self) -> str:
        return f"Scheme({self.name!r}, n_points={self.n_points})"


# --- building blocks --------------------------------------------------------------------------

def _perm_from_pairs(n: int, pairs) -> np.ndarray:
    perm = np.arange(n)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


def _root(name, point_names, mirror_pairs, outer_eye_corners, eye_centre_groups, description):
    """A root scheme: an annotation in its own right (sources are the points themselves)."""
    n = len(point_names)
    perm = None if mirror_pairs is None else _perm_from_pairs(n, mirror_pairs)
    return Scheme(name, tuple(point_names), perm, outer_eye_corners, eye_centre_groups,
                  root=name, sources=tuple((i,) for i in range(n)), description=description)


def _derive(name: str, root: Scheme, points, description: str) -> Scheme:
    """A scheme whose points are means of `root` points; points = [(name, root indices), ...].

    Its flip permutation and normaliser indices follow from the root's.
    """
    names = tuple(point_name for point_name, _ in points)
    sources = tuple(tuple(int(i) for i in src) for _, src in points)
    return Scheme(name, names, _derived_flip(name, root, sources),
                  _derived_corners(root, sources), _derived_eye_groups(root, sources),
                  root=root.name, sources=sources, description=description)


def _derived_flip(name, root, sources):
    # The mirror image of a point averaged over root points S is the point averaged over flip(S).
    if root.flip_perm is None:
        return None
    position = {frozenset(src): i for i, src in enumerate(sources)}
    perm = [position.get(frozenset(root.flip_perm[list(src)].tolist())) for src in sources]
    if None in perm:
        raise ValueError(f"scheme {name!r} is not mirror-symmetric on {root.name!r}")
    return np.array(perm)


def _derived_corners(root, sources):
    if root.outer_eye_corners is None:
        return None
    position = {src: i for i, src in enumerate(sources)}
    corners = [position.get((c,)) for c in root.outer_eye_corners]
    return None if None in corners else tuple(corners)


def _derived_eye_groups(root, sources):
    if root.eye_centre_groups is None:
        return None
    plain = {src[0]: i for i, src in enumerate(sources) if len(src) == 1}

    def group(root_group):
        if all(j in plain for j in root_group):       # the whole eye is kept point by point
            return tuple(plain[j] for j in root_group)
        for i, src in enumerate(sources):             # or the eye centre itself is a point
            if set(src) == set(root_group):
                return (i,)
        return None

    groups = tuple(group(g) for g in root.eye_centre_groups)
    return None if None in groups else groups


def _subset(root: Scheme, indices):
    return [(root.point_names[i], (i,)) for i in indices]


# --- iBUG 68 (300-W) and its derived schemes --------------------------------------------------

_IBUG68_NAMES = (
    # jaw 0-16, from the image-left ear level down to the chin and up again; named by distance
    # from the outside so that mirrored points share a suffix
    *[f"left_jaw_{i}" for i in range(8)], "chin", *[f"right_jaw_{i}" for i in range(7, -1, -1)],
    # brows 17-21 (image-left, outer to inner) and 22-26 (image-right, inner to outer)
    *[f"left_brow_{i}" for i in range(5)], *[f"right_brow_{i}" for i in range(4, -1, -1)],
    # nose: bridge 27-30 (30 = tip), base 31-35 from image-left to image-right
    "nose_bridge_0", "nose_bridge_1", "nose_bridge_2", "nose_tip",
    "left_nostril_0", "left_nostril_1", "nose_base", "right_nostril_1", "right_nostril_0",
    # image-left eye 36-41, clockwise from the outer corner
    "left_eye_outer", "left_eye_upper_outer", "left_eye_upper_inner",
    "left_eye_inner", "left_eye_lower_inner", "left_eye_lower_outer",
    # image-right eye 42-47, clockwise from the inner corner
    "right_eye_inner", "right_eye_upper_inner", "right_eye_upper_outer",
    "right_eye_outer", "right_eye_lower_outer", "right_eye_lower_inner",
    # outer lips 48-59, clockwise from the image-left corner
    "left_mouth_corner", "left_upper_lip_1", "left_upper_lip_2", "upper_lip_top",
    "right_upper_lip_2", "right_upper_lip_1", "right_mouth_corner",
    "right_lower_lip_1", "right_lower_lip_2", "lower_lip_bottom",
    "left_lower_lip_2", "left_lower_lip_1",
    # inner lips 60-67, clockwise from the image-left inner corner
    "left_inner_mouth_corner", "left_inner_upper_lip", "inner_upper_lip", "right_inner_upper_lip",
    "right_inner_mouth_corner", "right_inner_lower_lip", "inner_lower_lip", "left_inner_lower_lip",
)

_IBUG68_MIRROR_PAIRS = (
    *[(i, 16 - i) for i in range(8)],                                   # jaw
    *[(17 + i, 26 - i) for i in range(5)],                              # brows
    (31, 35), (32, 34),                                                 # nose base
    (36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46),         # eyes
    (48, 54), (49, 53), (50, 52), (55, 59), (56, 58),                   # outer lips
    (60, 64), (61, 63), (65, 67),                                       # inner lips
)

IBUG68 = _root(
    "ibug68", _IBUG68_NAMES, _IBUG68_MIRROR_PAIRS,
    outer_eye_corners=(36, 45),
    eye_centre_groups=(tuple(range(36, 42)), tuple(range(42, 48))),
    description="iBUG/300-W 68 points (Multi-PIE markup): jaw 0-16, brows 17-26, nose 27-35, "
                "eyes 36-47, mouth 48-67.")

IBUG51 = _derive("ibug51", IBUG68, _subset(IBUG68, range(17, 68)),
                 "iBUG 68 without the jaw (points 17-67).")

IBUG49 = _derive("ibug49", IBUG68,
                 _subset(IBUG68, [i for i in range(17, 68) if i not in (60, 64)]),
                 "iBUG 51 without the inner mouth corners 60 and 64 (the 49-point setting).")

FIVE = _derive(
    "five", IBUG68,
    [("left_eye_centre", range(36, 42)), ("right_eye_centre", range(42, 48)),
     *_subset(IBUG68, (30, 48, 54))],
    "Sun et al. five points: image-left eye centre, image-right eye centre, nose tip, "
    "image-left and image-right mouth corners. From iBUG 68: eye centres are the means of "
    "36-41 and 42-47; nose tip 30; mouth corners 48 and 54.")

AFW6 = _derive(
    "afw6", IBUG68,
    [("left_eye_centre", range(36, 42)), ("right_eye_centre", range(42, 48)),
     *_subset(IBUG68, (30, 48)), ("mouth_centre", (62, 66)), *_subset(IBUG68, (54,))],
    "AFW's six points: eye centres, nose tip, image-left mouth corner, mouth centre, "
    "image-right mouth corner. From iBUG 68: eye centres are the means of 36-41 and 42-47, "
    "nose tip 30, corners 48/54, and the mouth centre is the mean of the inner-lip midpoints "
    "62/66 (where the lips meet; the outer-lip midpoints 51/57 are biased by unequal lip "
    "thickness).")

AFLW_PIFA34 = _derive(
    "aflw-pifa34", IBUG68,
    _subset(IBUG68, (0, 2, 4, 6, 8, 10, 12, 14, 16,          # jaw, every other point
                     17, 19, 21, 22, 24, 26,                 # brows: ends and middles
                     27, 30, 31, 33, 35,                     # nose: bridge top, tip, base
                     36, 37, 39, 41, 42, 44, 45, 46,         # eyes: corners, one upper, one lower
                     48, 51, 54, 57, 62, 66)),               # mouth: corners and midpoints
    "Our 34-point stand-in for the AFLW-PIFA layout (whose point list is not published): a "
    "mirror-symmetric subset of iBUG 68 used for synthetic data. Readers of real AFLW-PIFA "
    "files take the 34 points as given.")


# --- independent annotations ------------------------------------------------------------------

COFW29 = _root(
    "cofw29",
    ("left_brow_outer", "right_brow_outer", "left_brow_inner", "right_brow_inner",
     "left_brow_top", "left_brow_bottom", "right_brow_top", "right_brow_bottom",
     "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
     "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
     "left_pupil", "right_pupil", "left_nostril", "right_nostril",
     "nose_centre_top", "nose_centre_bottom", "left_mouth_corner", "right_mouth_corner",
     "upper_lip_top", "upper_lip_bottom", "lower_lip_top", "lower_lip_bottom", "chin"),
    ((0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14), (13, 15), (16, 17),
     (18, 19), (22, 23)),
    outer_eye_corners=(8, 9),
    eye_centre_groups=((16,), (17,)),
    description="COFW 29 points, the LFPW-29 order used by RCPR (LFPW's 35 without the ear "
                "points); pupils 16/17 give the usual inter-pupil normaliser.")

_AFLW21_NAMES = (
    "left_brow_outer", "left_brow_centre", "left_brow_inner",
    "right_brow_inner", "right_brow_centre", "right_brow_outer",
    "left_eye_outer", "left_eye_centre", "left_eye_inner",
    "right_eye_inner", "right_eye_centre", "right_eye_outer",
    "left_ear", "left_nostril", "nose_tip", "right_nostril", "right_ear",
    "left_mouth_corner", "mouth_centre", "right_mouth_corner", "chin",
)

AFLW21 = _root(
    "aflw21", _AFLW21_NAMES,
    ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16), (13, 15), (17, 19)),
    outer_eye_corners=(6, 11),
    eye_centre_groups=((7,), (10,)),
    description="AFLW's 21 points in its feature-id order (LeftBrowLeftCorner ... ChinCenter).")

AFLW19 = _derive("aflw19", AFLW21, _subset(AFLW21, [i for i in range(21) if i not in (12, 16)]),
                 "AFLW 21 without the two ear points (the common 19-point benchmark).")

_HELEN_GROUPS = (("contour", 41), ("nose", 17), ("outer_lip", 28), ("inner_lip", 28),
                 ("right_eye", 20), ("left_eye", 20), ("right_brow", 20), ("left_brow", 20))
_HELEN_NAMES = tuple(f"{group}_{k:02d}" for group, size in _HELEN_GROUPS for k in range(size))

HELEN194 = _root(
    "helen194", _HELEN_NAMES, None,
    outer_eye_corners=None,
    eye_centre_groups=(tuple(range(114, 134)), tuple(range(134, 154))),
    description="Helen 194 points in the dataset's contour groups (contour 0-40, nose 41-57, "
                "outer lip 58-85, inner lip 86-113, right eye 114-133, left eye 134-153, right "
                "brow 154-173, left brow 174-193; group names as Helen gives them). No flip "
                "permutation or eye corners: where each contour starts is not documented.")

MENPO39 = _root(
    "menpo39", [f"point_{i:02d}" for i in range(39)], None,
    outer_eye_corners=None, eye_centre_groups=None,
    description="Menpo 2D profile markup, 39 points, taken as given by the files. A profile "
                "shows one eye, so there is no ocular normaliser and no flip permutation; Menpo "
                "normalises by the diagonal of the ground-truth landmark box.")


_SCHEMES = {s.name: s for s in (IBUG68, IBUG51, IBUG49, FIVE, AFW6, AFLW_PIFA34, HELEN194,
                                COFW29, MENPO39, AFLW21, AFLW19)}
SCHEME_NAMES = tuple(_SCHEMES)


def get_scheme(name: str | Scheme) -> Scheme:
    """The scheme called `name` (a Scheme is returned as is)."""
    if isinstance(name, Scheme):
        return name
    if name not in _SCHEMES:
        raise ValueError(f"unknown landmark scheme {name!r}; "
                         f"valid names: {', '.join(SCHEME_NAMES)}")
    return _SCHEMES[name]


# --- conversion and flipping ------------------------------------------------------------------

@lru_cache(maxsize=None)
def _conversion_weights(src_name: str, dst_name: str) -> np.ndarray:
    """(n_dst, n_src) matrix W with dst_points = W @ src_points."""
    src, dst = _SCHEMES[src_name], _SCHEMES[dst_name]
    if src.root != dst.root:
        raise ValueError(f"no conversion from {src.name!r} to {dst.name!r}: they are independent "
                         f"annotations (defined on {src.root!r} and {dst.root!r})")
    kept = {s[0]: i for i, s in enumerate(src.sources) if len(s) == 1}
    missing = sorted({j for s in dst.sources for j in s if j not in kept})
    if missing:
        raise ValueError(f"no conversion from {src.name!r} to {dst.name!r}: {src.name!r} lacks "
                         f"{src.root} points {missing}")
    weights = np.zeros((dst.n_points, src.n_points))
    for i, s in enumerate(dst.sources):
        weights[i, [kept[j] for j in s]] = 1.0 / len(s)
    weights.setflags(write=False)
    return weights


def _check_shape(points, scheme: Scheme, what: str, trailing: tuple = (2,)):
    shape = tuple(points.shape)
    n_dims = 1 + len(trailing)
    if len(shape) < n_dims or shape[len(shape) - n_dims:] != (scheme.n_points, *trailing):
        expected = ", ".join(map(str, ("...", scheme.n_points, *trailing)))
        raise ValueError(f"{what} of shape {shape} do not fit scheme {scheme.name!r}: expected "
                         f"({expected})")


def convert(points, src: str | Scheme, dst: str | Scheme):
    """Convert (..., N, 2) points (numpy or torch, batched or not) from scheme `src` to `dst`.

    Derived points are means of source points; the result keeps the input's float dtype and
    device (integer input becomes float). Same scheme: a copy. Undefined: ValueError.
    """
    src, dst = get_scheme(src), get_scheme(dst)
    weights = None if src is dst else _conversion_weights(src.name, dst.name)
    _check_shape(points, src, "points")
    if isinstance(points, torch.Tensor):
        if weights is None:
            return points.clone()
        dtype = points.dtype if points.is_floating_point() else torch.float32
        return torch.tensor(weights, dtype=dtype, device=points.device) @ points.to(dtype)
    points = np.asarray(points)
    if weights is None:
        return points.copy()
    dtype = points.dtype if np.issubdtype(points.dtype, np.floating) else np.float64
    return weights.astype(dtype) @ points.astype(dtype)


def convert_visibility(visible, src: str | Scheme, dst: str | Scheme):
    """Convert (..., N) boolean visibility: a derived point is visible iff all its sources are."""
    src, dst = get_scheme(src), get_scheme(dst)
    weights = None if src is dst else _conversion_weights(src.name, dst.name)
    _check_shape(visible, src, "visibility", trailing=())
    if weights is None:
        return visible.clone() if isinstance(visible, torch.Tensor) else np.array(visible, bool)
    uses = (weights > 0).T.astype(np.float32)  # (n_src, n_dst): which sources feed each point
    if isinstance(visible, torch.Tensor):
        hidden = (~visible.bool()).to(torch.float32)
        return hidden @ torch.tensor(uses, device=visible.device) == 0
    hidden = (~np.asarray(visible, bool)).astype(np.float32)
    return hidden @ uses == 0


def flip_points(points, width, scheme: str | Scheme):
    """Mirror (..., N, 2) points horizontally in an image `width` pixels wide.

    x -> (width - 1) - x (0-based pixel centres), then rows are permuted with the scheme's
    flip_perm so that "left_*" points stay on the image left. `width` is a number, or an array
    of the same kind as `points` broadcastable to points[..., 0] (e.g. (B, 1) for a batch).
    """
    scheme = get_scheme(scheme)
    if scheme.flip_perm is None:
        raise ValueError(f"scheme {scheme.name!r} has no flip permutation (not mirror-symmetric)")
    _check_shape(points, scheme, "points")
    if isinstance(points, torch.Tensor):
        out = points[..., torch.tensor(scheme.flip_perm, device=points.device), :]
    else:
        out = np.asarray(points)[..., scheme.flip_perm, :]  # fancy indexing copies
    out[..., 0] = (width - 1) - out[..., 0]
    return out
