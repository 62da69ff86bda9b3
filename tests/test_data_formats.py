"""Loaders read each benchmark's real on-disk format to exact 0-based coordinates, and reject bad input.

Fixtures are written in the formats themselves: .pts and text files, MATLAB v7 files from
scipy.io.savemat, and v7.3 files written with h5py in MATLAB's own HDF5 layout.
"""

import itertools

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from falign.data import (DATASETS, DataError, DatasetSpec, FaceDataset, get_dataset, read_pts,
                         register, write_pts)
from falign.data.formats.matlab import load_mat
from falign.data.formats.sun5 import LISTS
from falign.data.sample import OUTSIDE_MARGIN, make_sample, outside_image


# Fixture writers ------------------------------------------------------------------------------------

def write_image(path, width=40, height=30, seed=0):
    """A small random RGB image; returns its pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def cell(*items, shape=None):
    """A MATLAB cell array (object ndarray), by default a column n x 1."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out.reshape(shape or (len(items), 1))


def write_mat73(path, variables):
    """Write variables the way MATLAB's ``save -v7.3`` does: an HDF5 file behind a 512-byte MATLAB
    header, arrays with axes reversed, char as uint16 codes, cells as references into ``#refs#``."""
    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def put(group, name, value):
            if isinstance(value, str):
                codes = np.frombuffer(value.encode("utf-16-le"), np.uint16).reshape(-1, 1)
                ds = group.create_dataset(name, data=codes)
                ds.attrs["MATLAB_class"] = np.bytes_("char")
                ds.attrs["MATLAB_int_decode"] = np.int32(2)
            elif isinstance(value, np.ndarray) and value.dtype == object:
                ref = np.empty(value.shape[::-1], dtype=h5py.ref_dtype)
                for index in np.ndindex(value.shape):
                    ref[index[::-1]] = put(refs, f"r{next(counter)}", value[index]).ref
                ds = group.create_dataset(name, data=ref)
                ds.attrs["MATLAB_class"] = np.bytes_("cell")
            else:
                arr = np.atleast_2d(np.asarray(value))
                ds = group.create_dataset(name, data=arr.T)
                ds.attrs["MATLAB_class"] = np.bytes_({"float64": "double", "uint8": "uint8"}[arr.dtype.name])
            return ds

        for name, value in variables.items():
            put(f, name, value)
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by falign tests".ljust(116)
                 + bytes(8) + b"\x00\x02IM")


def pts_text(points_1based):
    body = "\n".join(f"{x} {y}" for x, y in points_1based)
    return f"version: 1\nn_points: {len(points_1based)}\n{{\n{body}\n}}\n"


