"""The face detectors behind ``falign align``: dlib's HOG and its CNN (MMOD), one box convention."""

import numpy as np
import pytest
import skimage.data

from falign.data import detect


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


def test_mmod_finds_the_astronaut_where_hog_does(astronaut):
    """One face (confidence 1.06 at upsample 0, about 1.4 s), in the same place as HOG's box; MMOD's sits
    higher (measured: its top 7 px above HOG's)."""
    boxes, scores = detect.detect_faces(astronaut, detector="mmod", upsample=0, return_scores=True)
    hog = detect.detect_faces(astronaut, min_score=detect.DEFAULT_MIN_SCORE_BY_DETECTOR["hog"])
    assert boxes.shape == (1, 4) and hog.shape == (1, 4), (boxes, hog)
    assert 0.9 < scores[0] < 1.2 and detect.iou(boxes[0], hog[0]) > 0.5
    assert boxes[0, 1] < hog[0, 1]


def test_mmod_scales_boxes_back_from_a_shrunk_copy(astronaut):
    """``max_side`` works for both detectors: MMOD's box of the astronaut at 2x, scanned at 512 px, is its box
    at 1x scaled up (within the rounding of one 512 px pixel)."""
    big = np.kron(astronaut, np.ones((2, 2, 1), np.uint8))
    small = detect.detect_faces(astronaut, detector="mmod", upsample=0)
    found = detect.detect_faces(big, detector="mmod", upsample=0, max_side=512)
    assert found.shape == (1, 4) and np.abs(found[0] - detect.rescale(small[0], (2, 2))).max() <= 2, found


def test_a_bad_detector_name_is_one_line_listing_the_names(astronaut):
    with pytest.raises(ValueError) as caught:
        detect.detect_faces(astronaut, detector="cnn")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("detector must be one of hog, mmod (") and message.endswith(
        "got 'cnn'"), message
    assert all(description in message for description in detect.DETECTORS.values())


def test_min_score_floors_and_defaults_are_per_detector():
    """HOG's SVM margin may go negative (to -1); MMOD's confidence cannot (dlib returns nothing below 0)."""
    assert detect.check_min_score(-0.5, "hog") == -0.5
    with pytest.raises(ValueError, match=r">= 0 \(the CNN's confidence: dlib returns no detection below 0\), "
                                         r"got -0\.5$"):
        detect.check_min_score(-0.5, "mmod")
    assert detect.resolve_min_score(None, "hog") == 0.25 and detect.resolve_min_score(None, "mmod") == 0.0
    assert detect.resolve_min_score(0.7, "mmod") == 0.7
    with pytest.raises(ValueError, match="detector must be one of hog, mmod"):
        detect.resolve_min_score(None, "cnn")


def test_a_missing_mmod_model_is_one_line_naming_the_file(astronaut, monkeypatch):
    monkeypatch.setattr(detect, "MMOD_FILE", "no_such_model.dat")
    detect._mmod.cache_clear()
    try:
        with pytest.raises(RuntimeError) as caught:
            detect.detect_faces(astronaut, detector="mmod")
    finally:
        detect._mmod.cache_clear()            # the real model for the other tests
    message = str(caught.value)
    assert "\n" not in message and message.endswith(
        f"models/no_such_model.dat: missing from the installed {detect.MODELS_PACKAGE}; reinstall it"), message
