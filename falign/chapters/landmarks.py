"""The Landmarks and metrics chapter: the landmark schemes on a rendered face, and every metric of the
book worked through on a seeded toy example (ground truth plus Gaussian noise).

Nothing here trains and nothing reads a dataset: the faces are the built-in morphable model's
(:func:`falign.synthface.morphable.builtin_model`), the errors come from :func:`toy_faces`. The
notebook ``notebooks/landmarks/01_landmarks_and_metrics`` calls these functions and explains them;
the figures' pieces are generic and live in :mod:`falign.kit.plots`.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import scipy.integrate
import torch

from falign.kit import chapter, plots
from falign.measure import landmarks, metrics
from falign.synthface import morphable, render


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale(chapter.Scale):
    """One scale of the chapter: only the number of toy faces changes."""

    faces: int   # toy faces (:func:`toy_faces`)


SCALES = {"smoke": Scale(faces=200), "small": Scale(faces=2000), "gpu": Scale(faces=10000),
          "full": Scale(faces=10000)}

SIZE = 256                                          # the mean face's render (pixels)
SHOWN = ("ibug68", "ibug51", "ibug49", "five", "afw6", "aflw-pifa34")   # the schemes drawn on the face
NUMBERED = ("five", "afw6")                         # ... with their point numbers
# The normalisers the toy errors are scored with: name -> metrics.nme keywords (True: toy_errors fills in
# the ground-truth landmark boxes or the visibility).
NORMALISERS = {
    "inter-ocular": dict(norm="inter-ocular", scheme="ibug68"),
    "inter-ocular, visible only": dict(norm="inter-ocular", scheme="ibug68", visible=True),
    "inter-pupil": dict(norm="inter-pupil", scheme="ibug68"),
    "box sqrt(wh)": dict(norm="box", boxes=True),
    "box width": dict(norm="box-width", boxes=True),
    "box diagonal": dict(norm="box-diagonal", boxes=True),
}
AUC_STEPS = (0.01, 0.005, 0.001, 0.0001)           # grid steps of the numerically integrated AUC


# --------------------------------------------------------------------------------------------------
# Schemes
# --------------------------------------------------------------------------------------------------
def scheme_fields() -> pd.DataFrame:
    """The fields of a scheme, read off iBUG 68 (point names, flip permutation and normaliser points of
    its outer eye corners) and off the derived five-point scheme (names, sources, flip, eye centres)."""
    ibug68, five = landmarks.get_scheme("ibug68"), landmarks.get_scheme("five")
    return pd.DataFrame({
        "field": ["point_names[36], [45]", "flip_perm[36], [45]", "outer_eye_corners",
                  "eye_centre_groups", "five: point_names", "five: sources (iBUG 68 points averaged)",
                  "five: flip_perm", "five: eye_centre_groups"],
        "value": [(ibug68.point_names[36], ibug68.point_names[45]),
                  (int(ibug68.flip_perm[36]), int(ibug68.flip_perm[45])),
                  ibug68.outer_eye_corners, ibug68.eye_centre_groups,
                  five.point_names, five.sources, five.flip_perm.tolist(), five.eye_centre_groups],
    })


def normalisers_available(scheme: landmarks.Scheme) -> str:
    """The normalisers a scheme supports: the ocular ones where it has the eye points, and the box-based
    ones, which need only a face box."""
    ocular = [name for name, ok in (("inter-ocular", scheme.outer_eye_corners is not None),
                                    ("inter-pupil", scheme.eye_centre_groups is not None)) if ok]
    return ", ".join([*ocular, "box-based"])


def scheme_table() -> pd.DataFrame:
    """Every scheme of :mod:`falign.measure.landmarks`: points, root, flip symmetry, normalisers."""
    return pd.DataFrame([
        {"scheme": s.name, "points": s.n_points, "root": s.root, "flip symmetric": s.flip_perm is not None,
         "normalisers available": normalisers_available(s), "description": s.description}
        for s in map(landmarks.get_scheme, landmarks.SCHEME_NAMES)
    ])


# --------------------------------------------------------------------------------------------------
# The mean face, rendered, and the schemes on it
# --------------------------------------------------------------------------------------------------
COLOUR_OF_LABEL = {"skin": (0.88, 0.71, 0.59), "brow": (0.33, 0.22, 0.15), "lip": (0.72, 0.36, 0.36),
                   "eye": (0.96, 0.96, 0.96), "iris": (0.22, 0.27, 0.38), "mouth": (0.35, 0.12, 0.12),
                   "nostril": (0.45, 0.30, 0.25)}


@dataclasses.dataclass(frozen=True)
class Face:
    """A rendered face: its image (H, W, 3) in [0, 1] and its 68 iBUG points (68, 2), in pixels."""

    image: np.ndarray
    points68: np.ndarray
    size: int


def mean_face(size: int = SIZE) -> Face:
    """The built-in model's mean face, frontal, its vertical middle at the image centre, vertices coloured
    by their label (skin, brows, lips, eyes, iris), with its 68 landmark vertices projected by the same
    weak-perspective camera (:func:`falign.synthface.render.render_mesh`)."""
    model = morphable.builtin_model()
    top, bottom = model.mean[:, 1].max().item(), model.mean[:, 1].min().item()
    scale = 0.85 * size / (top - bottom)
    centre = (size - 1) / 2
    M = morphable.pose_to_M(scale, 0.0, 0.0, 0.0, centre, centre + scale * (top + bottom) / 2)
    shape = model.mean[None]
    xy = morphable.project(M, shape)
    depth = shape @ morphable.depth_axis(M)[0]
    palette = torch.tensor([COLOUR_OF_LABEL[name] for name in morphable.VERTEX_LABELS])
    rgb, _ = render.render_mesh(
        torch.cat([xy, depth[..., None]], -1), model.triangles, palette[model.vertex_labels][None],
        morphable.vertex_normals(shape, model.triangles), light_dir=torch.tensor([[-0.3, 0.4, 1.0]]),
        ambient=0.45, diffuse=0.65, H=size, W=size, background=torch.full((1, size, size, 3), 0.96))
    return Face(rgb[0].numpy(), xy[0, model.landmark_vertices["ibug68"]].numpy(), size)


def _show(ax, face: Face, title: str, **zoom):
    """The face with the chapter's default margins (or ``xlim``/``ylim``), titled, axes off."""
    zoom = {"xlim": (20, face.size - 20), "ylim": (face.size - 5, 10), **zoom}
    return plots.face(ax, face.image, title=title, **zoom)


