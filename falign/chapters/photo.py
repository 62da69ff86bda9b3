"""The photo aligner: the book's model for ``falign align`` on real photographs.

The chapters train each paper's network on SynthFace's plain presets and crop around SynthFace's
detector-like box, the papers' protocol. A user's photo differs twice: it looks like a photograph
(backgrounds, skin, hair, glasses, hands, light, JPEG, blur), and its face box comes from a real
detector, dlib's HOG, whose boxes sit higher than a landmark box. This chapter trains one network for
that use: RCSR's ConvGRU + SRCNN, by the RCSR chapter's own training code
(:func:`falign.papers.rcsr.experiment.fit_arm`), on SynthFace's realism preset ``photo-like``, cropped
around boxes in dlib's HOG convention (:func:`hog_convention`). It reproduces no paper: its results
are the weights ``results/photo/aligner.pt`` and their error on SynthFace; its error on real annotated
photos is measured by the comparison chapter (its real-photo table), and nothing is tuned on those.
The notebook ``notebooks/photo/01_train`` calls these functions.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pandas as pd
import torch

from falign.kit import aligner, chapter, protocol300w, train as trainer
from falign.kit.crops import Crops, crop_faces, held_out_count, load_faces
from falign.papers.rcsr import experiment as rcsr

PRESET = "photo-like"
ARM = rcsr.MAIN                       # ConvGRU + SRCNN, the RCSR paper's model
DATASETS = ("synthetic",)             # the realism preset is SynthFace's; real photos are a test set only
TEST = "test"
_NO_FIGURES = dict(figure_seeds=(0,), fig5=(), fig7=())       # the RCSR chapter's figure variants: none here
_SHARED = dict(**_NO_FIGURES, finetune_epochs=0, sdm_stages=3, sdm_alpha=0.1, hog_patch=16,
               widths={"srcnn": 0.5, "lenet": 0.25, "fauc": 0.125}, lr=1e-3, grad_clip=1.0, init_noise=0.03)

# Decision [photo.recipe] (training): RCSR's small network (ConvGRU width 32, SRCNN at half width, 5 recurrences),
# at 64-pixel grey crops (RCSR small: 48) with a 25 % margin (RCSR: 10 %; dlib's box leaves the chin out, MSRRN's
# chapter crops it with 20 %) of 10,000 photo-like faces, two box replicates with 8 % box noise (RCSR:
# one, 5 %: dlib's boxes move more between faces than SynthFace's jitter), 12 epochs at batch 32, the rate halved
# after epochs 4 and 8; RCSR's Adam, clipping and loss. Grey input: the chapters' best real-photo error (RCSR, the
# issue's table) came from a grey model, and a grey crop cannot learn SynthFace's colours. A probe on 2,400 faces
# (3.8 min on 2 cores) ended with its held-out error flat at the final rate (10.9, 10.7, 10.8 % over its last 3
# epochs) and 6.4 % on the photo-like test faces: more faces, not more epochs. Its real-photo error was not looked
# at; the 5,000-face recipe was fixed before any photo-like model was scored on a real face. Doubling to 5,000 cut
# the held-out error from 10.8 to 9.1 % and the test error to 5.3 %, its curve again flat at the final rate (9.13,
# 9.04, 9.21 %): so the faces were doubled once more, to 10,000, on that SynthFace evidence alone, together with
# the realism knob ``brows`` and before any 10,000-face model was scored on a real face.
# Paper: none; this aligner reproduces no paper. RCSR's Sec. 4.1 recipe (3 replicates, 200 + 200 epochs) is a GPU's.
SCALES = {
    # CI: a few updates on a few faces; the weights mean nothing.
    "smoke": rcsr.Scale(n_train=16, n_val=6, n_test={TEST: 8}, image=64, size=40, margin=0.25, patch=17, hidden=8,
                        fc_width=64, steps=3, replicates=1, inits=1, box_noise=0.08, epochs=2, batch=8,
                        decay_every=10, eval_steps=3, precision="fp32",
                        **{**_SHARED, "widths": {"srcnn": 0.25, "lenet": 0.25, "fauc": 0.125}}),
    "small": rcsr.Scale(n_train=10000, n_val=300, n_test={TEST: 300}, image=128, size=64, margin=0.25, patch=23,
                        hidden=32, fc_width=256, steps=5, replicates=2, inits=1, box_noise=0.08, epochs=12, batch=32,
                        decay_every=4, eval_steps=5, precision="auto", **_SHARED),
    # One GPU (never run: no GPU has been lent to this project): RCSR's gpu network (128-pixel crops, SRCNN at
    # the paper's width) on 6,000 photo-like faces rendered at 256 px, 30 epochs. Sized by estimate.
    "gpu": dataclasses.replace(rcsr.SCALES["gpu"], n_train=6000, n_val=300, n_test={TEST: 600}, margin=0.25,
                               replicates=2, box_noise=0.08, epochs=30, decay_every=10, **_NO_FIGURES),
    # RCSR's own protocol (Sec. 4.1: 3 box replicates, 200 + 200 epochs, batch 204) on the realism preset.
    "full": dataclasses.replace(rcsr.SCALES["full"], n_train=6000, n_val=300, n_test={TEST: 600}, margin=0.25,
                                box_noise=0.08, **_NO_FIGURES),
}


# Decision [photo.box-convention] (data): the photo aligner is trained from dlib's HOG convention, the boxes
# ``falign align`` gives it: each training face's SynthFace detector-like box moved by the comparison chapter's
# adapter (:func:`falign.chapters.compare.dlib_convention`, fitted on SynthFace training faces dlib's detector
# finds, never on a test or real face), then jittered by ``box_noise``. Its checkpoint records the convention
# (:func:`convention_record`), so ``falign align`` and the comparison chapter give it dlib's boxes as they are.
# Paper: none (RCSR's chapter crops around SynthFace's detector-like box, its stand-in for 300-W's).


def hog_convention(scale: str, *, seed: int = 0):
    """dlib's HOG box convention as the comparison chapter measures it at ``scale``
    (:class:`falign.chapters.compare.BoxConvention`)."""
    from falign.chapters import compare

    return compare.dlib_convention(compare.SCALES[scale], seed=seed)


def datasets(cfg: rcsr.Scale, convention, *, seed: int = 0) -> dict[str, Crops]:
    """Training crops (the fitted faces), the held-out training faces (``validation``: the training's
    curve) and the photo-like test faces, all cropped around boxes in ``convention`` (dlib's HOG, from
    :func:`hog_convention`); the test faces without jitter, as ``falign align`` gives a detection."""
    faces = load_faces("synthetic", "train", preset=PRESET, n=cfg.n_train + cfg.n_val, size=cfg.image, seed=seed)
    given = torch.from_numpy(convention.adapt(faces["detector_boxes"]))
    n_val = held_out_count(cfg.n_train, cfg.n_val, len(given))
    fit, held = range(len(given) - n_val), range(len(given) - n_val, len(given))
    test = load_faces("synthetic", TEST, preset=PRESET, n=cfg.n_test[TEST], size=cfg.image, seed=seed)
    return {"train": rcsr.augmented(cfg, faces, given, fit, seed, 0, "fit"),
            "validation": rcsr.augmented(cfg, faces, given, held, seed, 2, "validation"),
            TEST: crop_faces(test, cfg.size, cfg.margin, boxes=convention.adapt(test["detector_boxes"]),
                             grey=True, padding_mode="border")}


# Decision [photo.retrainings] (evaluation): besides the shipped training (seed SEED) the chapter trains the same
# recipe on the same crops with seeds SEED + 1 and SEED + 2 (one at smoke), which differ only in the network's
# initial weights and the order of the batches. They ship in ``replicates/`` beside the aligner, so the comparison
# chapter can say how much retraining alone moves the real-photo error (two runs of one recipe once moved its
# four-face mean by 1.7 points and flipped the default model). The shipped seed is fixed beforehand, never picked.
# Paper: none.
RETRAININGS = {"smoke": 1, "small": 2, "gpu": 2, "full": 2}
REPLICATES = "replicates"        # the folder, beside the shipped aligner.pt, of the other trainings' weights


def replicate_seeds(scale: str, seed: int = 0) -> tuple[int, ...]:
    """The seeds of the trainings besides the shipped one (:data:`RETRAININGS`)."""
    return tuple(seed + k for k in range(1, RETRAININGS[scale] + 1))


def replicate_paths(results) -> list:
    """The replicate trainings' weights a photo chapter run wrote under ``results`` (its folder), by seed;
    other files there (``seed1-old.pt``) are not the run's and are passed over."""
    from pathlib import Path

    found = [p for p in Path(results, REPLICATES).glob("seed*.pt") if p.stem[4:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[4:]))