def face68(seed, offset=(10.0, 8.0)):
    """68 1-based points inside a 40 x 30 image."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(0, 1, (68, 2)) * [18, 14] + offset, 2)


@pytest.fixture(autouse=True)
def no_env_root(monkeypatch):
    monkeypatch.delenv("DATA_ROOT", raising=False)
    monkeypatch.delenv("FALIGN_DATA", raising=False)


# .pts ---------------------------------------------------------------------------------------------------

def test_read_pts_subtracts_one(tmp_path):
    path = tmp_path / "a.pts"
    path.write_text("version: 1\nn_points:  3\n{\n1 1\n10.5 20.25\n100 0.5\n}\n")
    points = read_pts(path)
    assert points.dtype == np.float32 and points.shape == (3, 2)
    assert points.tolist() == [[0.0, 0.0], [9.5, 19.25], [99.0, -0.5]]


def test_write_pts_round_trips_exactly(tmp_path):
    points = np.random.default_rng(1).uniform(-5, 900, (68, 2)).astype(np.float32)
    write_pts(tmp_path / "b.pts", points)
    assert "n_points: 68" in (tmp_path / "b.pts").read_text()
    assert np.array_equal(read_pts(tmp_path / "b.pts"), points)


# 300-W ------------------------------------------------------------------------------------------------

def make_300w(root, subsets=("afw", "helen/trainset", "lfpw/trainset", "helen/testset",
                             "lfpw/testset", "ibug")):
    """Two faces per subset; ibug gets detector boxes in a v7 cell array of structs."""
    faces = {}
    for k, subset in enumerate(subsets):
        for j in range(2):
            stem = f"{subset.replace('/', '_')}_{j}"
            points = face68(10 * k + j)
            (root / subset).mkdir(parents=True, exist_ok=True)
            (root / subset / f"{stem}.pts").write_text(pts_text(points))
            suffix = ".png" if "lfpw" in subset else ".jpg"
            pixels = write_image(root / subset / f"{stem}{suffix}", seed=10 * k + j)
            faces[stem] = (points - 1, pixels)
    boxes = root / "Bounding Boxes"
    boxes.mkdir()
    entries = [{"imgName": f"ibug_{j}.jpg", "bb_detector": np.array([[3.0 + j, 4.0, 30.0, 25.0]]),
                "bb_ground_truth": np.array([[5.0, 6.0, 28.0, 22.0]])} for j in range(2)]
    scipy.io.savemat(boxes / "bounding_boxes_ibug.mat", {"bounding_boxes": cell(*entries, shape=(1, 2))},
                     do_compression=True)
    return faces


def test_300w_splits_boxes_and_pixels(tmp_path):
    faces = make_300w(tmp_path / "300w")
    challenging = get_dataset("300w", "challenging", root=tmp_path)
    assert len(challenging) == 2 and challenging.scheme == "ibug68"
    sample = challenging[1]
    assert np.array_equal(sample.landmarks, faces["ibug_1"][0].astype(np.float32))
    assert sample.box.tolist() == [3.0, 3.0, 29.0, 24.0]          # bb_detector minus 1
    assert sample.extra["gt_box"].tolist() == [4.0, 5.0, 27.0, 21.0]
    assert sample.image.shape == (30, 40, 3) and sample.image.dtype == np.uint8
    assert sample.visible.all() and sample.source.endswith("ibug_1.jpg")

    train = get_dataset("300w", "train", root=tmp_path)
    assert train.counts == {"afw": 2, "helen/trainset": 2, "lfpw/trainset": 2}
    lfpw = next(s for s in train if "lfpw" in s.source)
    stem = lfpw.source.rsplit("/", 1)[1][:-4]
    assert np.array_equal(lfpw.image, faces[stem][1])                # PNG pixels exact
    pts = faces[stem][0]
    assert np.allclose(lfpw.box, [*pts.min(0), *pts.max(0)])          # tight box without .mat
    assert len(get_dataset("300w", "full", root=tmp_path)) == 6
    assert len(get_dataset("300w", "train", root=tmp_path, limit=3)) == 3
    assert train.landmarks.shape == (6, 68, 2) and train.boxes.shape == (6, 4)
    assert train.fingerprint == get_dataset("300w", "train", root=tmp_path).fingerprint
    assert train.fingerprint != challenging.fingerprint


def test_300w_box_file_as_struct_array(tmp_path):
    make_300w(tmp_path / "300w", subsets=("ibug",))
    records = np.array([("ibug_0.jpg", np.array([[2.0, 2.0, 20.0, 20.0]]), np.array([[3.0, 3.0, 9.0, 9.0]]))],
                       dtype=[("imgName", object), ("bb_detector", object), ("bb_ground_truth", object)])
    scipy.io.savemat(tmp_path / "300w" / "Bounding Boxes" / "bounding_boxes_ibug.mat",
                     {"bounding_boxes": records.reshape(1, 1)})
    dataset = get_dataset("300w", "challenging", root=tmp_path)
    assert dataset.annotation(0).box.tolist() == [1.0, 1.0, 19.0, 19.0]
    assert "detector_box" not in dataset.annotation(1).extra


def test_menpo_splits_by_point_count(tmp_path):
    folder = tmp_path / "menpo" / "train"
    folder.mkdir(parents=True)
    (folder / "frontal.pts").write_text(pts_text(face68(0)))
    (folder / "profile.pts").write_text(pts_text(face68(1)[:39]))
    for stem in ("frontal", "profile"):
        write_image(folder / f"{stem}.jpg")
    frontal = get_dataset("menpo", "train", root=tmp_path)
    profile = get_dataset("menpo", "train-profile", root=tmp_path)
    assert [len(frontal), len(profile)] == [1, 1]
    assert profile.scheme == "menpo39" and profile[0].landmarks.shape == (39, 2)
    assert np.allclose(profile[0].landmarks, face68(1)[:39] - 1)


# AFLW-PIFA: v7 and v7.3 --------------------------------------------------------------------------------

def aflw_variables(n=2):
    rng = np.random.default_rng(5)
    xs, ys = rng.uniform(5, 35, (n, 34)), rng.uniform(5, 25, (n, 34))
    flags = (rng.random((n, 34)) > 0.3).astype(float)
    flags[:, 0] = 1
    phis = np.concatenate([xs, ys, flags], 1)
    bboxes = np.array([[4.0, 5.0, 30.0, 20.0]] * n)
    names = cell(*[f"0\\img{i}.jpg" for i in range(n)])
    return {"images": names, "bboxes": bboxes, "phis": phis}, xs, ys, flags


@pytest.mark.parametrize("version", ["v7", "v7.3"])
def test_aflw_pifa(tmp_path, version):
    folder = tmp_path / "aflw-pifa"
    variables, xs, ys, flags = aflw_variables()
    for i in range(2):
        write_image(folder / "flickr" / "0" / f"img{i}.jpg", seed=i)
    folder.mkdir(exist_ok=True)
    if version == "v7":
        scipy.io.savemat(folder / "test.mat", variables)
    else:
        write_mat73(folder / "test.mat", variables)
        assert h5py.is_hdf5(folder / "test.mat")
    dataset = get_dataset("aflw-pifa", "test", root=tmp_path)
    assert len(dataset) == 2 and dataset.scheme == "aflw-pifa34"
    sample = dataset[1]
    assert np.allclose(sample.landmarks, np.stack([xs[1], ys[1]], 1) - 1)
    assert np.array_equal(sample.visible, flags[1] == 1)
    assert sample.box.tolist() == [3.0, 4.0, 33.0, 24.0]               # [x y w h] 1-based -> x1 y1 x2 y2
    assert sample.source.endswith("flickr/0/img1.jpg")


def test_mat_readers_agree(tmp_path):
    variables = {"A": np.arange(6.0).reshape(2, 3), "s": "héllo",
                 "c": cell(np.arange(4.0).reshape(2, 2), "x", cell(np.ones((1, 3)), shape=(1, 1)),
                           shape=(1, 3))}
    scipy.io.savemat(tmp_path / "v7.mat", variables)
    write_mat73(tmp_path / "v73.mat", variables)
    for name in ("v7.mat", "v73.mat"):
        mat = load_mat(tmp_path / name)
        assert np.array_equal(mat["A"], variables["A"]) and mat["s"] == "héllo"
        assert mat["c"].shape == (1, 3) and np.array_equal(mat["c"][0, 0], variables["c"][0, 0])
        assert mat["c"][0, 1] == "x" and np.array_equal(mat["c"][0, 2][0, 0], np.ones((1, 3)))


# AFW: v7.3 anno.mat with nested cells ----------------------------------------------------------------

def test_afw_anno_mat(tmp_path):
    folder = tmp_path / "afw"
    folder.mkdir()
    write_image(folder / "one.jpg", seed=1)
    write_image(folder / "two.jpg", seed=2)
    points_a = np.array([[5, 6], [15, 6], [10, 10], [6, 14], [10, 15], [14, 14]], float)
    points_b = points_a + 20
    points_b[1] = np.nan                                           # not annotated
    anno = cell(
        "one.jpg", cell(np.array([[3.0, 4.0], [18.0, 19.0]]), shape=(1, 1)),
        cell(np.array([[0.0, 15.0, 0.0]]), shape=(1, 1)), cell(points_a, shape=(1, 1)),
        "two.jpg",
        cell(np.array([[2.0, 2.0], [12.0, 12.0]]), np.array([[20.0, 20.0], [35.0, 29.0]]), shape=(1, 2)),
        cell(np.array([[0.0, 0.0, 0.0]]), np.array([[-45.0, 0.0, 0.0]]), shape=(1, 2)),
        cell(points_a - 1, points_b, shape=(1, 2)),
        shape=(2, 4))                                                  # one row per image
    write_mat73(folder / "anno.mat", {"anno": anno})
    dataset = get_dataset("afw", "test", root=tmp_path)
    assert len(dataset) == 3 and dataset.scheme == "afw6"
    first, _, third = (dataset.annotation(i) for i in range(3))
    assert first.box.tolist() == [2.0, 3.0, 17.0, 18.0]                # [x1 y1; x2 y2], 1-based
    assert np.array_equal(first.landmarks, points_a - 1) and first.pose.tolist() == [0.0, 15.0, 0.0]
    assert third.source.endswith("two.jpg") and third.pose[0] == -45
    assert third.visible.tolist() == [True, False, True, True, True, True]
    assert np.isnan(third.landmarks[1]).all()
    assert np.array_equal(third.landmarks[[0, 2]], points_b[[0, 2]] - 1)


# Sun et al. 5-point lists ----------------------------------------------------------------------------

def make_lfpw5(root, sizes):
    """``sizes[split]`` faces of each split in Sun et al.'s lists, each its own 40 x 30 image under
    ``lfw_5590/`` (box 5 35 4 28 left right top bottom, five points jittered inside it)."""
    rng = np.random.default_rng(7)
    for split, n in sizes.items():
        lines = []
        for i in range(n):
            name = f"lfw_5590\\{split}_{i:03d}.jpg"
            write_image(root / name.replace("\\", "/"), seed=i)
            points = np.array([[12, 12], [28, 12], [20, 18], [13, 24], [27, 24]]) + rng.uniform(-2, 2, (5, 2))
            lines.append(f"{name} 5 35 4 28 " + " ".join(f"{v:.2f}" for v in points.ravel()))
        (root / LISTS[split]).write_text("\n".join(lines) + "\n")


def test_lfpw5_list(tmp_path):
    folder = tmp_path / "lfpw5"
    write_image(folder / "lfw_5590" / "a.jpg")
    (folder / "testImageList.txt").write_text(
        "lfw_5590\\a.jpg 5 35 4 28 10.5 12 28 12.25 19 18 12 24 27 24.5\n")
    sample = get_dataset("lfpw5", "test", root=tmp_path)[0]
    assert sample.box.tolist() == [5.0, 4.0, 35.0, 28.0]                # left right top bottom reordered
    assert sample.landmarks.tolist() == [[10.5, 12.0], [28.0, 12.25], [19.0, 18.0], [12.0, 24.0],
                                         [27.0, 24.5]]
    assert sample.scheme == "five" and sample.image.shape == (30, 40, 3)


# Helen --------------------------------------------------------------------------------------------------

def test_helen(tmp_path):
    folder = tmp_path / "helen"
    (folder / "annotation").mkdir(parents=True)
    write_image(folder / "helen_1" / "100_1.jpg")
    points = np.random.default_rng(2).uniform(2, 28, (194, 2)).round(3)
    lines = "\n".join(f"{x} , {y}" for x, y in points)
    (folder / "annotation" / "1.txt").write_text(f"100_1\n{lines}\n")
    (folder / "trainnames.txt").write_text("100_1\n")
    sample = get_dataset("helen", "train", root=tmp_path)[0]
    assert np.allclose(sample.landmarks, points) and sample.scheme == "helen194"


# COFW: images inside the MAT-file ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v7", "v7.3"])
def test_cofw_images_inside_mat(tmp_path, version):
    folder = tmp_path / "cofw"
    folder.mkdir()
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (30, 40), dtype=np.uint8)
    colour = rng.integers(0, 256, (20, 25, 3), dtype=np.uint8)
    xs, ys = rng.uniform(3, 18, (2, 29)), rng.uniform(3, 18, (2, 29))
    occluded = np.zeros((2, 29))
    occluded[1, :5] = 1
    variables = {"IsT": cell(grey, colour), "phisT": np.concatenate([xs, ys, occluded], 1),
                 "bboxesT": np.array([[2.0, 3.0, 20.0, 15.0], [1.0, 1.0, 18.0, 17.0]])}
    if version == "v7":
        scipy.io.savemat(folder / "COFW_test.mat", variables)
    else:
        write_mat73(folder / "COFW_test_color.mat", variables)
    dataset = get_dataset("cofw", "test", root=tmp_path)
    first, second = dataset[0], dataset[1]
    assert np.array_equal(first.image, np.repeat(grey[..., None], 3, 2))   # orientation kept
    assert np.array_equal(second.image, colour)
    assert np.allclose(second.landmarks, np.stack([xs[1], ys[1]], 1) - 1)
    assert second.visible.tolist() == [False] * 5 + [True] * 24            # 1 = occluded
    assert first.box.tolist() == [1.0, 2.0, 21.0, 17.0]
    assert second.source.endswith("#1")


# Registry and bad input -----------------------------------------------------------------------------------

def test_missing_root_says_how_to_set_it():
    with pytest.raises(DataError) as err:
        get_dataset("300w", "train")
    message = str(err.value)
    assert "DATA_ROOT" in message and "make reproduce DATA_ROOT=" in message
    assert "bounding_boxes" in message and "helen/trainset" in message


def test_missing_dataset_folder_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="dataset folder not found") as err:
        get_dataset("cofw", "train")
    assert str(tmp_path / "cofw") in str(err.value) and "COFW_train" in str(err.value)
    (tmp_path / "300w").mkdir()
    with pytest.raises(DataError, match="subset folder missing"):
        get_dataset("300w", "challenging")


def test_unknown_names_are_listed():
    with pytest.raises(ValueError, match="registered: 300w"):
        get_dataset("nope", "train")
    with pytest.raises(ValueError, match="splits: train, common"):
        get_dataset("300w", "nope")


def test_corrupt_image_and_skip_invalid(tmp_path):
    folder = tmp_path / "300w"
    make_300w(folder, subsets=("ibug",))
    (folder / "ibug" / "ibug_0.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="unreadable or corrupt image") as err:
        get_dataset("300w", "challenging", root=tmp_path)
    assert str(folder / "ibug" / "ibug_0.jpg") in str(err.value)
    (folder / "ibug" / "extra.pts").write_text(pts_text(face68(3)[:67]))   # wrong number of points
    write_image(folder / "ibug" / "extra.jpg")
    with pytest.warns(UserWarning, match="skipped 2 invalid item"):
        dataset = get_dataset("300w", "challenging", root=tmp_path, skip_invalid=True)
    assert len(dataset) == 1
    reasons = dict(dataset.skipped)
    assert "corrupt" in reasons[str(folder / "ibug" / "ibug_0.jpg")]
    assert "expected 68 points" in reasons[str(folder / "ibug" / "extra.pts")]


FINE = "a.jpg 5 35 4 28 10 12 28 12 19 18 12 24 27 24"


@pytest.mark.parametrize("number, line, message", [
    (2, "a.jpg 5 35 4 28 10 12 28 12 19 18 12 24 27", "expected 15 fields"),
    (3, "a.jpg 5 5 4 28 10 12 28 12 19 18 12 24 27 24", "zero width or height"),  # left == right
    (4, "a.jpg 5 35 4 28 nan 12 28 12 19 18 12 24 27 24", "non-finite"),
    (5, "b.jpg 5 35 4 28 10 12 28 12 19 18 12 24 27 24", "not found"),
])
def test_lfpw5_line_errors(tmp_path, number, line, message):
    folder = tmp_path / "lfpw5"
    write_image(folder / "a.jpg")
    listing = folder / "trainImageList.txt"
    listing.write_text("\n".join([FINE] * (number - 1) + [line]) + "\n")
    with pytest.raises(DataError, match=message) as err:
        get_dataset("lfpw5", "train", root=tmp_path)
    assert str(err.value).startswith(f"{listing}:{number}: ")
    with pytest.warns(UserWarning, match="skipped 1 invalid item"):
        dataset = get_dataset("lfpw5", "train", root=tmp_path, skip_invalid=True)
    assert len(dataset) == number - 1 and dataset.skipped == [(str(listing), str(err.value))]


def test_length_mismatch_in_mat_is_fatal_even_when_skipping(tmp_path):
    folder = tmp_path / "aflw-pifa"
    folder.mkdir()
    variables, *_ = aflw_variables()
    variables["phis"] = variables["phis"][:1]
    scipy.io.savemat(folder / "train.mat", variables)
    with pytest.raises(DataError, match="2 images, 2 bboxes rows, 1 phis rows") as err:
        get_dataset("aflw-pifa", "train", root=tmp_path, skip_invalid=True)
    assert str(folder / "train.mat") in str(err.value)
    scipy.io.savemat(folder / "train.mat", {"bboxes": variables["bboxes"]})
    with pytest.raises(DataError, match="'images' or 'imgNames' not found"):
        get_dataset("aflw-pifa", "train", root=tmp_path)


def test_make_sample_checks():
    good = np.zeros((5, 2)) + [[0, 0], [4, 0], [2, 2], [0, 4], [4, 4]]
    assert make_sample(good, scheme="five", source="x").box.tolist() == [0, 0, 4, 4]
    with pytest.raises(DataError, match="x:7: expected 5 points for scheme five, found 4"):
        make_sample(good[:4], scheme="five", source="x", line=7)
    with pytest.raises(DataError, match="zero width or height"):
        make_sample(good, scheme="five", source="x", box=[1, 1, 1, 5])
    with pytest.raises(DataError, match="no visible landmark"):
        make_sample(good, scheme="five", source="x", visible=np.zeros(5))


def test_register_another_dataset():
    samples = [make_sample(np.arange(10.0).reshape(5, 2), scheme="five", source=f"gen:{i}",
                           image=np.zeros((8, 8, 3), np.uint8)) for i in range(4)]

    def loader(folder, split, n=4):
        assert folder is None
        return FaceDataset(samples[:n], name="toy", split=split, scheme="five")

    register("toy", DatasetSpec(loader, ("train",), "five", "toy data"))
    try:
        assert len(get_dataset("toy", "train", n=3)) == 3
        assert len(get_dataset("toy", "train", limit=2)) == 2
    finally:
        DATASETS.pop("toy")


def test_a_16_bit_png_is_scaled_not_saturated(tmp_path):
    from falign.data.sample import read_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)   # 0 .. 65520
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert (image == 255).mean() < 0.01 and abs(int(image[32, 0, 0]) - round(ramp[32, 0] / 65535 * 255)) <= 1


# Landmarks outside the image ------------------------------------------------------------------------------

def _moved_300w(root):
    """The user's case: a whole 300-W .pts shifted by 5,000 px (its first point, line 4, is named)."""
    make_300w(root / "300w", subsets=("ibug",))
    pts = root / "300w" / "ibug" / "ibug_1.pts"
    pts.write_text(pts_text(face68(1) + 5000))
    return ("300w", "challenging"), f"{pts}:4: landmark 0 "


