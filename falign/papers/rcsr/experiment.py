"""RCSR chapter experiments: data preparation, scale configurations, training and evaluation.

The notebooks of ``notebooks/rcsr`` call these functions; the model is :mod:`falign.papers.rcsr.model`,
the Table 4 baselines :mod:`falign.papers.rcsr.table4`, the published numbers :mod:`falign.papers.rcsr.published`
and the metric :mod:`falign.measure.protocol300w`.

Protocol (Sec. 4, 4.1): 300-W, 68 points; train on 3,148 faces, test on common / challenging / full;
grey crops around the face box; the training set is doubled with mirrored copies and replicated with
noise on the boxes; the initial shape is the training mean shape placed in the box, jittered during
training (Sec. 3.1.1). SynthFace ``300w-like`` stands in for 300-W. A part of the *training* faces is
held out: it gives every training its validation curve (the convergence label) and the stopping
rule its threshold (Sec. 4.3's procedure); the test sets are never used for either. Errors are
computed in original image coordinates, normalised by the outer-eye-corner distance (and, beside
it, by the eye centres). Decisions are marked ``Decision [rcsr.<id>]``.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from falign.kit import atomic_files as atomic, batching, timing
from falign import papers
from falign.measure import protocol300w
from falign.kit import train as trainer
from falign.data import transforms
from falign.data.crops import Crops, concat, crop_faces, load_faces
from falign.data.sample import FaceDataset
from falign.measure.landmarks import get_scheme
from falign.kit.ledger import FAILS, NOT_CONVERGED, ONE_SEED, Arm
from falign.papers.rcsr import model as rcsr, table4 as rcsr_table4
from falign.baselines import sdm

PRESET, SCHEME = "300w-like", "ibug68"
DATASETS = ("synthetic", "300w")   # the DATA it honours (checked before a run)
TEST_SUBSETS = ("common", "challenging")      # "full" is pooled by protocol300w
NME, NME_PUPIL = "NME (%, inter-ocular)", "NME (%, inter-pupil)"
MAX_STEPS = int(papers.number("rcsr", "text_numbers/max-steps"))    # Sec. 4.3: the rule recurs at most 13 times
PAPER_GAMMA = papers.number("rcsr", "text_numbers/gamma")           # Sec. 4.3: the paper's threshold, 0.01


@dataclass(frozen=True)
class Scale:
    """One RCSR scale: data sizes and augmentation, network sizes, one optimisation budget for every
    recurrent model, the seeds, and the variants the figures train (Fig. 5's depth/FC grid, Fig. 7's
    recurrence counts)."""

    n_train: int                  # training faces the models fit (before mirrors and replicates)
    n_val: int                    # held-out training faces: validation curve and gamma, never test faces
    n_test: dict                  # test faces per 300-W subset, in 300-W's 554 : 135 ratio
    image: int                    # SynthFace render size (pixels)
    size: int                     # grey crop fed to the network
    margin: float                 # crop margin around the box (fraction of the box per side)
    patch: int                    # shape-indexed patch (CNN features)
    hog_patch: int                # patch for the HOG features
    hidden: int                   # ConvGRU memory channels (the traditional GRU: rcsr.gru_units units)
    fc_width: int
    widths: dict                  # channel multiplier of each CNN (srcnn, lenet, fauc; 1 = the paper's)
    steps: int                    # T, recurrences in training
    replicates: int               # box-noise copies of the training set (Sec. 4.1: 3)
    inits: int                    # jittered initial shapes per crop (Sec. 3.1.1)
    box_noise: float
    init_noise: float
    epochs: int                   # every recurrent model of the chapter (Table 4, Figs. 5 and 7)
    finetune_epochs: int          # Sec. 4.1's second round on fresh replicates
    batch: int
    lr: float
    grad_clip: float
    decay_every: int              # the LR is halved every this many epochs
    sdm_stages: int
    sdm_alpha: float
    seeds: tuple                  # training seeds of every model a claim compares (added to SEED)
    figure_seeds: tuple           # training seeds of the Fig. 5 / Fig. 7 variants (no claims)
    fig5: tuple                   # (depth, fc layers) pairs
    fig7: tuple                   # recurrence counts
    eval_steps: int               # recurrences run for Fig. 6 / Fig. 7
    precision: str                # falign.kit.precision: "auto" (bf16 only where native and faster) or "fp32"


SCALES = {
    # CI: numbers mean nothing, every notebook in seconds.
    "smoke": Scale(n_train=16, n_val=6, n_test={"common": 12, "challenging": 3}, image=64, size=40, margin=0.1,
                   patch=17, hog_patch=16, hidden=8, fc_width=64,
                   widths={"srcnn": 0.25, "lenet": 0.25, "fauc": 0.125}, steps=3, replicates=1, inits=1,
                   box_noise=0.05, init_noise=0.03, epochs=2, finetune_epochs=0, batch=8, lr=1e-3, grad_clip=1.0,
                   decay_every=10, sdm_stages=3, sdm_alpha=0.1, seeds=(0,), figure_seeds=(0,),
                   fig5=((0, 1), (5, 1)), fig7=(2, 3), eval_steps=6, precision="fp32"),
    # CPU-sized, for 2 cores: every compared model x 3 seeds. 800 training faces (3,200 samples an epoch:
    # mirrors x 2 jittered starts) and 150 held-out ones; the test sets have 300-W's sizes (554 + 135).
    # 48x48 crops, 17x17 patches; SRCNN at half width, LeNet at a quarter, FAUC at an eighth. Every
    # recurrent model trains 8 epochs at batch 16, the rate halved every 3: in probes the ConvGRU + SRCNN,
    # GRU + SRCNN and GRU + HOG validation curves all ended on a plateau, and 400 faces x 12 epochs
    # reached a worse held-out error (10.6%) than 800 x 8 (9.1%) at a similar number of updates.
    # Speed, measured as CPU time per training sample on 1 thread (ConvGRU + SRCNN, batch 16): 15.6 ms
    # before this scale's speed work; about 2.2 ms with the dense features (rcsr.dense-features, 7x);
    # 1.6 ms with bf16 autocast and channels-last as well (1.35x more; this AMD CPU has avx512-bf16 but
    # no AMX; falign.kit.precision now picks bf16 only where native and measured faster); fused Adam makes the optimiser step 12x faster for a 23M-parameter GRU. The other models:
    # GRU + SRCNN 1.0 ms, GRU + HOG 0.9 ms, ConvGRU + LeNet 2.8 ms, ConvGRU + FAUC 8.5 ms, depth-5 SRCNN
    # 5.2 ms, RCSR10 3.1 ms; inference 0.08-0.2 ms per face and recurrence. Summed over the chapter's 23
    # trainings (25,600 samples each) with evaluation and data, about 2,000 s of single-thread CPU time:
    # an estimated 20-30 minutes on 2 cores.
    "small": Scale(n_train=800, n_val=150, n_test={"common": 554, "challenging": 135}, image=128, size=48,
                   margin=0.1, patch=17, hog_patch=16, hidden=32, fc_width=256,
                   widths={"srcnn": 0.5, "lenet": 0.25, "fauc": 0.125}, steps=5, replicates=1, inits=2,
                   box_noise=0.05, init_noise=0.03, epochs=8, finetune_epochs=0, batch=16, lr=1e-3,
                   grad_clip=1.0, decay_every=3, sdm_stages=5, sdm_alpha=0.1, seeds=(0, 1, 2), figure_seeds=(0,),
                   fig5=((0, 1), (0, 2), (5, 1)), fig7=(5, 10), eval_steps=20, precision="auto"),
    # One GPU (never run yet: no GPU has been lent to this project). The full training split and crop
    # (128 pixels, 25-pixel patches), SRCNN at the paper's width, LeNet at half, FAUC at a quarter; every
    # recurrent model 10 epochs at batch 64 (89 steps an epoch: mirrors, one start, one replicate), the
    # rate halved every 4; Fig. 5 at depths 0, 5, 10 and Fig. 7 at 5, 10, 20 recurrences: 24 trainings,
    # about 21,000 steps. Sized by estimate, not measured (book/intro.md, "Scales"): at about 20 ms a
    # step (five recurrences of small convolutions and grid sampling, launch-bound) the trainings take
    # about 7 minutes.
    "gpu": Scale(n_train=2848, n_val=300, n_test={"common": 554, "challenging": 135}, image=256, size=128,
                 margin=0.1, patch=25, hog_patch=32, hidden=64, fc_width=512,
                 widths={"srcnn": 1.0, "lenet": 0.5, "fauc": 0.25}, steps=5, replicates=1, inits=1,
                 box_noise=0.05, init_noise=0.03, epochs=10, finetune_epochs=0, batch=64, lr=1e-3,
                 grad_clip=1.0, decay_every=4, sdm_stages=5, sdm_alpha=0.1, seeds=(0, 1, 2), figure_seeds=(0,),
                 fig5=((0, 1), (5, 1), (10, 1)), fig7=(5, 10, 20), eval_steps=40, precision="auto"),
    # The paper's protocol (GPU): Sec. 4.1's augmentation (mirrors, 3 box-noise replicates, then the
    # fine-tuning round on 3 new replicates), batch 204, 200 + 200 epochs, learning rate halved every 10
    # epochs; Fig. 5's whole grid and Fig. 7's four models. 300 of the 3,148 training faces are held out.
    "full": Scale(n_train=2848, n_val=300, n_test={"common": 554, "challenging": 135}, image=256, size=128,
                  margin=0.1, patch=25, hog_patch=32, hidden=64, fc_width=512,
                  widths={"srcnn": 1.0, "lenet": 1.0, "fauc": 1.0}, steps=5, replicates=3, inits=1,
                  box_noise=0.05, init_noise=0.03, epochs=200, finetune_epochs=200, batch=204, lr=3e-4,
                  grad_clip=1.0, decay_every=10, sdm_stages=5, sdm_alpha=0.1, seeds=(0, 1, 2), figure_seeds=(0,),
                  fig5=tuple((d, f) for d in (0, 5, 10, 15, 20) for f in (1, 2, 3)), fig7=(5, 10, 20, 30),
                  eval_steps=40, precision="fp32"),
}
# Decision [rcsr.budget] (training): every recurrent model of the chapter (the six Table 4 rows, Fig. 5's and Fig. 7's
# variants) trains the same ``epochs`` on the same samples with the same schedule, and every model a claim
# compares trains once per seed of ``seeds``, so each claim is judged on equal budgets with a spread.
# Fig. 5's extra variants train with ``figure_seeds`` only and enter no claim.
# Paper: Every model, ablations included, trains with the schedule of Sec. 4.1 (200 + 200 epochs); one run
# each, no seeds reported.

# Decision [rcsr.optimizer] (training): Adam with global-norm gradient clipping at every scale. The paper's SGD at lr
# 0.01 belongs to its (Caffe) loss scale: under Eq. 8 as computed here (rcsr.rcsr_loss) SGD 0.01 with
# momentum 0.9 diverged within 13 iterations on SynthFace, and Adam 1e-3 without clipping showed loss
# spikes. The paper's schedule shape (x0.5 every 10 epochs) is kept for "full"; the CPU scales halve the
# rate every ``decay_every`` epochs of their shorter budget.
# Paper: Sec. 4.1: SGD, learning rate 0.01 halved every 10 epochs, batch 204, 200 epochs, then 200 more on new
# noisy replicates.


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def mirror(crops: Crops) -> Crops:
    """Sec. 4.1's mirrored copies: flip each crop left-right, landmarks renumbered by the flip
    permutation (the subject's left eye stays point 36..41) and the affine composed with the flip.
    SynthFace's pose and 3DMM truth are not mirrored and are dropped."""
    S, perm = crops.size, torch.tensor(np.array(get_scheme(crops.scheme).flip_perm), dtype=torch.long)
    landmarks = crops.landmarks[:, perm].clone()
    landmarks[..., 0] = S - 1 - landmarks[..., 0]
    return crops.replace(images=crops.images.flip(-1), landmarks=landmarks, visible=crops.visible[:, perm],
                         affines=transforms.chain(crops.affines, transforms.hflip(S)), name=crops.name + ":mirrored",
                         M=None, p=None, pose=None, landmarks68=None, visible68=None)


def replicate_boxes(cfg: Scale, given: torch.Tensor, seed: int, round: int = 0) -> list[torch.Tensor]:
    """The boxes of Sec. 4.1's training replicates: one jittered copy of ``given`` per replicate
    (``round`` 1: the fine-tuning round's new replicates; 2: the held-out faces' replicate)."""
    return [transforms.jitter_boxes(given, cfg.box_noise, cfg.box_noise, rng=seed * 1000 + 100 * round + r)
            for r in range(cfg.replicates if round < 2 else 1)]


def _faces(cfg: Scale, split: str, data: str, root: str, seed: int):
    """The faces of a split (the training split: the fitted faces, then the held-out ones) and their boxes."""
    n = cfg.n_train + cfg.n_val if split == "train" else cfg.n_test[split]
    faces = load_faces(data, split, preset=PRESET, n=n, size=cfg.image, seed=seed, root=root)
    given = torch.as_tensor(np.stack([s.box for s in faces]) if isinstance(faces, FaceDataset)
                            else faces["detector_boxes"], dtype=torch.float32)
    return faces, given


def _augmented(cfg: Scale, faces, given: torch.Tensor, rows: range, seed: int, round: int, part: str) -> Crops:
    """The faces ``rows`` in every replicate of ``round``, each with its mirrored copy (Sec. 4.1), with a
    fingerprint of their own (the source data's, the part and the round)."""
    parts = []
    for boxes in replicate_boxes(cfg, given, seed, round):
        crops = crop_faces(faces, cfg.size, cfg.margin, boxes=boxes, grey=True, padding_mode="border").subset(rows)
        parts += [crops, mirror(crops)]
    out = concat(parts)
    key = f"{out.fingerprint}|{part}|{round}|{rows.start}:{rows.stop}|{cfg.box_noise}|{cfg.size}|{cfg.margin}"
    return out.replace(name=f"{out.name}:{part}", fingerprint=hashlib.sha1(key.encode()).hexdigest()[:20])


def load(cfg: Scale, split: str, *, data: str = "synthetic", root: str = "", seed: int = 0,
         train: bool = False) -> Crops:
    """Grey crops of one test subset around the detector-like box as given, or (``train=True``) the
    training crops of the fitted faces: ``replicates`` copies whose boxes are jittered
    (:func:`falign.data.transforms.jitter_boxes`: centre, width and height by up to ``box_noise`` of
    the box, uniform; Decision [rcsr.box-noise] (data): the paper gives no magnitude), each with its mirrored copy.
    The mean shape is placed in each crop's :meth:`Crops.crop_boxes`.
    Paper: Training data replicated 3 times with noise on the boxes, plus mirrored copies (Sec. 4.1); the
    magnitude is not given."""
    faces, given = _faces(cfg, split, data, root, seed)
    if train:
        return _augmented(cfg, faces, given, range(cfg.n_train), seed, 0, "fit")
    return crop_faces(faces, cfg.size, cfg.margin, boxes=given, grey=True, padding_mode="border")


def datasets(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0) -> dict[str, Crops]:
    """The training crops, the held-out training faces (``validation``), the fine-tuning round's fresh
    replicates where the scale has one (``finetune``), and one test set per 300-W subset."""
    # Decision [rcsr.validation] (data): the last ``n_val`` faces of the training split are held out, one box-noise
    # replicate and its mirrors, started from the placed mean shape like a test face. They give every
    # training its validation curve (its convergence label) and the stopping rule its threshold
    # (rcsr.gamma); the test sets are used for nothing but the tables.
    # Paper: No validation set: all 3,148 training images are used for training (Sec. 4.1).
    faces, given = _faces(cfg, "train", data, root, seed)
    n_val = cfg.n_val
    if len(given) < cfg.n_train + cfg.n_val:   # a partial copy of a real dataset (warned when loaded): same share held out
        n_val = max(1, round(len(given) * cfg.n_val / (cfg.n_train + cfg.n_val)))
    n_fit = min(cfg.n_train, len(given) - n_val)
    fit, held = range(n_fit), range(n_fit, n_fit + n_val)
    out = {"train": _augmented(cfg, faces, given, fit, seed, 0, "fit"),
           "validation": _augmented(cfg, faces, given, held, seed, 2, "validation")}
    if cfg.finetune_epochs:
        out["finetune"] = _augmented(cfg, faces, given, fit, seed, 1, "finetune")
    out.update({s: load(cfg, s, data=data, root=root, seed=seed) for s in TEST_SUBSETS})
    return out


def initial_shapes(model: torch.nn.Module, crops: Crops) -> torch.Tensor:
    """h^_0: the model's mean shape placed in every crop's face box, (n, N, 2)."""
    return torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(), crops.crop_boxes().numpy()))


