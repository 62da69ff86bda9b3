"""Transforms keep pixels and landmarks consistent: the pixel-centre convention, flips, round trips."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from falign.data import Sample, transforms as T
from falign.measure.landmarks import flip_points, get_scheme

IBUG = get_scheme("ibug68")
FAST = settings(max_examples=40, deadline=None)

coords = st.floats(-200, 400, allow_nan=False, width=32)
angles = st.floats(-180, 180, allow_nan=False)


def _points(seed, n=68, batch=2, low=0.0, high=100.0):
    return torch.from_numpy(np.random.default_rng(seed).uniform(low, high, (batch, n, 2)).astype(np.float32))


def _centroid(image: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted centre (x, y) of a (H, W) image, in pixel coordinates."""
    h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    weights = image.double()
    return torch.stack([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()


# Pixel-centre convention ----------------------------------------------------------------------------

def test_identity_translation_and_flip_warps_are_exact():
    image = torch.rand(1, 3, 7, 9)
    identity = T.translation(0.0, 0.0)
    assert torch.allclose(T.warp_images(image, identity, (7, 9)), image, atol=1e-6)
    # an affine moving source pixel x to x - 2 (and y to y - 1): output (u, v) = source (u + 2, v + 1)
    shifted = T.warp_images(image, T.translation(-2.0, -1.0), (5, 6))
    assert torch.allclose(shifted, image[..., 1:6, 2:8], atol=1e-6)
    flipped = T.warp_images(image, T.hflip(9), (7, 9))
    assert torch.allclose(flipped, image.flip(-1), atol=1e-6)


@FAST
@given(x=st.integers(3, 28), y=st.integers(3, 20), angle=angles, scale=st.floats(1.5, 3.0),
       mirror=st.booleans())
def test_bright_pixel_lands_on_transformed_landmark(x, y, angle, scale, mirror):
    """A single bright source pixel at an integer landmark appears, after warp_images, centred on
    the landmark mapped by the same affine (to half a pixel); this pins the pixel-centre convention."""
    image = torch.zeros(1, 1, 24, 32)
    image[0, 0, y, x] = 1.0
    out_size = 96
    box = torch.tensor([x - 8.0, y - 8.0, x + 8.0, y + 8.0])
    affine = T.chain(T.crop_to_box(box, out_size, margin=(scale - 1) / 2),
                     T.rotation(angle, [(out_size - 1) / 2] * 2),
                     T.hflip(out_size) if mirror else T.translation(0.0, 0.0))
    out = T.warp_images(image, affine, out_size)[0, 0]
    target = T.apply_affine(torch.tensor([[x, y]], dtype=torch.float32), affine)[0]
    assert out.sum() > 0
    assert torch.all((_centroid(out) - target.double()).abs() <= 0.5)


def test_crop_to_box_maps_box_edges_to_crop_edges():
    affine = T.crop_to_box([10.0, 20.0, 50.0, 60.0], 64, margin=0.0)
    corners = T.apply_affine(torch.tensor([[10.0, 20.0], [50.0, 60.0], [30.0, 40.0]]), affine)
    assert torch.allclose(corners, torch.tensor([[-0.5, -0.5], [63.5, 63.5], [31.5, 31.5]]))
    wide = T.crop_to_box([0.0, 0.0, 40.0, 20.0], 10, margin=0.25)  # side = 40 * 1.5 = 60
    assert torch.allclose(wide[0, 0, 0], torch.tensor(10 / 60))


# Landmark round trips ---------------------------------------------------------------------------------

@FAST
@given(seed=st.integers(0, 2**31 - 1), width=st.integers(2, 500))
def test_flipping_twice_is_the_identity(seed, width):
    points = _points(seed)
    visible = torch.from_numpy(np.random.default_rng(seed).random((2, 68)) > 0.3)
    once, vis_once = T.transform_landmarks(points, T.hflip(width), visible, IBUG.flip_perm)
    twice, vis_twice = T.transform_landmarks(once, T.hflip(width), vis_once, IBUG.flip_perm)
    assert torch.allclose(twice, points, atol=1e-4)
    assert torch.equal(vis_twice, visible)
    # and one flip agrees with the landmark module's own flip
    assert np.allclose(once.numpy(), flip_points(points.numpy(), width, IBUG), atol=1e-4)


def test_flip_keeps_left_eye_left():
    points = torch.zeros(1, 68, 2)
    points[0, 36] = torch.tensor([10.0, 5.0])   # image-left eye, outer corner
    points[0, 45] = torch.tensor([80.0, 5.0])   # image-right eye, outer corner
    out, _ = T.transform_landmarks(points, T.hflip(100), flip_perm=IBUG.flip_perm)
    assert out[0, 36].tolist() == [19.0, 5.0]   # still on the image left: mirror of point 45
    assert out[0, 45].tolist() == [89.0, 5.0]


def test_mirroring_without_flip_perm_is_refused():
    with pytest.raises(ValueError, match="flip_perm"):
        T.transform_landmarks(_points(0), T.hflip(50))


@FAST
@given(seed=st.integers(0, 2**31 - 1), angle=angles, cx=coords, cy=coords)
def test_rotating_back_returns_the_points(seed, angle, cx, cy):
    points = _points(seed)
    there = T.apply_affine(points, T.rotation(angle, [cx, cy]))
    back = T.apply_affine(there, T.rotation(-angle, [cx, cy]))
    assert torch.allclose(back, points, atol=2e-3)


@FAST
@given(seed=st.integers(0, 2**31 - 1), x1=coords, y1=coords, w=st.floats(5, 300), h=st.floats(5, 300),
       out_size=st.integers(16, 256), margin=st.floats(0, 0.5))
def test_crop_then_uncrop_returns_the_points(seed, x1, y1, w, h, out_size, margin):
    points = _points(seed, low=-100, high=500)
    boxes = torch.tensor([[x1, y1, x1 + w, y1 + h]] * 2)
    angle = float(torch.rand(1, generator=torch.Generator().manual_seed(seed))) * 30 - 15
    centre = [(out_size - 1) / 2] * 2
    mirrored = T.chain(T.crop_to_box(boxes[:1], out_size, margin), T.rotation(angle, centre), T.hflip(out_size))
    affines = torch.cat([T.crop_to_box(boxes[1:], out_size, margin), mirrored])   # one plain, one mirrored
    cropped, _ = T.transform_landmarks(points, affines, flip_perm=IBUG.flip_perm)
    assert torch.allclose(T.uncrop_points(cropped, affines, IBUG.flip_perm), points, atol=5e-3)


# Random transforms ------------------------------------------------------------------------------------

def test_jitter_boxes_is_seeded_and_bounded():
    boxes = torch.tensor([[10.0, 10.0, 110.0, 60.0]] * 500)
    a = T.jitter_boxes(boxes, 0.1, 0.2, rng=3)
    assert torch.equal(a, T.jitter_boxes(boxes, 0.1, 0.2, rng=3))
    assert not torch.equal(a, T.jitter_boxes(boxes, 0.1, 0.2, rng=4))
    shift = (a[:, :2] + a[:, 2:]) / 2 - torch.tensor([60.0, 35.0])
    assert (shift.abs() <= torch.tensor([10.0, 5.0]) + 1e-4).all()
    ratio = (a[:, 2:] - a[:, :2]) / torch.tensor([100.0, 50.0])
    assert ratio.min() >= 0.8 - 1e-5 and ratio.max() <= 1.2 + 1e-5
    assert torch.allclose(T.jitter_boxes(boxes, 0.0, 0.0, rng=0), boxes)


def test_jitter_boxes_copies_are_copy_major_and_keep_the_first():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]])
    out = T.jitter_boxes(boxes, 0.1, 0.1, rng=0, copies=3, keep_first=True)
    assert out.shape == (6, 4) and torch.equal(out[:2], boxes) and not torch.equal(out[2:4], boxes)


