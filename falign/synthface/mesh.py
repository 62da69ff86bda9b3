"""The procedural face behind ``falign.synthface.morphable.builtin_model``: mesh, landmarks, labels, bases.

Real 3DMMs (the Basel Face Model, FaceWarehouse) cannot be downloaded by code, so the book ships a
face generated from a few dozen numbers. It is built to exercise what the papers need from a 3DMM:
a face-shaped surface with 68 iBUG landmark vertices, sides that wrap behind the cheeks (so large
yaws self-occlude), region labels for albedo, and 199 identity + 29 expression bases.

Geometry. The surface is sampled on a (theta, y) grid: theta is the angle around a vertical axis
(0 faces the camera; +-100 degrees wraps past the ears) and y the height. A row of constant theta
is a super-ellipse cross-section of half-width W(y) and depth D(y); features (nose, brows, eye
sockets, lips, chin...) are smooth bumps added along z over the *frontal design coordinates*
(X, y), where X = W(y) * s(theta) is exactly the x of the mean shape. So the mean face seen from the
front is the design drawing: landmarks designed at (X, y) project to (X, y). The bottom edge of the
grid follows the jaw line; grid rows are snapped onto the lid and inner-lip lines so that eyelids
and lips open and close cleanly, and the vertex nearest each landmark is moved onto it.

Units are about a millimetre: the face is 150 units wide (the jaw ends, iBUG 0 and 16, are 149
apart), 182 from chin to hairline, 92 between the outer eye corners; the nose tip is at about
(0, 3, 20). Model axes: x to the viewer's right (the subject's right half has x < 0), y up, z toward
the camera.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator
from scipy.special import expit

# Vertex labels for albedo: index = value stored in ``vertex_labels``.
LABELS = ("skin", "brow", "lip", "eye", "iris", "mouth", "nostril")
THETA_MAX = np.deg2rad(100.0)
_EXPONENT = 2.4  # super-ellipse exponent of the cross-sections (2 = ellipse, larger = flatter front)
_GRID = (79, 75)  # columns (theta) x rows (t)


def _curve(xs, ys) -> PchipInterpolator:
    return PchipInterpolator(np.asarray(xs, float), np.asarray(ys, float), extrapolate=True)


# Head profile as functions of height y: half-width, cross-section depth, front surface z.
_HALF_WIDTH = _curve([-100, -80, -60, -30, 0, 30, 60, 90, 110], [40, 46, 56, 65, 71.5, 75, 72.5, 65, 57])
_DEPTH = _curve([-100, -70, -40, 0, 40, 80, 110], [50, 57, 68, 80, 86, 82, 68])
_FRONT_Z = _curve([-100, -82, -60, -30, 0, 30, 55, 75, 95, 110],
                  [-30, -16, -10, -6, -4, -4, -4, -8, -17, -28])
# Bottom edge of the mesh (jaw line, chin to ear) and top edge (hairline) against |theta| in degrees.
_JAW_EDGE = _curve([0, 20, 40, 60, 75, 85, 92, 100], [-84, -82, -75, -62, -45, -27, -12, -3])
_TOP = 98.0

# Frontal design coordinates of iBUG points 17-67 on the subject's left half (X > 0) or midline.
_BROW = [(12, 54), (23, 57.5), (34, 58.5), (45, 56), (55, 49)]  # inner -> outer (points 22-26)
_UPPER_LID = [(16, 35), (25, 40.5), (37, 40.5), (46, 35.5)]  # inner corner, 43, 44, outer corner
_LOWER_LID = [(16, 35), (25, 30.5), (37, 30.5), (46, 35.5)]  # inner corner, 47, 46, outer corner
_NOSE_BRIDGE = [(0, 36), (0, 25), (0, 14), (0, 3)]  # points 27-30, 30 = nose tip
_NOSTRILS = [(0, -10), (6, -8.5), (12, -5.5)]  # 33, 34, 35
_OUTER_UPPER_LIP = [(0, -25.5), (6, -24.5), (16, -27), (25, -32)]  # 51, 52, 53, 54
_OUTER_LOWER_LIP = [(0, -42), (6, -41.5), (16, -38.5), (25, -32)]  # 57, 56, 55, 54
_INNER_UPPER_LIP = [(0, -31.2), (8, -31.2), (21, -32)]  # 62, 63, 64
_INNER_LOWER_LIP = [(0, -32.8), (8, -32.8), (21, -32)]  # 66, 65, 64
_EYE_CENTRE = (31.0, 35.5)
_IRIS_RADIUS = 5.5


def _x_curve(points):
    """y(|X|) through design points, held constant beyond the first and last."""
    xs, ys = zip(*points)
    curve = _curve(xs, ys)
    return lambda x: curve(np.clip(x, xs[0], xs[-1]))


def _s(theta):
    """Horizontal coordinate of the unit super-ellipse at angle theta."""
    return np.sign(np.sin(theta)) * np.abs(np.sin(theta)) ** (2 / _EXPONENT)


def _c(theta):
    return np.sign(np.cos(theta)) * np.abs(np.cos(theta)) ** (2 / _EXPONENT)


def _theta_of(X, y):
    """Inverse of X = W(y) s(theta) on the front half."""
    r = np.clip(np.abs(X) / _HALF_WIDTH(y), 0, 1)
    return np.sign(X) * np.arcsin(r ** (_EXPONENT / 2))


def _inner_landmarks() -> np.ndarray:
    """(51, 2) design coordinates (X, y) of iBUG points 17-67 (all but the jaw)."""
    def both(right_to_left_of_image):  # subject's right half = image left = X < 0
        return [(-x, y) for x, y in right_to_left_of_image]

    brow_r = both(_BROW[::-1])  # 17-21: outer -> inner on the image-left brow
    brow_l = _BROW  # 22-26
    up, lo = _UPPER_LID, _LOWER_LID
    eye_r = both([up[3], up[2], up[1], up[0], lo[1], lo[2]])  # 36 outer, 37, 38, 39 inner, 40, 41
    eye_l = [up[0], up[1], up[2], up[3], lo[2], lo[1]]  # 42 inner, 43, 44, 45 outer, 46, 47
    nose = _NOSE_BRIDGE + both(_NOSTRILS[:0:-1]) + _NOSTRILS  # 27-30, 31, 32, 33, 34, 35
    ou, ol = _OUTER_UPPER_LIP, _OUTER_LOWER_LIP
    outer = both([ou[3], ou[2], ou[1]]) + ou + [ol[2], ol[1]] + [ol[0]] + both([ol[1], ol[2]])
    iu, il = _INNER_UPPER_LIP, _INNER_LOWER_LIP
    inner = both([iu[2], iu[1]]) + iu + [il[1], il[0]] + both([il[1]])
    return np.array(brow_r + brow_l + nose + eye_r + eye_l + outer + inner, float)


def _jaw_parameters(columns) -> np.ndarray:
    """(17, 2) (theta, y) of iBUG 0-16: 9 points evenly spaced (in the frontal view) along the jaw
    edge from the chin (8) to the grid column nearest 84 deg, then up that column to y = 28."""
    th_side = columns[np.abs(columns - np.deg2rad(84.0)).argmin()]
    th = np.linspace(0, th_side, 400)
    y_edge = _JAW_EDGE(np.rad2deg(th))
    y_up = np.linspace(y_edge[-1], 28.0, 200)[1:]
    path_th = np.concatenate([th, np.full_like(y_up, th_side)])
    path_y = np.concatenate([y_edge, y_up])
    X = _HALF_WIDTH(path_y) * _s(path_th)
    arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(X), np.diff(path_y)))])
    at = np.linspace(0, arc[-1], 9)
    half = np.stack([np.interp(at, arc, path_th), np.interp(at, arc, path_y)], 1)  # 8 -> 16
    on_edge = half[:, 0] < th_side - 1e-9
    half[on_edge, 1] = _JAW_EDGE(np.rad2deg(half[on_edge, 0]))
    left = half[::-1] * [-1, 1]  # 0 -> 8 (image left, X < 0)
    return np.concatenate([left, half[1:]])


def _grid():
    """(theta, y) of the raw grid, shape (rows, cols): columns evenly spaced in arc length around a
    typical cross-section, twice as dense on the front; rows denser in the eyes-to-mouth band."""
    n_cols, n_rows = _GRID
    th = np.linspace(0, THETA_MAX, 4001)
    step = np.hypot(np.diff(70 * _s(th)), np.diff(90 * _c(th)))
    density = 1 + np.exp(-((th[1:] / np.deg2rad(45)) ** 4))
    cum = np.concatenate([[0], np.cumsum(step * density)])
    half = np.interp(np.linspace(0, cum[-1], n_cols // 2 + 1), cum, th)
    theta = np.concatenate([-half[:0:-1], half])
    g = np.linspace(0, 1, 4001)
    y_mid = -84 + g * (_TOP + 84)
    density = 1 + 1.2 * np.exp(-((y_mid - 2) / 50) ** 4)
    cum = np.concatenate([[0], np.cumsum((density[1:] + density[:-1]) / 2)])
    t = np.interp(np.linspace(0, 1, n_rows), cum / cum[-1], g)
    bottom = _JAW_EDGE(np.rad2deg(np.abs(theta)))
    top = _TOP - 12 * (theta / THETA_MAX) ** 2
    Y = bottom[None] + (top - bottom)[None] * t[:, None]
    return np.broadcast_to(theta, Y.shape).copy(), Y


def _column_curve_y(theta_col, curve, iters=6):
    """Height where a grid column (constant theta) crosses the curve y = curve(|X|)."""
    y = curve(68 * np.abs(_s(theta_col)))
    for _ in range(iters):
        y = curve(_HALF_WIDTH(y) * np.abs(_s(theta_col)))
    return y


def _snap_pair(T, Y, upper, lower, x_lo, x_hi, margin):
    """Move, in each column crossing the feature, the row nearest to the upper curve (and to the
    lower one) onto it, keeping the two on their own side of the mid-line so they never merge."""
    cols = np.arange(T.shape[1])
    y_up = _column_curve_y(T[0], upper)
    y_lo = _column_curve_y(T[0], lower)
    ax = _HALF_WIDTH(y_up) * np.abs(_s(T[0]))
    inside = (ax < x_hi - margin) & (np.abs(T[0]) < np.pi / 2)
    if x_lo is not None:  # an eye: stop short of the corner; the mouth spans the midline
        inside &= ax > x_lo + margin
    mid = (y_up + y_lo) / 2
    first_above = (Y < mid[None]).sum(0)
    r_up = np.maximum(np.abs(Y - y_up[None]).argmin(0), first_above)
    r_lo = np.minimum(np.abs(Y - y_lo[None]).argmin(0), first_above - 1)
    Y[r_up[inside], cols[inside]] = y_up[inside]
    Y[r_lo[inside], cols[inside]] = y_lo[inside]


def _snap_landmarks(T, Y, targets):
    """Move a vertex onto each (theta, y) target: the nearest row of the nearest column, so a vertex
    moves less than half a cell each way and no triangle folds. Returns flat vertex indices."""
    col = np.abs(T[0][:, None] - targets[None, :, 0]).argmin(0)
    row = np.abs(Y[:, col] - targets[None, :, 1]).argmin(0)
    on_edge = targets[:, 1] <= _JAW_EDGE(np.rad2deg(np.abs(targets[:, 0]))) + 1e-9
    row[on_edge] = 0  # jaw points stay on the bottom edge
    if len(set(zip(row.tolist(), col.tolist()))) != len(targets):
        raise RuntimeError("two landmarks snapped to one grid vertex: refine _GRID")
    T[row, col], Y[row, col] = targets[:, 0], targets[:, 1]
    return row * T.shape[1] + col


def _triangles(n_rows, n_cols):
    """Two counter-clockwise (seen from the front: theta and y increase right and up) triangles per
    grid cell."""
    r, c = np.meshgrid(np.arange(n_rows - 1), np.arange(n_cols - 1), indexing="ij")
    v00 = (r * n_cols + c).ravel()
    v01, v10 = v00 + 1, v00 + n_cols
    v11 = v10 + 1
    return np.concatenate([np.stack([v00, v01, v11], 1), np.stack([v00, v11, v10], 1)])


def _gauss(X, y, cx, cy, sx, sy):
    return np.exp(-0.5 * (((X - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _between(y, low, high, X, x_max):
    """0..1 bump between two curves, peaking in the middle, vanishing at the curves and corners."""
    u = np.clip((y - low) / np.maximum(high - low, 1e-6), 0, 1)
    taper = np.sqrt(np.clip(1 - (X / x_max) ** 2, 0, 1))
    return np.sqrt(4 * u * (1 - u)) * taper


def _features(X, y):
    """Forward relief h(X, y) of the face over the base head (nose, sockets, lips, chin, ...)."""
    ax = np.abs(X)
    nose_h = _curve([-12, -9, -5, 0, 3, 8, 16, 26, 36, 46, 60], [0, 7, 16, 21.5, 22.5, 19, 14, 9, 5, 2.5, 0])
    nose_w = _curve([-12, -6, 0, 6, 15, 30, 46, 60], [13, 12, 9.5, 7, 6, 6.5, 9, 12])
    on_nose = np.clip(y, -12, 60)  # the nose runs from the subnasale line up into the glabella
    h = nose_h(on_nose) * np.exp(-0.5 * (ax / nose_w(on_nose)) ** 2) * np.clip((y + 12) / 3, 0, 1)
    h += 7 * _gauss(ax, y, 13, -3, 5, 4.5)  # alar wings
    h -= 3 * _gauss(ax, y, 6.5, -7, 2.5, 1.8)  # nostrils
    h -= 11 * _gauss(ax, y, 31, 37, 15, 11)  # eye sockets
    h += 8 * _gauss(ax, y, 31, 35, 10, 6.5)  # eyeballs under the lids
    h += 5 * _gauss(ax, y, 30, 51, 20, 5)  # brow ridges
    h += 5 * _gauss(ax, y, 0, 50, 11, 6)  # glabella
    h += 6 * _gauss(ax, y, 45, 15, 15, 10)  # cheekbones
    h += 3 * _gauss(ax, y, 34, -8, 16, 14)  # cheeks
    h += 7 * _gauss(ax, y, 0, -30, 26, 18)  # the muzzle around the mouth
    up_in, lo_in = _x_curve(_INNER_UPPER_LIP)(ax), _x_curve(_INNER_LOWER_LIP)(ax)
    up_out, lo_out = _x_curve(_OUTER_UPPER_LIP)(ax), _x_curve(_OUTER_LOWER_LIP)(ax)
    h += 3.5 * _between(y, up_in, up_out, ax, 25)  # upper lip
    h += 4.0 * _between(y, lo_out, lo_in, ax, 25)  # lower lip
    h -= 1.5 * _gauss(ax, y, 0, -18, 3.5, 5)  # philtrum
    h -= 3 * _gauss(ax, y, 0, -50, 14, 4)  # mentolabial sulcus
    h += 8 * _gauss(ax, y, 0, -68, 15, 9)  # chin
    h += 2 * _gauss(ax, y, 24, 80, 18, 14)  # frontal eminences
    h -= 4 * _gauss(ax, y, 62, 55, 9, 14)  # temples
    return h


def _front(theta):
    """1 on the face, fading to 0 from 72 to 92 degrees: where the frontal relief applies."""
    return np.clip((np.deg2rad(92) - np.abs(theta)) / np.deg2rad(20), 0, 1)


def _base(T, Y):
    """The featureless head: super-ellipse sections, (..., 3) with x = the design X."""
    return np.stack([_HALF_WIDTH(Y) * _s(T), Y, _FRONT_Z(Y) - _DEPTH(Y) * (1 - _c(T))], -1)


def _positions(T, Y):
    """3D positions of grid parameters (theta, y): base head + frontal relief + jaw curl."""
    P = _base(T, Y)
    above_edge = Y - _JAW_EDGE(np.rad2deg(np.abs(T)))
    P[..., 2] += _features(P[..., 0], Y) * _front(T) - 6 * np.clip(1 - above_edge / 9, 0, 1) ** 2
    return P


def _labels(X, y, theta):
    """Per-vertex index into LABELS, from the design curves (later labels win)."""
    ax = np.abs(X)
    front = np.abs(theta) < np.pi / 2
    on_lip_line = (ax <= 21.5) & (y <= _x_curve(_INNER_UPPER_LIP)(ax) + 1e-6) \
        & (y >= _x_curve(_INNER_LOWER_LIP)(ax) - 1e-6)  # the rows snapped onto the inner lips
    lab = np.zeros(X.shape, np.int64)
    brow = _x_curve(_BROW)(ax)
    brow_half = np.interp(ax, [12, 55], [3.0, 1.4])
    lab[front & (ax > 11) & (ax < 56) & (np.abs(y - brow) <= brow_half)] = LABELS.index("brow")
    lips = (y <= _x_curve(_OUTER_UPPER_LIP)(ax) + 0.3) & (y >= _x_curve(_OUTER_LOWER_LIP)(ax) - 0.3)
    lab[front & (ax <= 25.3) & lips] = LABELS.index("lip")
    lab[front & on_lip_line] = LABELS.index("mouth")
    eye = (y < _x_curve(_UPPER_LID)(ax) - 0.2) & (y > _x_curve(_LOWER_LID)(ax) + 0.2) & (ax > 16.5) & (ax < 45.5)
    lab[front & eye] = LABELS.index("eye")
    iris = np.hypot(ax - _EYE_CENTRE[0], y - _EYE_CENTRE[1]) < _IRIS_RADIUS
    lab[front & eye & iris] = LABELS.index("iris")
    lab[front & (_gauss(ax, y, 6.5, -7.5, 2.8, 2.0) > 0.5)] = LABELS.index("nostril")
    return lab


def brow_band(x, y, z) -> np.ndarray:
    """(V,) weights in [0, 1] of brows grown thicker than the labelled ones (the realism knob ``brows``):
    a band about the brow's design curve twice the labelled brow's height (so tallest at the inner end,
    as real brows are), its edges soft over a millimetre, fading out beyond the brow's ends; front only.
    The brow landmarks (17-26) stay on the curve, the band's middle."""
    ax = np.abs(x)
    half = 2 * np.interp(ax, [12, 55], [3.0, 1.4])
    across = 1 / (1 + np.exp((np.abs(y - _x_curve(_BROW)(ax)) - half) / 0.5))
    along = np.clip((ax - 8) / 4, 0, 1) * np.clip((60 - ax) / 5, 0, 1)
    return across * along * (z > _FRONT_Z(y) - _DEPTH(y))  # the front half: |theta| < 90 degrees


