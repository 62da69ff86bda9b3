"""iBUG ``.pts`` landmark files: 300-W (68 points) and Menpo (68 semi-frontal, 39 profile).

A ``.pts`` file looks like::

    version: 1
    n_points: 68
    {
    x y
    ...
    }

Coordinates are 1-based (MATLAB style, the centre of the top-left pixel is (1, 1)); :func:`read_pts`
subtracts 1 so everything downstream is 0-based. The image sits beside its ``.pts`` file with the
same stem (``.jpg`` or ``.png``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.formats.matlab import cell_items, load_mat, variable
from falign.data.sample import DataError, Sample, box_problem, check_image, inside_fraction, make_sample
from falign.measure.landmarks import get_scheme

log = logging.getLogger("falign.data")

IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")


def read_pts(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.pts`` file to (N, 2) float32 0-based pixel coordinates (the file's minus 1)."""
    return _parse_pts(path)[0]


def _parse_pts(path: str | os.PathLike) -> tuple[np.ndarray, range]:
    """:func:`read_pts`, with the line of each point in the file (for messages about one point)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"cannot read landmark file ({err.strerror})", path) from None
    n_points, opening = None, None
    for number, line in enumerate(lines, 1):
        key, _, value = line.partition(":")
        if key.strip() == "n_points":
            try:
                n_points = int(value)
            except ValueError:
                raise DataError(f"bad n_points value {value.strip()!r}", path, number) from None
        elif line.strip() == "{":
            opening = number
            break
    if n_points is None or opening is None:
        raise DataError("not a .pts file: expected an 'n_points: N' line and a '{' line", path)
    rows = []
    for number, line in enumerate(lines[opening:], opening + 1):
        if line.strip() == "}":
            break
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"expected 'x y', found {line.strip()!r}", path, number)
        try:
            xy = (float(fields[0]), float(fields[1]))
        except ValueError:
            raise DataError(f"not a number in {line.strip()!r}", path, number) from None
        if not np.isfinite(xy).all():
            raise DataError(f"non-finite coordinate in {line.strip()!r}", path, number)
        rows.append(xy)
    else:
        raise DataError("missing closing '}'", path, len(lines))
    if len(rows) != n_points:
        raise DataError(f"header says n_points: {n_points} but {len(rows)} points are listed",
                        path, opening)
    points = (np.array(rows, dtype=np.float64).reshape(-1, 2) - 1.0).astype(np.float32)
    return points, range(opening + 1, opening + 1 + len(rows))


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write 0-based (N, 2) points as a 1-based ``.pts`` file; :func:`read_pts` reads them back exactly."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) + 1.0
    body = "\n".join(f"{x!r} {y!r}" for x, y in pts.tolist())
    Path(path).write_text(f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n")


def image_beside(annotation: Path) -> Path:
    """The image with the annotation file's stem, for the suffixes datasets use."""
    for suffix in IMAGE_SUFFIXES:
        candidate = annotation.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise DataError(f"no image beside it (looked for {annotation.stem}.jpg/.png)", annotation)


# 300-W ------------------------------------------------------------------------------------------

SPLITS_300W = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenging": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
    "private": ("300W/01_Indoor", "300W/02_Outdoor"),
    "indoor": ("300W/01_Indoor",),
    "outdoor": ("300W/02_Outdoor",),
}
SIZES_300W = {"train": 3148, "common": 554, "challenging": 135, "full": 689, "private": 600, "indoor": 300,
              "outdoor": 300}
LAYOUT_300W = """\
  afw/ helen/trainset/ helen/testset/ lfpw/trainset/ lfpw/testset/ ibug/
      <name>.pts beside <name>.jpg or <name>.png (the iBUG 300-W release)
  300W/01_Indoor/ 300W/02_Outdoor/       the 300-W challenge (private) test set, same format
  Bounding Boxes/bounding_boxes_<subset>.mat   optional face detector boxes, e.g.
      bounding_boxes_helen_trainset.mat, bounding_boxes_ibug.mat (without them the box is the
      tight box around the landmarks)
splits: train 3148 (afw + helen/trainset + lfpw/trainset), common 554 (helen/testset +
lfpw/testset), challenging 135 (ibug), full 689 (common + challenging), private 600 (300W/), indoor 300
(300W/01_Indoor), outdoor 300 (300W/02_Outdoor)"""


