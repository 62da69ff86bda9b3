"""AFW: Annotated Faces in the Wild (Zhu & Ramanan, CVPR 2012): 468 faces in 205 images, 6 points.

``anno.mat`` (MATLAB v7.3, also read as v7) holds ``anno``, an n_images x 4 cell array; row i is
{image name, 1 x k cell of face boxes ``[x1 y1; x2 y2]``, 1 x k cell of poses ``[yaw pitch roll]``,
1 x k cell of 6 x 2 landmark arrays}, coordinates 1-based. A landmark given as NaN (or as -1, -1)
is not annotated: it becomes NaN and not visible. Poses are kept as stored; the AFW paper labels
yaw and pitch in 15 degree steps from -90 to 90 degrees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.formats.matlab import cell_items, load_mat, variable
from falign.data.sample import DataError, Sample, check_image, make_sample

SIZES = {"test": 468}
LAYOUT = """\
  anno.mat     MATLAB file with the cell array anno: one row per image {name, boxes, poses, points}
  <name>.jpg   the 205 images, beside anno.mat (the contents of AFW's testimages/ folder)
split: test (468 faces)"""


def load_afw(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """Every annotated AFW face (the single split is ``test``)."""
    path = root / "anno.mat"
    anno = variable(load_mat(path), path, "anno")
    if not (isinstance(anno, np.ndarray) and anno.dtype == object and anno.ndim == 2 and anno.shape[1] == 4):
        shape = getattr(anno, "shape", type(anno).__name__)
        raise DataError(f"anno must be an n x 4 cell array {{name, boxes, poses, points}}, "
                        f"found {shape}", path)
    for row, (name, boxes, poses, points) in enumerate(anno):
        boxes, poses, points = cell_items(boxes), cell_items(poses), cell_items(points)
        for face in range(max(len(boxes), len(points))):
            yield partial(_face, root, str(name), boxes, poses, points, face, f"{path}#{row}.{face}")


def _face(root: Path, name: str, boxes, poses, points, face: int, where: str) -> Sample:
    if not len(boxes) == len(poses) == len(points):
        raise DataError(f"image {name!r} has {len(boxes)} boxes, {len(poses)} poses and "
                        f"{len(points)} landmark sets", where)
    image = root / name
    if not image.is_file():
        raise DataError(f"image {name!r} not found beside anno.mat", where)
    size = check_image(image)
    try:
        box = np.asarray(boxes[face], np.float32).reshape(4) - 1
        pose = np.asarray(poses[face], np.float32).reshape(3)
        raw = np.asarray(points[face], np.float32).reshape(-1, 2)
    except ValueError as err:
        raise DataError(f"face {face} of {name!r}: box, pose or points malformed ({err})", where) from None
    missing = ~np.isfinite(raw).all(1) | (raw == -1).all(1)
    landmarks = np.where(missing[:, None], np.nan, raw - 1).astype(np.float32)
    return make_sample(landmarks, visible=~missing, box=box, pose=pose, scheme="afw6", source=image,
                       where=where, size=size, extra={"annotation": where})
