"""The figures every chapter draws, drawn one way: landmarks on a face, CED curves, a training loss,
the paper's numbers beside ours; and the pieces the book's own chapters draw faces with: a face image
and its boxes, point numbers, a landmark scheme with its normalisers and flip pairs, per-landmark
errors and a CED with its AUC shaded.

Each helper draws on a matplotlib ``Axes`` the caller owns and returns it, so a chapter lays out its
own figure (``fig, axes = plt.subplots(...)``) and saves it with :meth:`falign.kit.report.Run.figure`.
Nothing here calls ``plt.show`` or picks a backend: it works under Agg (CI, papermill) and inline.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from falign.measure import metrics

VISIBLE, HIDDEN = "lime", "red"  # the book's two landmark colours
_NORM_TEXT = {"inter-ocular": "outer eye corners", "inter-pupil": "eye centres", "box": "sqrt(w·h) of the box",
              "box-width": "box width", "box-diagonal": "box diagonal"}


def _numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu()
        x = x.float() if x.is_floating_point() else x
        x = x.numpy()
    return np.asarray(x)


def as_display_image(image) -> tuple[np.ndarray, dict]:
    """Any face image as ``imshow`` wants it: (H, W) or (H, W, 3), plus the ``imshow`` keywords.

    Accepts numpy arrays or torch tensors, grey (H, W), (1, H, W), (H, W, 1) or colour CHW / HWC,
    uint8 (0-255) or float (0-1, or 0-255 when its maximum exceeds 1.5, as for some loaders)."""
    img = _numpy(image)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # CHW -> HWC (an image 1 or 3 pixels wide is read as HWC)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(f"image must be grey (H, W) or colour CHW/HWC, got shape {_numpy(image).shape}")
    if img.dtype == np.uint8:
        top = 255.0
    else:
        img = img.astype(np.float32)
        top = 255.0 if np.nanmax(img) > 1.5 else 1.0
    if img.ndim == 2:
        return img, {"cmap": "gray", "vmin": 0.0, "vmax": top}
    return (img if img.dtype == np.uint8 else np.clip(img / top, 0.0, 1.0)), {}


def landmarks(ax, image, points, visible=None, *, size: float = 6.0, colors=(VISIBLE, HIDDEN),
              labels=("visible", "hidden"), legend: bool | None = None, title: str | None = None,
              axis_off: bool = True):
    """Overlay landmarks (N, 2) (pixels, x right, y down) on ``image``; with ``visible`` (N,) bool,
    visible points in ``colors[0]`` and hidden ones in ``colors[1]``, with a legend whenever some point
    is hidden (``legend`` forces it on or off). ``image`` may be None (points only, y axis down)."""
    pts = _numpy(points).reshape(-1, 2).astype(float)
    vis = np.ones(len(pts), bool) if visible is None else _numpy(visible).astype(bool).reshape(-1)
    if len(vis) != len(pts):
        raise ValueError(f"{len(pts)} points but {len(vis)} visibility flags")
    if image is not None:
        img, kw = as_display_image(image)
        ax.imshow(img, **kw)
    else:
        ax.set_aspect("equal")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    ax.scatter(*pts[vis].T, s=size, c=colors[0], linewidths=0, label=labels[0])
    hidden = ~vis
    if hidden.any():
        ax.scatter(*pts[hidden].T, s=size, c=colors[1], linewidths=0, label=labels[1])
    if legend or (legend is None and hidden.any()):
        ax.legend(fontsize=7, loc="lower right", markerscale=2, framealpha=0.6)
    if title is not None:
        ax.set_title(title, fontsize=8)
    if axis_off:
        ax.axis("off")
    return ax


def ced(ax, errors_by_method: Mapping[str, Sequence[float]], normaliser: str, max_error: float = 0.08,
        *, step: float | None = None, unit: str = "", title: str | None = None):
    """CED curves of per-image errors, one per method, from :func:`falign.measure.metrics.ced`; the legend
    gives each method's AUC@max_error (:func:`falign.measure.metrics.auc`) and the x label names the
    normaliser (``"inter-ocular"``, ``"box"``, ``"none"`` for pixels...). ``unit`` ("%", "px") is
    appended to the label when the errors carry one; ``step`` defaults to max_error / 400."""
    norm = metrics.canonical_norm(normaliser)
    step = max_error / 400 if step is None else step
    for method, errors in errors_by_method.items():
        x, y = metrics.ced(errors, max_error, step)
        area = metrics.auc(errors, max_error)
        ax.plot(x, y, label=f"{method} (AUC@{max_error:g} = {area:.3f})")
    what = "error in pixels (normaliser: none)" if norm == "none" else f"NME ({norm}: {_NORM_TEXT.get(norm, norm)})"
    ax.set(xlim=(0, max_error), ylim=(0, 1), xlabel=what + (f", {unit}" if unit else ""),
           ylabel="fraction of images")
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def _losses(history) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(epochs, training losses, validation losses or None) from a History, records, frame or list;
    a single epoch is drawn as the mean loss of each fifth of it."""
    epochs = getattr(history, "epochs", history)  # falign.kit.train.History -> its list of dicts
    if isinstance(epochs, pd.DataFrame):
        epochs = epochs.to_dict("records")
    epochs = list(epochs)
    if len(epochs) == 1 and isinstance(epochs[0], Mapping) and "loss_fifths" in epochs[0]:
        fifths = np.array(epochs[0]["loss_fifths"], float)     # a one-epoch training: its fifths, at 0.2 .. 1
        return np.arange(1, len(fifths) + 1) / len(fifths), fifths, None
    if epochs and isinstance(epochs[0], Mapping):
        loss = np.array([e["loss"] for e in epochs], float)
        x = np.array([e.get("epoch", i + 1) for i, e in enumerate(epochs)], float)
        val = [e.get("validation") for e in epochs]
        val = None if all(v is None for v in val) else np.array([np.nan if v is None else v for v in val], float)
        return x, loss, val
    loss = np.asarray(epochs, float).ravel()
    return np.arange(1, len(loss) + 1, dtype=float), loss, None