def save(path, model: torch.nn.Module, cfg: rcsr.Scale, run, convention, seed: int) -> None:
    """Weights as an aligner with their crop, recipe seed and box convention (which ``falign align`` reports)."""
    aligner.save(path, model.cpu(), "rcsr", preprocess={"size": cfg.size, "margin": cfg.margin},
                 provenance=aligner.run_provenance(run, epochs=cfg.epochs, training_seed=seed,
                                                   box_convention=convention_record(convention)))


def code_version() -> str:
    """The training code's version (RCSR's model and training, this module): part of the cache key."""
    return trainer.code_version(sys.modules[__name__]) + rcsr.code_version()


def train(cfg: rcsr.Scale, crops: dict[str, Crops], work, *, seed: int = 0, device="cpu", progress: bool = True):
    """The photo aligner's network trained once per recipe, data and code (cached in ``work``, resumed
    from its checkpoint if interrupted); returns (model in eval mode, history)."""
    folder = trainer.cache_dir(work, "photo", recipe=(chapter.recipe(cfg), ARM, seed),
                               data=[crops[k].fingerprint for k in ("train", "validation")], code=code_version())
    return rcsr.fit_arm(cfg, crops, ARM, seed, device=device, checkpoint_dir=folder, progress=progress)


def test_errors(model: torch.nn.Module, crops: Crops, device="cpu") -> np.ndarray:
    """Per-face NME (%, inter-ocular, 68 points) of ``model`` on ``crops`` after its recurrences."""
    shapes = rcsr.predict_steps(model, crops, device=device)[-1]
    return 100 * protocol300w.subset_errors({"t": shapes}, {"t": crops.ground_truth()}, rcsr.SCHEME)["t"]