def _moved_menpo(root):
    folder = root / "menpo" / "train"
    folder.mkdir(parents=True)
    points = face68(0)
    points[7, 1] += 5000
    (folder / "frontal.pts").write_text(pts_text(points))
    write_image(folder / "frontal.jpg")
    return ("menpo", "train"), f"{folder / 'frontal.pts'}:11: landmark 7 "


def _moved_aflw_pifa(root):
    folder = root / "aflw-pifa"
    variables, *_ = aflw_variables()
    variables["phis"][1, 3] -= 5000                                  # x of point 3 of face 1
    for i in range(2):
        write_image(folder / "flickr" / "0" / f"img{i}.jpg", seed=i)
    scipy.io.savemat(folder / "test.mat", variables)
    return ("aflw-pifa", "test"), f"{folder / 'test.mat'}#1: landmark 3 "


def _moved_afw(root):
    folder = root / "afw"
    folder.mkdir()
    write_image(folder / "one.jpg")
    points = np.array([[5, 6], [15, 6], [10, 10], [6, 14], [10, 15], [14, 14]], float)
    points[2] += 5000
    anno = cell("one.jpg", cell(np.array([[3.0, 4.0], [18.0, 19.0]]), shape=(1, 1)),
                cell(np.array([[0.0, 0.0, 0.0]]), shape=(1, 1)), cell(points, shape=(1, 1)), shape=(1, 4))
    write_mat73(folder / "anno.mat", {"anno": anno})
    return ("afw", "test"), f"{folder / 'anno.mat'}#0.0: landmark 2 "