def loss_curve(ax, history, label: str = "training", *, validation=None, ylabel: str = "loss",
               log: bool = True, title: str | None = None):
    """Training loss per epoch from a :class:`falign.kit.train.History`, its ``epochs`` records (a
    DataFrame or list of dicts with ``loss``, optionally ``epoch`` and ``validation``) or a plain list of
    losses; ``validation`` (one value per epoch) adds a second curve. Log y axis unless ``log=False``
    (or a loss is not positive)."""
    x, loss, val = _losses(history)
    val = val if validation is None else np.asarray(validation, float).ravel()
    ax.plot(x, loss, marker="o", ms=3, label=label)
    if val is not None:
        ax.plot(np.arange(1, len(val) + 1) if len(val) != len(x) else x, val, marker="s", ms=3,
                label="validation")
    values = np.concatenate([loss, [] if val is None else val])
    finite = values[np.isfinite(values)]
    ax.set(xlabel="epoch", ylabel=ylabel)
    if log and finite.size and (finite > 0).all():
        ax.set_yscale("log")
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    if val is not None or label != "training":
        ax.legend(fontsize=8)
    return ax


def paper_vs_ours(ax, df: pd.DataFrame, key: str, paper_col: str, ours_col: str, *, ylabel: str = "",
                  title: str | None = None, labels=("paper", "ours"), annotate: bool = True):
    """Grouped bars, one group per ``df[key]``: the paper's value beside ours. Missing values (NaN)
    leave a gap; ``annotate`` prints each bar's value."""
    names = [str(k) for k in df[key]]
    x = np.arange(len(names))
    width = 0.38
    for offset, col, name, colour in ((-width / 2, paper_col, labels[0], "0.65"),
                                      (width / 2, ours_col, labels[1], "tab:blue")):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(float)
        bars = ax.bar(x + offset, np.nan_to_num(values), width, label=name, color=colour)
        for bar, v in zip(bars, values):
            if np.isnan(v):
                bar.set_visible(False)
            elif annotate:
                ax.annotate(f"{v:.3g}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 1), textcoords="offset points")
    ax.set_xticks(x, names, rotation=30 if max(map(len, names), default=0) > 10 else 0,
                  ha="right" if max(map(len, names), default=0) > 10 else "center")
    ax.set(ylabel=ylabel)
    if title is not None:
        ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return ax


# --------------------------------------------------------------------------------------------------
# Faces, boxes and landmark schemes (the Landmarks, SynthFace and comparison chapters)
# --------------------------------------------------------------------------------------------------
SCHEME_COLOURS = {"context": "0.55", "kept": "tab:green", "averaged": "tab:orange", "outer eye corners": "tab:red",
                  "eye centres": "tab:blue", "box": "tab:purple", "mirror pair": "tab:cyan", "own partner": "tab:pink"}
# The iBUG 68 points' regions, by their first point (the ticks of a per-landmark figure).
IBUG68_REGIONS = ((0, "jaw"), (17, "brows"), (27, "nose"), (36, "eyes"), (48, "mouth"))


def zoom_to_box(ax, box, margin: float) -> None:
    """Show ``box`` (x1, y1, x2, y2, pixels) with ``margin`` box sizes around it, y axis down."""
    x1, y1, x2, y2 = np.asarray(box, float).reshape(4)
    w, h = x2 - x1, y2 - y1
    ax.set(xlim=(x1 - margin * w, x2 + margin * w), ylim=(y2 + margin * h, y1 - margin * h))


def face(ax, image, *, title: str | None = None, xlim=None, ylim=None):
    """Show a face image without axes, optionally zoomed (``xlim``, ``ylim`` in pixels; y runs down,
    so ``ylim`` is (bottom, top))."""
    img, kw = as_display_image(image)
    ax.imshow(img, **kw)
    ax.set(xlim=xlim if xlim is not None else ax.get_xlim(), ylim=ylim if ylim is not None else ax.get_ylim())
    if title is not None:
        ax.set_title(title)
    ax.axis("off")
    return ax


def box(ax, xyxy, *, color: str = "yellow", ls: str = "-", lw: float = 0.7, label: str | None = None):
    """Draw a box (x1, y1, x2, y2) in pixels, unfilled."""
    from matplotlib.patches import Rectangle

    x1, y1, x2, y2 = (float(v) for v in _numpy(xyxy).reshape(4))
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, ls=ls, lw=lw, label=label))
    return ax


