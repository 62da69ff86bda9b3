"""MSRRN chapter experiments: detected face boxes, data and augmentation, scale configurations, the
arms of the claims ledger and their training, SDM + HOG, evaluation, and the tables, figures, speed
and claims ledger each notebook shows.

The notebooks of ``notebooks/msrrn`` call these functions (one section per notebook at the end of this
file); the model is :mod:`falign.papers.msrrn.model`,
the baseline :mod:`falign.baselines.sdm`, what the text gives :mod:`falign.papers.msrrn.published` and the metric
:mod:`falign.kit.protocol300w` (inter-pupil, the paper's, and inter-ocular, RCSR's and CFDRNN's).

Protocol (Experimental results): 300-W, 68 points; train on 3,148 faces, test on common, challenging
and full; every face box from dlib's detector; the cropped face rescaled to 200, 100 and 50 pixels;
landmarks normalised to [0, 1]; training faces augmented with per-pixel Gaussian noise (sigma 0.5),
flips and in-plane rotations uniform in +-15 degrees; 10,000 SGD iterations. SynthFace ``300w-like``
stands in for 300-W unless ``DATA="300w"``. Errors are computed in original image coordinates.
Decisions are marked ``Decision [msrrn.<id>]``.
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from falign.baselines import sdm
from falign.data import detect, transforms
from falign.kit.crops import crop_faces, Crops, load_faces, split_validation
from falign.data.sample import FaceDataset
from falign.base import atomic_files as atomic, paths
from falign.kit import (batching, chapter, effects, ledger, plots, precision, protocol300w, report, timing,
    train as trainer)
from falign.kit.chapter import not_recipe
from falign.kit.ledger import Arm, Claim
from falign.measure.landmarks import get_scheme
from falign.papers.msrrn import model as msrrn, published as paper
from falign.papers.rcsr.model import jittered_initial_shapes

PRESET, SCHEME = "300w-like", "ibug68"
DATASETS = ("synthetic", "300w")          # the DATA it honours (checked before a run)
TEST_SUBSETS = ("common", "challenging")  # "full" is pooled by protocol300w
NORMS = ("inter-pupil", "inter-ocular")   # the paper's first


@dataclass(frozen=True)
class Scale(chapter.Scale):
    """One MSRRN scale: data, crop and network sizes, the training budget shared by every arm, and the
    SDM + HOG baseline (the base adds the ``seeds`` of every arm and the ``precision``). Fields marked
    ``not_recipe`` change no network's training: the test sizes, SDM's settings (its fit keys them
    itself, :func:`train_sdm`), evaluation, timing and plots."""

    n_train: int                       # training faces
    n_val: int                         # further training-split faces held out: the validation curve
    n_test: dict = not_recipe()        # test faces per 300-W subset
    image: int                         # SynthFace render size (pixels)
    size: int                          # the finest scale: side of the face crop (200 in the paper)
    patch: int                         # P, patch side in pixels at every scale
    channels: tuple[int, ...]          # f_RRN's conv channels
    hidden: int                        # f_RRN's hidden fully connected units
    init_channels: tuple[int, ...]     # the initial-shape CNN's conv channels
    epochs: int                        # per arm (every arm the same)
    batch: int
    lr: float                          # the rate before tuning (tune_lr picks each arm's from lr_grid)
    lr_grid: tuple[float, ...] = not_recipe((3e-3, 1e-2, 3e-2))   # the rates every arm's probe tries
    probe_epochs: int = not_recipe(10)  # each probe's epochs (seed 0; its own schedule)
    stages: int = 3                    # T
    margin: float = 0.2                # crop margin around the box (fraction of the box per side)
    momentum: float = 0.9
    lam: float = 5e-4                  # lambda of Eq. 5
    noise: float = 0.5                 # per-pixel Gaussian noise sigma, in grey levels of 0-255
    rotation: float = 15.0             # in-plane rotation, uniform in +-rotation degrees
    flip: bool = True
    upsample: int = 1                  # dlib: image doublings before detecting
    sdm_stages: int = not_recipe(5)
    sdm_inits: int = not_recipe(2)     # jittered starts per training face for SDM (Monte Carlo)
    hog_patch: int = not_recipe(32)    # SDM's HOG patch side (pixels of the finest crop)
    sdm_alpha: float = not_recipe(1.0)
    eval_batch: int = not_recipe(256)
    timing_repeats: int = not_recipe(20)   # timed calls per speed measurement at batch 1
    ced_limit: float = not_recipe(0.3)     # Figs. 3-4: the CED curves' largest error (the paper's 0.08 at full)


# Decision [msrrn.budget] (training): the paper trains 10,000 SGD iterations at an unknown batch size. Every arm of
# a scale trains the same epochs at the same batch and schedule, i.e. the same iterations and samples,
# each at its own tuned learning rate (:func:`tune_lr`). ``small`` is sized for the whole chapter (7 arms
# x 3 seeds, the rate probes, SDM, data and evaluation) to finish within about 45 minutes on 2 CPU cores:
# 800 SynthFace faces, 100/50/25-pixel faces (a quarter of the paper's area at each scale), 8-pixel
# patches, 60 epochs of 25 batches (1,500 iterations per arm, 15% of the paper's). The committed run
# before this one trained 40 epochs (1,000 iterations) with a rate probed on the MSRRN arm only; the
# issue that reviewed it asked for a budget at which the compared arms pass the budget check, so the
# budget was raised to 60 epochs before this run, with no result of it seen. One epoch of MSRRN took
# 2.3 s on one thread (augmentation and data loading included). Every arm's validation curve (150
# held-out faces) decides its convergence label. ``full`` is the paper's sizes (200/100/50, 16-pixel
# patches; 2,848 of its 3,148 training faces, 300 held out) and its 10,000 iterations at batch 64 (about
# 220 epochs).
# Paper: 10,000 iterations of SGD in 10 h on a GTX 1080; batch size not given.
SCALES = {
    # The second look (``second_look``; falign.kit.effects), planned now, before any rerun, and judged at
    # 97.5 % like the first: three more seeds for the arms of the claims the first look leaves undecided,
    # 3 to 6 seeds (at the same spread a t-interval's half-width shrinks about 2.8x: the t quantile falls
    # from 6.2 to 3.2, the standard error by sqrt(2)). Its cost at ``small``: at most the 4 arms x 3 seeds
    # again, about 20 minutes on 2 CPU cores (by the earlier run's times), so the chapter stays within
    # about an hour; at ``gpu`` about 6 minutes more (by estimate); at ``full`` as much again
    # as the first look. ``smoke`` plans none: one seed, and its numbers mean nothing.
    "smoke": Scale(n_train=48, n_val=8, n_test={"common": 12, "challenging": 6}, image=96, size=48, patch=8,
                   channels=(4, 8), hidden=32, init_channels=(4, 8, 8), epochs=2, batch=16, lr=1e-2,
                   lr_grid=(1e-2,), probe_epochs=1,
                   seeds=(0,), second_look=(), sdm_stages=2, sdm_inits=1, hog_patch=16, eval_batch=64,
                   timing_repeats=3, precision="fp32"),
    "small": Scale(n_train=800, n_val=150, n_test={"common": 150, "challenging": 75}, image=128, size=100,
                   patch=8, channels=(16, 32), hidden=256, init_channels=(16, 32, 64), epochs=60, batch=32, lr=1e-2,
                   seeds=(0, 1, 2), second_look=(3, 4, 5)),
    # One GPU (never run yet: no GPU has been lent to this project). The paper's sizes (200/100/50-pixel
    # faces, 16-pixel patches, 512 hidden units; 2,848 training faces and 300 held out) for 40 epochs at
    # batch 64: 44 steps an epoch, 4 arms x 3 seeds, about 21,000 steps (a sixth of the paper's 10,000
    # iterations per arm).
    # Sized by estimate, not measured (book/intro.md, "Scales"): at about 15 ms a step the trainings
    # take about 6 minutes.
    "gpu": Scale(n_train=2848, n_val=300, n_test={"common": 554, "challenging": 135}, image=256, size=200,
                 patch=16, channels=(16, 32), hidden=512, init_channels=(16, 32, 64), epochs=40, batch=64, lr=1e-2,
                 seeds=(0, 1, 2), second_look=(3, 4, 5), hog_patch=64),
    "full": Scale(n_train=2848, n_val=300, n_test={"common": 554, "challenging": 135}, image=256, size=200,
                  patch=16, channels=(16, 32), hidden=512, init_channels=(16, 32, 64), epochs=220, batch=64, lr=1e-2,
                  seeds=(0, 1, 2), second_look=(3, 4, 5), hog_patch=64, ced_limit=0.08),
}


# --------------------------------------------------------------------------------------------------
# Face boxes from dlib's detector
# --------------------------------------------------------------------------------------------------
def _images(faces):
    """The photos of a split, one at a time (real images are decoded on access)."""
    if isinstance(faces, FaceDataset):
        return (s.image for s in faces)
    return iter(faces["images"])


def given_boxes(faces) -> np.ndarray:
    """The dataset's own boxes, (n, 4): SynthFace's detector-like box, 300-W's detector box."""
    if isinstance(faces, FaceDataset):
        return np.stack([s.box for s in faces]).astype(np.float32)
    return np.asarray(faces["detector_boxes"], np.float32)


