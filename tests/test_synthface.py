"""SynthFace: determinism, presets and schemes, visibility, boxes, the cache and the registry."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_dilation

from falign.synthface import morphable
from falign.data import get_dataset
from falign.synthface.dataset import PRESETS, synthface, synthface_arrays
from falign.measure.landmarks import convert, convert_visibility, get_scheme

sf = importlib.import_module("falign.synthface.dataset")  # the module (falign.synthface.dataset is the function)
SMALL = dict(size=48, cache=False)


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_same_seed_same_arrays():
    a = synthface_arrays("300w-like", "train", 6, seed=3, **SMALL)
    b = synthface_arrays("300w-like", "train", 6, seed=3, **SMALL)
    assert _same(a, b)


def test_seeds_and_splits_differ():
    a = synthface_arrays("300w-like", "common", 4, seed=0, **SMALL)
    assert not np.array_equal(a["p"], synthface_arrays("300w-like", "common", 4, seed=1, **SMALL)["p"])
    assert not np.array_equal(a["p"], synthface_arrays("300w-like", "challenging", 4, seed=0, **SMALL)["p"])
    train = synthface_arrays("aflw-pifa-like", "train", 4, **SMALL)
    test = synthface_arrays("aflw-pifa-like", "test", 4, **SMALL)
    assert not np.array_equal(train["images"], test["images"])
    assert a["fingerprint"] != train["fingerprint"] != test["fingerprint"]


@pytest.mark.parametrize("preset", list(sf.PRESETS))
def test_shapes_dtypes_and_schemes(preset):
    spec = sf.PRESETS[preset]
    n_points = get_scheme(spec.scheme).n_points
    for split in spec.split_names:
        a = synthface_arrays(preset, split, 3, size=32, cache=False)
        assert a["images"].shape == (3, 32, 32, 3) and a["images"].dtype == np.uint8
        assert a["landmarks"].shape == (3, n_points, 2) and a["landmarks"].dtype == np.float32
        assert a["visible"].shape == (3, n_points) and a["visible"].dtype == bool
        assert a["landmarks68"].shape == (3, 68, 2) and a["visible68"].shape == (3, 68)
        assert a["boxes"].shape == a["detector_boxes"].shape == (3, 4)
        assert a["M"].shape == (3, 2, 4) and a["p"].shape == (3, 228) and a["pose"].shape == (3, 3)
        assert isinstance(a["fingerprint"], str)
        np.testing.assert_allclose(a["landmarks"], convert(a["landmarks68"], "ibug68", spec.scheme), atol=1e-5)
        assert np.array_equal(a["visible"], convert_visibility(a["visible68"], "ibug68", spec.scheme))


def test_full_is_common_then_challenging():
    full = synthface_arrays("300w-like", "full", 10, **SMALL)
    n_common = round(10 * 554 / 689)
    assert list(full["subset"]) == ["common"] * n_common + ["challenging"] * (10 - n_common)
    common = synthface_arrays("300w-like", "common", n_common, **SMALL)
    assert np.array_equal(full["images"][:n_common], common["images"])
    assert np.array_equal(full["p"][n_common:], synthface_arrays("300w-like", "challenging", 10 - n_common, **SMALL)["p"])


def test_private_is_indoor_then_outdoor_lit_differently():
    private = synthface_arrays("300w-like", "private", 8, **SMALL)
    assert list(private["subset"]) == ["indoor"] * 4 + ["outdoor"] * 4
    assert np.array_equal(private["images"][:4], synthface_arrays("300w-like", "indoor", 4, **SMALL)["images"])
    indoor, outdoor = (PRESETS["300w-like"].splits[s] for s in ("indoor", "outdoor"))
    assert indoor.ambient[0] > outdoor.ambient[1] and indoor.diffuse[1] < outdoor.diffuse[0]
    assert indoor.yaw == outdoor.yaw == PRESETS["300w-like"].splits["train"].yaw   # same poses as training


def test_pose_ranges_and_params_reproject():
    a = synthface_arrays("300w-like", "common", 8, **SMALL)
    assert (np.abs(a["pose"][:, 0]) <= 30).all()
    model = morphable.builtin_model()
    lm = morphable.project(torch.as_tensor(a["M"]), model.landmarks(torch.as_tensor(a["p"])))
    np.testing.assert_allclose(lm.numpy(), a["landmarks68"], atol=2e-3)
    pose = morphable.M_to_pose(torch.as_tensor(a["M"]))
    np.testing.assert_allclose(pose["yaw"].numpy(), a["pose"][:, 0], atol=1e-2)


def test_yaw80_hides_the_far_jaw_and_shows_the_near_one():
    pose = dict(pitch=(0, 0), roll=(0, 0), occlusion=0.0, size=128, cache=False)
    v = synthface_arrays("300w-like", "common", 6, yaw=(80, 80), **pose)["visible68"]
    assert v[:, 0:8].all()  # yaw > 0 turns the image-left half (iBUG 0-7) toward the camera
    assert not v[:, 10:17].any()
    frontal = synthface_arrays("300w-like", "common", 6, yaw=(0, 0), **pose)["visible68"]
    assert frontal[:, :17].all()  # the whole jaw line shows


def test_landmarks_under_an_occluder_are_invisible():
    clean = dict(noise=(0.0, 0.0), blur=(0.0, 0.0), yaw=(0, 0), **SMALL)
    bare = synthface_arrays("300w-like", "common", 8, occlusion=0.0, **clean)
    occ = synthface_arrays("300w-like", "common", 8, occlusion=1.0, **clean)
    painted = (bare["images"] != occ["images"]).any(-1)  # the occluders' pixels
    xy = np.clip(np.round(bare["landmarks68"]).astype(int), 0, 47)
    covered = painted[np.arange(8)[:, None], xy[..., 1], xy[..., 0]]
    assert covered.sum() >= 5
    assert not (occ["visible68"] & covered).any()
    assert np.array_equal(occ["visible68"], bare["visible68"] & ~covered)


def test_visible_landmarks_lie_on_the_rendered_face():
    cfg = sf._config("300w-like", "challenging", {})
    a = sf._generate("300w-like", "challenging", cfg, 12, 64, 0, torch.device("cpu"),
                     keys=("landmarks68", "visible68", "mask"))
    mask = np.stack([binary_dilation(m) for m in a["mask"]])  # silhouette points round outward
    xy = np.clip(np.round(a["landmarks68"]).astype(int), 0, 63)
    on_face = mask[np.arange(12)[:, None], xy[..., 1], xy[..., 0]]
    assert a["visible68"].any() and not (a["visible68"] & ~on_face).any()


def test_boxes_contain_the_landmarks():
    a = synthface_arrays("aflw-pifa-like", "test", 8, **SMALL)
    lm, box = a["landmarks68"], a["boxes"]
    np.testing.assert_allclose(box[:, :2], lm.min(1), atol=1e-4)
    np.testing.assert_allclose(box[:, 2:], lm.max(1), atol=1e-4)
    det = a["detector_boxes"]
    inter = np.clip(np.minimum(box[:, 2:], det[:, 2:]) - np.maximum(box[:, :2], det[:, :2]), 0, None).prod(1)
    union = (box[:, 2:] - box[:, :2]).prod(1) + (det[:, 2:] - det[:, :2]).prod(1) - inter
    assert (inter / union > 0.5).all() and not np.allclose(det, box)


def test_render_batch_size_does_not_change_faces(monkeypatch):
    a = synthface_arrays("afw-like", "test", 2 * sf.BLOCK, size=16, cache=False)
    monkeypatch.setattr(sf, "_batch_blocks", lambda size, device: 2)  # the CPU default is 1
    monkeypatch.setattr(sf, "_chunk_faces", lambda size, device: 24)  # not a divisor of a block
    assert _same(a, synthface_arrays("afw-like", "test", 2 * sf.BLOCK, size=16, cache=False))


def test_cache_hit_returns_identical_arrays(tmp_path, monkeypatch):
    monkeypatch.setenv("FALIGN_CACHE", str(tmp_path))
    a = synthface_arrays("lfpw5-like", "test", 4, size=32)
    files = sorted(p.name for p in (tmp_path / "synthface").iterdir())
    assert files == [f"{a['fingerprint']}.json", f"{a['fingerprint']}.npz"]

    def fail(*args, **kwargs):
        raise AssertionError("regenerated despite a valid cache")

    monkeypatch.setattr(sf, "_generate", fail)
    assert _same(a, synthface_arrays("lfpw5-like", "test", 4, size=32))


def _corrupt_truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _delete_sidecar(path):
    path.with_suffix(".json").unlink()


def _drop_key(path):
    """A well-formed npz (valid checksum) that lacks an array: written by an older or buggy run."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "pose"}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    sidecar = path.with_suffix(".json")
    sidecar.write_text(json.dumps({"sha256": sf._file_sha256(path)}))


