"""The aligned face crop that face-recognition pipelines take: a 5-point similarity warp to ArcFace's template.

Recognisers (ArcFace and its kin) are trained on 112 x 112 crops whose eye centres, nose tip and mouth
corners sit on :data:`ARCFACE_112`; a crop made another way (a box crop, another template) costs them
accuracy. :func:`warp5` takes those five points from an aligner's landmarks (:func:`five_points`),
estimates the similarity that maps them closest to the template (:func:`similarity`, least squares) and
resamples the photo through it.
"""

from __future__ import annotations

import numpy as np
import torch

# insightface's ArcFace template (arcface_dst): image-left eye centre, image-right eye centre, nose tip,
# image-left and image-right mouth corner, in 0-based pixels of a 112 x 112 crop (x right, y down).
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])


def five_points(points, scheme: str) -> tuple[np.ndarray, np.ndarray]:
    """The template's points found in landmarks (..., N, 2) of ``scheme``, and which rows of
    :data:`ARCFACE_112` they are; a ValueError naming the scheme where it has none of them.

    iBUG 68 and the schemes that keep its eyes, nose tip and mouth corners: the ``five`` scheme of
    :mod:`falign.measure.landmarks` (eye centres the means of 36-41 and 42-47, nose tip 30, corners 48
    and 54). dlib's 5 points (:mod:`falign.baselines.dlib_ert`): the eye centres only, each the mean of
    its two corners; its fifth point is the bottom of the nose, not the template's nose tip.
    """
    from falign.baselines.dlib_ert import FIVE_ON_IBUG68, SCHEMES
    from falign.measure import landmarks

    points = np.asarray(points, np.float64)
    if scheme == SCHEMES[5]:
        at = {ibug: i for i, ibug in enumerate(FIVE_ON_IBUG68)}
        eyes = [points[..., [at[outer], at[inner]], :].mean(-2) for outer, inner in ((36, 39), (45, 42))]
        return np.stack(eyes, -2), np.array([0, 1])
    try:
        return np.asarray(landmarks.convert(points, scheme, "five"), np.float64), np.arange(5)
    except ValueError as err:
        raise ValueError(f"scheme {scheme!r} has no eye centres, nose tip and mouth corners to warp by "
                         f"({err})") from None


def similarity(src, dst) -> np.ndarray:
    """The similarity (rotation, one scale, translation; never a mirror) that maps points ``src``
    (..., K, 2) closest to ``dst`` (..., K, 2) in least squares, as (..., 2, 3) affines (Umeyama 1991,
    closed form, batched). NaN where ``src`` is one point repeated (no scale or rotation follows)."""
    src, dst = np.broadcast_arrays(np.asarray(src, np.float64), np.asarray(dst, np.float64))
    mean_src, mean_dst = src.mean(-2), dst.mean(-2)
    s, d = src - mean_src[..., None, :], dst - mean_dst[..., None, :]
    u, sigma, vt = np.linalg.svd(np.swapaxes(d, -1, -2) @ s / src.shape[-2])
    sign = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)
    e = np.stack([np.ones_like(sign), sign], -1)                   # a reflection is turned into a rotation
    rotation = u @ (e[..., :, None] * vt)
    variance = (s ** 2).sum((-2, -1)) / src.shape[-2]
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(variance > 0, (sigma * e).sum(-1) / variance, np.nan)
    linear = scale[..., None, None] * rotation
    shift = mean_dst - (linear @ mean_src[..., :, None])[..., 0]
    return np.concatenate([linear, shift[..., :, None]], -1)


def template(size: int) -> np.ndarray:
    """:data:`ARCFACE_112` for a ``size`` x ``size`` crop: scaled by size / 112, as insightface scales it for 224."""
    return ARCFACE_112 * (size / 112)


def warp5(image: np.ndarray, points, scheme: str, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """The aligned face crop (size, size, 3) uint8 of one face's landmarks (N, 2) in ``image`` (H, W, 3)
    uint8, black outside the photo, and the (2, 3) affine from photo to crop pixels."""
    from falign.data import transforms

    found, rows = five_points(points, scheme)
    affine = similarity(found, template(size)[rows])
    if not np.isfinite(affine).all():
        raise ValueError("the face's eye centres, nose and mouth corners are one point: no crop follows")
    crop = transforms.crop_image(image, torch.as_tensor(affine, dtype=torch.float32), size)
    return (crop[0].permute(1, 2, 0) * 255).round().clamp(0, 255).byte().numpy(), affine


def check_scheme(scheme: str, n_points: int) -> None:
    """A ValueError (one line) where landmarks of ``scheme`` give no points to warp by: checked before a run."""
    five_points(np.zeros((n_points, 2)), scheme)