class TrainSet(Dataset):
    """Dict batches for :func:`falign.papers.rcsr.model.loss_fn`: ``inits`` jittered initial shapes per
    crop (Sec. 3.1.1), drawn once with ``seed`` so every epoch sees the same set."""

    def __init__(self, crops: Crops, mean: np.ndarray, inits: int, noise: float, seed: int):
        self.crops = crops
        starts = rcsr.jittered_initial_shapes(mean, crops.crop_boxes().numpy(), inits, shift=noise,
                                              scale=noise, seed=seed)
        self.inits = torch.from_numpy(starts).reshape(-1, *starts.shape[2:])
        self.k = inits

    def __len__(self) -> int:
        return len(self.inits)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = i // self.k
        return {"image": self.crops.images[j].float() / 255, "init": self.inits[i],
                "target": self.crops.landmarks[j]}


# --------------------------------------------------------------------------------------------------
# Models and training
# --------------------------------------------------------------------------------------------------
def build(cfg: Scale, kind: str = "convgru-srcnn", **variant) -> torch.nn.Module:
    """A Table 4 architecture at a scale's sizes; ``variant`` overrides (depth, fc_layers, steps, ...).
    The traditional GRU gets the ConvGRU's parameter count (:func:`falign.papers.rcsr.model.gru_units`).
    Decision [rcsr.baseline-width] (model): at the CPU scales every CNN is thinned by its ``widths`` entry, LeNet and FAUC
    more than SRCNN, to fit the budget; FAUC, whose three 5x5 layers cost most, most.
    Paper: LeNet and FAUC keep their published widths (Sec. 5.2)."""
    if kind == "sdm":
        return rcsr_table4.build_model(kind, stages=cfg.sdm_stages, alpha=cfg.sdm_alpha,
                                       patch_size=cfg.hog_patch, **variant)
    unit = rcsr_table4.TABLE4[rcsr_table4.KINDS.get(kind, kind)][1]["unit"]
    sizes = dict(steps=cfg.steps, fc_width=cfg.fc_width,
                 hidden=cfg.hidden if unit == "convgru" else rcsr.gru_units(cfg.hidden, cfg.patch))
    if kind == "gru-hog":
        sizes.update(patch_size=cfg.hog_patch)
    else:
        sizes.update(patch_size=cfg.patch, cnn_width=cfg.widths[kind.split("-")[1]])
    return rcsr_table4.build_model(kind, **{**sizes, **variant})


