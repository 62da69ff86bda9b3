"""SynthFace's realism knobs: off by default (the old presets' images unchanged), and each does what
it says on the photo-like preset."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from falign.synthface import realism
from falign.synthface.dataset import PRESETS, SynthFaceConfig, synthface_arrays

SMALL = dict(size=64, cache=False)
KNOBS = {"photo_backgrounds": 0.0, "albedo_detail": 0.0, "beard": 0.0, "brows": 0.0, "light_colour": 0.0, "extra_light": 0.0,
         "grey": 0.0, "jpeg": 0.0, "low_res": 0.0}
JAW = slice(0, 17)
EYES = slice(36, 48)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def test_knobs_default_off_and_old_presets_untouched():
    defaults = SynthFaceConfig()
    assert all(getattr(defaults, k) == v for k, v in KNOBS.items())
    for name, preset in PRESETS.items():
        if name != "photo-like":
            assert not any(realism.enabled(cfg) for cfg in preset.splits.values()), name
    a = synthface_arrays("300w-like", "train", 8, **SMALL)
    b = synthface_arrays("300w-like", "train", 8, **SMALL, **KNOBS)
    assert all(np.array_equal(a[k], b[k]) for k in ("images", "landmarks68", "visible68", "detector_boxes"))


def test_photo_like_renders_faces():
    cfg = PRESETS["photo-like"].splits["train"]
    assert realism.enabled(cfg) and all(getattr(cfg, k) > 0 for k in KNOBS)
    a = synthface_arrays("photo-like", "train", 16, **SMALL)
    assert a["images"].shape == (16, 64, 64, 3) and a["images"].dtype == np.uint8
    assert a["landmarks"].shape == (16, 68, 2) and np.isfinite(a["landmarks"]).all()
    assert 0.5 < a["visible"].mean() < 1.0
    assert a["images"].std() > 10


def test_photo_like_is_deterministic():
    a = synthface_arrays("photo-like", "test", 6, seed=2, **SMALL)
    b = synthface_arrays("photo-like", "test", 6, seed=2, **SMALL)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["visible68"], b["visible68"])


def test_grey_images_have_equal_channels():
    images = synthface_arrays("photo-like", "train", 6, grey=1.0, **SMALL)["images"]  # JPEG on some
    assert np.array_equal(images[..., 0], images[..., 1]) and np.array_equal(images[..., 1], images[..., 2])


def test_jpeg_changes_pixels_not_landmarks():
    a = synthface_arrays("photo-like", "train", 4, jpeg=0.0, **SMALL)
    b = synthface_arrays("photo-like", "train", 4, jpeg=1.0, **SMALL)
    assert not np.array_equal(a["images"], b["images"])
    assert np.array_equal(a["landmarks68"], b["landmarks68"]) and np.array_equal(a["visible68"], b["visible68"])


def test_thick_brows_darken_the_skin_above_and_below_the_brow_only():
    """The knob recolours skin about the brow curve; landmarks, and the pixels far from the brows, stay."""
    plain = synthface_arrays("photo-like", "test", 8, brows=0.0, **SMALL)
    thick = synthface_arrays("photo-like", "test", 8, brows=1.0, **SMALL)
    assert np.array_equal(plain["landmarks68"], thick["landmarks68"])
    changed = np.abs(plain["images"].astype(int) - thick["images"].astype(int)).max(-1) > 0     # (n, H, W)
    ys, xs = np.nonzero(changed.any(0))
    brows = plain["landmarks68"][:, 17:27]
    assert len(ys) and np.isin(np.arange(8), np.nonzero(changed.any((1, 2)))[0]).all()
    mouth = plain["landmarks68"][:, 48:68].round().astype(int).clip(0, 63)
    assert not changed[np.arange(8)[:, None], mouth[..., 1], mouth[..., 0]].any()
    near = np.abs(ys[:, None] - brows[..., 1].ravel()[None]).min(1)
    assert np.median(near) < 4


def test_glasses_hide_eyes_not_jaw():
    base = dict(occluders=("glasses",), **SMALL)
    bare = synthface_arrays("photo-like", "test", 16, occlusion=0.0, **base)
    worn = synthface_arrays("photo-like", "test", 16, occlusion=1.0, **base)
    hidden = bare["visible68"] & ~worn["visible68"]
    assert hidden[:, EYES].any()
    assert np.array_equal(bare["visible68"][:, JAW], worn["visible68"][:, JAW])


def test_photo_list_excludes_faces_and_loads():
    names = {path.rsplit("/", 1)[-1] for _, path in realism.PHOTOS}
    assert not names & {"astronaut.png", "camera.png", "lfw_subset.npy", "no_time_for_that_tiny.gif",
                        "grace_hopper.jpg"}
    photos = realism._photos(64, "cpu")
    assert len(photos) == len(realism.PHOTOS)
    assert all(p.shape[0] == 3 and min(p.shape[1:]) >= 64 and 0 <= p.min() and p.max() <= 1 for p in photos)


def test_unknown_occluder_is_still_an_error():
    cfg = dataclasses.replace(PRESETS["300w-like"].splits["train"], occluders=("hat",))
    assert not realism.enabled(cfg)
    with pytest.raises(ValueError):
        synthface_arrays("300w-like", "train", 2, occluders=("hat",), **SMALL)