MIN_IOU = 0.3


def detect_boxes(faces, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """dlib's HOG frontal-face detector on every photo (:func:`falign.data.detect.detect_matching`): the
    detection that overlaps the dataset's box most, (n, 4) (the dataset's box where none does), and
    whether there was one, (n,) bool.

    Decision [msrrn.detector] (data): a photo's face counts as detected when a dlib box overlaps the dataset's
    own box with IoU >= 0.3 (a detection elsewhere is another face or a false alarm). Results are
    cached on disk per data set and ``upsample`` (real photos take a while).
    Paper: 'we detected the face bounding box by the DLIB image processing library' for each face to be
    evaluated; which detector and what is done when it misses are not said."""
    fingerprint = faces.fingerprint if isinstance(faces, FaceDataset) else faces["fingerprint"]
    name = f"{fingerprint}-up{upsample}-iou{MIN_IOU}"
    path = paths.work_dir() / "msrrn" / "dlib-boxes" / f"{name}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["boxes"], saved["found"]
    given = given_boxes(faces)
    boxes = detect.detect_matching(_images(faces), given, upsample=upsample, min_iou=MIN_IOU)
    found = ~np.isnan(boxes).any(1)
    boxes = np.where(found[:, None], boxes, given)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, boxes=boxes, found=found)
    return boxes, found


def face_boxes(faces, calibration: np.ndarray, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The box every face is cropped with, and whether dlib found it.

    Decision [msrrn.missed-faces] (data): where dlib finds no face (profile and occluded faces, small faces),
    the dataset's own box is used instead, moved and scaled like dlib's boxes
    (:func:`falign.data.detect.calibrated`, the calibration measured on the training faces dlib found), so a
    missed face is cropped as if dlib had found it; the notebooks count them per split.
    Paper: Not addressed: dlib's frontal detector misses faces in 300-W (profiles, occlusions).

    Decision [msrrn.train-boxes] (data): the training faces are
    cropped the same way (the paper detects the faces "to be evaluated" and does not say how training
    faces are cropped).
    Paper: Only the faces 'to be evaluated' are said to be detected with dlib."""
    boxes, found = detect_boxes(faces, upsample)
    boxes = np.where(found[:, None], boxes, detect.calibrated(given_boxes(faces), calibration))
    return boxes, found


def load(cfg: Scale, split: str, *, data: str = "synthetic", root: str = "", seed: int = 0):
    """The faces of one split: SynthFace ``300w-like`` arrays, or the real dataset ``data``."""
    n = cfg.n_train + cfg.n_val if split == "train" else cfg.n_test[split]
    return load_faces(data, split, preset=PRESET, n=n, size=cfg.image, seed=seed, root=root)


def calibration_of(train_faces, upsample: int = 1) -> np.ndarray:
    """:func:`falign.data.detect.box_calibration` on the training faces dlib finds (identity when it finds none)."""
    boxes, found = detect_boxes(train_faces, upsample)
    return detect.box_calibration(given_boxes(train_faces), np.where(found[:, None], boxes, np.nan))


def datasets(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0) -> dict[str, Crops]:
    """Grey face crops (``cfg.size`` pixels, ``cfg.margin`` around the detected box) of the training
    faces, the validation faces held out from the training split, and each test subset.

    Decision [msrrn.validation] (training): ``n_val`` training-split faces, drawn at random, are held out for the
    validation curve that decides convergence (the paper trains a fixed 10,000 iterations on all 3,148).
    Paper: No validation set: a fixed 10,000 iterations on all 3,148 training images.

    Decision [msrrn.crop] (data): the square around the box with ``margin`` (0.2 of the box) on each side is
    the "cropped face": dlib's boxes are tight (eyebrows to chin), and the coordinates must lie in
    [0, 1] of the crop ("we normalized the ground-truth coordinates ... in the range of [0, 1]").
    Paper: 'Having obtained the cropped face images, we rescaled them' to 200, 100 and 50 pixels; the crop's
    margin is not given, and the coordinates are normalised to [0, 1]."""
    faces = {s: load(cfg, s, data=data, root=root, seed=seed) for s in ("train", *TEST_SUBSETS)}
    calibration = calibration_of(faces["train"], cfg.upsample)
    out = {}
    for split, f in faces.items():
        boxes, _ = face_boxes(f, calibration, cfg.upsample)
        out[split] = crop_faces(f, cfg.size, cfg.margin, boxes=boxes, grey=True, padding_mode="border")
    out["train"], out["validation"] = split_validation(out["train"], cfg.n_val, seed)
    return out


def detection_remark(table: pd.DataFrame) -> str:
    """The share of each split's crops that come from the calibrated dataset box because dlib missed the
    face (:func:`detection_table`), in words: where most do, the chapter's boxes are mostly the fallback's."""
    missed = table.set_index("split")["missed (%)"]
    parts = ", ".join(f"{missed[s]:.0f}% of the {s} faces" for s in missed.index)
    most = [s for s in missed.index if missed[s] > 50]
    return (f"dlib missed {parts}; those are cropped around the calibrated dataset box. "
            + (f"So most crops of the {', '.join(most)} split(s) come from that fallback box, not from dlib."
               if most else "Most crops come from dlib's own boxes."))


def detection_table(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0) -> pd.DataFrame:
    """Per split: faces, found by dlib, missed (cropped with the calibrated dataset box), and the
    median IoU of the found boxes with the dataset's."""
    rows = []
    for split in ("train", *TEST_SUBSETS):
        f = load(cfg, split, data=data, root=root, seed=seed)
        boxes, found = detect_boxes(f, cfg.upsample)
        overlap = detect.iou(boxes[found], given_boxes(f)[found])
        rows.append({"split": split, "faces": len(found), "found by dlib": int(found.sum()),
                     "missed (calibrated dataset box)": int((~found).sum()),
                     "missed (%)": 100 * float((~found).mean()),
                     "median IoU with the dataset box": float(np.median(overlap)) if found.any() else np.nan})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Training data and augmentation
# --------------------------------------------------------------------------------------------------
def targets(crops: Crops) -> torch.Tensor:
    """The landmarks in [0, 1] crop units (the paper's normalised coordinates)."""
    return msrrn.to_unit(crops.landmarks, crops.size)


class TrainSet(Dataset):
    """Dict batches for :func:`loss`: the uint8 crop and its target in [0, 1] units."""

    def __init__(self, crops: Crops):
        self.images, self.targets = crops.images, targets(crops)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[i], "target": self.targets[i]}


