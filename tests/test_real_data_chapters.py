"""The PIFA and RCSR chapters on real datasets: tiny trees written in the real formats go through
each chapter's data preparation, training and evaluation (``DATA=aflw-pifa`` / ``DATA=300w``), and the
trained model must beat the mean shape it starts from.

The trees hold SynthFace faces written in the real formats (PNG images beside 1-based ``.pts`` files and
iBUG's box files; AFLW-PIFA's MAT-files): the random points of :mod:`test_data_formats`' fixtures carry
nothing a model could learn, so no model could beat the mean shape on them.
"""

import dataclasses

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from falign.data import write_pts
from falign.synthface.dataset import synthface_arrays
from falign.data.formats.ibug import SPLITS_300W
from falign.papers.pifa import experiment as pifa
from falign.kit.patches import sample_patches
from falign.papers.rcsr import experiment as rcsr, model as rcsr_model
from test_data_formats import cell, make_300w  # the real-format fixtures

torch.set_num_threads(1)
# The smoke scale's recipe with more faces: at its 16 (RCSR) and 32 (PIFA) training faces the error after
# training wanders above and below the mean shape's from one epoch count to the next; with 160 it falls
# clearly (RCSR 23.2% -> 17.8% inter-ocular, PIFA's blocks 24.5% -> 22.7%, measured when this was written).
TRAIN_FACES = 160


def synthface_300w(folder, sizes: dict, size: int, seed: int = 0) -> None:
    """SynthFace ``300w-like`` faces as a 300-W tree: ``sizes[split]`` faces of each split, dealt in turn to
    the split's subset folders (``<stem>.png`` beside its ``.pts``), with each subset's
    ``bounding_boxes_<subset>.mat`` holding SynthFace's detector-like box and the tight box (1-based)."""
    for split, n in sizes.items():
        faces = synthface_arrays("300w-like", split, n, size=size, seed=seed)
        subsets = SPLITS_300W[split]
        entries = {subset: [] for subset in subsets}
        for i in range(n):
            subset = subsets[i % len(subsets)]
            stem = f"{split}_{i:03d}"
            (folder / subset).mkdir(parents=True, exist_ok=True)
            Image.fromarray(faces["images"][i]).save(folder / subset / f"{stem}.png")
            write_pts(folder / subset / f"{stem}.pts", faces["landmarks"][i])
            entries[subset].append({"imgName": f"{stem}.png", "bb_detector": faces["detector_boxes"][i][None] + 1.0,
                                    "bb_ground_truth": faces["boxes"][i][None] + 1.0})
        (folder / "Bounding Boxes").mkdir(parents=True, exist_ok=True)
        for subset, rows in entries.items():
            scipy.io.savemat(folder / "Bounding Boxes" / f"bounding_boxes_{subset.replace('/', '_')}.mat",
                             {"bounding_boxes": cell(*rows, shape=(1, len(rows)))})


def synthface_aflw_pifa(folder, sizes: dict, size: int, seed: int = 0) -> None:
    """SynthFace ``aflw-pifa-like`` faces as AFLW-PIFA: ``<split>.mat`` (images, bboxes [x y w h] and phis:
    34 x, 34 y, 34 visibility flags, 1-based) and the PNG images under ``flickr/``."""
    for split, n in sizes.items():
        faces = synthface_arrays("aflw-pifa-like", split, n, size=size, seed=seed)
        names = [f"0\\{split}{i:03d}.png" for i in range(n)]
        (folder / "flickr" / "0").mkdir(parents=True, exist_ok=True)
        for name, image in zip(names, faces["images"]):
            Image.fromarray(image).save(folder / "flickr" / name.replace("\\", "/"))
        boxes = faces["detector_boxes"].astype(np.float64)
        points = faces["landmarks"].astype(np.float64) + 1
        scipy.io.savemat(folder / f"{split}.mat", {
            "images": cell(*names), "bboxes": np.concatenate([boxes[:, :2] + 1, boxes[:, 2:] - boxes[:, :2]], 1),
            "phis": np.concatenate([points[..., 0], points[..., 1], faces["visible"].astype(np.float64)], 1)})


def test_rcsr_partial_300w_copy_holds_out_its_share(tmp_path, monkeypatch):
    """A partial copy of 300-W still gets a validation set: the scale's share of the faces found."""
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    make_300w(tmp_path / "300w")
    cfg = rcsr.SCALES["smoke"]
    crops = rcsr.datasets(cfg, data="300w", root=str(tmp_path))
    # A partial copy (6 faces of the 22 asked for) holds out the scale's share (6 of 22 -> 2) and fits the rest.
    assert len(crops["train"]) == 2 * 4 and len(crops["validation"]) == 2 * 2     # with their mirrors
    assert [len(crops["common"]), len(crops["challenging"])] == [4, 2]
    assert crops["train"].images.shape[1:] == (1, cfg.size, cfg.size)