@pytest.mark.parametrize("damage", [_corrupt_truncate, _corrupt_byte, _delete_sidecar, _drop_key])
def test_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("FALIGN_CACHE", str(tmp_path))
    a = synthface_arrays("lfpw5-like", "test", 4, size=32)
    path = tmp_path / "synthface" / f"{a['fingerprint']}.npz"
    damage(path)
    with pytest.warns(UserWarning, match=path.name):
        b = synthface_arrays("lfpw5-like", "test", 4, size=32)
    assert _same(a, b)
    with np.load(path) as npz:  # rebuilt on disk as well
        assert set(sf._KEYS) <= set(npz.files)
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == sf._file_sha256(path)


def test_registry_and_dataset():
    ds = get_dataset("synthetic", "common", n=3, size=32, cache=False)
    assert ds.name == "synthface:300w-like" and ds.split == "common" and ds.scheme == "ibug68"
    assert len(ds) == 3 and ds.fingerprint
    s = ds[0]
    assert s.source == "synthface:300w-like/common/0" and s.image.shape == (32, 32, 3)
    assert s.params["M"].shape == (2, 4) and s.params["p"].shape == (228,) and s.pose.shape == (3,)
    assert {"landmarks68", "visible68", "detector_box"} <= set(s.extra)
    pifa = get_dataset("synthetic", "test", preset="aflw-pifa-like", n=2, size=32, cache=False)
    assert pifa.scheme == "aflw-pifa34" and pifa[1].landmarks.shape == (34, 2)
    assert synthface("afw", "test", 2, size=32, cache=False).name == "synthface:afw-like"
    with pytest.raises(ValueError, match="no split"):
        get_dataset("synthetic", "test", n=2)  # 300w-like has no test split
    with pytest.raises(ValueError, match="unknown SynthFace option"):
        synthface_arrays("300w-like", "train", 2, not_an_option=1)


# --- the chapter's functions (falign.chapters.synthface) --------------------------------------------

def test_the_preset_table_has_a_row_per_split():
    from falign.chapters import synthface as chapter

    table = chapter.preset_table()
    expected = {(name, split) for name, p in PRESETS.items() for split in (*p.splits, *p.composite)}
    assert set(zip(table["preset"], table["split"])) == expected and len(table) == len(expected)


def test_split_statistics_read_the_arrays():
    from falign.chapters import synthface as chapter

    a = synthface_arrays("300w-like", "common", 3, size=64, seed=0, cache=False)
    row = chapter.statistics({("300w-like", "common"): a}, size=64).iloc[0]
    assert row["faces"] == 3 and row["scheme"] == "ibug68"
    assert np.isclose(row["mean |yaw| (°)"], np.abs(a["pose"][:, 0]).mean())
    assert np.isclose(row["hidden of 68 (%)"], 100 * (1 - a["visible68"].mean()))
    assert np.isclose(row["box width / image"], ((a["boxes"][:, 2] - a["boxes"][:, 0]) / 64).mean())
