"""Landmark error metrics: NME variants, MAPE, CED, AUC@a and failure rate.

Per-image errors first, statistics over images second:

* `nme`, `mape` and `per_landmark_errors` return float64 numpy arrays, one value per image (or
  per image and landmark). Inputs are numpy arrays or torch tensors, (B, N, 2) or a single (N, 2)
  face, which is treated as a batch of one.
* The per-image error is the mean Euclidean point-to-point distance divided by the image's
  normaliser; with `visible` given, the mean runs over the visible points only. A face with no
  visible point has no error: its entry is NaN.
* The statistics `mean_error`, `ced`, `auc`, `failure_rate` and `summary` leave those NaNs out and
  report how many they left out: `summary` in its `excluded` column, the others through an
  `ExcludedFacesWarning`. Use them rather than `errors.mean()`, which would return NaN.

Normalisers (`norm`), computed from the ground truth, whether or not its eye points are visible:
  "inter-ocular"  distance between the outer eye corners (the 300-W challenge's choice)
  "inter-pupil"   distance between the eye centres, the means of each eye's points
  "box"           sqrt(w * h) of the face box x1, y1, x2, y2 (the AFLW protocol)
  "box-width"     w, as in Sun et al.'s five-point protocol
  "box-diagonal"  sqrt(w^2 + h^2), as Menpo (with the ground-truth landmark box, `landmark_boxes`)
  "none"          raw pixels (MAPE, as on AFW)
A zero or non-finite normaliser raises ValueError naming the images.

Curve statistics, written once here so every table uses the same definitions:
  CED(t)      share of images with error <= t.
  AUC@a       integral of CED from 0 to a, divided by a, computed exactly: the CED is a step
              function, so the integral is mean_i max(0, a - e_i), and AUC@a = mean_i
              max(0, 1 - e_i / a). Toolkits that integrate a sampled CED (trapezoid, Simpson)
              converge to this value as their step shrinks.
  failure@a   share of images with error >= a ("0.08 or greater", following 300-W).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch

from falign.measure.landmarks import Scheme, get_scheme

NORMS = ("inter-ocular", "inter-pupil", "box", "box-width", "box-diagonal", "none")
# Other spellings in common use (underscores, no hyphen, short names) mean the same normalisers.
_ALIASES = {"interocular": "inter-ocular", "ocular": "inter-ocular", "interpupil": "inter-pupil",
            "pupil": "inter-pupil", "bbox": "box", "box-size": "box", "width": "box-width",
            "diagonal": "box-diagonal", "pixels": "none"}


def canonical_norm(norm: str | None) -> str:
    """The canonical name of a normaliser: ``"inter_ocular"`` and ``"interocular"`` both mean
    ``"inter-ocular"``; ``None`` means ``"none"`` (errors in pixels)."""
    name = "none" if norm is None else str(norm).lower().replace("_", "-").replace(" ", "-")
    return _ALIASES.get(name, name)


class ExcludedFacesWarning(UserWarning):
    """Faces without an error (no visible landmark) were left out of a statistic."""


# --- inputs -----------------------------------------------------------------------------------

def _numpy(x, dtype=np.float64) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.double() if x.is_floating_point() else x).numpy()  # numpy has no bfloat16
    return np.asarray(x, dtype=dtype)


def _points_pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _numpy(pred), _numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    if pred.ndim == 2:
        pred, gt = pred[None], gt[None]
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"landmarks must be (B, N, 2) or (N, 2), got {gt.shape}")
    return pred, gt


def _visibility(visible, shape) -> np.ndarray:
    visible = _numpy(visible, dtype=bool)
    if visible.ndim == 1:
        visible = visible[None]
    if visible.shape != tuple(shape):
        raise ValueError(f"visible has shape {visible.shape}, expected {tuple(shape)} "
                         "(images, landmarks)")
    return visible


def _scheme_for(scheme, gt: np.ndarray, norm: str) -> Scheme:
    if scheme is None:
        raise ValueError(f"norm {norm!r} needs a landmark scheme")
    scheme = get_scheme(scheme)
    if scheme.n_points != gt.shape[1]:
        raise ValueError(f"scheme {scheme.name!r} has {scheme.n_points} points, the landmarks "
                         f"have {gt.shape[1]}")
    return scheme


def _boxes(boxes, n_images: int, norm: str) -> tuple[np.ndarray, np.ndarray]:
    if boxes is None:
        raise ValueError(f"norm {norm!r} needs boxes (x1, y1, x2, y2 per image); "
                         "landmark_boxes(gt) gives the ground-truth landmark boxes")
    boxes = _numpy(boxes).reshape(-1, 4)
    if len(boxes) != n_images:
        raise ValueError(f"{len(boxes)} boxes for {n_images} images")
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    inverted = np.flatnonzero((width < 0) | (height < 0))
    if inverted.size:
        raise ValueError(f"boxes with x2 < x1 or y2 < y1 for image(s) {inverted[:10].tolist()}")
    return width, height


# --- per-image errors -------------------------------------------------------------------------

def landmark_boxes(points, visible=None) -> np.ndarray:
    """(B, 4) tight boxes x1, y1, x2, y2 around each face's (visible) points."""
    points = _numpy(points)
    if points.ndim == 2:
        points = points[None]
    if visible is not None:
        keep = _visibility(visible, points.shape[:2])[..., None]
        low = np.where(keep, points, np.inf).min(axis=1)
        high = np.where(keep, points, -np.inf).max(axis=1)
    else:
        low, high = points.min(axis=1), points.max(axis=1)
    return np.concatenate([low, high], axis=1)