def numbered_figure(face: Face):
    """The 68 iBUG points numbered from 0, and a zoom on the mouth (48-67) whose labels are placed above
    or below each point so that the closed lips' inner points can be told apart."""
    import matplotlib.pyplot as plt

    fig, (ax_face, ax_zoom) = plt.subplots(1, 2, figsize=(13, 6.5), width_ratios=(1, 1.1))
    _show(ax_face, face, "ibug68, numbered from 0")
    ax_face.scatter(*face.points68.T, s=12, c="tab:green")
    plots.number_points(ax_face, face.points68, fontsize=7)
    lips = face.points68[48:68]
    _show(ax_zoom, face, "zoom on the mouth (points 48-67)",
          xlim=(lips[:, 0].min() - 8, lips[:, 0].max() + 8), ylim=(lips[:, 1].max() + 8, lips[:, 1].min() - 8))
    ax_zoom.scatter(*lips.T, s=25, c="tab:green")
    index = np.arange(48, 68)
    below = (index >= 64) | (index == 60) | ((index >= 55) & (index <= 59))
    plots.number_points(ax_zoom, lips, fontsize=9, start=48, ha="center",
                        offsets=np.where(below[:, None], [0, -11], [0, 5]))
    return fig


def schemes_figure(face: Face, shown=SHOWN, numbered=NUMBERED):
    """Each scheme of ``shown`` on the face (:func:`falign.kit.plots.scheme_points`), then the normalisers
    of iBUG 68 and its flip permutation (2 x 4 panels)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(18, 9.5))
    for ax, name in zip(axes.flat, shown):
        _show(ax, face, f"{name} ({landmarks.get_scheme(name).n_points} points)")
        plots.scheme_points(ax, face.points68, name, numbered=name in numbered)
    plots.normalisers(_show(axes[1, 2], face, "normalisers on ibug68"), face.points68, "ibug68")
    plots.flip_pairs(_show(axes[1, 3], face, "flip permutation of ibug68"), face.points68, "ibug68")
    fig.tight_layout()
    return fig


def mirror_gap(face: Face) -> float:
    """Largest distance (pixels) between the mean face's landmarks and their mirror image
    (:func:`falign.measure.landmarks.flip_points`): zero up to rounding for a symmetric face."""
    mirrored = landmarks.flip_points(face.points68, face.size, "ibug68")
    return float(np.abs(mirrored - face.points68).max())


def mean_face_normalisers(face: Face) -> tuple[float, float]:
    """(inter-ocular, inter-pupil) distance of the frontal mean face, in pixels."""
    return (float(metrics.normaliser(face.points68, "inter-ocular", "ibug68")[0]),
            float(metrics.normaliser(face.points68, "inter-pupil", "ibug68")[0]))


# --------------------------------------------------------------------------------------------------
# The toy example
# --------------------------------------------------------------------------------------------------
def toy_faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ground truth, noisy predictions and visibility of ``n`` random faces (68 iBUG points, pixels).

    Identities from the model's prior, poses and sizes from :func:`falign.synthface.morphable.pose_to_M`
    (yaw within ±45°, pitch ±15°, roll ±20°, faces about 70 to 250 pixels wide); a point is visible when
    its normal on the mean face points toward the camera. Predictions are the truth plus Gaussian noise
    of a per-face difficulty times the face size, 5% of faces four times harder, hidden points twice as
    noisy."""
    model = morphable.builtin_model()
    rng = np.random.default_rng(seed)
    p = np.zeros((n, model.n_params), np.float32)
    p[:, :model.n_id] = rng.normal(size=(n, model.n_id)) * model.id_sigma.numpy()
    cameras = morphable.pose_to_M(
        torch.tensor(rng.uniform(0.45, 1.65, n)), torch.tensor(rng.uniform(-45, 45, n)),
        torch.tensor(rng.uniform(-15, 15, n)), torch.tensor(rng.uniform(-20, 20, n)),
        torch.tensor(rng.uniform(100, 155, n)), torch.tensor(rng.uniform(100, 155, n))).float()
    gt = morphable.project(cameras, model.landmarks(torch.from_numpy(p))).numpy()

    normals = morphable.vertex_normals(model.mean, model.triangles)[model.landmark_vertices["ibug68"]]
    visible = (morphable.depth_axis(cameras) @ normals.T > 0).numpy()

    x1, y1, x2, y2 = metrics.landmark_boxes(gt).T
    difficulty = rng.lognormal(np.log(0.016), 0.35, n) * np.where(rng.random(n) < 0.05, 4.0, 1.0)
    sigma = difficulty * np.sqrt((x2 - x1) * (y2 - y1))
    noise = rng.normal(size=gt.shape) * np.where(visible, 1.0, 2.0)[..., None]
    pred = (gt + sigma[:, None, None] * noise).astype(np.float32)
    return gt, pred, visible


