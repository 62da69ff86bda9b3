"""The 300-W evaluation protocol shared by every chapter that tests on 300-W.

300-W [Sagonas et al.] tests on three sets: *common* (the LFPW and Helen test images, 554 faces),
*challenging* (iBUG, 135 faces) and *full* (both, 689 faces). The error of a face is the mean
point-to-point distance divided by a normaliser computed from its ground truth: the outer eye
corners ("inter-ocular", the 300-W challenge's choice) or the eye centres ("inter-pupil",
used by some papers). Tables report, per subset, the mean error in %, AUC@0.08 and the failure rate
at 0.08, all from :mod:`falign.measure.metrics` (AUC exact; failure = error >= 0.08).

Decision [protocol300w.full-set] (evaluation): *full* is common and challenging pooled image by image, so its mean is the average of the
two subsets' means weighted by their image counts (554 and 135 on the real data), which is what the
papers report. A ``"full"`` entry given explicitly is used as is.
Paper: 300-W's full set is common + challenging (689 images); the papers report its mean without saying
whether faces are pooled or subset means averaged.

49-point results (as some papers report) drop the jaw and the mouth's inner corners: pass
``eval_scheme="ibug49"`` and the 68-point predictions and ground truth are converted with
:func:`falign.measure.landmarks.convert` before scoring (the normaliser is the same pair of eye corners).
"""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from falign.measure import metrics
from falign.kit import plots, report
from falign.measure.landmarks import convert, get_scheme

SUBSETS = ("common", "challenging", "full")
SUBSET_SIZES = {"common": 554, "challenging": 135, "full": 689}  # images in the real 300-W test sets
NORMS = ("inter-ocular", "inter-pupil")


def subset_errors(predictions: Mapping, ground_truth: Mapping, scheme: str = "ibug68",
                  norm: str = "inter-ocular", eval_scheme: str | None = None) -> dict[str, np.ndarray]:
    """Per-image normalised errors of every subset present, in the order common, challenging, full
    (then any other names). ``predictions`` and ``ground_truth`` map subset -> (B,N,2) landmarks of
    ``scheme``; "full" is added by pooling when common and challenging are both present."""
    if norm not in NORMS:
        raise ValueError(f"300-W norm must be one of {NORMS}, got {norm!r}")
    missing = sorted(set(ground_truth) - set(predictions))
    if missing:
        raise ValueError(f"no predictions for subset(s) {missing}")
    errors = {}
    for name, gt in ground_truth.items():
        pred = predictions[name]
        if eval_scheme is not None and get_scheme(eval_scheme).name != get_scheme(scheme).name:
            pred, gt = convert(np.asarray(pred), scheme, eval_scheme), convert(np.asarray(gt), scheme, eval_scheme)
        try:
            errors[name] = metrics.nme(pred, gt, norm=norm, scheme=eval_scheme or scheme)
        except ValueError as err:
            raise ValueError(f"300-W subset {name!r}: {err}") from err
    if "full" not in errors and {"common", "challenging"} <= set(errors):
        errors["full"] = np.concatenate([errors["common"], errors["challenging"]])
    order = [s for s in SUBSETS if s in errors] + [s for s in errors if s not in SUBSETS]
    return {s: errors[s] for s in order}


def ground_truth(tests: dict) -> dict:
    """Every test subset's landmarks in original image pixels (:meth:`falign.kit.crops.Crops.ground_truth`),
    by subset: the truth :func:`evaluate` and :func:`subset_errors` score against."""
    return {s: c.ground_truth() for s, c in tests.items()}


def evaluate(predictions: Mapping, ground_truth: Mapping, scheme: str = "ibug68",
             norm: str = "inter-ocular", eval_scheme: str | None = None, threshold: float = 0.08,
             method: str | None = None) -> pd.DataFrame:
    """One row per subset: n, mean NME (%), AUC@threshold (fraction) and failure@threshold (%).

    Column names carry the normaliser and threshold, e.g. "NME (%, inter-ocular)"; with ``method``
    a first column names the method, so tables of several methods concatenate.
    """
    errors = subset_errors(predictions, ground_truth, scheme, norm, eval_scheme)
    table = metrics.summary(errors, alphas=(threshold,), label="subset")
    out = pd.DataFrame({
        "subset": table["subset"],
        "n": table["n"],
        f"NME (%, {norm})": 100 * table["mean"],
        f"AUC@{threshold:g}": table[f"auc@{threshold:g}"],
        f"failure@{threshold:g} (%)": 100 * table[f"failure@{threshold:g}"],
    })
    if method is not None:
        out.insert(0, "method", method)
    return out


def ced_data(errors_by_method: Mapping[str, Mapping[str, np.ndarray]], subset: str,
             max_error: float = 0.1, step: float = 1e-4) -> pd.DataFrame:
    """Long table (method, error, fraction) of the CED curves of one subset: the CSV behind
    :func:`ced_figure`. ``errors_by_method`` maps method -> subset -> per-image errors (as returned
    by :func:`subset_errors`)."""
    frames = []
    for method, by_subset in errors_by_method.items():
        if subset not in by_subset:
            raise KeyError(f"method {method!r} has no errors for subset {subset!r}")
        x, y = metrics.ced(by_subset[subset], max_error, step)
        frames.append(pd.DataFrame({"method": method, "error": x, "fraction": y}))
    return pd.concat(frames, ignore_index=True)


def dataset_name(data: str) -> str:
    """What to call a 300-W-protocol run's test sets in titles: real 300-W, or SynthFace's stand-in."""
    return "SynthFace 300-W-like" if data == "synthetic" else "300-W"


def ced_figure(errors_by_method: Mapping[str, Mapping[str, np.ndarray]], subset: str,
               max_error: float = 0.1, norm: str = "inter-ocular", dataset: str = "300-W") -> Figure:
    """CED curves of several methods on one subset (:func:`falign.kit.plots.ced`, the CSV's 1e-4 grid);
    the legend gives each AUC@max_error; the title names the ``dataset`` (:func:`dataset_name`)."""
    for method, by_subset in errors_by_method.items():
        if subset not in by_subset:
            raise KeyError(f"method {method!r} has no errors for subset {subset!r}")
    fig, ax = plt.subplots(figsize=(5, 4))
    plots.ced(ax, {m: e[subset] for m, e in errors_by_method.items()}, norm, max_error, step=1e-4,
              title=f"{dataset} {subset}")
    fig.tight_layout()
    return fig


def paper_vs_ours(published: pd.DataFrame, ours: pd.DataFrame, value: str = "NME (%, inter-ocular)",
                  key: str = "method") -> pd.DataFrame:
    """A published 300-W table (one row per method, one column per subset) with our numbers beside
    each subset: :func:`falign.kit.report.paper_vs_ours` on ``ours`` (long :func:`evaluate` rows) pivoted
    to one column per subset."""
    subsets = [c for c in published.columns if c in SUBSETS]
    wide = ours.pivot_table(index=key, columns="subset", values=value, sort=False).reset_index()
    return report.paper_vs_ours(published, wide, on=key, values=subsets)
