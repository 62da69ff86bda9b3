"""How a model trained on real 300-W reads SynthFace's landmarks: the systematic part of dlib ERT's error there.

SynthFace places each iBUG point on a fixed vertex of its 3D head (the brows on the middle of a thin brow, the
jaw on the mesh's lower edge); 300-W's annotators placed them by eye on photographs. Where the two definitions
part, a model trained on one is off on the other by the same amount on every face, whatever its accuracy.
dlib's ERT, trained on real 300-W, shows that offset on SynthFace faces: the median of its residuals, each in its
face's own frame and less the face's mean residual (where the whole shape lands is the box convention's business,
measured by the comparison chapter's adapter), is the part of its error in the shape that repeats from face to face. Fitted on one half of the faces and
removed from the other half, it says how much of dlib's SynthFace error it explains, and so roughly how much
of a SynthFace-trained model's real-photo error may be definition rather than appearance. This is a reading
of dlib's errors, which mix the definitions with dlib's own systematic mistakes on rendered faces; it is
measured on SynthFace training faces only, never on the real ones. The notebook
``notebooks/compare/05_real_photos`` calls these functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from falign.chapters import compare
from falign.chapters.real_photos import REGIONS
from falign.kit import facecrop
from falign.kit.crops import load_faces
from falign.measure.landmarks import get_scheme

MAX_YAW = 30.0          # faces turned at most this far: 300-W's common set's range, where the jaw is seen


def in_face_frame(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(n, 68, 2) vectors ``points - truth`` in each face's frame: the similarity that takes its outer eye
    corners to (0, 0) and (1, 0) (:func:`falign.kit.facecrop.similarity`), so offsets compare across faces
    of any roll and size, in units of the inter-ocular distance (y down: negative is up)."""
    corners = truth[:, list(get_scheme(compare.SCHEME).outer_eye_corners)]
    linear = facecrop.similarity(corners, np.array([[0.0, 0.0], [1.0, 0.0]]))[..., :2]
    return np.einsum("nij,nkj->nki", linear, np.asarray(points, np.float64) - truth)


def split_halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint random halves of ``n`` faces: the offsets are fitted on one and judged on the other."""
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[: n // 2]), np.sort(order[n // 2:])


def offset_table(residuals: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Per region: the median offset's mean length and direction (% of the inter-ocular distance) over all
    faces, and the residuals' mean length on one half of the faces before and after removing the other
    half's median offsets."""
    fit, judge = split_halves(len(residuals), seed)
    offset, held = np.median(residuals, 0), residuals[judge]
    before = np.linalg.norm(held, axis=-1)
    after = np.linalg.norm(held - np.median(residuals[fit], 0), axis=-1)
    rows = []
    for name, idx in {**REGIONS, "all 68": range(68)}.items():
        idx = list(idx)
        rows.append({"region": name, "median offset (%)": 100 * np.linalg.norm(offset[idx], axis=-1).mean(),
                     "across (%, +: image right)": 100 * offset[idx, 0].mean(),
                     "down (%, +: toward the chin)": 100 * offset[idx, 1].mean(),
                     "dlib shape error, held-out half (%)": 100 * before[:, idx].mean(),
                     "after removing the offsets (%)": 100 * after[:, idx].mean()})
    return pd.DataFrame(rows)


def peer_residuals(peer: compare.Method, cfg: compare.Scale, *, seed: int = 0) -> tuple[np.ndarray, int]:
    """dlib's residuals in the face frame (:func:`in_face_frame`), less each face's mean residual (the shape's
    offsets, not the box's), on the SynthFace 300-W-like training faces the box adapter is fitted on
    (``cfg.adapter_faces``) turned at most :data:`MAX_YAW`, from boxes in its convention; and how many faces."""
    faces = compare.Faces.from_arrays(load_faces("synthetic", "train", preset=compare.PRESET, n=cfg.adapter_faces,
                                                 size=cfg.image, seed=seed))
    faces = faces.subset(np.nonzero(np.abs(faces.pose[:, 0]) <= MAX_YAW)[0])
    pred = peer.predict(faces.images, peer.convention.adapt(faces.detector_boxes))
    residuals = in_face_frame(pred, faces.landmarks68.astype(np.float64))
    return residuals - residuals.mean(1, keepdims=True), len(faces)


def reading(table: pd.DataFrame, faces: int) -> str:
    """The table in words: how much of dlib's SynthFace error repeats from face to face, and where."""
    rows = table.set_index("region")
    whole = rows.loc["all 68"]
    largest = rows.drop("all 68")["median offset (%)"].sort_values(ascending=False)
    top = ", ".join(f"{r} {v:.1f} %" for r, v in largest.iloc[:2].items())
    return (f"On {faces} SynthFace training faces turned at most {MAX_YAW:g} degrees, dlib's ERT reads the shape "
            f"with a median offset of {whole['median offset (%)']:.1f} % of the inter-ocular distance per point "
            f"(largest: {top}). Removing one half's offsets takes the other half's shape error (its mean offset removed) from "
            f"{whole['dlib shape error, held-out half (%)']:.1f} to {whole['after removing the offsets (%)']:.1f} %: that much "
            "of dlib's SynthFace error repeats from face to face, a mix of the two landmark definitions (and face "
            "proportions) and dlib's own bias on rendered faces. A model trained on SynthFace carries the same "
            "difference, the other way, onto real photos; a reading of dlib's errors, not a measurement on real faces.")