def toy_errors(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image NME of the same predictions under each of :data:`NORMALISERS`; the box normalisers use
    the tight box of the ground-truth landmarks (standing in for a face box)."""
    given = {"boxes": metrics.landmark_boxes(gt), "visible": visible}
    return {name: metrics.nme(pred, gt, **{k: given[k] if v is True else v for k, v in kw.items()})
            for name, kw in NORMALISERS.items()}


def in_percent(summary: pd.DataFrame, keep=("n", "excluded")) -> pd.DataFrame:
    """A :func:`falign.measure.metrics.summary` table with its statistics in % (columns renamed "... (%)")."""
    summary = summary.copy()
    percent = [c for c in summary.columns[1:] if c not in keep]
    summary[percent] *= 100
    return summary.rename(columns={c: f"{c} (%)" for c in percent})


def toy_summary(errors: dict[str, np.ndarray], alphas=(0.08, 0.10)) -> pd.DataFrame:
    """Mean, median, AUC@α and failure rate@α of each normaliser's errors, in %, with the counts."""
    return in_percent(metrics.summary(errors, alphas=alphas, label="normaliser"))


def per_landmark_figure(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray):
    """Mean inter-ocular error per iBUG point, over all points and over the visible ones only."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.2))
    plots.per_landmark(ax, metrics.per_landmark_errors(pred, gt, norm="inter-ocular", scheme="ibug68"), visible,
                       xlabel="iBUG 68 point", ylabel="mean error (inter-ocular, %)",
                       title="Toy example: per-landmark error (normalised by inter-ocular distance)")
    return fig


def ced_figure(errors: np.ndarray, alpha: float):
    """The CED of the inter-ocular errors with AUC@alpha shaded and the failure threshold drawn."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    plots.ced_area(ax, errors, alpha, max_error=0.15, step=0.0005, xlabel="NME (inter-ocular)",
                   title="Toy example: CED, NME normalised by inter-ocular distance")
    return fig