def read_ibug_boxes(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """iBUG's ``bounding_boxes_*.mat``: image file name -> (detector box, ground-truth box), 0-based.

    The file holds ``bounding_boxes``, a cell (or struct) array of structs with fields ``imgName``,
    ``bb_detector`` and ``bb_ground_truth``, each box 1-based x1 y1 x2 y2.
    """
    mat = load_mat(path)
    boxes = {}
    for index, entry in enumerate(cell_items(variable(mat, path, "bounding_boxes"))):
        try:
            name = str(entry["imgName"])
            det = np.asarray(entry["bb_detector"], np.float32).reshape(4) - 1
            gt = np.asarray(entry["bb_ground_truth"], np.float32).reshape(4) - 1
        except (TypeError, KeyError, IndexError, ValueError) as err:
            raise DataError(f"entry {index} is not a struct with imgName, bb_detector and "
                            f"bb_ground_truth as 4 numbers ({err})", path) from None
        for kind, box in (("bb_detector", det), ("bb_ground_truth", gt)):
            problem = box_problem(box)
            if problem:
                raise DataError(f"entry {index} ({name}): {kind} {(box + 1).tolist()} {problem}", path)
        boxes[name] = (det, gt)
    return boxes


def load_300w(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """300-W faces of ``split``; the box is iBUG's detector box when its .mat is present."""
    for subset in SPLITS_300W[split]:
        folder = root / subset
        if not folder.is_dir():
            raise DataError(f"300-W subset folder missing (split {split!r} needs "
                            f"{', '.join(SPLITS_300W[split])})", folder)
        annotations = sorted(folder.glob("*.pts"))
        if not annotations:
            raise DataError("no .pts files in the folder", folder)
        box_file = root / "Bounding Boxes" / f"bounding_boxes_{subset.replace('/', '_')}.mat"
        boxes = read_ibug_boxes(box_file) if box_file.is_file() else {}
        boxes = {name: (*pair, box_file) for name, pair in boxes.items()}
        if not boxes and not subset.startswith("300W"):
            log.warning("%s not found: %s uses tight boxes around the landmarks", box_file, subset)
        for pts in annotations:
            yield partial(_ibug_face, pts, "ibug68", boxes, subset)


def _ibug_face(pts: Path, scheme: str, boxes: dict, subset: str) -> Sample:
    landmarks, lines = _parse_pts(pts)
    image = image_beside(pts)
    width, height = check_image(image)
    extra = {"subset": subset, "annotation": str(pts)}
    det = None
    if image.name in boxes:
        det, gt, box_file = boxes[image.name]
        if inside_fraction(det, width, height) < 0.5:
            raise DataError(f"{image.name}: bb_detector {(det + 1).tolist()} lies mostly outside the {width}x{height} "
                            "image (at least half of a face box must be inside)", box_file)
        extra.update(detector_box=det, gt_box=gt)
    return make_sample(landmarks, scheme=scheme, source=image, box=det, where=pts, point_lines=lines,
                       size=(width, height), extra=extra)


# Menpo ------------------------------------------------------------------------------------------

MENPO_SCHEMES = {"train": "ibug68", "test": "ibug68", "train-profile": "menpo39", "test-profile": "menpo39"}
LAYOUT_MENPO = """\
  train/  <name>.pts beside <name>.jpg or <name>.png (Menpo 2017 training release)
  test/   the same for the test set
semi-frontal faces have 68 points, profile faces 39; the n_points of each file decides which:
splits train, test (68 points) and train-profile, test-profile (39 points)"""


def load_menpo(root: Path, split: str) -> Iterator[Callable[[], Sample | None]]:
    """Menpo faces of ``split``; a file belongs to the split whose scheme matches its point count."""
    folder = root / split.removesuffix("-profile")
    if not folder.is_dir():
        raise DataError("Menpo folder missing", folder)
    annotations = sorted(folder.glob("*.pts"))
    if not annotations:
        raise DataError("no .pts files in the folder", folder)
    for pts in annotations:
        yield partial(_menpo_face, pts, MENPO_SCHEMES[split])


def _menpo_face(pts: Path, scheme: str) -> Sample | None:
    landmarks, lines = _parse_pts(pts)
    if len(landmarks) not in (68, 39):
        raise DataError(f"expected 68 (semi-frontal) or 39 (profile) points, found {len(landmarks)}", pts)
    if len(landmarks) != get_scheme(scheme).n_points:
        return None
    image = image_beside(pts)
    return make_sample(landmarks, scheme=scheme, source=image, where=pts, point_lines=lines, size=check_image(image),
                       extra={"annotation": str(pts)})