def normaliser(gt, norm: str, scheme: str | Scheme | None = None, boxes=None) -> np.ndarray:
    """(B,) normalising distance of each image; see the module docstring for the choices."""
    gt = _numpy(gt)
    if gt.ndim == 2:
        gt = gt[None]
    norm = canonical_norm(norm)
    if norm == "inter-ocular":
        scheme = _scheme_for(scheme, gt, norm)
        if scheme.outer_eye_corners is None:
            raise ValueError(f"scheme {scheme.name!r} has no outer eye corners for 'inter-ocular'")
        left, right = scheme.outer_eye_corners
        distance = np.linalg.norm(gt[:, left] - gt[:, right], axis=-1)
    elif norm == "inter-pupil":
        scheme = _scheme_for(scheme, gt, norm)
        if scheme.eye_centre_groups is None:
            raise ValueError(f"scheme {scheme.name!r} has no eye centres for 'inter-pupil'")
        left, right = (gt[:, list(group)].mean(axis=1) for group in scheme.eye_centre_groups)
        distance = np.linalg.norm(left - right, axis=-1)
    elif norm in ("box", "box-width", "box-diagonal"):
        width, height = _boxes(boxes, len(gt), norm)
        distance = {"box": np.sqrt(width * height), "box-width": width,
                    "box-diagonal": np.hypot(width, height)}[norm]
    elif norm == "none":
        distance = np.ones(len(gt))
    else:
        raise ValueError(f"unknown norm {norm!r}; valid: {', '.join(NORMS)}")
    bad = np.flatnonzero(~(np.isfinite(distance) & (distance > 0)))
    if bad.size:
        raise ValueError(f"{norm} normaliser is zero or not finite for "
                         f"image(s) {bad[:10].tolist()}")
    return distance


def per_landmark_errors(pred, gt, norm: str = "inter-ocular",
                        scheme: str | Scheme | None = "ibug68", boxes=None) -> np.ndarray:
    """(B, N) point-to-point distances divided by each image's normaliser."""
    pred, gt = _points_pair(pred, gt)
    distances = np.linalg.norm(pred - gt, axis=-1)
    return distances / normaliser(gt, norm, scheme, boxes)[:, None]


