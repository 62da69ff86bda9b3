"""What goes into an aligner and what comes out, checked in one place for the API and the CLI.

A photo can arrive as a file, a PIL image, a numpy array or a torch tensor, in 8 or 16 bits, as floats,
grey or with alpha, in RGB or in OpenCV's BGR order. Converting each of these by guesswork (clipping a
[0, 255] float image to white, reading BGR as RGB) gives landmarks that look plausible and are wrong, so
:func:`as_rgb8` converts only what it can read unambiguously and refuses the rest in one line that says
what to pass instead. :func:`check_boxes` does the same for face boxes, and :func:`check_landmarks`
flags predictions that cannot be a face (non-finite, or far outside the face's box).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from falign.data.sample import inside_fraction, rgb8

SHAPES = "(H, W), (H, W, 1), (H, W, 3) or (H, W, 4), channels last"


class InputError(ValueError):
    """An image or a box that cannot be used as given; the message is one line naming it and the rule."""


class PredictionError(ValueError):
    """A model returned landmarks that cannot be a face (non-finite, or far outside the box).

    ``points`` and ``visible`` hold the whole batch and ``ok`` (B,) bool says which faces are usable,
    so a caller that aligns many faces can keep the good ones."""

    def __init__(self, message: str, points=None, visible=None, ok=None):
        super().__init__(message)
        self.points, self.visible, self.ok = points, visible, ok


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------
def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Decode a photo file to RGB uint8 (H, W, 3), upright (EXIF orientation applied).

    Pixels convert as the dataset loaders convert them (:func:`falign.data.sample.rgb8`: 16-bit grey
    scaled, not clipped to white). A multi-frame file (GIF, TIFF, ...) is read at frame 0, with a
    warning. Raises :class:`InputError` starting with the path.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not an image")
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file, not an image")
    try:
        with Image.open(path) as img:
            frames = getattr(img, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path}: {frames} frames; frame 0 was read", UserWarning, stacklevel=2)
            img.load()
            return rgb8(ImageOps.exif_transpose(img))
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image Pillow can read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: cannot decode image ({first_line(err)})") from None


def as_rgb8(image, *, bgr: bool = False, value_range: float | None = None) -> np.ndarray:
    """One photo as (H, W, 3) uint8 in **RGB** order: grey replicated, alpha dropped.

    ``image``: a path (read with :func:`read_photo`), a PIL image (converted as the CLI reads files),
    or a numpy array / torch tensor of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4):

    * uint8 is taken as is; uint16 / int16 / int8 are scaled from their type's range (uint16 / 65535);
      wider integer types have no usual range, so they need ``value_range``;
    * floats are read as [0, 1]; floats above 1 are refused unless ``value_range`` (e.g. 255) says what
      they are divided by;
    * bool, negative, non-finite or empty images are refused.

    ``bgr=True`` says an array is in OpenCV's BGR(A) order; it is reversed to RGB (files and PIL images
    carry their own order and are always read as RGB). ``value_range``: the level of full white for a
    numeric array, overriding the defaults above (e.g. 4095 for 12-bit data in uint16).
    """
    if isinstance(image, (str, os.PathLike)):
        return read_photo(image)
    if hasattr(image, "convert") and hasattr(image, "mode"):   # a PIL image
        return rgb8(image)
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        image = (image.float() if image.dtype in (torch.float16, torch.bfloat16) else image).numpy()
    if not isinstance(image, np.ndarray):
        raise InputError(f"image: expected a file path, PIL image, numpy array or torch tensor, got "
                         f"{'None' if image is None else type(image).__name__}")
    a = image[..., None] if image.ndim == 2 else image
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise InputError(f"image: must be {SHAPES}, got shape {image.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"image: empty, shape {image.shape}")
    a = _levels(a, value_range)[..., :3]
    if bgr:
        a = a[..., ::-1]
    return np.ascontiguousarray(np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a)


def _levels(a: np.ndarray, value_range: float | None) -> np.ndarray:
    """Pixels as uint8 levels: divided by the value of white (``value_range`` or the dtype's), checked
    to lie in [0, white]."""
    kind = a.dtype.kind
    if kind == "b":
        raise InputError("image: bool pixels are not levels; pass uint8 (0-255) or floats in [0, 1]")
    if kind not in "uif":
        raise InputError(f"image: pixels of dtype {a.dtype} are not levels; pass uint8, uint16 or floats")
    if value_range is not None and not (finite_number(value_range) and value_range > 0):
        raise InputError(f"value_range must be a positive number (the level of white), got {value_range!r}")
    if value_range is not None:
        white = float(value_range)
    elif kind == "f":
        white = 1.0
    elif a.dtype.itemsize <= 2:
        white = float(np.iinfo(a.dtype).max)
    else:
        raise InputError(f"image: {a.dtype} pixels have no usual range; pass value_range "
                         "(255 for 8-bit levels, 65535 for 16-bit)")
    if a.dtype == np.uint8 and white == 255:
        return a
    finite = np.isfinite(a) if kind == "f" else True
    if not np.all(finite):
        raise InputError(f"image: {int(finite.size - finite.sum())} non-finite (NaN or infinite) pixels")
    low, high = a.min(), a.max()
    if low < 0:
        raise InputError(f"image: negative pixels (min {low:g}); pixels are levels from 0 (black)")
    if high > white:
        hint = ("floats are read as [0, 1]; pass value_range=255 if they are 0-255 levels"
                if kind == "f" and value_range is None else f"value_range is {white:g}")
        raise InputError(f"image: pixels up to {high:g} exceed white = {white:g} ({hint})")
    return (a.astype(np.float64) * (255 / white)).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Boxes and landmarks
# --------------------------------------------------------------------------------------------------
def check_boxes(boxes, image_size=None) -> np.ndarray:
    """Face boxes x1, y1, x2, y2 (0-based pixels) as (B, 4) float32, or an :class:`InputError` naming
    the rule and the box.

    ``boxes``: shape (4,) for one face or (B, 4); each finite and at least 1 px wide and high.
    ``image_size``: (width, height) of the photo, or one (width, height) per box; then at least half of
    each box must lie inside its photo (a box outside gives a blank crop, never a face).
    """
    if boxes is None:
        raise InputError("boxes: None; pass x1, y1, x2, y2 per face, shape (4,) or (B, 4)")
    try:
        b = np.asarray(boxes.detach().cpu() if isinstance(boxes, torch.Tensor) else boxes, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"boxes: not an array of numbers ({first_line(err)})") from None
    if b.ndim == 1 and b.shape == (4,):
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes: x1, y1, x2, y2: 4 numbers per box, got shape {b.shape}")
    if len(b) == 0:
        raise InputError("boxes: no face boxes given, shape (0, 4)")
    finite = np.isfinite(b).all(1)
    size = b[:, 2:] - b[:, :2]
    small = (size < 1).any(1)
    for rule, bad in (("is not finite", ~finite),
                      ("is under 1 px wide or high (needs x2 >= x1 + 1 and y2 >= y1 + 1)", finite & small)):
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"boxes: box {i} ({_box_text(b[i])}) {rule}")
    if image_size is not None:
        sizes = np.broadcast_to(np.asarray(image_size, dtype=np.int64).reshape(-1, 2), (len(b), 2))
        for i, (box, (w, h)) in enumerate(zip(b, sizes)):
            share = inside_fraction(box, int(w), int(h))
            if share < 0.5:
                raise InputError(f"boxes: box {i} ({_box_text(box)}) lies mostly outside the {w}x{h} image "
                                 f"({100 * share:.0f}% inside; at least half of it must be inside)")
    return b.astype(np.float32)


def check_landmarks(points, boxes, *, far: float = 1.0) -> np.ndarray:
    """(B,) bool: True where a face's landmarks (B, N, 2) are usable, False where any is non-finite or
    lies more than ``far`` box widths (heights, for y) outside the face's box (B, 4): a model that
    diverged or was fed garbage, whose output must not be written as if it were a face."""
    return ~np.logical_or(*_landmark_faults(points, boxes, far))


def landmark_problems(points, boxes, *, far: float = 1.0) -> dict[int, str]:
    """What is wrong with each face :func:`check_landmarks` refuses: {face index: "face i (box): reason"}."""
    nonfinite, outside = _landmark_faults(points, boxes, far)
    reasons = np.where(nonfinite, "non-finite (NaN or infinite) landmarks",
                       np.where(outside, f"landmarks more than {far:g} box size(s) outside the box", ""))
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return {int(i): f"face {i} ({_box_text(b[i])}): {reasons[i]}" for i in np.flatnonzero(reasons != "")}


def _landmark_faults(points, boxes, far: float) -> tuple[np.ndarray, np.ndarray]:
    """(non-finite, outside) per face, both (B,) bool."""
    p = np.asarray(points.detach().cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    nonfinite = ~np.isfinite(p).all((1, 2))
    size = (b[:, 2:] - b[:, :2])[:, None]
    with np.errstate(invalid="ignore"):
        outside = ((p < b[:, None, :2] - far * size) | (p > b[:, None, 2:] + far * size)).any((1, 2))
    return nonfinite, outside & ~nonfinite


def _box_text(box) -> str:
    return "x1, y1, x2, y2 = " + ", ".join(f"{float(v):g}" for v in box)


def finite_number(value) -> bool:
    """A finite int or float (numpy's too), not a bool: for settings read from files or arguments."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)) \
        and bool(np.isfinite(value))


def first_line(err: BaseException) -> str:
    """An exception as one short line, for messages that quote a library's error."""
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 160 else line[:157] + "..."