def build_mesh() -> dict:
    """Mean shape (V, 3), triangles (F, 3), iBUG-68 vertex indices, labels, design coordinates."""
    T, Y = _grid()
    margin = 0.9
    _snap_pair(T, Y, _x_curve(_UPPER_LID), _x_curve(_LOWER_LID), 16, 46, margin)
    _snap_pair(T, Y, _x_curve(_INNER_UPPER_LIP), _x_curve(_INNER_LOWER_LIP), None, 21, margin)
    inner = _inner_landmarks()
    targets = np.concatenate([_jaw_parameters(T[0]), np.stack([_theta_of(*inner.T), inner[:, 1]], 1)])
    lm = _snap_landmarks(T, Y, targets)
    mean = _positions(T, Y).reshape(-1, 3)
    return {
        "mean": mean,
        "triangles": _triangles(*T.shape),
        "ibug68": lm,
        "labels": _labels(mean[:, 0], Y.ravel(), T.ravel()),
        "theta": T.ravel(),
        "param_y": Y.ravel(),
    }


# --- bases -----------------------------------------------------------------------------------
# Each field below is the displacement (V, 3) of one standard deviation of a named, hand-designed
# variation; ``orthonormalise`` turns a list of them into unit-norm bases and sigmas.

def _vec(dx=0.0, dy=0.0, dz=0.0):
    return np.stack(np.broadcast_arrays(dx, dy, dz), -1).astype(float)


