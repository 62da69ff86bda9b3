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
