"""The "Use it on your own photo" chapter: every shipped aligner (:func:`falign.kit.aligner.shipped`) on
one real photograph.

Nothing here trains or scores: the page loads each chapter's committed weights, says where each comes
from, and draws what each predicts on a face dlib's detector found. The notebook
``notebooks/aligner/01_your_own_photo`` calls these functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from falign.kit import aligner, plots

PROVENANCE = ("scale", "data", "seed", "commit", "package")   # the provenance fields the page shows
MARGIN = 0.3                                        # the zoom around the face box, in box sizes


PEER = "dlib-ert-68"   # the comparison chapter's peer, trained on real faces: shown on the same photo


def shipped(device="cpu") -> dict[str, aligner.Aligner]:
    """The shipped aligners that load, then the peer (:data:`PEER`, dlib's ERT trained on real 300-W) so a
    reader sees the book's SynthFace-trained weights beside a real-trained model on the same face; each
    one refused is said aloud, one line with why (the reason's last path part)."""
    models, refused = aligner.shipped(device)
    for name, why in refused.items():
        print(f"{name} is not shown: {why.rsplit('/', 1)[-1]}")
    return {**models, f"{PEER} (peer)": aligner.load(PEER, device=device)}


def provenance(models: dict[str, aligner.Aligner]) -> pd.DataFrame:
    """Per aligner, the run that trained its weights (scale, data, seed, commit), or for the peer the
    package its model ships in, and the face boxes it was trained from."""
    return pd.DataFrame([{"aligner": name, **{k: model.provenance.get(k) for k in PROVENANCE},
                          "trained from": aligner.BOX_CONVENTIONS[model.box_convention]}
                         for name, model in models.items()])


def photo_figure(models: dict[str, aligner.Aligner], photo: np.ndarray, box, margin: float = MARGIN):
    """One panel per aligner, three to a row: its landmarks on ``photo`` (hidden points in the second colour where it
    estimates visibility), zoomed on ``box`` (x1, y1, x2, y2) with ``margin`` box sizes around it."""
    import matplotlib.pyplot as plt

    box = np.asarray(box, np.float32).reshape(4)
    ncols = min(max(len(models), 1), 3)
    nrows = -(-max(len(models), 1) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 4.3 * nrows), squeeze=False)
    for ax in axes.flat[len(models):]:
        ax.axis("off")
    for ax, (name, model) in zip(axes.flat, models.items()):
        points, visible = model.align(photo, box[None])
        plots.landmarks(ax, photo, points[0], None if visible is None else visible[0])
        plots.zoom_to_box(ax, box, margin)
        ax.set_title(f"{name}: {model.n_points} points ({model.scheme})", fontsize=9)
    if not models:
        axes[0, 0].set_title("no shipped aligner loads", fontsize=9)
    fig.tight_layout()
    return fig