def _regions(mesh):
    """Shared per-vertex quantities: coordinates, |X|, frontal weight, outward horizontal direction."""
    P, th = mesh["mean"], mesh["theta"]
    x, y, z = P.T
    front = _front(th)
    outward = np.stack([np.sin(th), np.zeros_like(th), np.cos(th)], -1)
    return x, y, z, np.abs(x), front, outward


def identity_fields(mesh) -> dict[str, np.ndarray]:
    """Hand-designed identity variations (face width, nose, jaw, chin, lips...), one sigma each."""
    x, y, z, ax, front, out = _regions(mesh)

    def g(cx, cy, sx, sy):
        return _gauss(ax, y, cx, cy, sx, sy) * front

    lips = g(0, -33, 20, 8)
    lower_face = np.clip(-(y + 5) / 45, 0, 1)
    return {
        "face_width": _vec(0.05 * x),
        "face_length": _vec(dy=0.05 * np.minimum(y - 30, 0)),
        "face_depth": _vec(dz=0.06 * (z - 10)),
        "forehead_height": _vec(dy=0.07 * np.maximum(y - 45, 0)),
        "forehead_slope": _vec(dz=-0.08 * np.maximum(y - 45, 0) * front),
        "nose_length": _vec(dy=-3.0 * g(0, 12, 14, 18) * np.clip((40 - y) / 40, 0, 1)),
        "nose_width": _vec(0.15 * x * g(0, -2, 14, 8)),
        "nose_projection": _vec(dz=3.0 * g(0, 5, 9, 12)),
        "nose_bridge": _vec(dz=2.0 * g(0, 24, 5, 10)),
        "jaw_width": _vec(0.08 * x * lower_face),
        "chin_protrusion": _vec(dz=3.0 * g(0, -68, 18, 12)),
        "chin_height": _vec(dy=-3.0 * np.clip((-45 - y) / 30, 0, 1)),
        "cheek_fullness": 3.0 * g(38, -8, 14, 14)[:, None] * out,
        "cheekbones": 2.5 * g(46, 15, 12, 8)[:, None] * out,
        "eye_spacing": _vec(2.0 * np.sign(x) * g(31, 37, 11, 9)),
        "eye_size": _vec(dy=0.12 * (y - _EYE_CENTRE[1]) * g(31, 35.5, 12, 7)),
        "eye_socket_depth": _vec(dz=-2.5 * g(31, 37, 13, 9)),
        "brow_height": _vec(dy=3.0 * g(32, 53, 22, 6)),
        "brow_ridge": _vec(dz=2.5 * g(30, 51, 18, 5)),
        "lip_thickness": _vec(dy=0.25 * (y + 32) * lips, dz=1.5 * lips),
        "mouth_width": _vec(0.1 * x * lips),
        "mouth_height": _vec(dy=2.5 * g(0, -33, 30, 12)),
    }


