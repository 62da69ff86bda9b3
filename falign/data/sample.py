"""One face, one record: the :class:`Sample` every loader produces and every paper consumes.

Real datasets are too large to hold decoded (Helen images reach 3000 x 2000 pixels), so a
:class:`FaceDataset` keeps the annotations in memory and decodes an image file only when a sample is
indexed. Synthetic datasets simply hold their pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from collections.abc import Sequence
from typing import Any, overload

import numpy as np
from PIL import Image, UnidentifiedImageError

from falign.measure.landmarks import get_scheme


class DataError(ValueError):
    """Bad input data. The message starts with the file (and line) at fault, compiler style."""

    def __init__(self, message: str, source: str | os.PathLike | None = None, line: int | None = None):
        self.source = None if source is None else str(source)
        self.line = line
        where = "" if source is None else f"{source}:{line}: " if line is not None else f"{source}: "
        super().__init__(where + message)


@dataclasses.dataclass
class Sample:
    """One annotated face in 0-based pixel coordinates (x right, y down, pixel centres at integers).

    ``image`` is RGB uint8 (H, W, 3); it is None only inside a :class:`FaceDataset` before decoding.
    ``landmarks`` (N, 2) float32 follow ``scheme``; points a format marks as missing (AFW) are NaN
    and not ``visible``. ``box`` is x1, y1, x2, y2 with width x2 - x1: the face detector's box
    where the dataset ships one, otherwise the tight box around the visible landmarks.
    """

    image: np.ndarray | None
    landmarks: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    scheme: str
    source: str
    params: dict | None = None
    pose: np.ndarray | None = None
    extra: dict = dataclasses.field(default_factory=dict)


_reported_deep = False   # one warning per process: a dataset of 16-bit images would repeat it per face


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3); grey, 16-bit, palette and RGBA files are converted.
    The first 16-bit (or 32-bit) image is reported with a warning: its pixels lose precision."""
    global _reported_deep
    try:
        with Image.open(path) as img:
            if not _reported_deep and (img.mode.startswith("I") or img.mode == "F"):
                _reported_deep = True
                warnings.warn(f"{path}: a high-bit-depth image (mode {img.mode}), scaled to 8 bits per pixel "
                              "(later ones are scaled without a warning)", stacklevel=2)
            return rgb8(img)
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot decode image ({err})", path) from None


def rgb8(img: Image.Image) -> np.ndarray:
    """A Pillow image as a writable RGB uint8 array (H, W, 3). 16-bit and 32-bit grey are scaled down
    from their own range (Pillow's convert("RGB") would clip them, saturating most pixels to 255)."""
    if img.mode.startswith("I") or img.mode == "F":
        a = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "F":
            top = 1.0 if a.max(initial=0) <= 1 else 255.0
        else:  # 32-bit integers: 8- or 16-bit data widened by the decoder
            top = 255.0 if a.max(initial=0) <= 255 else 65535.0
        grey = (np.clip(a / top, 0, 1) * 255).round().astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.array(img.convert("RGB"))


def inside_fraction(box, width: int, height: int) -> float:
    """The share of a box (x1, y1, x2, y2, 0-based pixels) that lies inside a width x height image:
    0 for a box entirely outside (a blank crop, never a face)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    iw = max(0.0, min(x2, width - 0.5) - max(x1, -0.5))
    ih = max(0.0, min(y2, height - 0.5) - max(y1, -0.5))
    return iw * ih / ((x2 - x1) * (y2 - y1))


OUTSIDE_MARGIN = 0.25
"""How far an annotated landmark may lie outside its image: a quarter of the image's width (for x) or height
(for y). Real annotations of faces cut by the image border place hidden points (a chin, a jaw) a little
outside; a file shifted, mis-scaled or written for another image puts them far outside, and its face would
train and score on blank crops."""


def outside_image(points: np.ndarray, width: int, height: int) -> tuple[int, str] | None:
    """The first landmark (index, description) farther outside the width x height image than
    :data:`OUTSIDE_MARGIN` allows, or None; NaN points (not annotated) are not checked.
    The one rule every loader applies, through :func:`make_sample`."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    extent = np.array([width, height], dtype=np.float64)
    # pixel centres run from 0 to size - 1; the image's edge is half a pixel beyond them
    beyond = np.maximum(-0.5 - pts, pts - (extent - 0.5)) / extent
    bad = np.flatnonzero(np.nan_to_num(beyond, nan=-np.inf).max(1) > OUTSIDE_MARGIN)
    if not bad.size:
        return None
    i = int(bad[0])
    x, y = pts[i]
    return i, (f"landmark {i} at x {x:.1f}, y {y:.1f} (0-based) lies outside the {width}x{height} image by more "
               f"than {OUTSIDE_MARGIN:.0%} of its width or height (a shifted or mis-scaled annotation, or one "
               "for another image?)")


def check_image(path: str | os.PathLike) -> tuple[int, int]:
    """Cheap integrity check at load time (header, and PNG checksums); returns (width, height).

    Decoding every image of a benchmark up front would take minutes, so a file whose header is fine
    but whose pixel data is truncated is only caught when the sample is indexed (still a DataError).
    """
    try:
        with Image.open(path) as img:
            size = img.size
            img.verify()
        return size
    except FileNotFoundError:
        raise DataError("image file not found", path) from None
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        raise DataError(f"unreadable or corrupt image ({err})", path) from None