def convention_record(convention) -> dict:
    """The box convention a checkpoint records: its name (:attr:`falign.kit.aligner.Aligner.box_convention`,
    which ``falign align`` reports and the comparison chapter honours), the detector, the adapter and its faces."""
    return {"name": aligner.DLIB_HOG_BOXES, "detector": convention.name,
            "adapter_from_synthface_box": list(convention.adapter),
            "fitted_on": convention.fitted_on}


def data_table(cfg: rcsr.Scale, crops: dict[str, Crops], convention) -> pd.DataFrame:
    """What the network trains and is tested on: faces, crops, crop size and the boxes' convention."""
    rows = [("preset", PRESET), ("training faces (fitted)", len(crops["train"]) // (2 * cfg.replicates)),
            ("held-out training faces", len(crops["validation"]) // 2),
            ("training crops (box replicates x mirrors)", len(crops["train"])), ("test faces", len(crops[TEST])),
            ("grey crop (pixels), margin", f"{cfg.size}, {cfg.margin:g}"),
            ("boxes", f"{convention.name}: adapter dx, dy, sw, sh = "
                      f"{', '.join(f'{v:.3f}' for v in convention.adapter)} from SynthFace's box"),
            ("adapter fitted on", convention.fitted_on), ("box noise (training)", f"{cfg.box_noise:.0%}"),
            ("epochs, batch", f"{cfg.epochs}, {cfg.batch}")]
    return pd.DataFrame(rows, columns=["", "value"]).astype(str)


def retraining_row(seed: int, history, errors: np.ndarray, shipped: bool) -> dict:
    """One training's line of the retraining table: its seed, test error, last held-out error and label."""
    return {"seed": seed, "shipped": shipped, "mean NME (%)": errors.mean(), "median (%)": np.median(errors),
            "held-out NME, last epoch (%)": history.epochs[-1]["validation"], "converged": history.converged(),
            "precision": history.precision["precision"] + ("-cl" if history.precision.get("memory_format")
                                                             == "channels_last" else "")}


def retraining_reading(table: pd.DataFrame) -> str:
    """How far the trainings of one recipe fall apart on the photo-like test faces."""
    e = table["mean NME (%)"]
    return (f"{len(table)} trainings of one recipe: test NME {e.min():.2f}-{e.max():.2f} % (spread "
            f"{e.max() - e.min():.2f} points, standard deviation {e.std(ddof=1):.2f}); the shipped seed's "
            f"{e[table['shipped']].iloc[0]:.2f} %.")


def error_table(errors: np.ndarray) -> pd.DataFrame:
    """Mean, median and 90th percentile of the per-face NME (%), and the share of faces at 8 % or more."""
    return pd.DataFrame([{"faces": len(errors), "mean NME (%)": errors.mean(), "median (%)": np.median(errors),
                          "90th percentile (%)": np.percentile(errors, 90),
                          "failure@0.08 (%)": 100 * (errors >= 8).mean()}])