def augment(images: torch.Tensor, target: torch.Tensor, cfg: Scale) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's augmentation on a batch of uint8 crops (B, 1, S, S) and [0, 1] targets (B, N, 2):
    a rotation uniform in +-``rotation`` degrees about the crop centre and a mirror with probability
    1/2 (the landmarks renumbered by the flip permutation) in one resampling per crop (border pixels
    repeat), then per-pixel Gaussian noise. Draws from torch's global generator (seeded per run and
    checkpointed by ``falign.kit.train.fit``).

    Decision [msrrn.augmentation] (data): augmentation is drawn afresh for every batch (online), each face
    getting a new rotation, mirror and noise in every epoch; the paper does not say whether its
    augmented copies were drawn once.
    Paper: 'we augmented the training samples by adding per-pixel Gaussian noise of sigma = 0.5, flipping and
    finally with random in-plane rotations +-15 degrees from a uniform distribution'; online or offline, and
    how many copies, is not said.

    Decision [msrrn.noise-unit] (data): sigma = 0.5 grey levels on 0-255 intensities (``cfg.noise``), the
    unit of the pixels the text starts from. That is below one quantisation step: the other readings
    (sigma = 0.5 on [0, 1] intensities, or on standardised ones) would bury the face under noise as
    strong as its contrast.
    Paper: sigma = 0.5 without a unit."""
    B, S = images.shape[0], images.shape[-1]
    angles = (2 * torch.rand(B) - 1) * cfg.rotation
    affines = transforms.rotation(angles, torch.full((B, 2), (S - 1) / 2))
    if cfg.flip:
        mirror = torch.rand(B) < 0.5
        flipped = transforms.chain(affines, transforms.hflip(S))
        affines = torch.where(mirror[:, None, None], flipped, affines)
    x = transforms.warp_images(images.float() / 255, affines, S, padding_mode="border")
    x = x + cfg.noise / 255 * torch.randn_like(x)
    points, _ = transforms.transform_landmarks(msrrn.to_pixels(target, S), affines,
                                               flip_perm=get_scheme(SCHEME).flip_perm)
    return x, msrrn.to_unit(points, S)


def loss(model: torch.nn.Module, batch: dict, cfg: Scale) -> torch.Tensor:
    """:func:`falign.papers.msrrn.model.loss_fn` on an augmented batch."""
    image, target = augment(batch["image"], batch["target"], cfg)
    image = precision.same_format(image, batch["image"])
    return msrrn.loss_fn(model, {"image": image, "target": target})


# --------------------------------------------------------------------------------------------------
# The arms
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One arm of the claims ledger: a label and the :class:`falign.papers.msrrn.model.MSRRN` switches
    (``stages`` None: the scale's T)."""

    label: str
    shared: bool = True
    multiscale: bool = True
    init: str = "cnn"
    average: bool = True
    stages: int | None = None


# Decision [msrrn.stages-trained] (evaluation): Table 2's "different stages" are read two ways, both reported: a
# model trained with T = 1 and one with T = 2 (``msrrn-T1``, ``msrrn-T2``: the stages coarse to fine, ending
# at the full-size face as T = 3 does, :func:`falign.papers.msrrn.model.stage_sides`), each beside the
# intermediate outputs after stages 1 and 2 of the model trained with T = 3 ("stages" and "stages, one
# model" in the ledger). Whether the paper retrained per T is not said.
# Paper: Table 2 (lost) reports 'performance effects with different stages'; how the 1- and 2-stage results
# were obtained is not said.
#
# Decision [msrrn.shared-control] (evaluation): with Eq. 6's averaging (the paper's reading, ``msrrn``) each
# stage's gradient moves the shared weights by 1/T of what it moves a separate network's, while the
# optimiser's weight decay is not divided, so "shared against separate" also tests a smaller step. The
# control arm ``shared-summed`` shares the weights and sums the stages' gradients: the same step per
# stage's gradient and the same decay as the separate arm, so only the sharing differs. Every arm's
# learning rate is then chosen by one procedure (:func:`tune_lr`), so neither arm is held to another's rate.
# Paper: 'the network parameters W and b are updated by averaging the gradients of different stages' (Eq. 6,
# lost); no learning rate is given.
VARIANTS = {
    "msrrn": Variant("MSRRN (shared weights, gradients averaged, multiscale, CNN start)"),
    "shared-summed": Variant("shared weights, gradients summed (the control: a separate arm's step)", average=False),
    "separate": Variant("separate weights per stage", shared=False),
    "single-scale": Variant("single scale (every stage at the full size)", multiscale=False),
    "mean-shape": Variant("mean-shape start (no initial-shape CNN)", init="mean"),
    "msrrn-T1": Variant("MSRRN trained with T = 1", stages=1),
    "msrrn-T2": Variant("MSRRN trained with T = 2", stages=2),
}
ARMS = tuple(VARIANTS)


def build(cfg: Scale, variant: Variant | str = "msrrn") -> msrrn.MSRRN:
    """The untrained network of an arm at a scale's sizes."""
    v = VARIANTS[variant] if isinstance(variant, str) else variant
    return msrrn.MSRRN(SCHEME, size=cfg.size, stages=v.stages or cfg.stages, patch=cfg.patch, channels=cfg.channels,
                       hidden=cfg.hidden, shared=v.shared, multiscale=v.multiscale, init=v.init,
                       init_channels=cfg.init_channels, init_hidden=cfg.hidden, average=v.average)


def optimizer(cfg: Scale):
    """The ``falign.kit.train.fit`` optimiser factory of every arm.

    Decision [msrrn.optimizer] (training): the paper's SGD, with momentum 0.9 and learning rate ``cfg.lr`` = 0.01
    (neither is given). In 30-epoch probes at ``small`` (seed 0), 0.1 diverged in the second epoch and
    0.01 ended below Adam at 1e-3 (full-set inter-pupil NME 8.6% against 9.4%).
    Paper: Stochastic gradient descent (Eq. 6, lost); learning rate and batch size not given.
    Decision [msrrn.lambda] (training): Eq. 5's lambda ||W||^2 on the weight matrices and kernels only (W, not
    b), as the optimiser's weight decay 2 lambda (the gradient of lambda ||W||^2), lambda = 5e-4 (not
    given).
    Paper: lambda of Eq. 5 is 'the hyper-parameter to balance' the two terms; its value is not given."""

    def make(params):
        params = list(params)
        groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": 2 * cfg.lam},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)

    return make


def schedule(cfg: Scale):
    """Decision [msrrn.schedule] (training): the learning rate drops tenfold for the last quarter of the epochs
    (the paper gives no schedule), so every arm ends on a plateau that its convergence label can read.
    Paper: No learning-rate schedule is given."""
    return trainer.step_decay([max(1, round(0.75 * cfg.epochs))], 0.1)


def mean_shape(crops: Crops) -> torch.Tensor:
    """The training mean shape in [0, 1] crop units (S^0 of the baseline)."""
    return targets(crops).mean(0)


def code_version() -> str:
    """The version of the code that defines and trains every arm (part of every cache key)."""
    return trainer.code_version(msrrn, sys.modules[__name__], trainer)


def validation_nme(val: Crops, device="cpu", batch: int = 256):
    """The validation curve of :func:`falign.kit.train.fit`: the mean inter-ocular NME (%) of the last
    stage on the held-out faces."""
    truth = {"validation": val.ground_truth()}

    def fn(model: torch.nn.Module) -> float:
        final = predict_stages(model, val, device, batch)[-1]
        return float(protocol300w.subset_errors({"validation": final}, truth, SCHEME, "inter-ocular")
                     ["validation"].mean() * 100)

    return fn


def train(cfg: Scale, crops: dict[str, Crops], arm: str = "msrrn", seed: int = 0, *, work=None,
          device: str | torch.device = "cpu", progress: bool = True):
    """Train one arm at one seed on ``crops["train"]``; returns (model in eval mode, history), with a
    validation curve when ``crops`` has "validation". With ``work`` the run is cached in
    ``work/<arm>-<key>`` (key: the training recipe (:func:`falign.kit.chapter.recipe`), the arm, the
    seed, the training and validation crops' fingerprints and the code version), so any notebook
    reloads a finished model. Every arm and seed: ``chapter.grid(functools.partial(train, cfg, crops,
    work=...), ARMS, chapter.seeds(cfg, SEED))``."""
    train_crops, val_crops = crops["train"], crops.get("validation")
    torch.manual_seed(seed)
    model = build(cfg, arm)
    model.mean_shape.copy_(mean_shape(train_crops))
    folder = None if work is None else checkpoint_folder(cfg, crops, arm, seed, work)
    history = trainer.fit(model, functools.partial(loss, cfg=cfg), TrainSet(train_crops), epochs=cfg.epochs,
                          batch_size=cfg.batch, optimizer=optimizer(cfg), scheduler=schedule(cfg), device=device,
                          seed=seed, checkpoint_dir=folder, desc=f"msrrn {arm}", progress=progress,
                          precision=cfg.precision,
                          validate=None if val_crops is None else validation_nme(val_crops, device, cfg.eval_batch))
    return model.eval(), history