def _moved_lfpw5(root):
    folder = root / "lfpw5"
    write_image(folder / "a.jpg")
    (folder / "testImageList.txt").write_text(FINE + "\n" + FINE.replace(" 27 24", " 5027 24") + "\n")
    return ("lfpw5", "test"), f"{folder / 'testImageList.txt'}:2: landmark 4 "


def _moved_helen(root):
    folder = root / "helen"
    (folder / "annotation").mkdir(parents=True)
    write_image(folder / "helen_1" / "100_1.jpg")
    points = np.random.default_rng(2).uniform(2, 28, (194, 2)).round(3)
    points[7, 0] = -5000
    (folder / "annotation" / "1.txt").write_text("100_1\n" + "\n".join(f"{x} , {y}" for x, y in points) + "\n")
    (folder / "testnames.txt").write_text("100_1\n")
    return ("helen", "test"), f"{folder / 'annotation' / '1.txt'}:9: landmark 7 "


def _moved_cofw(root):
    folder = root / "cofw"
    folder.mkdir()
    rng = np.random.default_rng(3)
    xs, ys = rng.uniform(3, 18, (1, 29)), rng.uniform(3, 18, (1, 29))
    ys[0, 5] += 5000
    scipy.io.savemat(folder / "COFW_test.mat", {
        "IsT": cell(rng.integers(0, 256, (30, 40), dtype=np.uint8)),
        "phisT": np.concatenate([xs, ys, np.zeros((1, 29))], 1), "bboxesT": np.array([[2.0, 3.0, 20.0, 15.0]])})
    return ("cofw", "test"), f"{folder / 'COFW_test.mat'}#0: landmark 5 "


