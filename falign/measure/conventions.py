"""Metric conventions of other toolkits, made executable: the same predictions scored as their code does.

A "NME of 3.3" from two code bases need not mean the same thing. The Landmarks chapter explains the
choices in prose; here each choice is a field of a :class:`Convention`, and :func:`score` applies one
to per-landmark normalised errors, so a table can show how much of a reported difference is convention:

* **pooling**: ``"image"`` averages each face's points first and then the faces (300-W, DAN, HRNet,
  STAR, and :mod:`falign.measure.metrics`); ``"keypoint"`` averages every counted point of every face at once
  (mmpose's ``keypoint_nme``), which weighs a face by how many of its points are counted.
* **visible_only**: count only visible points (mmpose's keypoint mask) or all of them (300-W).
* **AUC**: ours is exact (:func:`falign.measure.metrics.auc`); DAN and STAR sample the CED on a grid
  ``np.arange(0, a + step, step)`` with ``error <= x`` and integrate it with scipy's ``simps`` of their
  time, divided by ``a``. The float grid can run one step long: at ``a = 0.05`` it ends at 0.0501, and
  they integrate up to there.
* **failure**: ours counts ``error >= a``; HRNet counts ``error > a``; DAN and STAR report ``1 - CED``
  at the grid's *last point*, ``error > 0.0501`` at ``a = 0.05`` (``error > 0.08`` at 0.08, where the
  grid ends on ``a``).

Keypoint pooling over visible points (mmpose) equals the per-image NME whenever every face counts all
of its points, as on real 300-W, where every point is labelled; it differs here only because SynthFace
flags self-occluded points as not visible.

The normaliser (the outer-eye-corner distance on 300-W in all of them) is applied before: the input
is already normalised, one value per face and landmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.integrate import simpson

from falign.measure import metrics


FAILURE_OPS = (">=", ">", "1 - CED")


@dataclass(frozen=True)
class Convention:
    """How one code base turns per-landmark normalised errors into its table's numbers."""

    name: str
    source: str                       # the code this follows
    pooling: str = "image"            # "image": per-face mean, then mean over faces; "keypoint": one pooled mean
    visible_only: bool = False        # count visible points only
    auc: tuple[float, ...] = ()       # AUC thresholds; () = the code reports none
    integration: str = "exact"        # "exact" (falign) or "simpson" (scipy's old simps) on the sampled CED
    step: float = 1e-4                # CED grid step (Simpson's rule, and failure "1 - CED")
    failure: tuple[float, ...] = ()   # failure thresholds
    failure_op: str = ">="            # ">=" (falign, 300-W), ">" (HRNet), "1 - CED" (at the grid's last point)

    def __post_init__(self):
        if self.pooling not in ("image", "keypoint"):
            raise ValueError(f"convention {self.name!r}: pooling must be 'image' or 'keypoint', got {self.pooling!r}")
        if self.integration not in ("exact", "simpson"):
            raise ValueError(f"convention {self.name!r}: integration must be 'exact' or 'simpson'")
        if self.failure_op not in FAILURE_OPS:
            raise ValueError(f"convention {self.name!r}: failure_op must be one of {', '.join(FAILURE_OPS)}")


PRESETS: dict[str, Convention] = {c.name: c for c in (
    Convention("falign", "falign.measure.metrics (this book): exact AUC, failure >= a", auc=(0.08,), failure=(0.08,)),
    Convention("DAN", "Kowalski et al. 2017, DeepAlignmentNetwork (AUCError): per-image NME, simps on the grid "
               "np.arange(0, 0.08 + 1e-4, 1e-4) (ends on 0.08) with <=, failure = 1 - CED at its last point",
               auc=(0.08,), integration="simpson", failure=(0.08,), failure_op="1 - CED"),
    Convention("HRNet", "HRNet-Facial-Landmark-Detection (lib/core/function.py): per-image NME, failures > 0.08 "
               "and > 0.10, no AUC", failure=(0.08, 0.10), failure_op=">"),
    Convention("STAR", "STAR (lib/metric/fr_and_auc.py) on 300-W: threshold 0.05, simps on the grid "
               "np.arange(0, 0.05 + 1e-4, 1e-4), which ends at 0.0501, with <=; FR = 1 - CED at 0.0501 "
               "(printed rounded to 4 and 6 decimals, unrounded here)",
               auc=(0.05,), integration="simpson", failure=(0.05,), failure_op="1 - CED"),
    Convention("mmpose", "mmpose keypoint_nme: mean over every visible keypoint of every image, no AUC or failure "
               "(on real 300-W every point is labelled, and it equals the per-image NME)",
               pooling="keypoint", visible_only=True),
)}