def checkpoint_folder(cfg: Scale, crops: dict[str, Crops], arm: str, seed: int, work) -> Path:
    """The cache folder of one arm's training at one seed (:func:`train`'s key)."""
    val_crops = crops.get("validation")
    return trainer.cache_dir(work, arm, recipe=(chapter.recipe(cfg), VARIANTS[arm], seed),
                             data=(crops["train"].fingerprint, None if val_crops is None else val_crops.fingerprint),
                             code=code_version())


def half_budget(cfg: Scale, crops: dict[str, Crops], seeds, lrs: dict[str, float], *, work) -> dict | None:
    """(arm, seed) -> (model, None) for every arm and seed (each at its tuned rate ``lrs``), each with the
    weights its training had after half its optimiser steps (:func:`falign.kit.train.half_weights`, kept
    by :func:`train`'s fit): evaluated like the grid (:func:`evaluate`), they judge the claims at half the
    budget. Evaluation only, nothing is trained; None when any training kept none (it ran elsewhere, or
    before the kit kept them)."""
    return chapter.half_grid(ARMS, seeds, lambda arm, s: checkpoint_folder(tuned(cfg, lrs, arm), crops, arm, s, work),
                             lambda arm: build(cfg, arm), cfg.precision)


def tune_lr(cfg: Scale, crops: dict[str, Crops], arms=ARMS, *, work=None, device="cpu") -> tuple[dict, pd.DataFrame]:
    """Every arm's learning rate, chosen by one procedure before any test face is seen: for each rate of
    ``cfg.lr_grid``, one probe training (seed 0, ``cfg.probe_epochs`` epochs with the scale's schedule)
    and its final validation NME; the rate with the lowest wins (a probe that diverges scores
    infinity). Returns (arm -> rate, the probes' table). The probes are cached like any training."""
    rows = []
    for arm in arms:
        for lr in cfg.lr_grid:
            probe = replace(cfg, lr=lr, epochs=cfg.probe_epochs)
            try:
                _, history = train(probe, crops, arm, 0, work=work, device=device, progress=False)
                value = history.validation[-1] if history.validation else math.inf
            except FloatingPointError:
                value = math.inf
            rows.append({"arm": arm, "lr": lr, "validation NME (%)": value})
    table = pd.DataFrame(rows)
    best = table.loc[table.groupby("arm", sort=False)["validation NME (%)"].idxmin()]
    table["chosen"] = table.index.isin(best.index)
    return dict(zip(best["arm"], best["lr"])), table


def tuned(cfg: Scale, lrs: dict[str, float], arm: str) -> Scale:
    """The scale an arm trains at: ``cfg`` with the arm's tuned rate (:func:`tune_lr`)."""
    return replace(cfg, lr=lrs[arm])


def tiny(cfg: Scale) -> dict:
    """The fields that shrink a scale's data to two training batches (and two faces per held-out and
    test split), for ``falign.tools.trainspeed``: everything else is the scale's."""
    return dict(n_train=2 * cfg.batch, n_val=2, n_test={k: 2 for k in cfg.n_test})


def main_training(cfg: Scale, crops: dict[str, Crops], device: str | torch.device = "cpu") -> list[trainer.History]:
    """One uncached training of the main model (MSRRN, seed 0, with its validation curve) through
    :func:`train`: its history, for ``falign.tools.trainspeed``."""
    return [train(cfg, crops, "msrrn", device=device, progress=False)[1]]


# --------------------------------------------------------------------------------------------------
# SDM + HOG (the hand-crafted baseline, falign.baselines.sdm)
# --------------------------------------------------------------------------------------------------
def _crop_frame(n: int, size: int) -> np.ndarray:
    """The whole crop as a box (edges): places [0, 1] shapes at crop pixels."""
    return np.tile(np.array([[-0.5, -0.5, size - 0.5, size - 0.5]], np.float32), (n, 1))


def train_sdm(cfg: Scale, train_crops: Crops, work=None, seed: int = 0) -> tuple[sdm.SDM, list[float]]:
    """SDM on HOG (RCSR's Table 4 row 1), fit in closed form on the training crops from ``sdm_inits``
    jittered mean shapes per face; cached in ``work`` like the networks. Returns (model, training
    error after each stage, pixels).

    Decision [msrrn.sdm] (evaluation): SDM reads the finest-scale crop (``cfg.size``) with the SIFT-like HOG of
    :mod:`falign.baselines.sdm` over patches of about a third of the crop (``hog_patch``: 32 pixels at
    ``small``, 64 at ``full``) and ``sdm_stages`` (5) ridge stages with penalty ``sdm_alpha`` = 1, on
    unaugmented crops. Chosen on held-out training faces (``small``, 600 to fit, 200 to validate, seed
    0; inter-pupil NME): 16-pixel patches 17.2% / 16.9% at alpha 1 / 10, 32-pixel patches 13.5% /
    13.6%; the RCSR chapter's alpha 0.1 drove the training error to 0.1 pixel and the test error up.
    Paper: The paper compares with SDM's published numbers (Table 1) and says the learned features beat
    handcrafted ones (Fig. 3); it does not run SDM itself."""

    model = sdm.SDM(SCHEME, stages=cfg.sdm_stages, alpha=cfg.sdm_alpha, patch_size=cfg.hog_patch)
    folder = None if work is None else trainer.cache_dir(
        work, "sdm", recipe={k: getattr(cfg, k) for k in ("size", "margin", "sdm_stages", "sdm_inits", "hog_patch",
                                                          "sdm_alpha")} | {"seed": seed},
        data=train_crops.fingerprint, code=trainer.code_version(sdm, sys.modules[__name__]))
    path = None if folder is None else folder / "sdm.pt"
    if path is not None and path.exists():
        state = trainer.load_checkpoint(path)
        model.load_state_dict(state["model"])
        return model.eval(), state["errors"]
    mean = mean_shape(train_crops).numpy()
    model.mean_shape.copy_(torch.from_numpy(mean))
    starts = jittered_initial_shapes(mean, _crop_frame(len(train_crops), cfg.size), cfg.sdm_inits, seed=seed)
    images = train_crops.images.float().repeat_interleave(cfg.sdm_inits, 0) / 255
    errors = model.fit(images, torch.from_numpy(starts).flatten(0, 1),
                       train_crops.landmarks.repeat_interleave(cfg.sdm_inits, 0))
    if path is not None:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
            torch.save({"model": model.state_dict(), "errors": errors}, tmp)
    return model.eval(), errors


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_stages(model: torch.nn.Module, crops: Crops, device="cpu", batch: int = 256) -> torch.Tensor:
    """(T+1, n, N, 2): S^0 .. S^T of an MSRRN (or SDM's stages) in original image pixels."""
    model = model.to(device).eval()
    S = crops.size
    if isinstance(model, sdm.SDM):
        init = msrrn.to_pixels(model.mean_shape.cpu(), S).expand(len(crops), -1, -1).clone()
        fn = lambda x, s: model.predict(x.float() / 255, s)  # noqa: E731
        in_crop = batching.in_batches(fn, crops.images, init, batch=batch, device=device, dim=1)
    else:
        fn = lambda x: msrrn.to_pixels(model.predict(x.float() / 255), S)  # noqa: E731
        in_crop = batching.in_batches(fn, crops.images, batch=batch, device=device, dim=1)
    return torch.stack([crops.to_image(s) for s in in_crop])


def test_sets(crops: dict[str, Crops]) -> dict[str, Crops]:
    """The test subsets of :func:`datasets` (common, challenging; "full" is pooled by protocol300w)."""
    return {s: crops[s] for s in TEST_SUBSETS}


def stage_errors(stages: dict[str, torch.Tensor], tests: dict[str, Crops], norm: str) -> list[dict]:
    """Per stage t, the per-image errors of every subset (full pooled): [{subset: errors}, ...]."""
    truth = protocol300w.ground_truth(tests)
    T = next(iter(stages.values())).shape[0]
    return [protocol300w.subset_errors({s: p[t] for s, p in stages.items()}, truth, SCHEME, norm) for t in range(T)]