def box_problem(box) -> str | None:
    """What is wrong with an x1, y1, x2, y2 box, in words, or None: every loader says it the same way."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not np.isfinite([x1, y1, x2, y2]).all():
        return "is not finite"
    if x2 < x1 or y2 < y1:
        return "is inverted (x2 < x1 or y2 < y1)"
    if x2 == x1 or y2 == y1:
        return "has zero width or height"
    return None


def tight_box(landmarks: np.ndarray, visible: np.ndarray | None = None) -> np.ndarray:
    """The x1, y1, x2, y2 box spanned by the (visible) landmarks, float32."""
    pts = landmarks if visible is None else landmarks[visible]
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)


class FaceDataset(Sequence[Sample]):
    """A named split of faces: indexable like a list of :class:`Sample`, images decoded on access.

    ``skipped`` lists (source, reason) for every item a loader dropped with ``skip_invalid=True``;
    ``counts`` maps sub-collections (e.g. 300-W's ``helen/trainset``) to their number of faces;
    ``fingerprint`` hashes the annotations so the book can say exactly which data produced a number.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        name: str,
        split: str,
        scheme: str,
        skipped: Sequence[tuple[str, str]] = (),
        counts: dict[str, int] | None = None,
        fingerprint: str | None = None,
    ):
        self._samples = list(samples)
        wrong = {s.scheme for s in self._samples} - {scheme}
        if wrong:
            raise ValueError(f"{name}/{split}: samples use scheme(s) {sorted(wrong)}, not {scheme!r}")
        self.name, self.split, self.scheme = name, split, scheme
        self.skipped = list(skipped)
        self.counts = dict(counts) if counts is not None else {split: len(self._samples)}
        self.fingerprint = fingerprint or self._hash()

    def _hash(self) -> str:
        h = hashlib.sha1(f"{self.name}/{self.split}/{self.scheme}".encode())
        for s in self._samples:
            h.update(s.source.encode())
            for arr in (s.landmarks, s.visible, s.box):
                h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self._samples)

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> FaceDataset: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return FaceDataset(self._samples[index], name=self.name, split=self.split, scheme=self.scheme)
        sample = self._samples[index]
        if sample.image is None:
            sample = dataclasses.replace(sample, image=read_image(sample.source))
        return sample

    def annotation(self, index: int) -> Sample:
        """The sample without decoding its image (``image`` may be None): fast for statistics."""
        return self._samples[index]

    @property
    def landmarks(self) -> np.ndarray:
        """All landmarks stacked, (n, N, 2) float32, without decoding any image."""
        if not self._samples:
            return np.zeros((0, 0, 2), np.float32)
        return np.stack([s.landmarks for s in self._samples])

    @property
    def visible(self) -> np.ndarray:
        if not self._samples:
            return np.zeros((0, 0), bool)
        return np.stack([s.visible for s in self._samples])

    @property
    def boxes(self) -> np.ndarray:
        if not self._samples:
            return np.zeros((0, 4), np.float32)
        return np.stack([s.box for s in self._samples])

    def __repr__(self) -> str:
        return (f"FaceDataset({self.name}/{self.split}: {len(self)} faces, scheme {self.scheme}, "
                f"{len(self.skipped)} skipped, fingerprint {self.fingerprint})")


def make_sample(
    landmarks: Any,
    *,
    scheme: str,
    source: str | os.PathLike,
    visible: Any = None,
    box: Any = None,
    image: np.ndarray | None = None,
    where: str | os.PathLike | None = None,
    line: int | None = None,
    point_lines: Sequence[int] | None = None,
    size: tuple[int, int] | None = None,
    pose: Any = None,
    extra: dict | None = None,
) -> Sample:
    """Validate one face's annotation and build its :class:`Sample`: the checks all formats share.

    The number of points comes from the scheme (:func:`falign.measure.landmarks.get_scheme`).
    Raises :class:`DataError` naming ``where`` (the annotation file, default ``source``) and
    ``line`` for a wrong number of points, non-finite coordinates of a visible point, no visible
    point, a box that is not finite, inverted or of zero width or height, or a landmark outside the
    image (:func:`outside_image`; ``size`` is the image's (width, height), taken from ``image`` when
    not given). ``point_lines``, for files with one point per line, gives each point's line, so an
    error about one point names its own line.
    """
    where = source if where is None else where

    def at(point: int) -> int | None:
        return line if point_lines is None else int(point_lines[point])

    n_points = get_scheme(scheme).n_points
    pts = np.asarray(landmarks, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] != n_points:
        found = pts.shape[0] if pts.ndim == 2 else pts.size
        raise DataError(f"expected {n_points} points for scheme {scheme}, found {found}", where, line)
    vis = np.ones(n_points, bool) if visible is None else np.asarray(visible, dtype=bool).reshape(-1)
    if vis.shape != (n_points,):
        raise DataError(f"expected {n_points} visibility flags, found {vis.size}", where, line)
    bad = np.flatnonzero(vis & ~np.isfinite(pts).all(1))
    if bad.size:
        raise DataError(f"non-finite (NaN or infinite) coordinates for point(s) {bad.tolist()}", where, at(bad[0]))
    if not vis.any():
        raise DataError("no visible landmark", where, line)
    if size is None and image is not None:
        size = (image.shape[1], image.shape[0])
    outside = None if size is None else outside_image(pts, *size)
    if outside:
        raise DataError(outside[1], where, at(outside[0]))
    box = tight_box(pts, vis) if box is None else np.asarray(box, dtype=np.float32).reshape(-1)
    problem = "is not 4 numbers" if box.shape != (4,) else box_problem(box)
    if problem:
        raise DataError(f"bounding box {box.tolist()} (x1, y1, x2, y2) {problem}", where, line)
    return Sample(
        image=image, landmarks=pts, visible=vis, box=box, scheme=scheme, source=str(source),
        pose=None if pose is None else np.asarray(pose, dtype=np.float32), extra=dict(extra or {}),
    )
