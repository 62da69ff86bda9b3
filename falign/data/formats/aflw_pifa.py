"""AFLW-PIFA: the 34-landmark, large-pose AFLW subset of Jourabloo & Liu (PIFA, ICCV 2015).

One MAT-file per split (``train.mat``: 3,901 faces, ``test.mat``: 1,299), MATLAB v7 or v7.3, with:

* ``images`` (or ``imgNames``): n x 1 cell of image paths relative to the MAT-file's folder
  (``\\`` separators accepted); a name not found there is also looked up under ``flickr/``, AFLW's
  own image folder;
* ``bboxes``: n x 4 face boxes ``[x y w h]``, 1-based;
* ``phis``: n x 102 rows of 34 x, 34 y (1-based) and 34 visibility flags (1 = visible).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.formats.matlab import cell_items, load_mat, variable
from falign.data.sample import DataError, Sample, check_image, make_sample

N_POINTS = 34
SIZES = {"train": 3901, "test": 1299}
LAYOUT = """\
  train.mat  test.mat    MATLAB v7 or v7.3 files, each holding
      images (or imgNames)  n x 1 cell of image paths relative to this folder (or to flickr/)
      bboxes                n x 4 face boxes [x y w h], 1-based
      phis                  n x 102: 34 x, 34 y (1-based), 34 visibility flags (1 = visible)
  flickr/ ...            the AFLW images the paths point to
splits: train 3901, test 1299"""


def xywh_to_box(xywh: np.ndarray) -> np.ndarray:
    """MATLAB ``[x y w h]`` (1-based corner) rows to 0-based x1, y1, x2, y2."""
    xywh = np.asarray(xywh, dtype=np.float64)
    x1y1 = xywh[..., :2] - 1
    return np.concatenate([x1y1, x1y1 + xywh[..., 2:4]], axis=-1).astype(np.float32)


def split_phis(phis: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of n x, n y, n flags (the RCPR/PIFA layout) to 0-based (n, N, 2) points and flags."""
    points = np.stack([phis[:, :n_points], phis[:, n_points:2 * n_points]], axis=-1) - 1
    return points.astype(np.float32), phis[:, 2 * n_points:3 * n_points]


def load_aflw_pifa(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """AFLW-PIFA faces of ``split`` from ``<root>/<split>.mat``."""
    path = root / f"{split}.mat"
    mat = load_mat(path)
    names = [str(n) for n in cell_items(variable(mat, path, "images", "imgNames"))]
    boxes = np.asarray(variable(mat, path, "bboxes"), dtype=np.float64)
    phis = np.asarray(variable(mat, path, "phis"), dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"bboxes must be n x 4 [x y w h], found shape {boxes.shape}", path)
    if phis.ndim != 2 or phis.shape[1] != 3 * N_POINTS:
        raise DataError(f"phis must be n x {3 * N_POINTS} (34 x, 34 y, 34 visibility), "
                        f"found shape {phis.shape}", path)
    if not len(names) == len(boxes) == len(phis):
        raise DataError(f"list lengths differ: {len(names)} images, {len(boxes)} bboxes rows, "
                        f"{len(phis)} phis rows", path)
    points, flags = split_phis(phis, N_POINTS)
    for index, name in enumerate(names):
        yield partial(_face, root, name, points[index], flags[index] > 0.5,
                      xywh_to_box(boxes[index]), f"{path}#{index}")


def _face(root: Path, name: str, points, visible, box, where: str) -> Sample:
    relative = name.replace("\\", "/")
    image = root / relative
    if not image.is_file() and (root / "flickr" / relative).is_file():
        image = root / "flickr" / relative
    if not image.is_file():
        raise DataError(f"image {relative!r} not found under {root} (or {root / 'flickr'})", where)
    return make_sample(points, visible=visible, box=box, scheme="aflw-pifa34", source=image,
                       where=where, size=check_image(image), extra={"annotation": where})