def evaluate(models: dict, tests: dict[str, Crops], device="cpu", batch: int = 256) -> tuple[pd.DataFrame, dict]:
    """Every (arm, seed) model's errors after every stage, on every subset and under both normalisers:
    a long table (arm, seed, stage, norm, subset, NME %, AUC@0.08, failure %) and the per-image
    errors ``{(arm, seed, stage, norm): {subset: errors}}`` for the CED curves."""
    rows, errors = [], {}
    truth = protocol300w.ground_truth(tests)
    for (arm, seed), (model, _) in models.items():
        stages = {s: predict_stages(model, c, device, batch) for s, c in tests.items()}
        for norm in NORMS:
            for t, per_subset in enumerate(stage_errors(stages, tests, norm)):
                errors[(arm, seed, t, norm)] = per_subset
                table = protocol300w.evaluate({s: p[t] for s, p in stages.items()}, truth, SCHEME, norm=norm)
                for r in table.to_dict("records"):
                    rows.append({"arm": arm, "seed": seed, "stage": t, "norm": norm, "subset": r["subset"],
                                 "NME (%)": r[f"NME (%, {norm})"], "AUC@0.08": r["AUC@0.08"],
                                 "failure@0.08 (%)": r["failure@0.08 (%)"]})
    return pd.DataFrame(rows), errors


def final_nme(results: pd.DataFrame, arm: str, stage: int | None = None, subset: str = "full") -> list[float]:
    """The ledger's measure: one arm's NME (%) on ``subset`` under the paper's normaliser (inter-pupil)
    after ``stage`` (default the arm's last), per seed in seed order."""
    if stage is None:
        stage = results.loc[results["arm"] == arm, "stage"].max()
    return chapter.per_seed(results, "NME (%)", arm=arm, stage=stage, subset=subset, norm="inter-pupil")


def last_stages(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of :func:`evaluate`'s table after each arm's last stage."""
    return results[results["stage"] == results.groupby("arm")["stage"].transform("max")]


# --------------------------------------------------------------------------------------------------
# Notebook 1: the data
# --------------------------------------------------------------------------------------------------
def data_table(cfg: Scale, crops: dict[str, Crops], scale: str) -> pd.DataFrame:
    """The data at this scale beside the paper's (``published``): faces per split, the face side of
    every stage and the landmarks."""
    n = paper.number
    common, ibug = int(n("text_numbers/lfpw-test") + n("text_numbers/helen-test")), int(n("text_numbers/ibug"))
    ours = [len(crops[s]) for s in ("train", "validation", *TEST_SUBSETS)]
    return pd.DataFrame({
        "item": ["training faces", "validation faces (held out of the training split)", "common test faces",
                 "challenging test faces", "full test faces", "face sides per stage (px)", "landmarks"],
        "paper": [int(n("text_numbers/train-images")), 0, common, ibug, common + ibug,
                  paper.training_protocol()["face_sizes"][::-1], int(n("text_numbers/landmarks"))],
        f"ours ({scale})": [*ours, ours[2] + ours[3], list(msrrn.stage_sides(cfg.size, cfg.stages)),
                            crops["train"].landmarks.shape[1]],
    }).astype(str)


def detector_figure(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0, shown: int = 3):
    """Challenging faces dlib found (its box in cyan) and missed (the calibrated dataset box in
    magenta), each beside the dataset's own box (yellow); returns (figure, calibration)."""
    import matplotlib.pyplot as plt

    faces = load(cfg, "challenging", data=data, root=root, seed=seed)
    _, found = detect_boxes(faces, cfg.upsample)
    calibration = calibration_of(load(cfg, "train", data=data, root=root, seed=seed), cfg.upsample)
    given = given_boxes(faces)
    used, _ = face_boxes(faces, calibration, cfg.upsample)
    order = list(np.flatnonzero(found)[:shown]) + list(np.flatnonzero(~found)[:shown])
    fig, axes = plt.subplots(1, max(1, len(order)), figsize=(2.2 * max(1, len(order)), 2.4), squeeze=False)
    for ax, i in zip(axes[0], order):
        ax.imshow(faces[i].image if isinstance(faces, FaceDataset) else faces["images"][i])
        for box, colour in ((given[i], "yellow"), (used[i], "cyan" if found[i] else "magenta")):
            ax.add_patch(plt.Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec=colour, lw=1))
        ax.set_title("dlib found it" if found[i] else "missed: calibrated box", fontsize=8)
    for ax in axes[0]:
        ax.axis("off")
    fig.tight_layout()
    return fig, calibration


def samples_figure(crops: dict[str, Crops], shown: int = 6):
    """``shown`` crops of the training split and of each test subset, with their landmarks."""
    return plots.crops_grid(crops, ("train", *TEST_SUBSETS), shown, size=3, cell=(1.9, 2.0))


def scales_figure(cfg: Scale, crops: Crops):
    """The first face of ``crops`` at every stage's side, with its ground truth in [0, 1] units
    placed at that side."""
    import matplotlib.pyplot as plt

    sides = msrrn.stage_sides(cfg.size, cfg.stages)
    levels = msrrn.pyramid(crops.float_images(slice(0, 1)), sides)
    shape = targets(crops)[0]
    fig, axes = plt.subplots(1, len(sides), figsize=(2.6 * len(sides), 2.6), squeeze=False)
    for t, (ax, s) in enumerate(zip(axes[0], sides)):
        plots.landmarks(ax, levels[s][0, 0], msrrn.to_pixels(shape, s), size=4, title=f"stage {t + 1}: {s} x {s} px")
    fig.tight_layout()
    return fig


def augmentation_figure(cfg: Scale, train_crops: Crops, seed: int = 0, k: int = 5):
    """The first training crop, ``k`` draws of :func:`augment` from it (the subject's right outer eye
    corner in red, to follow the flip permutation), and sigma = 0.5 read on [0, 1] intensities."""
    import matplotlib.pyplot as plt

    k = min(k, len(train_crops))
    torch.manual_seed(seed)
    x, moved = augment(train_crops.images[:1].repeat(k, 1, 1, 1), targets(train_crops)[:1].repeat(k, 1, 1), cfg)
    eye = get_scheme(SCHEME).outer_eye_corners[0]
    S = train_crops.size
    fig, axes = plt.subplots(1, k + 2, figsize=(1.9 * (k + 2), 2.2))
    plots.landmarks(axes[0], train_crops.images[0], train_crops.landmarks[0], size=3, title="crop")
    axes[0].scatter(*train_crops.landmarks[0, eye], s=14, c="red")
    for j in range(k):
        pts = msrrn.to_pixels(moved[j], S)
        plots.landmarks(axes[j + 1], x[j, 0], pts, size=3, title=f"augmented {j + 1}")
        axes[j + 1].scatter(*pts[eye], s=14, c="red")
    noisy = (train_crops.float_images(slice(0, 1))[0, 0] + 0.5 * torch.randn(S, S)).clamp(0, 1)
    plots.landmarks(axes[-1], noisy, train_crops.landmarks[0, :0], title="σ = 0.5 on [0, 1]")
    fig.tight_layout()
    return fig


def mean_shape_table(crops: dict[str, Crops]) -> pd.DataFrame:
    """The error of the training mean shape placed in every test crop, under both normalisers, in
    original image coordinates (Table 2's first row)."""
    tests = test_sets(crops)
    mean = mean_shape(crops["train"])
    start = {s: c.to_image(msrrn.to_pixels(mean, c.size).expand(len(c), -1, -1)) for s, c in tests.items()}
    truth = protocol300w.ground_truth(tests)
    return pd.concat([protocol300w.evaluate(start, truth, SCHEME, norm=norm, method=f"mean shape ({norm})")
                      for norm in NORMS], ignore_index=True)


