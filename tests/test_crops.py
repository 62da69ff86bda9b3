"""Crops: the shared model input. Landmarks follow the pixels and map back to the image exactly."""

import numpy as np
import pytest
import torch

from falign.data import Sample, FaceDataset
from falign.kit.crops import crop_faces, split_validation


def _arrays(n=3, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, size, size, 3), np.uint8)
    landmarks = rng.uniform(20, 44, (n, 5, 2)).astype(np.float32)
    # a bright pixel on each face's first landmark (rounded), so we can find it after cropping
    landmarks[:, 0] = np.round(landmarks[:, 0])
    for i, (x, y) in enumerate(landmarks[:, 0].astype(int)):
        images[i, y, x] = 255
    boxes = np.concatenate([landmarks.min(1) - 4, landmarks.max(1) + 4], axis=1).astype(np.float32)
    return {"images": images, "landmarks": landmarks, "visible": np.ones((n, 5), bool), "boxes": boxes,
            "detector_boxes": boxes, "scheme": "five", "name": "toy", "fingerprint": "x",
            "M": np.zeros((n, 2, 4), np.float32)}


def test_ground_truth_maps_back_to_the_original_landmarks():
    a = _arrays()
    crops = crop_faces(a, 32, margin=0.2)
    assert crops.images.shape == (3, 3, 32, 32) and crops.images.dtype == torch.uint8
    np.testing.assert_allclose(crops.ground_truth().numpy(), a["landmarks"], atol=1e-3)
    assert crops.M.shape == (3, 2, 4) and torch.equal(crops.M[:, :, 3], crops.affines[:, :, 2])  # M in crop coordinates


def test_landmarks_follow_the_pixels():
    crops = crop_faces(_arrays(), 64, margin=0.0)  # enlarging: the bright pixel spreads but peaks near the point
    for img, lm in zip(crops.images, crops.landmarks):
        y, x = np.unravel_index(img[0].float().numpy().argmax(), img.shape[1:])
        assert abs(x - lm[0, 0]) <= 1.5 and abs(y - lm[0, 1]) <= 1.5


def test_grey_and_subset():
    crops = crop_faces(_arrays(), 16, grey=True)
    assert crops.images.shape == (3, 1, 16, 16)
    sub = crops.subset([2, 0])
    assert len(sub) == 2 and torch.equal(sub.landmarks[1], crops.landmarks[0])


def test_real_datasets_crop_through_samples():
    a = _arrays(n=2)
    samples = [Sample(image=a["images"][i], landmarks=a["landmarks"][i], visible=a["visible"][i],
                      box=a["boxes"][i], scheme="five", source=f"toy/{i}") for i in range(2)]
    crops = crop_faces(FaceDataset(samples, name="toy", split="test", scheme="five"), 24)
    np.testing.assert_allclose(crops.ground_truth().numpy(), a["landmarks"], atol=1e-3)


@pytest.mark.parametrize("real", [False, True], ids=["synthface", "dataset"])
def test_given_boxes_make_replicates_of_every_face(real):
    """Row j of k*n given boxes is face j % n (noisy-box augmentation), for arrays and datasets alike."""
    a = _arrays(n=2)
    faces = a if not real else FaceDataset(
        [Sample(image=a["images"][i], landmarks=a["landmarks"][i], visible=a["visible"][i], box=a["boxes"][i],
                scheme="five", source=f"toy/{i}") for i in range(2)], name="toy", split="test", scheme="five")
    shifted = a["boxes"] + np.float32(2.0)
    boxes = np.concatenate([a["boxes"], shifted])
    crops = crop_faces(faces, 24, boxes=boxes)
    assert len(crops) == 4 and torch.equal(crops.boxes, torch.from_numpy(boxes))
    np.testing.assert_allclose(crops.ground_truth().numpy(), np.concatenate([a["landmarks"]] * 2), atol=1e-3)
    assert not torch.allclose(crops.landmarks[2:], crops.landmarks[:2])  # the second copy is cut elsewhere
    if not real:  # the camera follows each copy's crop
        assert torch.equal(crops.M[:, :, 3], crops.affines[:, :, 2])


def test_grey_is_rounded_once_from_the_float_crop():
    a = _arrays()
    colour, grey = crop_faces(a, 16, margin=0.1), crop_faces(a, 16, margin=0.1, grey=True)
    luma = torch.einsum("nchw,c->nhw", colour.images.float(), torch.tensor([0.299, 0.587, 0.114]))
    assert (grey.images[:, 0].float() - luma).abs().max() <= 1.0


@pytest.mark.parametrize("boxes", [np.zeros((3, 4)), np.zeros((2, 5)), np.zeros((0, 4))])
def test_given_boxes_of_the_wrong_shape_are_refused(boxes):
    with pytest.raises(ValueError, match=r"toy.*\(k \* 2, 4\)"):
        crop_faces(_arrays(n=2), 16, boxes=boxes)


def test_light_measures_brightness_contrast_and_sharpness():
    flat = torch.full((2, 3, 8, 8), 51, dtype=torch.uint8)
    stripes = flat.clone()
    stripes[..., ::2] = 255                                        # vertical stripes: sharp and contrasty
    crops = crop_faces(_arrays(n=2), 8)
    dark, sharp = crops.replace(images=flat).light(), crops.replace(images=stripes).light()
    assert dark["faces"] == 2 and abs(dark["brightness"] - 0.2) < 1e-6
    assert dark["contrast"] == dark["sharpness"] == 0
    assert sharp["sharpness"] > 0.7 and sharp["contrast"] > 0.3 and sharp["brightness"] > dark["brightness"]


def test_validation_is_held_out_of_the_training_split():
    crops = crop_faces(_arrays(n=20), 32, margin=0.2)
    train, val = split_validation(crops, 4, seed=1)
    assert (len(train), len(val)) == (16, 4)
    rows = {tuple(x.flatten().tolist()) for part in (train, val) for x in part.landmarks}
    assert len(rows) == 20                                    # disjoint and together every face
    assert train.name.endswith(":train") and val.name.endswith(":validation") and train.fingerprint != val.fingerprint
    assert torch.equal(split_validation(crops, 4, seed=1)[1].landmarks, val.landmarks)   # the seed fixes the draw
    assert len(split_validation(crops, 15, seed=1)[1]) == 4   # a small set gives up at most a fifth