@torch.no_grad()
def validation_error(model: torch.nn.Module, crops: Crops, device="cpu") -> float:
    """The validation value of a training: mean NME (%, inter-ocular) after T recurrences on the
    held-out training faces."""
    shapes = predict_steps(model, crops, device=device)[-1]
    return 100 * float(np.mean(protocol300w.subset_errors({"v": shapes}, {"v": crops.ground_truth()}, SCHEME)["v"]))


def train(cfg: Scale, crops: dict[str, Crops], *, kind: str = "convgru-srcnn", variant: dict | None = None,
          epochs: int | None = None, device: str | torch.device = "cpu", seed: int = 0, checkpoint_dir=None,
          progress: bool = True):
    """Train one model from scratch on ``crops["train"]`` and return (model in eval mode, history).

    Recurrent models: ``falign.kit.train.fit`` on Eq. 8, lr halved every ``decay_every`` epochs, the
    validation error on ``crops["validation"]`` after every epoch; with ``crops["finetune"]`` and
    ``finetune_epochs`` > 0, Sec. 4.1's second round on fresh replicates, its epochs appended to the
    history. SDM: closed-form ridge per stage; its history is the training error after each stage.
    """
    torch.manual_seed(seed)
    train_crops, validation = crops["train"], crops.get("validation")
    model = build(cfg, kind, **(variant or {}))
    mean = rcsr.mean_shape(train_crops.landmarks.numpy(), train_crops.crop_boxes().numpy())
    model.mean_shape.copy_(torch.from_numpy(mean))
    data = TrainSet(train_crops, mean, cfg.inits, cfg.init_noise, seed)
    if kind == "sdm":
        images = train_crops.images.float().repeat_interleave(cfg.inits, 0) / 255
        errors = model.to(device).fit(images, data.inits, train_crops.landmarks.repeat_interleave(cfg.inits, 0))
        return model.eval(), errors
    epochs = epochs or cfg.epochs
    validate = None if validation is None else (lambda m: validation_error(m, validation, device))
    rounds = [(data, epochs, seed, checkpoint_dir, "")]
    if crops.get("finetune") is not None and cfg.finetune_epochs:
        rounds.append((TrainSet(crops["finetune"], mean, cfg.inits, cfg.init_noise, seed + 1), cfg.finetune_epochs,
                       seed + 1, None if checkpoint_dir is None else f"{checkpoint_dir}/finetune", " fine-tune"))
    history = trainer.History()
    for round_data, n, round_seed, folder, label in rounds:
        decay = trainer.step_decay(list(range(cfg.decay_every, n, cfg.decay_every)), 0.5)
        part = trainer.fit(model, rcsr.loss_fn, round_data, epochs=n, batch_size=cfg.batch,
                           optimizer=fused_adam(cfg.lr), scheduler=decay, device=device, seed=round_seed,
                           checkpoint_dir=folder, desc=f"rcsr {kind}{label}", progress=progress,
                           grad_clip=cfg.grad_clip, precision=cfg.precision, validate=validate)
        history.epochs += part.epochs
        history.precision = part.precision
    return model.eval(), history