def expression_fields(mesh) -> dict[str, np.ndarray]:
    """Hand-designed expressions (jaw open, smiles, lids, brows, lips...), one sigma each.
    Left/right mean the subject's (left = x > 0); eye closure at one sigma is half closed."""
    x, y, z, ax, front, out = _regions(mesh)
    left, right = expit(x / 3), expit(-x / 3)

    def g(cx, cy, sx, sy):
        return _gauss(ax, y, cx, cy, sx, sy) * front

    mouth_line = (_x_curve(_INNER_UPPER_LIP)(ax) + _x_curve(_INNER_LOWER_LIP)(ax)) / 2
    tau = 0.15 + 0.6 * np.maximum(ax - 20, 0)  # sharp between the lips, smooth on the cheeks
    jaw = expit((mouth_line - y) / tau)
    pivot_y, pivot_z = 10.0, -75.0  # jaw hinge in front of the ears
    jaw_open = 0.065 * jaw[:, None] * _vec(dy=-(z - pivot_z), dz=y - pivot_y)
    up_lid, lo_lid = _x_curve(_UPPER_LID)(ax), _x_curve(_LOWER_LID)(ax)
    opening = np.clip(np.minimum(y, up_lid) - lo_lid, 0, None) * (y >= lo_lid)
    lid = -0.5 * opening * np.exp(-np.maximum(y - up_lid, 0) / 6) * np.clip((ax - 14) / 3, 0, 1) \
        * np.clip((48 - ax) / 3, 0, 1) * front
    corners = g(25, -32, 7, 6)
    smile = corners[:, None] * _vec(1.5 * np.sign(x), 2.5, -1.5) + g(38, -5, 12, 10)[:, None] * _vec(0, 1.5, 0.5)
    lips = g(0, -33, 18, 9)
    sneer = g(12, -8, 8, 8)[:, None] * _vec(0, 2.0, 0.5) + g(12, -26, 8, 4)[:, None] * _vec(0, 1.5, 0)
    return {
        "jaw_open": jaw_open,
        "smile_left": smile * left[:, None],
        "smile_right": smile * right[:, None],
        "frown": corners[:, None] * _vec(dy=-2.5) + g(0, -62, 12, 8)[:, None] * _vec(0, 1.0, 1.0),
        "brow_raise": (g(32, 53, 24, 8) + 0.5 * g(0, 70, 40, 15))[:, None] * _vec(dy=3.5),
        "brow_furrow": g(14, 52, 8, 6)[:, None] * _vec(-1.5 * np.sign(x), -1.5, 0.5),
        "inner_brow_raise": g(16, 54, 8, 5)[:, None] * _vec(dy=2.5),
        "eye_close_left": _vec(dy=lid * left),
        "eye_close_right": _vec(dy=lid * right),
        "squint": g(31, 30.5, 10, 3)[:, None] * _vec(dy=1.5),
        "lip_pucker": lips[:, None] * _vec(-0.25 * x, 0, 3.0),
        "lip_press": lips[:, None] * _vec(0, -0.4 * (y - mouth_line), -1.0),
        "mouth_stretch": g(0, -33, 28, 10)[:, None] * _vec(0.12 * x, 0, -0.5),
        "cheek_puff": 3.0 * g(38, -20, 12, 12)[:, None] * out,
        "sneer_left": sneer * left[:, None],
        "sneer_right": sneer * right[:, None],
        "jaw_lateral": jaw[:, None] * _vec(dx=1.8),
        "jaw_forward": jaw[:, None] * _vec(dz=2.0),
        "upper_lip_raise": (g(0, -27, 18, 5) * (1 - jaw))[:, None] * _vec(0, 1.5, 0.5),
        "lower_lip_depress": (g(0, -38, 16, 5) * jaw)[:, None] * _vec(0, -1.5, 0.5),
        "mouth_shift": lips[:, None] * _vec(dx=2.0),
        "nose_wrinkle": g(0, 20, 10, 10)[:, None] * _vec(dy=1.0) + g(8, -4, 6, 5)[:, None] * _vec(dy=1.5),
        "cheek_raise": g(40, 20, 14, 10)[:, None] * _vec(0, 1.5, 1.0),
    }


