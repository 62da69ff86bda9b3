"""Face detection for photos that come without a face box: dlib's frontal-face HOG detector.

The papers' aligners start from a face box. For ``falign align`` on a plain photo we take one from
dlib's HOG + linear SVM detector (Dalal-Triggs features, trained on frontal faces): its model is
compiled into the ``dlib-bin`` wheel, so nothing is downloaded at run time and the result depends only
on the installed version. It finds near-frontal faces (roughly |yaw| < 30 degrees) of at least about
40 pixels (80 without upsampling); profile faces need a ``--box``.
"""

from __future__ import annotations

import functools

import numpy as np

DETECTOR = "dlib frontal_face_detector (HOG)"


@functools.lru_cache(maxsize=1)
def _detector():
    try:
        import dlib
    except ImportError as err:  # the dependency is pinned; this only helps a hand-made environment
        raise RuntimeError("face detection needs dlib (pip install dlib-bin), or give the face box") from err
    return dlib.get_frontal_face_detector()


def detect_faces(image: np.ndarray, *, upsample: int = 1, min_score: float = 0.0,
                 return_scores: bool = False):
    """Face boxes (K, 4) float32 x1, y1, x2, y2 in 0-based pixels, most confident first.

    ``image`` is (H, W, 3) RGB or (H, W) grey uint8. dlib's rectangles name the first and last pixel
    inside the face, so the box runs from their outer edges (left - 1/2 to right + 1/2), the
    convention of :func:`falign.data.transforms.crop_to_box`. ``upsample`` doubles the image that many
    times first (finds smaller faces, slower); ``min_score`` is the SVM margin to keep a detection.
    With ``return_scores`` also the (K,) scores.
    """
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"detect_faces wants (H, W, 3) or (H, W) uint8, got {image.dtype} {image.shape}")
    rects, scores, _ = _detector().run(image, upsample, min_score)
    boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32).reshape(-1, 4)
    boxes += np.array([-0.5, -0.5, 0.5, 0.5], np.float32)
    scores = np.asarray(scores, np.float32)
    order = np.argsort(-scores, kind="stable")
    return (boxes[order], scores[order]) if return_scores else boxes[order]


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