def per_image(point_errors, visible=None) -> np.ndarray:
    """(B,) per-face mean of (B, N) normalised point errors, over visible points when ``visible`` is given."""
    errors = np.asarray(point_errors, np.float64)
    if visible is None:
        return errors.mean(axis=1)
    visible = np.asarray(visible, bool)
    counts = visible.sum(axis=1)
    out = np.full(len(errors), np.nan)
    np.divide(np.where(visible, errors, 0.0).sum(axis=1), counts, out=out, where=counts > 0)
    return out


def ced_grid(errors, alpha: float, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """The CED as DAN and STAR sample it: the grid ``np.arange(0, alpha + step, step)`` (kept as numpy
    builds it, so it may end a step past alpha) and the share of errors ``<=`` each grid point."""
    errors = np.sort(np.asarray(errors, np.float64))
    x = np.arange(0.0, alpha + step, step)
    return x, np.searchsorted(errors, x, side="right") / len(errors)


def simps(y, x) -> float:
    """scipy's ``simps(y, x=x)`` as DAN and STAR ran it (scipy < 1.11, ``even="avg"``): composite
    Simpson for an odd number of samples; for an even number, the mean of Simpson on the first N - 1
    samples plus a trapezoid on the last interval and a trapezoid on the first plus Simpson on the
    last N - 1 (scipy 1.11 changed that default, so ``scipy.integrate.simpson`` is not used alone)."""
    y, x = np.asarray(y, np.float64), np.asarray(x, np.float64)
    if len(y) % 2:
        return float(simpson(y, x=x))
    first = simpson(y[:-1], x=x[:-1]) + 0.5 * (x[-1] - x[-2]) * (y[-1] + y[-2])
    last = 0.5 * (x[1] - x[0]) * (y[0] + y[1]) + simpson(y[1:], x=x[1:])
    return float((first + last) / 2)


def simpson_auc(errors, alpha: float, step: float = 1e-4) -> float:
    """AUC@alpha as DAN and STAR compute it: :func:`simps` of the :func:`ced_grid` CED, up to the grid's
    last point, divided by alpha."""
    x, ced = ced_grid(errors, alpha, step)
    return simps(ced, x) / alpha


def failure(errors, alpha: float, op: str = ">=", step: float = 1e-4) -> float:
    """Share of errors failing at ``alpha`` under ``op`` (:data:`FAILURE_OPS`); ``"1 - CED"`` reads the
    :func:`ced_grid` CED at its last point, as DAN's and STAR's code do."""
    errors = np.asarray(errors, np.float64)
    if op == "1 - CED":
        return float(1.0 - ced_grid(errors, alpha, step)[1][-1])
    return float((errors >= alpha).mean() if op == ">=" else (errors > alpha).mean())


def score(point_errors, visible=None, convention: str | Convention = "falign") -> dict[str, float]:
    """The numbers one convention reports for (B, N) normalised point errors: ``"NME (%)"``,
    ``"AUC@a"`` per AUC threshold and ``"failure@a (%)"`` per failure threshold."""
    c = PRESETS[convention] if isinstance(convention, str) else convention
    errors = np.asarray(point_errors, np.float64)
    if errors.ndim != 2:
        raise ValueError(f"point errors must be (faces, points), got shape {errors.shape}")
    mask = np.asarray(visible, bool) if c.visible_only and visible is not None else None
    if c.visible_only and visible is None:
        raise ValueError(f"convention {c.name!r} counts visible points only: pass visible")
    if c.pooling == "keypoint":
        counted = errors[mask] if mask is not None else errors.ravel()
        return {"NME (%)": 100 * float(counted.mean())}
    faces = per_image(errors, mask)
    faces = faces[~np.isnan(faces)]
    out = {"NME (%)": 100 * float(faces.mean())}
    for a in c.auc:
        out[f"AUC@{a:g}"] = metrics.auc(faces, a) if c.integration == "exact" else simpson_auc(faces, a, c.step)
    for a in c.failure:
        out[f"failure@{a:g} (%)"] = 100 * failure(faces, a, c.failure_op, c.step)
    return out


def table(point_errors: dict, visible: dict | None = None, conventions=None) -> pd.DataFrame:
    """One row per method and convention: ``point_errors`` maps a method to its (B, N) normalised point
    errors (``visible`` to its (B, N) visibility); columns are the union of what the conventions report
    (empty where a convention reports nothing)."""
    names = list(conventions or PRESETS)
    rows = [{"method": m, "convention": n, **score(e, None if visible is None else visible[m], n)}
            for m, e in point_errors.items() for n in names]
    return pd.DataFrame(rows)