def random_fields(mesh, n, centres, width, amplitude, seed) -> np.ndarray:
    """(n, V, 3) smooth random fields: sums of 4 Gaussian bumps with random 3D weights, mirrored to be
    left-right symmetric (2 in 3) or antisymmetric, scaled to peak displacements ``amplitude``."""
    rng = np.random.default_rng(seed)
    P = mesh["mean"]
    c = centres[rng.integers(0, len(centres), (n, 4))]  # (n, 4, 3)
    w = rng.uniform(*width, (n, 4))
    weights = rng.normal(size=(n, 4, 3))
    flip = np.array([-1.0, 1.0, 1.0])

    def evaluate(Q):
        d2 = (Q**2).sum(1)[None, None] + (c**2).sum(-1)[..., None] - 2 * c @ Q.T  # (n, 4, V)
        bumps = np.exp(-np.maximum(d2, 0) / (2 * w[..., None] ** 2))
        return bumps.transpose(0, 2, 1) @ weights  # (n, V, 3)

    sign = np.where(np.arange(n) % 3 == 2, -1.0, 1.0)[:, None, None]
    f = evaluate(P) + sign * evaluate(P * flip) * flip
    peak = np.linalg.norm(f, axis=-1).max(1)
    return f * (np.asarray(amplitude, float) / peak)[:, None, None]


