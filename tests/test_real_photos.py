"""The real-photo table: box conventions on real photos, the default model rule, and the registry reading it."""

import numpy as np
import pandas as pd

from falign.chapters import compare, real_photos
from falign.data import detect
from falign.data.sample import make_sample
from falign.kit import registry

HOG = compare.BoxConvention("dlib HOG detector", "hog_boxes", (0.02, -0.1, 1.1, 0.95))


def test_inverse_calibration_undoes_the_adapter():
    boxes = np.array([[10, 20, 50, 80], [0, 0, 7, 9]], np.float32)
    there = detect.calibrated(boxes, HOG.adapter)
    np.testing.assert_allclose(detect.calibrated(there, detect.inverse_calibration(HOG.adapter)), boxes, atol=1e-4)


def _method(name, convention, family="book"):
    return compare.Method(name, lambda photos, boxes: None, compare.IBUG68, family, "", 0.0, 0.0, name, convention)


def test_each_method_starts_from_its_own_convention_in_both_blocks():
    tight = np.array([[10, 20, 50, 80]], np.float32)
    detected = detect.calibrated(tight, HOG.adapter)
    on_dlib, on_synthface = _method("dlib", HOG), _method("rcsr", compare.SYNTHFACE_BOX)
    np.testing.assert_allclose(real_photos.boxes_for(on_dlib, "annotation", tight, detected, HOG), detected)
    np.testing.assert_allclose(real_photos.boxes_for(on_synthface, "annotation", tight, detected, HOG), tight)
    np.testing.assert_allclose(real_photos.boxes_for(on_dlib, "detector", tight, detected, HOG), detected)
    # a SynthFace-convention method gets dlib's detection moved back into its own convention
    np.testing.assert_allclose(real_photos.boxes_for(on_synthface, "detector", tight, detected, HOG), tight, atol=1e-4)


def _faces():
    image = np.zeros((40, 40, 3), np.uint8)
    points = np.random.default_rng(0).uniform(8, 32, (68, 2)).astype(np.float32)
    return [make_sample(points, scheme="ibug68", source=f"pkg:{n}.png", image=image) for n in ("takeo", "einstein")]


def test_the_table_flags_the_book_aligner_with_the_lowest_real_error():
    methods = [_method("RCSR", compare.SYNTHFACE_BOX), _method("PHOTO", HOG), _method(compare.PEER, HOG, "peer")]
    errs = {"annotation": {"RCSR": np.array([6.0, 16.0]), "PHOTO": np.array([4.0, 12.0]),
                           compare.PEER: np.array([3.0, 11.0])},
            "detector": {"RCSR": np.array([7.0, np.nan]), "PHOTO": np.array([5.0, np.nan]),
                         compare.PEER: np.array([3.5, np.nan])}}
    synth = {"RCSR": 4.0, "PHOTO": 5.0, compare.PEER: 9.0}
    table = real_photos.table(methods, _faces(), errs, synth)
    row = table.set_index("method").loc["PHOTO"]
    assert row["real NME (%, annotation box)"] == 8.0 and row["real / SynthFace"] == 1.6
    assert row["real NME (%, frontal)"] == 4.0                      # takeo only, declared before any result
    assert row["real NME (%, detector box, 1 of 2 found)"] == 5.0    # the faces the detector found
    assert list(table.loc[table["default model"], "method"]) == ["PHOTO"]   # the peer is never the default
    assert real_photos.default_from(table) == "photo"
    reading = real_photos.reading(table)
    assert "PHOTO: 8.0 % real against 5.0 % SynthFace (1.6x: beyond 1.5x)" in reading
    assert "It leads RCSR by 3.00 points (per-face difference -3.00 [-4.00, -2.00]" in reading   # -2 and -4 per face
    assert "the faces decide it" in reading


def test_the_registry_takes_the_default_from_the_real_photo_table(tmp_path, monkeypatch):
    monkeypatch.setattr(registry.paths, "RESULTS_DIR", tmp_path)
    registered = registry.default_aligner()           # no table: the registered chapter
    (tmp_path / "compare").mkdir()
    pd.DataFrame({"method": ["RCSR", "PHOTO"], "default model": [False, True]}).to_csv(
        tmp_path / "compare" / "real_photos.csv", index=False)
    assert registry.default_aligner() == "photo" != registered


def test_the_retraining_rows_share_the_table_and_count_the_trainings_that_meet_the_bar(monkeypatch):
    methods = [_method("PHOTO", HOG), _method(compare.PEER, HOG, "peer")]
    errs = {"annotation": {"PHOTO": np.array([4.0, 12.0]), compare.PEER: np.array([3.0, 11.0])},
            "detector": {"PHOTO": np.array([5.0, np.nan]), compare.PEER: np.array([3.5, np.nan])}}
    table = real_photos.table(methods, _faces(), errs, {"PHOTO": 5.0, compare.PEER: 9.0})
    other = _method("PHOTO (seed 1)", HOG, "retraining")
    monkeypatch.setattr(real_photos, "errors", lambda m, *a: {"annotation": {other.name: np.array([2.0, 6.0])},
                                                             "detector": {other.name: np.array([2.5, np.nan])}})
    monkeypatch.setattr(real_photos, "synthface_errors", lambda m, *a, **k: {other.name: 4.0})
    spread = real_photos.retraining_table(table, [other], _faces(), None, HOG, None)
    assert list(spread["method"]) == ["PHOTO", "PHOTO (seed 1)"] and "default model" not in spread
    assert list(spread["real NME (%, annotation box)"]) == [8.0, 4.0]
    reading = real_photos.retraining_reading(spread, peer_frontal=3.0)
    assert "real-photo NME 4.0-8.0 %" in reading and "ratio to SynthFace 1.00-1.60" in reading
    assert "1 of 2 meet the bar" in reading                           # seed 1: ratio 1.0, frontal 2.0 <= 3.0
    assert "not measured" in real_photos.retraining_reading(spread.iloc[:1], 3.0)


def test_no_replicates_shipped_means_no_retraining_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(real_photos.paths, "RESULTS_DIR", tmp_path)
    assert real_photos.retrainings(HOG) == []


def test_a_broken_replicate_is_left_out_in_a_line_naming_it(tmp_path, monkeypatch, capsys):
    (tmp_path / "photo" / "replicates").mkdir(parents=True)
    (tmp_path / "photo" / "replicates" / "seed1.pt").write_bytes(b"not a checkpoint")
    monkeypatch.setattr(real_photos.paths, "RESULTS_DIR", tmp_path)
    assert real_photos.retrainings(HOG) == []
    assert "seed1.pt left out" in capsys.readouterr().out