def number_points(ax, points, *, fontsize: float = 7, start: int = 0, offsets=None, ha: str = "left"):
    """Write each point's index (from ``start``) beside it; ``offsets`` (N, 2) in points overrides the
    default small offset up-right, point by point."""
    pts = _numpy(points).reshape(-1, 2)
    offsets = np.tile([1.5, 1.5], (len(pts), 1)) if offsets is None else np.asarray(offsets, float).reshape(-1, 2)
    for i, ((x, y), off) in enumerate(zip(pts, offsets), start=start):
        ax.annotate(str(i), (x, y), xytext=tuple(off), textcoords="offset points", fontsize=fontsize, ha=ha)
    return ax


def eye_centres(points, scheme) -> np.ndarray:
    """(2, 2) the means of each eye's points of ``scheme`` (its ``eye_centre_groups``): the inter-pupil
    normaliser's points."""
    from falign.measure import landmarks as schemes

    pts = _numpy(points).reshape(-1, 2)
    return np.array([pts[list(group)].mean(axis=0) for group in schemes.get_scheme(scheme).eye_centre_groups])


def scheme_points(ax, points68, scheme, *, numbered: bool = False, root: str = "ibug68"):
    """A scheme derived from ``root`` (68 points), on the 68 points it comes from: faint grey dots for the
    68, green for points the scheme keeps, orange stars for points it averages from several, red rings
    on its outer eye corners and blue crosses on its eye centres (its normalisers), where it has them."""
    from falign.measure import landmarks as schemes

    s = schemes.get_scheme(scheme)
    base = _numpy(points68).reshape(-1, 2)
    points = schemes.convert(base, root, s)
    averaged = np.array([len(source) > 1 for source in s.sources])
    c = SCHEME_COLOURS
    ax.scatter(*base.T, s=4, c=c["context"])
    ax.scatter(*points[~averaged].T, s=10, c=c["kept"])
    ax.scatter(*points[averaged].T, s=70, marker="*", c=c["averaged"])
    if s.outer_eye_corners is not None:
        ax.scatter(*points[list(s.outer_eye_corners)].T, s=110, facecolors="none", edgecolors=c["outer eye corners"],
                   linewidths=1.5)
    if s.eye_centre_groups is not None:
        ax.scatter(*eye_centres(points, s).T, s=110, marker="+", c=c["eye centres"], linewidths=1.5)
    if numbered:
        number_points(ax, points, fontsize=9)
    return ax


def normalisers(ax, points, scheme="ibug68"):
    """The normalisers of one face: the outer eye corners (inter-ocular), the eye centres (inter-pupil)
    and the landmark box (the box normalisers), with a legend."""
    from falign.measure import landmarks as schemes

    s = schemes.get_scheme(scheme)
    pts = _numpy(points).reshape(-1, 2)
    c = SCHEME_COLOURS
    (x1, y1, x2, y2), = metrics.landmark_boxes(pts)
    box(ax, (x1, y1, x2, y2), color=c["box"], ls="--", lw=1.0)
    ax.plot(*pts[list(s.outer_eye_corners)].T, "-o", c=c["outer eye corners"], mfc="none", ms=9,
            label="inter-ocular (outer corners)")
    ax.plot(*eye_centres(pts, s).T, "-+", c=c["eye centres"], ms=12, mew=1.5, label="inter-pupil (eye centres)")
    ax.plot([], [], ls="--", c=c["box"], label="landmark box (w, h)")
    ax.legend(loc="lower center", fontsize=7)
    return ax