# --------------------------------------------------------------------------------------------------
# Notebook 2: the model
# --------------------------------------------------------------------------------------------------
def patches_figure(model: msrrn.MSRRN, crops: Crops, points=(36, 45, 30, 48, 8)):
    """The first face of ``crops`` at every stage's side with its true ``points`` (default: eye
    corners, nose tip, a mouth corner, chin), and the patch the stage cuts around each."""
    import matplotlib.pyplot as plt

    points = list(points)
    levels = msrrn.pyramid(msrrn.standardise(crops.float_images(slice(0, 1))), model.sides)
    truth = targets(crops)[:1]
    fig, axes = plt.subplots(len(model.sides), len(points) + 1,
                             figsize=(1.6 * (len(points) + 1), 1.7 * len(model.sides)), squeeze=False)
    for t, side in enumerate(model.sides):
        image = levels[side]
        axes[t, 0].imshow(image[0, 0], cmap="gray")
        axes[t, 0].scatter(*msrrn.to_pixels(truth[0, points], side).T, s=8, c="red")
        axes[t, 0].set_title(f"stage {t + 1}: {side} px", fontsize=8)
        for ax, k, patch in zip(axes[t, 1:], points, model.patches(image, truth)[0, points, 0]):
            ax.imshow(patch, cmap="gray")
            ax.set_title(f"point {k + 1}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    fig.tight_layout()
    return fig


def layer_tables(model: msrrn.MSRRN, scale: str) -> pd.DataFrame:
    """:func:`falign.papers.msrrn.model.layer_table` of the paper-sized network (``full``) and of
    ``model`` (this run's), one above the other."""
    return pd.concat({"paper-sized (full)": msrrn.layer_table(build(SCALES["full"])),
                      f"this run ({scale})": msrrn.layer_table(model)}, names=["model", "#"]).reset_index(level=0)


def parameters_by_stages(model: msrrn.MSRRN, stages=(1, 2, 3, 4)) -> pd.DataFrame:
    """Regression parameters of ``model`` unrolled to every T in ``stages``, with shared and with
    separate weights, and the initial-shape CNN's (which T does not change)."""

    def regression(T: int, shared: bool) -> int:
        return msrrn.parameter_counts(msrrn.MSRRN(**{**model.config, "stages": T, "shared": shared}))["regression"]

    counts = pd.DataFrame([{"T": T, "shared weights": regression(T, True),
                            "separate weights per stage": regression(T, False)} for T in stages])
    counts["initial-shape CNN"] = msrrn.parameter_counts(model)["initial-shape CNN"]
    return counts


# --------------------------------------------------------------------------------------------------
# Notebook 3: training
# --------------------------------------------------------------------------------------------------
def iterations(cfg: Scale, n_train: int) -> int:
    """Optimiser steps of one training: full batches per epoch times the epochs."""
    return cfg.epochs * (n_train // cfg.batch)


def protocol_table(cfg: Scale, crops: dict[str, Crops], scale: str) -> pd.DataFrame:
    """The training protocol, the paper's (``published.training_protocol``) and this scale's."""
    protocol = paper.training_protocol()
    return pd.DataFrame([
        {"": "paper", "optimiser": "SGD", "learning rate": "not given", "batch": "not given", "lambda": "not given",
         "iterations": protocol["iterations"], "training faces": protocol["train_images"], "seeds": "not given",
         "validation faces": "none"},
        {"": f"ours ({scale})", "optimiser": f"SGD, momentum {cfg.momentum}", "learning rate": cfg.lr,
         "batch": cfg.batch, "lambda": cfg.lam, "iterations": iterations(cfg, len(crops["train"])),
         "training faces": len(crops["train"]), "seeds": len(cfg.seeds), "validation faces": len(crops["validation"])},
    ]).astype(str)


def loss_curves_figure(models: dict):
    """Per arm (columns): every seed's training loss (top) and validation NME (bottom) by epoch."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(ARMS), figsize=(3.4 * len(ARMS), 5.6), sharey="row", squeeze=False)
    for (top, bottom), arm in zip(axes.T, ARMS):
        for (name, s), (_, history) in models.items():
            if name != arm:
                continue
            plots.loss_curve(top, history.losses, label=f"seed {s}", ylabel="training loss (Eq. 5)",
                             title=VARIANTS[arm].label)
            plots.loss_curve(bottom, history.validation, label=f"seed {s}", ylabel="validation NME (%, inter-ocular)",
                             log=False)
        top.title.set_fontsize(8)
    fig.tight_layout()
    return fig


def training_table(models: dict, steps: int) -> pd.DataFrame:
    """Every training of the grid: epochs, ``steps`` (iterations), final loss and validation NME,
    whether it converged (:meth:`falign.kit.train.History.converged`), minutes and parameters."""
    return pd.DataFrame([{"arm": arm, "seed": s, "epochs": len(h.epochs), "iterations": steps,
                          "final loss": h.losses[-1], "final validation NME (%)": h.validation[-1],
                          "converged": h.converged(), "minutes": sum(e["seconds"] for e in h.epochs) / 60,
                          "regression parameters": msrrn.parameter_counts(m)["regression"],
                          "initial-shape CNN parameters": msrrn.parameter_counts(m)["initial-shape CNN"]}
                         for (arm, s), (m, h) in models.items()])


def convergence(models: dict) -> dict[str, bool]:
    """arm -> whether every seed of it converged (:func:`falign.kit.chapter.converged`)."""
    return {arm: chapter.converged(models, arm) for arm in ARMS}


CURVES = "validation_curves"   # results/msrrn/validation_curves.csv: what re-judging reads convergence from


def validation_curves(models: dict) -> pd.DataFrame:
    """Every training's curves, one row per arm, seed and epoch: the training loss and the validation
    NME (%, inter-ocular) that :meth:`falign.kit.train.History.converged` reads. Committed with the
    results (:data:`CURVES`), so :func:`rejudge` recomputes each arm's convergence label by the kit's rule."""
    return chapter.curves(models, "validation NME (%)")


def convergence_from_curves(curves: pd.DataFrame) -> dict[str, bool]:
    """arm -> whether every seed's validation curve in ``curves`` (:func:`validation_curves`'s table)
    converged by :meth:`falign.kit.train.History.converged`; an arm with no rows: False (no evidence)."""
    return chapter.converged_from_curves(curves, "validation NME (%)", ARMS)


def training_time_table(training: pd.DataFrame, steps: int, cfg: Scale, device, scale: str) -> pd.DataFrame:
    """Seconds per iteration and hours for the paper's 10,000 iterations: the paper's (GTX 1080) and
    this run's MSRRN arm (mean over its seeds in ``training``, :func:`training_table`)."""
    per_iteration = training[training["arm"] == "msrrn"]["minutes"].mean() * 60 / steps
    hours, its = paper.number("text_numbers/train-hours"), paper.number("text_numbers/train-iterations")
    return pd.DataFrame([{"": "paper", "device": "NVIDIA GTX 1080", "s per iteration": hours * 3600 / its,
                          "hours for 10,000 iterations": hours},
                         {"": f"ours ({scale}, batch {cfg.batch})", "device": report.describe_device(device),
                          "s per iteration": per_iteration, "hours for 10,000 iterations": per_iteration * its / 3600}])


# --------------------------------------------------------------------------------------------------
# Notebook 4: the results
# --------------------------------------------------------------------------------------------------
ABSENT = "absent from the available text"


def table1(results: pd.DataFrame) -> pd.DataFrame:
    """Table 1's analogue: MSRRN and SDM + HOG after their last stage, mean and sd over the seeds
    (:func:`falign.kit.chapter.mean_sd`) on every subset under both normalisers; the paper's MSRRN row
    (absent); and the other methods' published rows (``published.rebuilt_table1``)."""
    final = last_stages(results)
    stats = chapter.mean_sd(final, ["arm", "norm", "subset"], ["NME (%)"]).set_index(["arm", "norm", "subset"])
    n_seeds = final.loc[final["arm"] == "msrrn", "seed"].nunique()

    def ours(arm: str, label: str, source: str) -> list[dict]:
        return [{"method": label, "normaliser": n, "source": source, "table": "—",
                 **{s: stats.loc[(arm, n, s), "NME (%)"] for s in protocol300w.SUBSETS},
                 **{f"{s} sd": stats.loc[(arm, n, s), "NME (%) sd"] for s in protocol300w.SUBSETS}} for n in NORMS]

    table = pd.DataFrame(ours("msrrn", "MSRRN (ours)", f"this run, {n_seeds} seed(s)")
                         + ours("sdm", "SDM + HOG (ours)", "this run, closed-form fit")
                         + [{"method": "MSRRN (paper)", "normaliser": "inter-pupil", "source": ABSENT, "table": "Table 1"}]
                         + paper.rebuilt_table1().drop(columns="as printed").to_dict("records"))
    return table[["method", "normaliser", *protocol300w.SUBSETS, *[f"{s} sd" for s in protocol300w.SUBSETS],
                  "source", "table"]]


def table2(results: pd.DataFrame) -> pd.DataFrame:
    """Table 2's analogue, per normaliser: the mean shape (the mean-shape arm's S^0), MSRRN's S^0 (the
    initial-shape CNN), MSRRN (T = 3) after each stage, and the models trained with fewer stages after
    their last (the ``msrrn.stages-trained`` decision), mean and sd over the seeds on every subset."""
    T = int(results.loc[results["arm"] == "msrrn", "stage"].max())
    names = ["initial-shape CNN (S⁰)"] + [f"after stage {t} of T = {T}" for t in range(1, T + 1)]
    rows = []
    for norm in NORMS:
        r = results[results["norm"] == norm]
        parts = [("mean shape", r[(r["arm"] == "mean-shape") & (r["stage"] == 0)])]
        parts += [(name, r[(r["arm"] == "msrrn") & (r["stage"] == t)]) for t, name in enumerate(names)]
        parts += [(f"trained with T = {t}", r[(r["arm"] == f"msrrn-T{t}") & (r["stage"] == t)]) for t in range(1, T)
                  if (r["arm"] == f"msrrn-T{t}").any()]
        for label, part in parts:
            stats = chapter.mean_sd(part, ["subset"], ["NME (%)"])
            rows.append({"normaliser": norm, "row": label, **dict(zip(stats["subset"], stats["NME (%)"])),
                         **{f"{s} sd": v for s, v in zip(stats["subset"], stats["NME (%) sd"])}, "paper": ABSENT})
    return pd.DataFrame(rows)


def fig3_curves(errors: dict, cfg: Scale, seed: int, sdm_seed: int, norm: str = "inter-pupil") -> dict:
    """Fig. 3's curves that this run measures: MSRRN after T stages (``seed``), SDM + HOG and the mean
    shape, per-image errors by subset (:func:`evaluate`'s ``errors``)."""
    return {"MSRRN (ours)": errors[("msrrn", seed, cfg.stages, norm)],
            "SDM + HOG (ours)": errors[("sdm", sdm_seed, cfg.sdm_stages, norm)],
            "mean shape": errors[("mean-shape", seed, 0, norm)]}


def fig4_curves(errors: dict, cfg: Scale, seed: int, norm: str = "inter-pupil") -> dict:
    """Fig. 4's curves: MSRRN's S^0 and every stage (``seed``), per-image errors by subset."""
    return {("S⁰ (initial-shape CNN)" if t == 0 else f"stage {t}"): errors[("msrrn", seed, t, norm)]
            for t in range(cfg.stages + 1)}


def examples_figure(model: msrrn.MSRRN, tests: dict[str, Crops], errors: dict, device="cpu",
                    percentiles=(10, 50, 90)):
    """Fig. 5's analogue: per test subset (rows), the faces at ``percentiles`` of ``model``'s error
    (``errors``: per-image errors by subset), its last stage in red over the ground truth in green."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tests), len(percentiles), figsize=(2.5 * len(percentiles), 2.6 * len(tests)),
                             squeeze=False)
    for row, (subset, c) in enumerate(tests.items()):
        e = errors[subset]
        for col, q in enumerate(percentiles):
            i = int(np.argsort(e)[min(len(e) - 1, int(q / 100 * len(e)))])
            pred = msrrn.to_pixels(model.predict(c.float_images(slice(i, i + 1)).to(device))[-1, 0].cpu(), c.size)
            ax = axes[row, col]
            plots.landmarks(ax, c.images[i], c.landmarks[i], size=3, colors=("lime", "lime"))
            ax.scatter(*pred.T, s=3, c="red", linewidths=0)
            ax.set_title(f"{subset}, {q}th pct: NME {100 * e[i]:.1f}%", fontsize=8)
    fig.tight_layout()
    return fig


def speed_table(model: msrrn.MSRRN, cfg: Scale, scale: str, device="cpu", bulk: int = 64) -> pd.DataFrame:
    """Faces per second of the whole forward pass (pyramid, S^0, T stages) on random crops, at batch 1
    (latency, ``cfg.timing_repeats`` timed calls) and ``bulk`` (throughput, 3 calls), for ``model`` and
    for the paper-sized network (speed does not depend on the weights), beside the paper's figures
    and as a ratio to its CPU figure. Moves ``model`` to ``device``."""
    device = torch.device(device)
    full = SCALES["full"]
    cpu_fps = paper.number("text_numbers/cpu-fps")
    rows = [{"": "paper", "model": "MSRRN (paper)", "device": "NVIDIA GTX 1080", "batch": "not given",
             "faces per second": paper.number("text_numbers/gpu-fps")},
            {"": "paper", "model": "MSRRN (paper)", "device": f"Core i7 @ {paper.number('text_numbers/cpu-ghz')} GHz",
             "batch": "not given", "faces per second": cpu_fps}]
    for label, net, size in ((f"ours, trained ({scale}, {cfg.size} px)", model, cfg.size),
                             (f"ours, paper-sized ({full.size} px)", build(full), full.size)):
        net = net.to(device).eval()
        size_of = {"parameters": sum(p.numel() for p in net.parameters()), "GFLOP per face": gflops(net, size, device)}
        for batch in (1, bulk):
            x = torch.rand(batch, 1, size, size, device=device)
            seconds = timing.seconds_per_call(lambda: net.predict(x), device,
                                              cfg.timing_repeats if batch == 1 else 3, warmup=2) / batch
            rows.append({"": "ours", "model": label, "device": report.describe_device(device), "batch": batch,
                         "faces per second": 1 / seconds, **size_of})
    speed = pd.DataFrame(rows)
    speed["/ paper's CPU"] = speed["faces per second"] / cpu_fps
    return speed


def gflops(net: msrrn.MSRRN, size: int, device="cpu") -> float:
    """Floating-point operations (GFLOP, multiply-adds counted as 2) of one face's forward pass, counted
    by torch's FLOP counter: what the network costs whatever the hardware."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.predict(torch.rand(1, 1, size, size, device=device))
    return counter.get_total_flops() / 1e9


def speed_remark(speed: pd.DataFrame) -> str:
    """What the speed ratio to the paper can and cannot say, from :func:`speed_table`: the paper-sized
    rebuild's cost and speed beside the paper's CPU figure. A rebuild far faster than the paper on
    weaker hardware means the paper's network (Fig. 2, lost) was larger than ours, so the ratio
    compares two networks as much as two machines."""
    ours = speed[(speed[""] == "ours") & speed["model"].str.contains("paper-sized") & (speed["batch"] == 1)].iloc[0]
    cpu, ratio = paper.number("text_numbers/cpu-fps"), ours["/ paper's CPU"]
    return (f"The paper-sized rebuild holds {int(ours['parameters']):,} parameters and costs "
            f"{ours['GFLOP per face']:.2f} GFLOP per face; it aligns {ours['faces per second']:.0f} faces per second "
            f"at batch 1 here, {ratio:.1f} times the paper's {cpu:g} on a 3.6 GHz Core i7. "
            + ("A network this small would be as fast on such a CPU, so the paper's network (its Fig. 2, lost) was "
               "probably several times larger than our rebuild: the ratio compares two networks as much as two "
               "machines, and is no evidence that ours is faster." if ratio > 2 else
               "The two are of the same order, so the rebuild's size is plausible for the paper's timing."))


def _seeds(results: pd.DataFrame, arm: str) -> list[int]:
    return sorted(results.loc[results["arm"] == arm, "seed"].unique().tolist())


CLAIM_SUBSETS = ("full", "common", "challenging")
"""The subsets every claim is judged on (the paper reports all three); a claim's id carries the subset
after a slash, except on the full set."""


def claims(results: pd.DataFrame, converged: dict[str, bool], half: pd.DataFrame | None = None,
           look: int = 1) -> ledger.ClaimsLedger:
    """The claims ledger, declared once (the notebook and :func:`rejudge` both build it here), on the
    final-stage NME under the paper's normaliser (inter-pupil, :func:`final_nme`), one value per seed in
    seed order, on each subset of :data:`CLAIM_SUBSETS`:

    * the paper's stages study (Table 2), read two ways (the ``msrrn.stages-trained`` decision): models
      trained with T = 3, 2 and 1 ("stages"), and the outputs after stages 3, 2, 1 of the T = 3 model
      ("stages, one model"), each a chain paired by seed;
    * shared weights against separate weights per stage, with the paper's averaged gradients
      ("shared-weights") and with the control arm's summed gradients ("shared-weights-control", the
      ``msrrn.shared-control`` decision): the book's ablations of a design the paper argues for;
    * the book's ablations of the multiscale input and the initial-shape CNN, each paired with MSRRN by seed;
    * its remark on Fig. 3 that learned features beat handcrafted ones, against SDM + HOG: one
      closed-form fit, a fixed reference (one-sample interval over MSRRN's seeds).

    The text available gives none of MSRRN's own numbers (Tables 1 and 2 and the figures were lost,
    :func:`falign.papers.msrrn.published.absent`), so every claim has ``paper=None`` ("none
    published"): no paper's effect to compare, hence no "absent at the paper's size" and no
    "untestable here" class, and no floor.

    ``results`` is :func:`evaluate`'s table with SDM's rows (arm "sdm"); ``converged`` arm -> whether
    every seed of it converged (:func:`convergence`, or :func:`convergence_from_curves` from the
    committed curves); a claim is gated on the arms it compares only. ``half``: the same table for the
    networks' half-budget weights (:func:`half_budget`), for the budget check; SDM's closed-form fit has
    no budget, so its reference is the same at half. ``look``: 1 on the scale's seeds, 2 with its
    planned ``second_look``."""
    networks = [a for a in ARMS if a in set(results["arm"])]
    if any(_seeds(results, a) != _seeds(results, networks[0]) for a in networks):
        raise ValueError(f"the arms do not share their seeds: {({a: _seeds(results, a) for a in networks})}")
    T = int(results.loc[results["arm"] == "msrrn", "stage"].max())
    book = ledger.ClaimsLedger()
    for subset in CLAIM_SUBSETS:
        def arm(label: str, name: str, stage: int | None = None) -> Arm:
            return Arm(label, final_nme(results, name, stage, subset), converged.get(name, False))

        def at_half(*names) -> list | None:
            if half is None:
                return None
            return [final_nme(half, n, t, subset) if n != "sdm" else final_nme(results, "sdm", None, subset)[0]
                    for n, t in names]

        def add(claim_id: str, text: str, source: str, *arms, half_arms) -> None:
            where = "" if subset == "full" else f"/{subset}"
            book.add(Claim(claim_id + where, f"{text} ({subset} set)", source), *arms, half=at_half(*half_arms),
                     look=look)

        trained = {t: "msrrn" if t == T else f"msrrn-T{t}" for t in range(T, 0, -1)}
        if all(name in networks for name in trained.values()):
            add("stages", "more stages help: a model trained with 3 stages < 2 < 1", "Table 2 (lost)",
                *[arm(f"T = {t}", name) for t, name in trained.items()],
                half_arms=[(name, None) for name in trained.values()])
        add("stages-one-model", "more stages help: after stage 3 < stage 2 < stage 1 of one model (T = 3)",
            "Table 2 (lost); the book's second reading",
            *[arm(f"after stage {t}", "msrrn", t) for t in range(T, 0, -1)],
            half_arms=[("msrrn", t) for t in range(T, 0, -1)])
        add("shared-weights", "shared weights (gradients averaged, Eq. 6) are at least as good as separate weights "
            "per stage", "Proposed method (recurrence, Eq. 6); the book's ablation",
            arm("shared, averaged", "msrrn"), arm("separate", "separate"),
            half_arms=[("msrrn", None), ("separate", None)])
        if "shared-summed" in networks:
            add("shared-weights-control", "shared weights (gradients summed: a separate arm's step) are at least as "
                "good as separate weights per stage", "the book's control of the shared-weights ablation",
                arm("shared, summed", "shared-summed"), arm("separate", "separate"),
                half_arms=[("shared-summed", None), ("separate", None)])
        add("multiscale", "multiscale input beats a single scale at the same budget",
            "Proposed method (multiscale); the book's ablation",
            arm("multiscale", "msrrn"), arm("single scale", "single-scale"),
            half_arms=[("msrrn", None), ("single-scale", None)])
        add("initial-shape-cnn", "the initial-shape CNN beats the mean shape as S⁰ (after T stages)",
            "Proposed method (inference); the book's ablation",
            arm("CNN start", "msrrn"), arm("mean-shape start", "mean-shape"),
            half_arms=[("msrrn", None), ("mean-shape", None)])
        add("learned-features", "learned features beat handcrafted ones (MSRRN against SDM + HOG)",
            "Comparisons with state-of-the-art methods, Fig. 3",
            arm("MSRRN", "msrrn"), Arm.reference("SDM + HOG", final_nme(results, "sdm", None, subset)[0]),
            half_arms=[("msrrn", None), ("sdm", None)])
    return book


def rejudge(results: Path) -> ledger.ClaimsLedger:
    """The ledger of a committed run rebuilt from its files in ``results`` (``results/msrrn``) through
    :func:`claims`, nothing retrained (``python -m falign.kit.ledger rejudge msrrn``):

    * per-seed values: ``errors_per_seed.csv`` (:func:`evaluate`'s table, SDM's rows included), which
      gives every claim; none is left out;
    * convergence: from ``validation_curves.csv`` (:func:`validation_curves`) by the kit's rule where it
      is committed. Where it is not, every arm is marked not converged, for want of evidence: the
      ``small`` run committed before the rule (``training.csv``) keeps only each training's final
      validation NME and the old last-epoch plateau flag, from which
      :meth:`falign.kit.train.History.converged` cannot be recomputed;
    * the half-budget check: from ``errors_per_seed_half.csv`` (:func:`evaluate` of :func:`half_budget`)
      where the run committed it, otherwise "not run".
    """
    results = Path(results)
    table = pd.read_csv(results / "errors_per_seed.csv")
    curves, half = results / f"{CURVES}.csv", results / "errors_per_seed_half.csv"
    converged = (convergence_from_curves(pd.read_csv(curves)) if curves.is_file()
                 else {arm: False for arm in ARMS})
    return claims(table, converged, half=pd.read_csv(half) if half.is_file() else None)


def shared_weights_remark(models: dict, seed: int, ledger_table: pd.DataFrame, lrs: dict[str, float]) -> str:
    """The regression parameters of the shared and separate arms (``seed``'s models), their tuned rates,
    and what the ledger's classes of both readings of "shared against separate" say (the
    ``msrrn.shared-control`` decision): the paper's averaged gradients and the control's summed ones."""
    params = {arm: msrrn.parameter_counts(models[(arm, seed)][0])["regression"] for arm in ("msrrn", "separate")}
    classes = ledger_table.set_index("claim id")["class"]
    lines = [f"regression parameters: shared {params['msrrn']:,}, separate {params['separate']:,} "
             f"({params['separate'] / params['msrrn']:.0f}x); tuned rates: "
             + ", ".join(f"{arm} {lrs[arm]:g}" for arm in ("msrrn", "shared-summed", "separate") if arm in lrs)]
    for claim, reading in (("shared-weights", "gradients averaged (the paper's Eq. 6)"),
                           ("shared-weights-control", "gradients summed (the control: the separate arm's step)")):
        for subset in CLAIM_SUBSETS:
            key = claim + ("" if subset == "full" else f"/{subset}")
            if key in classes:
                cls = classes[key]
                verdict = ("separate weights were better: the paper's 'at least as good' is contradicted"
                           if cls == effects.REVERSED else f"not contradicted (class: {cls})")
                lines.append(f"shared, {reading}, {subset} set: {verdict}")
    return "\n".join(lines)


def headline(results: pd.DataFrame) -> dict[str, float]:
    """The numbers ``run.log`` keeps: every arm's and SDM's mean final-stage NME (full, inter-pupil)."""
    return {f"nme_full_inter_pupil_{arm.replace('-', '_')}": float(np.mean(final_nme(results, arm)))
            for arm in (*ARMS, "sdm")}