@pytest.mark.parametrize("write", [_moved_300w, _moved_menpo, _moved_aflw_pifa, _moved_afw, _moved_lfpw5,
                                   _moved_helen, _moved_cofw], ids=lambda f: f.__name__[len("_moved_"):])
def test_a_landmark_far_outside_the_image_is_refused(tmp_path, write):
    """Every real-format loader refuses a face whose landmarks lie far outside its image (it would train and
    score on blank crops), naming the file and the point's line (or the face, in MAT-files)."""
    (name, split), where = write(tmp_path)
    with pytest.raises(DataError, match="outside the 40x30 image") as err:
        get_dataset(name, split, root=tmp_path)
    assert str(err.value).startswith(where)
    with pytest.warns(UserWarning, match="skipped 1 invalid item"):
        assert get_dataset(name, split, root=tmp_path, skip_invalid=True).skipped[0][1] == str(err.value)


def test_the_outside_margin():
    """A landmark may lie outside the image by up to OUTSIDE_MARGIN of its width (x) or height (y), from the
    image's edge half a pixel beyond the outer pixel centres: faces cut by the border keep their hidden points."""
    width, height = 40, 30
    limit_x, limit_y = OUTSIDE_MARGIN * width, OUTSIDE_MARGIN * height
    inside = np.array([[-0.5 - limit_x, 0], [width - 0.5 + limit_x, 0], [0, height - 0.5 + limit_y], [np.nan, np.nan]])
    assert outside_image(inside, width, height) is None
    for k, moved in enumerate(([-0.6 - limit_x, 0], [0, height - 0.4 + limit_y])):
        beyond = inside.copy()
        beyond[k + 1] = moved
        assert outside_image(beyond, width, height)[0] == k + 1