def flip_pairs(ax, points, scheme="ibug68"):
    """A scheme's flip permutation on one face: each point joined to its mirror partner, the points on
    the symmetry line (their own partners) as diamonds."""
    from falign.measure import landmarks as schemes

    s = schemes.get_scheme(scheme)
    pts = _numpy(points).reshape(-1, 2)
    perm, index = s.flip_perm, np.arange(s.n_points)
    paired = perm != index
    c = SCHEME_COLOURS
    for i in np.flatnonzero(paired & (perm > index)):
        ax.plot(*pts[[i, perm[i]]].T, c=c["mirror pair"], lw=0.7)
    ax.scatter(*pts[paired].T, s=10, c=c["mirror pair"], label="mirror pair")
    ax.scatter(*pts[~paired].T, s=30, marker="D", c=c["own partner"], label="own partner")
    ax.legend(loc="lower center", fontsize=7)
    return ax


def per_landmark(ax, errors, visible=None, *, regions=IBUG68_REGIONS, xlabel: str = "point",
                 ylabel: str = "mean error (%)", title: str | None = None):
    """Mean error of each landmark over images, in % (``errors`` (n, N) normalised, as
    :func:`falign.measure.metrics.per_landmark_errors` gives): grey bars over all points, blue dots
    over the visible ones only (``visible`` (n, N)); ``regions`` ((first point, name), ...) are marked."""
    errors = _numpy(errors).astype(float)
    n = errors.shape[1]
    ax.bar(np.arange(n), 100 * errors.mean(axis=0), color="0.7", label="all points")
    if visible is not None:
        vis = _numpy(visible).astype(bool)
        count = vis.sum(axis=0)
        mean = np.where(vis, errors, 0.0).sum(axis=0) / np.maximum(count, 1)
        ax.plot(np.arange(n), np.where(count > 0, 100 * mean, np.nan), "o", ms=3, c="tab:blue",
                label="visible points only")   # a point never visible has no dot
    top = 1.15 * ax.get_ylim()[1]
    for start, region in regions:
        ax.axvline(start - 0.5, c="0.4", lw=0.6)
        ax.text(start, 0.97 * top, region, va="top", fontsize=8)
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(-1, n), ylim=(0, top))
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return ax


def ced_area(ax, errors, alpha: float, *, max_error: float = 0.15, step: float = 0.0005, xlabel: str = "NME",
             title: str | None = None):
    """One CED (:func:`falign.measure.metrics.ced`) with what AUC@alpha and failure@alpha read off it:
    the area up to ``alpha`` shaded (its share of alpha is the AUC) and a line at ``alpha`` (the CED's
    shortfall from 1 there is the failure rate)."""
    thresholds, fraction = metrics.ced(errors, max_error=max_error, step=step)
    area, failures = metrics.auc(errors, alpha), metrics.failure_rate(errors, alpha)
    ax.step(thresholds, fraction, where="post", c="tab:blue", label="CED")
    inside = thresholds <= alpha + 1e-12
    ax.fill_between(thresholds[inside], fraction[inside], step="post", alpha=0.25, color="tab:blue",
                    label=f"AUC@{alpha:g} = {area:.3f}")
    ax.axvline(alpha, c="tab:red", ls="--", lw=1, label=f"failure rate@{alpha:g} = {failures:.1%}")
    ax.set(xlabel=xlabel, ylabel="share of images", xlim=(0, max_error), ylim=(0, 1.01))
    if title is not None:
        ax.set_title(title)
    ax.legend(loc="lower right")
    return ax


def crops_grid(crops: dict, splits, shown: int = 6, *, size: float = 2.0, cell: tuple[float, float] = (1.7, 1.8)):
    """``shown`` crops of every split in ``splits`` (a row each, evenly spread over the split) with their
    landmarks: the data section's first picture. ``crops`` maps a split to its
    :class:`falign.kit.crops.Crops`; returns the figure."""
    import matplotlib.pyplot as plt

    splits = list(splits)
    fig, axes = plt.subplots(len(splits), shown, figsize=(cell[0] * shown, cell[1] * len(splits)), squeeze=False)
    for row, split in enumerate(splits):
        c = crops[split]
        for col, i in enumerate(np.linspace(0, len(c) - 1, shown).astype(int)):
            landmarks(axes[row, col], c.images[i], c.landmarks[i], size=size)
        axes[row, 0].set_title(split, fontsize=9, loc="left")
    fig.tight_layout()
    return fig