def nme(pred, gt, norm: str = "inter-ocular", scheme: str | Scheme | None = "ibug68",
        boxes=None, visible=None) -> np.ndarray:
    """(B,) normalised mean error per image; NaN for a face with no visible point.

    `scheme` is only used by the ocular norms; `boxes` (B, 4) only by the box norms.
    """
    errors = per_landmark_errors(pred, gt, norm, scheme, boxes)
    if visible is None:
        return errors.mean(axis=1)
    visible = _visibility(visible, errors.shape)
    counts = visible.sum(axis=1)
    totals = np.where(visible, errors, 0.0).sum(axis=1)  # hidden points may hold NaN
    per_image = np.full(len(errors), np.nan)
    np.divide(totals, counts, out=per_image, where=counts > 0)
    return per_image


def mape(pred, gt, visible=None) -> np.ndarray:
    """(B,) mean pixel error over the visible points of each image (MAPE).

    MAPE is "the average of the pixel errors for the visible landmarks"; like every
    metric here it is averaged per image first, then over images with `mean_error`.
    """
    return nme(pred, gt, norm="none", visible=visible)


# --- statistics over images -------------------------------------------------------------------

def _split(errors) -> tuple[np.ndarray, int]:
    """The errors that exist (non-NaN) and how many were NaN."""
    errors = _numpy(errors).ravel()
    exists = ~np.isnan(errors)
    if (errors[exists] < 0).any():
        raise ValueError("errors must be non-negative")
    return errors[exists], int(errors.size - exists.sum())


def _valid(errors, what: str) -> np.ndarray:
    errors, excluded = _split(errors)
    if excluded:
        warnings.warn(f"{what}: {excluded} of {errors.size + excluded} faces have no error (no "
                      "visible landmark) and are left out", ExcludedFacesWarning, stacklevel=3)
    if errors.size == 0:
        raise ValueError(f"{what}: no errors to summarise")
    return errors


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")


def _auc(errors: np.ndarray, alpha: float) -> float:
    return float(np.mean(np.clip(1.0 - errors / alpha, 0.0, 1.0)))


def _failure_rate(errors: np.ndarray, alpha: float) -> float:
    return float(np.mean(errors >= alpha))


def mean_error(errors) -> float:
    """Mean of the per-image errors, faces without an error left out."""
    return float(np.mean(_valid(errors, "mean_error")))


def ced(errors, max_error: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds 0, step, ..., max_error and the share of images
    with error <= each threshold."""
    if not (step > 0 and max_error >= 0):
        raise ValueError(f"need step > 0 and max_error >= 0, got {step}, {max_error}")
    errors = np.sort(_valid(errors, "ced"))
    thresholds = np.arange(0.0, max_error + step / 2, step)
    fraction = np.searchsorted(errors, thresholds, side="right") / errors.size
    return thresholds, fraction


def auc(errors, alpha: float) -> float:
    """Exact area under the CED from 0 to alpha, divided by alpha (module docstring)."""
    _check_alpha(alpha)
    return _auc(_valid(errors, "auc"), alpha)


def failure_rate(errors, alpha: float) -> float:
    """Share of images with error >= alpha."""
    _check_alpha(alpha)
    return _failure_rate(_valid(errors, "failure_rate"), alpha)


def summary(errors, alphas=(0.08,), label: str = "method") -> pd.DataFrame:
    """One row per named error array: n, excluded, mean, median, auc@a and failure@a per alpha.

    `errors` is a dict {name: per-image errors} or a single array (named "all"). `n` counts the
    faces with an error, `excluded` those without (NaN). Values are fractions, not percent.
    """
    for alpha in alphas:
        _check_alpha(alpha)
    named = errors if isinstance(errors, dict) else {"all": errors}
    rows = []
    for name, values in named.items():
        values, excluded = _split(values)
        empty = values.size == 0
        row = {label: name, "n": values.size, "excluded": excluded,
               "mean": np.nan if empty else float(np.mean(values)),
               "median": np.nan if empty else float(np.median(values))}
        for alpha in alphas:
            row[f"auc@{alpha:g}"] = np.nan if empty else _auc(values, alpha)
            row[f"failure@{alpha:g}"] = np.nan if empty else _failure_rate(values, alpha)
        rows.append(row)
    return pd.DataFrame(rows)