# crop_batch -------------------------------------------------------------------------------------------

def _blob_sample(h, w, point, box, index=36):
    """An image with a small Gaussian blob at landmark ``index`` (other landmarks spread around)."""
    ys, xs = np.mgrid[0:h, 0:w]
    sigma = max(h, w) / 80
    blob = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * sigma**2))
    image = np.repeat((blob * 255).round().astype(np.uint8)[..., None], 3, axis=2)
    landmarks = np.random.default_rng(h).uniform(box[:2], box[2:], (68, 2)).astype(np.float32)
    landmarks[index] = point
    return Sample(image=image, landmarks=landmarks, visible=np.ones(68, bool),
                  box=np.asarray(box, np.float32), scheme="ibug68", source=f"blob{h}x{w}")


def test_crop_batch_keeps_pixels_on_landmarks():
    """Images of different sizes, shrunk (x0.1) or enlarged (x2): the blob drawn at landmark 36 ends
    up where the returned landmark says."""
    samples = [_blob_sample(1200, 900, (400.0, 500.0), (200, 300, 840, 940)),
               _blob_sample(40, 60, (21.0, 17.0), (5, 2, 37, 34))]
    batch = T.crop_batch(samples, 64, margin=0.1)
    assert batch["images"].shape == (2, 3, 64, 64) and batch["images"].dtype == torch.float32
    assert batch["landmarks"].shape == (2, 68, 2) and batch["visible"].shape == (2, 68)
    for i in range(2):
        found = _centroid(batch["images"][i, 0])
        assert torch.all((found - batch["landmarks"][i, 36].double()).abs() <= 0.5), (i, found)
    back = T.uncrop_points(batch["landmarks"], batch["affines"], IBUG.flip_perm)
    assert np.allclose(back.numpy(), np.stack([s.landmarks for s in samples]), atol=1e-2)


def test_crop_outside_the_image_is_black():
    sample = _blob_sample(20, 20, (10.0, 10.0), (5, 5, 15, 15))
    sample.box = np.array([500, 500, 540, 540], np.float32)
    assert T.crop_batch([sample], 16)["images"].abs().max() == 0
