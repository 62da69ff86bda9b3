"""The photo aligner's chapter: crops in dlib's box convention, and the convention its checkpoint records,
which `falign align` reports and the comparison chapter honours."""

import dataclasses
import math

import numpy as np
import pytest

from falign.chapters import compare, photo
from falign.kit import aligner, precision, train as trainer
from falign.papers.rcsr import experiment as rcsr
from falign.tools import cli

CONVENTION = compare.BoxConvention("dlib HOG detector", "hog_boxes", (0.05, -0.12, 1.1, 0.95), "test faces")


@pytest.fixture(scope="module")
def crops():
    return photo.datasets(photo.SCALES["smoke"], CONVENTION)


def test_every_crop_is_cut_around_a_box_in_dlibs_convention(crops):
    from falign.kit.crops import load_faces

    cfg = photo.SCALES["smoke"]
    test = load_faces("synthetic", photo.TEST, preset=photo.PRESET, n=cfg.n_test[photo.TEST], size=cfg.image)
    np.testing.assert_allclose(crops[photo.TEST].boxes.numpy(), CONVENTION.adapt(test["detector_boxes"]), atol=1e-4)
    assert len(crops["train"]) == 2 * cfg.replicates * cfg.n_train and len(crops["validation"]) == 2 * cfg.n_val
    # the training boxes are those boxes jittered: their centres stay within box_noise of them
    train = load_faces("synthetic", "train", preset=photo.PRESET, n=cfg.n_train + cfg.n_val, size=cfg.image)
    given = CONVENTION.adapt(train["detector_boxes"])[: cfg.n_train]
    centre = lambda b: (b[:, :2] + b[:, 2:]) / 2  # noqa: E731
    shift = np.abs(centre(crops["train"].boxes[: cfg.n_train].numpy()) - centre(given)) / (given[:, 2:] - given[:, :2])
    assert 0 < shift.max() <= cfg.box_noise + 1e-6


def _saved(tmp_path, crops, **provenance):
    model = rcsr.untrained(photo.SCALES["smoke"], crops["train"], photo.ARM)
    path = aligner.save(tmp_path / "aligner.pt", model, "rcsr", preprocess={"size": 40, "margin": 0.25},
                        provenance=provenance)
    return aligner.load(path)


def test_the_checkpoint_records_dlibs_convention_and_falign_align_says_so(tmp_path, crops):
    trained = _saved(tmp_path, crops, box_convention=photo.convention_record(CONVENTION))
    plain = _saved(tmp_path, crops)
    assert trained.box_convention == aligner.DLIB_HOG_BOXES
    assert plain.box_convention == aligner.SYNTHFACE_BOXES            # a chapter's RCSR: SynthFace's box
    assert "its own convention" in cli.box_note(trained, "photo", "hog")
    assert "another convention" in cli.box_note(plain, "rcsr", "hog")
    assert "another convention" in cli.box_note(trained, "photo", "mmod")


def test_the_comparison_gives_a_dlib_trained_checkpoint_dlibs_boxes(tmp_path, crops, monkeypatch):
    (tmp_path / "photo").mkdir()
    _saved(tmp_path / "photo", crops, box_convention=photo.convention_record(CONVENTION))
    (tmp_path / "rcsr").mkdir()
    _saved(tmp_path / "rcsr", crops)
    monkeypatch.setattr(aligner.paths, "RESULTS_DIR", tmp_path)
    methods = {m.name: m for m in compare.shipped(CONVENTION)}
    assert methods["PHOTO"].convention == CONVENTION and methods["RCSR"].convention == compare.SYNTHFACE_BOX


def test_retrainings_ship_beside_the_aligner_by_seed_with_the_convention(tmp_path, crops):
    cfg = photo.SCALES["smoke"]
    assert photo.replicate_seeds("small", 3) == (4, 5) and photo.replicate_seeds("smoke") == (1,)
    model = rcsr.untrained(cfg, crops["train"], photo.ARM)
    for seed in (10, 2, 1):
        photo.save(tmp_path / photo.REPLICATES / f"seed{seed}.pt", model, cfg, None, CONVENTION, seed)
    (tmp_path / photo.REPLICATES / "seed1-old.pt").write_bytes(b"not the run's")
    paths = photo.replicate_paths(tmp_path)
    assert [p.name for p in paths] == ["seed1.pt", "seed2.pt", "seed10.pt"]           # by seed, not by text
    loaded = aligner.load(paths[-1])
    assert loaded.provenance["training_seed"] == 10 and loaded.box_convention == aligner.DLIB_HOG_BOXES


@pytest.mark.parametrize("scale", ("gpu", "full"))
def test_the_gpu_and_full_recipes_train_on_the_cpu(scale, tmp_path, monkeypatch):
    """Never run on a GPU yet: their data recipe, network, loss and optimiser run here for two steps, on
    RCSR's tiny face counts, in float32 without the probe (as tests/test_scales.py does for the papers)."""
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    full = photo.SCALES[scale]
    cfg = dataclasses.replace(full, **rcsr.tiny(full), epochs=1, finetune_epochs=min(1, full.finetune_epochs))
    crops = photo.datasets(cfg, CONVENTION)
    assert crops["train"].images.shape[-1] == full.size
    with trainer.step_cap(2):
        _, history = photo.train(cfg, crops, tmp_path)
    assert len(history.epochs) == 1 and math.isfinite(history.epochs[0]["loss"])