def fused_adam(lr: float):
    """Adam as one fused kernel over all parameters: the same update as ``falign.kit.train.adam``, about 12
    times faster per step on the CPU for the 23M parameters of a large GRU (measured, 1 thread)."""
    return lambda params: torch.optim.Adam(params, lr=lr, fused=True)


def converged(history) -> bool:
    """The convergence label of a training: a plateau of its validation curve
    (:meth:`falign.kit.train.History.plateaued`); SDM, fit in closed form, always is."""
    return True if isinstance(history, list) else history.plateaued()


def code_version() -> str:
    """The version of the code that defines and trains the Table 4 models (part of every cache key)."""
    return trainer.code_version(rcsr, sdm, rcsr_table4, sys.modules[__name__], trainer)


def seeds(cfg: Scale, base: int = 0, figure: bool = False) -> list[int]:
    """The training seeds of every compared model (``figure``: of the figures' variants), offset by SEED."""
    return [base + s for s in (cfg.figure_seeds if figure else cfg.seeds)]


def trained(cfg: Scale, crops: dict[str, Crops], work, name: str, *, kind: str = "convgru-srcnn",
            variant: dict | None = None, epochs: int | None = None, device="cpu", seed: int = 0,
            progress: bool = True):
    """:func:`train` cached in ``work/<name>-<key>``, so any notebook gets the same model: a finished
    recurrent run resumes at once; SDM (closed form, no epochs) is saved whole. The key covers the
    scale, kind, variant, epochs, seed, the training, validation and fine-tuning crops' fingerprints
    and the code version, so a changed recipe, data set or code never reuses a stale model."""
    epochs = epochs or cfg.epochs
    data = [crops[k].fingerprint for k in ("train", "validation", "finetune") if crops.get(k) is not None]
    folder = trainer.cache_dir(work, name, recipe=(cfg, kind, variant, epochs, seed), data=data, code=code_version())
    if kind != "sdm":
        return train(cfg, crops, kind=kind, variant=variant, epochs=epochs, device=device, seed=seed,
                     checkpoint_dir=folder, progress=progress)
    path = folder / "sdm.pt"
    if path.exists():
        state = trainer.load_checkpoint(path)
        model = build(cfg, kind, **(variant or {}))
        model.load_state_dict(state["model"])
        return model.eval(), state["errors"]
    model, errors = train(cfg, crops, kind=kind, variant=variant, device=device, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        torch.save({"model": model.cpu().state_dict(), "errors": errors}, tmp)
    return model, errors


def trained_seeds(cfg: Scale, crops: dict[str, Crops], work, name: str, *, kind: str = "convgru-srcnn",
                  variant: dict | None = None, device="cpu", base_seed: int = 0, figure: bool = False,
                  progress: bool = False) -> dict[int, tuple]:
    """seed -> (model, history) of :func:`trained` for every seed of the scale (:func:`seeds`)."""
    return {s: trained(cfg, crops, work, name, kind=kind, variant=variant, device=device, seed=s, progress=progress)
            for s in seeds(cfg, base_seed, figure)}


def training_seconds(history) -> float:
    """Measured wall time of a training (0 for SDM's closed form, whose fit is not timed per epoch)."""
    return 0.0 if isinstance(history, list) else float(sum(e["seconds"] for e in history.epochs))


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def predict_steps(model: torch.nn.Module, crops: Crops, steps: int | None = None, device="cpu",
                  batch: int = 128) -> torch.Tensor:
    """(steps+1, n, N, 2) shapes after every recurrence, in original image coordinates."""
    model = model.to(device).eval()
    out = batching.in_batches(lambda x, init: model.predict(x.float() / 255, init, steps), crops.images,
                              initial_shapes(model, crops), batch=batch, device=device, dim=1)
    return torch.stack([crops.to_image(s) for s in out])


def predict_adaptive(model: rcsr.RCSR, crops: Crops, gamma: float, max_steps: int = MAX_STEPS, device="cpu",
                     batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 4.3's stopping rule with threshold ``gamma``: final shapes in image coordinates (n, N, 2)
    and steps used (n,)."""
    model = model.to(device).eval()
    shapes, steps = batching.in_batches(lambda x, init: model.predict_adaptive(x.float() / 255, init, gamma, max_steps),
                                        crops.images, initial_shapes(model, crops), batch=batch, device=device)
    return crops.to_image(shapes), steps


def ground_truth(tests: dict[str, Crops]) -> dict[str, torch.Tensor]:
    return {s: c.ground_truth() for s, c in tests.items()}


def scores(preds: dict[str, torch.Tensor], tests: dict[str, Crops], method: str | None = None,
           eval_scheme: str | None = None) -> pd.DataFrame:
    """The 300-W rows of one set of predictions (``protocol300w.evaluate``) under both normalisers: the
    outer eye corners (RCSR's, with AUC and failure rate) and the eye centres (``NME (%, inter-pupil)``)."""
    truth = ground_truth(tests)
    out = protocol300w.evaluate(preds, truth, SCHEME, eval_scheme=eval_scheme, method=method)
    pupil = protocol300w.evaluate(preds, truth, SCHEME, norm="inter-pupil", eval_scheme=eval_scheme)
    out.insert(out.columns.get_loc(NME) + 1, NME_PUPIL, pupil[NME_PUPIL].to_numpy())
    return out


def evaluate(model: torch.nn.Module, tests: dict[str, Crops], *, steps: int | None = None,
             gamma: float | None = None, method: str | None = None, eval_scheme: str | None = None,
             device="cpu") -> pd.DataFrame:
    """:func:`scores` of one model after ``steps`` recurrences (default T), or with the stopping rule
    when ``gamma`` is given (recurrent models only)."""
    if gamma is not None:
        preds = {s: predict_adaptive(model, c, gamma, device=device)[0] for s, c in tests.items()}
    else:
        preds = {s: predict_steps(model, c, steps, device)[-1] for s, c in tests.items()}
    return scores(preds, tests, method, eval_scheme)


@torch.no_grad()
def curves(model: rcsr.RCSR, sets: dict[str, Crops], max_steps: int, device="cpu") -> pd.DataFrame:
    """Fig. 6 (and Fig. 7): per set and recurrence t = 1..max_steps, the mean NME (%) and the mean
    normalised shape increment (:func:`falign.papers.rcsr.model.normalised_increment`, Sec. 4.3); common and
    challenging are also pooled as "full"."""
    eyes = get_scheme(SCHEME).outer_eye_corners
    shapes = {s: predict_steps(model, c, max_steps, device) for s, c in sets.items()}
    truth = ground_truth(sets)
    if {"common", "challenging"} <= set(shapes):
        shapes["full"] = torch.cat([shapes["common"], shapes["challenging"]], dim=1)
        truth["full"] = torch.cat([truth["common"], truth["challenging"]])
    rows = []
    for s, per_step in shapes.items():
        for t in range(1, max_steps + 1):
            nme = protocol300w.subset_errors({s: per_step[t]}, {s: truth[s]}, SCHEME)[s]
            step = rcsr.normalised_increment(per_step[t - 1], per_step[t], eyes)
            rows.append({"subset": s, "step": t, NME: 100 * float(np.mean(nme)),
                         "normalised increment": float(step.mean())})
    return pd.DataFrame(rows)


def calibrate(model: rcsr.RCSR, validation: Crops, max_steps: int = MAX_STEPS, device="cpu") -> float:
    """Sec. 4.3's threshold for one model (:func:`falign.papers.rcsr.model.calibrate_gamma`).

    Decision [rcsr.gamma] (evaluation): the paper's procedure, the mean normalised increment at the recurrence of the lowest
    mean error, run per model on the held-out training faces (never the test sets, which Sec. 4.3
    used) over the 13 steps the rule may take; the chapter reports it beside the paper's 0.01.
    Paper: Sec. 4.3 sets gamma to 0.01, 'the normalized shape increment when the minimum error is achieved',
    read off the common, challenging and full test sets.
    """
    curve = curves(model, {"validation": validation}, max_steps, device)
    return rcsr.calibrate_gamma(curve[NME].to_numpy(), curve["normalised increment"].to_numpy())


def table1_rows(model: rcsr.RCSR, tests: dict[str, Crops], gamma: float, device="cpu") -> pd.DataFrame:
    """Table 1's three RCSR rows for one model, the same model after 5 and 10 recurrences and with the
    stopping rule at its calibrated ``gamma``, and a fourth with the paper's gamma = 0.01."""
    return pd.concat([
        evaluate(model, tests, steps=5, method="RCSR 5 recurrences", device=device),
        evaluate(model, tests, steps=10, method="RCSR 10 recurrences", device=device),
        evaluate(model, tests, gamma=gamma, method="RCSR adaptive", device=device),
        evaluate(model, tests, gamma=PAPER_GAMMA, method=f"RCSR adaptive, gamma = {PAPER_GAMMA:g}", device=device),
    ], ignore_index=True)


def table1_per_seed(models: dict[int, tuple], crops: dict[str, Crops], gamma: dict[int, float],
                    device="cpu") -> pd.DataFrame:
    """:func:`table1_rows` of every seed's model (``models``: seed -> (model, history), ``gamma``: seed ->
    its threshold), with ``seed`` and ``gamma`` columns."""
    tests = {s: crops[s] for s in TEST_SUBSETS}
    return pd.concat([table1_rows(m, tests, gamma[s], device).assign(seed=s, gamma=gamma[s])
                      for s, (m, _) in models.items()], ignore_index=True)


def points_per_seed(models: dict[int, tuple], crops: dict[str, Crops], gamma: dict[int, float],
                    device="cpu") -> pd.DataFrame:
    """Tables 2-3 for every seed's model: the stopping rule on the common set scored on 68 and on 49
    points (``method`` "68 landmarks" / "49 landmarks"), both normalisers."""
    common = {"common": crops["common"]}
    rows = []
    for s, (m, _) in models.items():
        preds = {"common": predict_adaptive(m, crops["common"], gamma[s], device=device)[0]}
        rows += [scores(preds, common, f"{n} landmarks", e).assign(seed=s) for e, n in ((None, 68), ("ibug49", 49))]
    return pd.concat(rows, ignore_index=True)


def paper_vs_ours_sd(published: pd.DataFrame, ours: pd.DataFrame, value: str = NME) -> pd.DataFrame:
    """A published 300-W table with our mean (``protocol300w.paper_vs_ours``) and, after it, our
    standard deviation over seeds per subset (``ours``: :func:`mean_sd` rows by method and subset)."""
    table = protocol300w.paper_vs_ours(published, ours, value=value)
    for subset in [c for c in published.columns if c in protocol300w.SUBSETS]:
        sd = ours[ours["subset"] == subset].set_index("method")[f"{value} sd"]
        table.insert(table.columns.get_loc(f"{subset} (ours)") + 1, f"{subset} (ours sd)", table["method"].map(sd))
    return table


def stopping_summary(models: dict[int, tuple], crops: dict[str, Crops], gamma: dict[int, float],
                     device="cpu") -> pd.DataFrame:
    """Per seed and subset (and full): gamma, the mean step at which the stopping rule stopped the test
    faces and the share it stopped before the cap."""
    tests = {s: crops[s] for s in TEST_SUBSETS}
    rows = []
    for s, (m, _) in models.items():
        steps = stopping_steps(m, tests, gamma[s], device)
        for subset, part in [*steps.groupby("subset", sort=False), ("full", steps)]:
            rows.append({"seed": s, "subset": subset, "gamma": gamma[s], "mean step": part["step"].mean(),
                         "stopped before the cap (%)": 100 * (part["step"] < MAX_STEPS).mean()})
    return pd.DataFrame(rows)


def stopping_steps(model: rcsr.RCSR, tests: dict[str, Crops], gamma: float, device="cpu") -> pd.DataFrame:
    """Per test face: the recurrence at which the stopping rule stopped it (Fig. 6's histogram)."""
    return pd.concat([pd.DataFrame({"subset": s, "face": np.arange(len(c)),
                                    "step": predict_adaptive(model, c, gamma, device=device)[1].numpy()})
                      for s, c in tests.items()], ignore_index=True)


def mean_sd(per_seed: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds of ``values``, one row per ``by``, with the number
    of seeds: the form every multi-seed table of the chapter takes."""
    g = per_seed.groupby(by, sort=False)
    out = g[values].mean()
    for v in values:
        out[f"{v} sd"] = g[v].std(ddof=1)
    out["seeds"] = g.size()
    return out.reset_index()


def per_seed(df: pd.DataFrame, method: str, subset: str = "full", value: str = NME) -> list[float]:
    """One method's values per seed (in seed order) on one subset: a ledger arm."""
    rows = df[(df["method"] == method) & (df["subset"] == subset)]
    return rows.sort_values("seed")[value].tolist()


def inference_seconds(model: torch.nn.Module, cfg: Scale, device="cpu", repeats: int = 5) -> float:
    """Seconds per face at batch 1 for T recurrences (Fig. 5's x axis; median after a warm-up)."""
    model = model.to(device).eval()
    x = torch.rand(1, 1, cfg.size, cfg.size, device=device)
    init = torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(),
                                              np.array([[8, 8, cfg.size - 8, cfg.size - 8]]))).to(device)
    return timing.seconds_per_call(lambda: model.predict(x, init), device, repeats)


# --------------------------------------------------------------------------------------------------
# Table 4, Fig. 5, Fig. 7
# --------------------------------------------------------------------------------------------------
def table4_models(cfg: Scale, crops: dict[str, Crops], work, *, device="cpu", base_seed: int = 0,
                  progress: bool = False) -> dict[str, dict[int, tuple]]:
    """Table 4's models, ``kind -> {seed: (model, history)}``: every recurrent row at the one budget
    ``cfg.epochs`` and every seed of the scale, SDM fit in closed form; cached under the kind's name, so
    ConvGRU + SRCNN is the training notebook's model."""
    return {kind: trained_seeds(cfg, crops, work, kind, kind=kind, device=device, base_seed=base_seed,
                                progress=progress) for kind in rcsr_table4.TABLE4}


def table4_results(models: dict[str, dict[int, tuple]], crops: dict[str, Crops], device="cpu") -> pd.DataFrame:
    """Score :func:`table4_models` per kind and seed on the test subsets: with the stopping rule (each
    recurrent model at the gamma calibrated on the held-out training faces, as Table 4's last row is
    "RCSR adaptive"; SDM after its stages) and after exactly T recurrences, with each training's
    convergence label and gamma."""
    tests = {s: crops[s] for s in TEST_SUBSETS}
    rows = []
    for kind, by_seed in models.items():
        label = rcsr_table4.TABLE4[kind][0]
        for s, (model, history) in by_seed.items():
            gamma = np.nan if kind == "sdm" else calibrate(model, crops["validation"], device=device)
            info = dict(kind=kind, seed=s, converged=converged(history), gamma=gamma)
            at_T = evaluate(model, tests, method=label, device=device).assign(scoring="T recurrences", **info)
            rule = at_T if kind == "sdm" else evaluate(model, tests, gamma=gamma, method=label, device=device)
            rows += [at_T, rule.assign(scoring="stopping rule", **info)]
    return pd.concat(rows, ignore_index=True)


def fig5_variants(cfg: Scale) -> dict[str, dict]:
    """Fig. 5's grid at this scale: name "depth-d-fc-f" -> RCSR keyword arguments."""
    return {f"depth-{d}-fc-{f}": {"depth": d, "fc_layers": f} for d, f in cfg.fig5}


def fig7_variants(cfg: Scale) -> dict[str, dict]:
    """Fig. 7's models RCSR5/10/20/30 at this scale. Decision [rcsr.fig7-weights] (training): Sec. 4.4's printed weights, 10^w with
    w evenly spaced in [-2, 2] (``loss_schedule="sec4.4"``), since that section trains them.
    Paper: Sec. 4.4 trains RCSR5/10/20/30 with weights 10^w, w evenly spaced in [-2, 2], and says they follow
    Sec. 3.1.1 (10^(t/T))."""
    return {f"RCSR{T}": {"steps": T, "loss_schedule": "sec4.4"} for T in cfg.fig7}


def ledger_arm(df: pd.DataFrame, name: str, value: str = NME, **where) -> Arm:
    """A claims-ledger arm from per-seed rows: the rows matching ``where`` (column=value), one value per
    seed in seed order, labelled not converged unless every row's ``converged`` is true."""
    rows = df
    for column, wanted in where.items():
        rows = rows[rows[column] == wanted]
    if rows.empty:
        raise ValueError(f"no rows for arm {name!r} ({where})")
    rows = rows.sort_values("seed")
    return Arm(name, rows[value].to_numpy(), converged=bool(rows["converged"].all()) if "converged" in rows else True)


def training_evidence(models: dict[str, dict[int, tuple]]) -> pd.DataFrame:
    """Per model kind, means over seeds of what its trainings show: the held-out error after the first
    and the last epoch and its best, the last training loss (Eq. 8), the parameters, and the share of
    seeds that converged. SDM (closed form) has no curves (NaN)."""
    rows = []
    for kind, by_seed in models.items():
        model = next(iter(by_seed.values()))[0]
        histories = [h for _, h in by_seed.values() if not isinstance(h, list)]
        curves_ = [h.validation for h in histories]
        rows.append({"kind": kind, "method": rcsr_table4.TABLE4.get(kind, (kind,))[0],
                     "validation, epoch 1": np.mean([c[0] for c in curves_]) if curves_ else np.nan,
                     "validation, best": np.mean([min(c) for c in curves_]) if curves_ else np.nan,
                     "validation, last": np.mean([c[-1] for c in curves_]) if curves_ else np.nan,
                     "training loss, last": np.mean([h.losses[-1] for h in histories]) if histories else np.nan,
                     "parameters": rcsr_table4.learned_numbers(model),
                     "converged": np.mean([converged(h) for _, h in by_seed.values()])})
    return pd.DataFrame(rows)


def reason(better: pd.Series, worse: pd.Series) -> str:
    """The most likely reason, read off :func:`training_evidence`, why ``better`` (the arm the paper
    says is better) did not clearly beat ``worse`` on the test sets; one sentence with the numbers it
    rests on."""
    a, b = better["method"], worse["method"]
    if better["converged"] < 1 or worse["converged"] < 1:
        return f"not every training of {a} and {b} reached a validation plateau, so the budget is too short."
    if np.isnan(worse["validation, last"]):
        return (f"{b} is fit in closed form and needs no training, while {a}'s held-out error was still "
                f"{better['validation, last']:.2f}% after this scale's budget (it started at "
                f"{better['validation, epoch 1']:.2f}% after one epoch).")
    if better["validation, last"] < worse["validation, last"]:
        return (f"{a} is ahead on the held-out training faces ({better['validation, last']:.2f}% against "
                f"{worse['validation, last']:.2f}%) but not clearly on the test faces, whose conditions (the "
                f"near-frontal common set, the hard challenging set) differ from the training faces'.")
    gap_first = better["validation, epoch 1"] - worse["validation, epoch 1"]
    gap_last = better["validation, last"] - worse["validation, last"]
    if gap_first > 0 and gap_last < gap_first:
        return (f"{a} learns more slowly: its held-out error trailed {b}'s by {gap_first:.2f} points after one "
                f"epoch and by {gap_last:.2f} after the last, so the gap was still closing when the budget ended.")
    if better["training loss, last"] < worse["training loss, last"]:
        return (f"{a} fits the training faces better (final loss {better['training loss, last']:.3g} against "
                f"{worse['training loss, last']:.3g}) but not the held-out ones ({better['validation, last']:.2f}% "
                f"against {worse['validation, last']:.2f}%): it overfits the training faces.")
    return (f"{a} is worse on the training faces too (final loss {better['training loss, last']:.3g} against "
            f"{worse['training loss, last']:.3g}) with {better['parameters']:,} parameters against "
            f"{worse['parameters']:,}: at this scale's widths and budget it is the weaker model.")


def explain(claim: pd.Series, why: str) -> str:
    """One line of the Discussion for a claim (a row of the ledger) that did not hold: its verdict, the
    margin against the spread, and ``why``, the most likely reason computed from the run."""
    head = f"“{claim['claim']}”"
    if claim["verdict"] == NOT_CONVERGED:
        return f"{head} has no verdict: not every training of its arms reached a validation plateau."
    if claim["verdict"] == ONE_SEED:
        return f"{head} is inconclusive with one seed per arm (no spread); where it leans: {why}"
    spread = f"margin {claim['margin']:+.3g} against 2 pooled sd = {2 * claim['pooled sd']:.2g}"
    if claim["verdict"] == FAILS:
        return f"{head} fails ({spread}), most likely because {why}"
    return f"{head} is inconclusive ({spread}: the seeds differ more than the arms); {why}"


def step_evidence(models: dict[int, tuple], validation: Crops, max_steps: int, device="cpu") -> pd.Series:
    """From the held-out training faces, means over seeds: the recurrence of the lowest error, the error
    at steps 5 and 10, the lowest error itself (for the stopping-rule and recurrence claims)."""
    rows = []
    for m, _ in models.values():
        c = curves(m, {"validation": validation}, max_steps, device).set_index("step")[NME]
        rows.append({"best step": c.idxmin(), "lowest": c.min(), "step 5": c.get(5, np.nan), "step 10": c.get(10, np.nan)})
    return pd.DataFrame(rows).mean()


# --------------------------------------------------------------------------------------------------
# Figures 10 and 11
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def convgru_states(model: rcsr.RCSR, images: torch.Tensor, init: torch.Tensor, steps: int) -> torch.Tensor:
    """The memory H_t after every recurrence (Fig. 11), (steps, B, hidden, h, w) for a ConvGRU: read
    with a forward hook on the recurrent unit, so the model runs exactly as in inference."""
    states = []
    handle = model.gru.register_forward_hook(lambda module, args, output: states.append(output.detach()))
    try:
        model.eval().predict(images, init, steps)
    finally:
        handle.remove()
    return torch.stack(states)


def first_layer_filters(model: rcsr.RCSR) -> np.ndarray:
    """The first convolution's filters (C, k, k), in descending order of their variance, as Fig. 10
    shows them."""
    weights = model.features.cnn[0].weight.detach().cpu()[:, 0].numpy()
    return weights[np.argsort(-weights.reshape(len(weights), -1).var(axis=1), kind="stable")]