def orthonormalise(fields: np.ndarray, names: list[str]):
    """Unit-norm, mutually orthogonal bases from (K, V, 3) one-sigma fields.

    Gram-Schmidt in order of decreasing field norm keeps each hand-designed basis close to its
    field; sigma_k is the norm of what basis k adds, so p_k ~ N(0, sigma_k) reproduces the part of
    field k that earlier bases do not already cover. Sorted by decreasing sigma. The QR is computed
    as Cholesky-QR twice (two Gram matrices, accurate to rounding here) in torch: a Householder QR
    of the (3V, K) matrix takes seconds on a small CPU."""
    K = len(fields)
    A = torch.from_numpy(fields.reshape(K, -1).T)
    norms = torch.linalg.vector_norm(A, dim=0)
    first = np.argsort(-norms.numpy(), kind="stable")
    Q, R = A[:, first] / norms[first], torch.eye(K, dtype=A.dtype)
    for _ in range(2):
        L = torch.linalg.cholesky(Q.T @ Q)
        Q = torch.linalg.solve_triangular(L, Q.T, upper=False).T
        R = L.T @ R
    sigma = (torch.diagonal(R) * norms[first]).numpy()
    order = np.argsort(-sigma, kind="stable")
    names = [names[i] for i in first[order]]
    return Q[:, order].T.reshape(fields.shape).numpy(), sigma[order], names


