"""COFW: Caltech Occluded Faces in the Wild (Burgos-Artizzu et al., ICCV 2013), 29 landmarks.

The images live inside the MAT-files (v7 ``COFW_train.mat``/``COFW_test.mat``, or the v7.3
``COFW_train_color.mat``/``COFW_test_color.mat``) as a cell array of uint8 grey or RGB arrays:

* train: ``IsTr`` (images), ``phisTr``, ``bboxesTr``; test: ``IsT``, ``phisT``, ``bboxesT``;
* ``phis`` rows: 29 x, 29 y (1-based) and 29 occlusion flags (1 = occluded);
* ``bboxes`` rows: ``[x y w h]``, 1-based.

A sample's ``source`` is ``<file>#<index>`` (0-based position in the file).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.formats.aflw_pifa import split_phis, xywh_to_box
from falign.data.formats.matlab import cell_items, load_mat, variable
from falign.data.sample import DataError, Sample, make_sample

N_POINTS = 29
SIZES = {"train": 1345, "test": 507}
FILES = {"train": ("COFW_train_color.mat", "COFW_train.mat"),
         "test": ("COFW_test_color.mat", "COFW_test.mat")}
VARIABLES = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}
LAYOUT = """\
  COFW_train_color.mat or COFW_train.mat   IsTr (cell of uint8 images), phisTr (n x 87:
      29 x, 29 y 1-based, 29 occlusion flags, 1 = occluded), bboxesTr (n x 4 [x y w h], 1-based)
  COFW_test_color.mat or COFW_test.mat     IsT, phisT, bboxesT, the same layout
(MATLAB v7 or v7.3; the colour files are preferred when both are present)
splits: train 1345, test 507"""


def load_cofw(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """COFW faces of ``split``; the images come decoded from the MAT-file."""
    candidates = [root / name for name in FILES[split]]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataError(f"COFW file missing: expected {' or '.join(FILES[split])}", root)
    mat = load_mat(path)
    images_name, phis_name, boxes_name = VARIABLES[split]
    images = cell_items(variable(mat, path, images_name))
    phis = np.asarray(variable(mat, path, phis_name), dtype=np.float64)
    boxes = np.asarray(variable(mat, path, boxes_name), dtype=np.float64)
    if phis.ndim != 2 or phis.shape[1] != 3 * N_POINTS:
        raise DataError(f"{phis_name} must be n x {3 * N_POINTS} (29 x, 29 y, 29 occlusion flags), "
                        f"found shape {phis.shape}", path)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{boxes_name} must be n x 4 [x y w h], found shape {boxes.shape}", path)
    if not len(images) == len(phis) == len(boxes):
        raise DataError(f"list lengths differ: {len(images)} images, {len(phis)} {phis_name} rows, "
                        f"{len(boxes)} {boxes_name} rows", path)
    points, occluded = split_phis(phis, N_POINTS)
    for index, image in enumerate(images):
        yield partial(_face, image, points[index], occluded[index] < 0.5,
                      xywh_to_box(boxes[index]), f"{path}#{index}")


def _face(image, points, visible, box, source: str) -> Sample:
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise DataError(f"expected a uint8 grey (H, W) or RGB (H, W, 3) image, found "
                        f"{image.dtype} {image.shape}", source)
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else np.ascontiguousarray(image)
    return make_sample(points, visible=visible, box=box, scheme="cofw29", source=source, image=rgb)