# --------------------------------------------------------------------------------------------------
# How ours relate to other toolkits
# --------------------------------------------------------------------------------------------------
def pooling_table(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray) -> pd.DataFrame:
    """Mean inter-ocular error per image then over images (ours) against the mean pooled over every scored
    point of every image, with all 68 points scored and with the visible ones only (in %)."""
    per_landmark = metrics.per_landmark_errors(pred, gt, norm="inter-ocular", scheme="ibug68")
    every = metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68")
    seen = metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68", visible=visible)
    return pd.DataFrame({
        "points scored": ["all 68", "visible only"],
        "per image, then over images (ours, %)": [100 * metrics.mean_error(every), 100 * metrics.mean_error(seen)],
        "pooled over all points (%)": [100 * per_landmark.mean(), 100 * per_landmark[visible].mean()],
    })


def auc_integration(errors: np.ndarray, alpha: float, steps=AUC_STEPS) -> tuple[pd.DataFrame, float]:
    """AUC@alpha by integrating the CED sampled on grids of each step (trapezoid, Simpson, left rectangle
    sums) and each one's difference from the exact value; also the exact value
    (:func:`falign.measure.metrics.auc`)."""
    rows = []
    for step in steps:
        t, c = metrics.ced(errors, max_error=alpha, step=step)
        rows.append({"grid step": step, "points": len(t),
                     "trapezoid": np.trapezoid(c, t) / alpha,
                     "Simpson": scipy.integrate.simpson(c, x=t) / alpha,
                     "rectangle (left)": np.sum(c[:-1] * np.diff(t)) / alpha})
    table = pd.DataFrame(rows)
    exact = metrics.auc(errors, alpha)
    for method in ("trapezoid", "Simpson", "rectangle (left)"):
        table[f"{method} − exact"] = table[method] - exact
    return table, exact


def failure_rules(errors: np.ndarray, alpha: float, decimals: int = 2) -> pd.DataFrame:
    """Failure rate@alpha with e ≥ α (ours) and with e > α, for the errors as they are and rounded to
    ``decimals`` (quantised errors put some faces exactly on α); in %."""
    rounded = np.round(errors, decimals)
    return pd.DataFrame({
        "errors": ["continuous", f"rounded to {10.0 ** -decimals:g}"],
        "faces exactly at α": [int(np.sum(errors == alpha)), int(np.sum(rounded == alpha))],
        "failure rate, e ≥ α (ours, %)": [100 * metrics.failure_rate(errors, alpha),
                                          100 * metrics.failure_rate(rounded, alpha)],
        "failure rate, e > α (%)": [100 * np.mean(errors > alpha), 100 * np.mean(rounded > alpha)],
    })


def normaliser_ratios(gt: np.ndarray, errors: dict[str, np.ndarray]) -> pd.DataFrame:
    """Per normaliser d: the median of d / d_inter-ocular over the faces, the mean inter-ocular NME
    converted with it, and the mean NME measured with d (``errors`` from :func:`toy_errors`; in %)."""
    boxes = metrics.landmark_boxes(gt)
    d_io = metrics.normaliser(gt, "inter-ocular", "ibug68")
    ratios = {"inter-pupil": metrics.normaliser(gt, "inter-pupil", "ibug68"),
              "box sqrt(wh)": metrics.normaliser(gt, "box", boxes=boxes),
              "box width": metrics.normaliser(gt, "box-width", boxes=boxes),
              "box diagonal": metrics.normaliser(gt, "box-diagonal", boxes=boxes)}
    e_io = errors["inter-ocular"]
    return pd.DataFrame([
        {"normaliser d": name, "median d / d_inter-ocular": np.median(d / d_io),
         "mean NME converted from inter-ocular (%)": 100 * metrics.mean_error(e_io) * np.median(d_io / d),
         "mean NME measured (%)": 100 * metrics.mean_error(errors[name])}
        for name, d in ratios.items()
    ])


def fully_hidden(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, n: int = 3) -> np.ndarray:
    """Visible-only inter-ocular NME when an occluder hides every point of the first ``n`` faces: those
    faces have no scored point, so their error is NaN."""
    occluded = visible.copy()
    occluded[:n] = False
    return metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68", visible=occluded)


def mean_error_and_warning(errors: np.ndarray) -> tuple[float, str]:
    """:func:`falign.measure.metrics.mean_error` of ``errors`` and the warning it gives when it leaves
    faces out ("" when it gives none)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(metrics.mean_error(errors))
    return value, str(caught[0].message) if caught else ""