def test_rcsr_model_notebook_runs_on_a_partial_300w_copy(tmp_path, monkeypatch):
    """02_model's library calls on a partial copy: it warns how many training faces it found of how many
    asked for, and builds its model from the faces the rest of the chapter fits (it used to index the
    scale's ``n_train`` faces, past the end of a short copy)."""
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    make_300w(tmp_path / "300w")
    cfg, root = rcsr.SCALES["smoke"], str(tmp_path)
    test = rcsr.load(cfg, "common", data="300w", root=root)
    with pytest.warns(UserWarning, match=r"6 faces in 300w/train, fewer than the 22 expected"):
        train = rcsr.load(cfg, "train", data="300w", root=root, train=True)
    assert train.fingerprint == rcsr.datasets(cfg, data="300w", root=root)["train"].fingerprint
    model = rcsr.untrained(cfg, train)
    init = rcsr.initial_shapes(model, test)
    patches = sample_patches(test.float_images(slice(0, 1)), init[:1], cfg.patch)
    assert patches.shape[:2] == (1, 68) and torch.isfinite(patches).all()
    assert len(rcsr_model.layer_table(model)) and len(rcsr.parameter_table(cfg, "smoke")) == 6
    with torch.no_grad():
        shapes = model(test.float_images(slice(0, 4)), init[:4])
    assert shapes.shape == (cfg.steps + 1, len(test), 68, 2) and torch.isfinite(shapes).all()
    assert torch.isfinite(rcsr_model.normalised_increment(shapes[0], shapes[1], model.scheme.outer_eye_corners)).all()


def test_rcsr_chapter_beats_the_mean_shape_on_300w(tmp_path, monkeypatch):
    """RCSR trained on a 300-W tree lowers the error of the mean shape it starts from (its step 0)."""
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    cfg = dataclasses.replace(rcsr.SCALES["smoke"], n_train=TRAIN_FACES, n_test={"common": 48, "challenging": 12})
    synthface_300w(tmp_path / "300w", {"train": cfg.n_train + cfg.n_val, **cfg.n_test}, cfg.image)
    crops = rcsr.datasets(cfg, data="300w", root=str(tmp_path))
    assert len(crops["train"]) == 2 * cfg.n_train and len(crops["validation"]) == 2 * cfg.n_val
    assert {s: len(crops[s]) for s in rcsr.TEST_SUBSETS} == cfg.n_test
    model, _ = rcsr.fit_arm(cfg, crops, "convgru-srcnn", progress=False)
    tests = {s: crops[s] for s in rcsr.TEST_SUBSETS}
    shapes = {s: rcsr.predict_steps(model, c) for s, c in tests.items()}
    nme = {k: rcsr.scores({s: p[k] for s, p in shapes.items()}, tests).set_index("subset")["NME (%, inter-ocular)"]
           for k in (0, -1)}
    assert np.isfinite(nme[-1]).all()
    assert nme[-1]["full"] < nme[0]["full"], f"trained {nme[-1]['full']:.2f}% vs mean shape {nme[0]['full']:.2f}%"


def test_pifa_chapter_beats_the_mean_shape_on_aflw_pifa(tmp_path, monkeypatch):
    """PIFA trained on an AFLW-PIFA tree (M and p fitted to the landmarks, as for real data) lowers the error
    of P^0, the mean shape it starts from."""
    monkeypatch.delenv("FALIGN_DATA", raising=False)
    cfg = dataclasses.replace(pifa.SCALES["smoke"], n_train=TRAIN_FACES)
    synthface_aflw_pifa(tmp_path / "aflw-pifa", {"train": cfg.n_train + cfg.n_val, "test": cfg.n_test}, cfg.image)
    crops = pifa.datasets(cfg, data="aflw-pifa", root=str(tmp_path))
    train = crops["train"]
    assert len(train) == cfg.n_train * cfg.variations and len(crops["val"]) == cfg.n_val
    assert train.M.shape == (len(train), 2, 4) and torch.isfinite(train.p).all()                # M, p fitted
    net, _ = pifa.train(cfg, {"train": train}, progress=False)
    nme = pifa.nme_per_block(net, crops["test"], pifa.block_params(net, crops["test"]))
    assert nme.shape == (len(net.blocks) + 1, cfg.n_test) and np.isfinite(nme).all()
    assert nme[-1].mean() < nme[0].mean(), f"last block {nme[-1].mean():.2f}% vs P^0 {nme[0].mean():.2f}%"