def build_bases(mesh, n_id=199, n_exp=29, seed=0):
    """Identity and expression bases (orthonormal, (K, V, 3)), sigmas and names."""
    P, lm = mesh["mean"], mesh["ibug68"]
    ident = identity_fields(mesh)
    n_rand = n_id - len(ident)
    amp = 1.2 * np.arange(1, n_rand + 1) ** -0.5
    rand = random_fields(mesh, n_rand, P, (15, 50), amp, seed)
    id_fields = np.concatenate([np.stack(list(ident.values())), rand])
    id_names = list(ident) + [f"random_{k:03d}" for k in range(n_rand)]
    expr = expression_fields(mesh)
    n_rand = n_exp - len(expr)
    rand = random_fields(mesh, n_rand, P[lm[17:]], (5, 12), np.full(n_rand, 1.5), seed + 1)
    exp_fields = np.concatenate([np.stack(list(expr.values())), rand])
    exp_names = list(expr) + [f"random_{k:03d}" for k in range(n_rand)]
    id_basis, id_sigma, id_names = orthonormalise(id_fields, id_names)
    exp_basis, exp_sigma, exp_names = orthonormalise(exp_fields, exp_names)
    return dict(id_basis=id_basis, id_sigma=id_sigma, id_names=id_names,
                exp_basis=exp_basis, exp_sigma=exp_sigma, exp_names=exp_names)
