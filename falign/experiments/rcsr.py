"""RCSR chapter experiments: data preparation, scale configurations, training and evaluation.

The notebooks of ``notebooks/rcsr`` call these functions; the model is :mod:`falign.models.rcsr`,
the Table 4 baselines :mod:`falign.models.rcsr_table4`, the published numbers :mod:`falign.papers.rcsr`
and the metric :mod:`falign.protocol300w`.

Protocol (Sec. 4, 4.1): 300-W, 68 points; train on 3,148 faces, test on common / challenging / full;
grey crops around the face box; the training set is doubled with mirrored copies and replicated with
noise on the boxes; the initial shape is the training mean shape placed in the box, jittered during
training (Sec. 3.1.1). SynthFace ``300w-like`` stands in for 300-W. Errors are computed in original
image coordinates, normalised by the outer-eye-corner distance. Decisions are marked ``Decision [rcsr.<id>]``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from falign import atomic, batching, protocol300w, timing
from falign import train as trainer
from falign.data import transforms
from falign.data.crops import Crops, concat, crop_faces, load_faces
from falign.data.sample import FaceDataset
from falign.landmarks import get_scheme
from falign.models import rcsr, rcsr_table4, sdm

PRESET, SCHEME = "300w-like", "ibug68"
DATASETS = ("synthetic", "300w")   # the DATA it honours (checked before a run)
TEST_SUBSETS = ("common", "challenging")      # "full" is pooled by protocol300w


@dataclass(frozen=True)
class Scale:
    """One RCSR scale: data sizes and augmentation, network sizes, optimisation, and the variants the
    figures train (Fig. 5's depth/FC grid, Fig. 7's recurrence counts)."""

    n_train: int                  # training faces (before mirrors and replicates)
    n_test: dict                  # test faces per 300-W subset
    image: int                    # SynthFace render size (pixels)
    size: int                     # grey crop fed to the network
    margin: float                 # crop margin around the box (fraction of the box per side)
    patch: int                    # shape-indexed patch (CNN features)
    hog_patch: int                # patch for the HOG features
    hidden: int                   # recurrent state channels (ConvGRU) / units (GRU)
    fc_width: int
    cnn_width: float              # SRCNN channel multiplier
    steps: int                    # T, recurrences in training
    replicates: int               # box-noise copies of the training set (Sec. 4.1: 3)
    inits: int                    # jittered initial shapes per crop (Sec. 3.1.1)
    box_noise: float
    init_noise: float
    epochs: int                   # the main model
    ablation_epochs: int          # every other Table 4 / Fig. 5 / Fig. 7 model
    finetune_epochs: int          # Sec. 4.1's second round on fresh replicates
    batch: int
    lr: float
    grad_clip: float
    decay_every: int              # the LR is halved every this many epochs
    sdm_stages: int
    sdm_alpha: float
    patch_gradient: bool          # gradient through the patch positions (end to end through the sampler)
    fig5: tuple                   # (depth, fc layers) pairs
    fig7: tuple                   # recurrence counts
    eval_steps: int               # recurrences run for Fig. 6 / Fig. 7
    baseline_width: float | None = None   # LeNet / FAUC channel multiplier (None: cnn_width)


SCALES = {
    # CI: numbers mean nothing, every notebook in seconds.
    "smoke": Scale(n_train=16, n_test={"common": 12, "challenging": 6}, image=64, size=40, margin=0.1,
                   patch=17, hog_patch=16, hidden=8, fc_width=64, cnn_width=0.25, steps=3, replicates=1,
                   inits=1, box_noise=0.05, init_noise=0.03, epochs=1, ablation_epochs=1, finetune_epochs=0,
                   batch=8, lr=1e-3, grad_clip=1.0, decay_every=10, sdm_stages=3, sdm_alpha=0.1,
                   patch_gradient=False, fig5=((0, 1), (0, 2)), fig7=(2, 3), eval_steps=6),
    # CPU-sized (2 cores): 48x48 crops, 17x17 patches, SRCNN at half width and LeNet/FAUC at a quarter,
    # 250 faces (500 crops with the mirrors) with 2 jittered starts each. The main model trains 30
    # epochs (learning rate halved every 10, the paper's schedule), every ablation model 3 (Decision [rcsr.ablation-budget]):
    # timing probes (1 thread) put one epoch of ConvGRU + SRCNN at about 25 s, and the whole chapter
    # must fit in about half an hour on 2 cores. The CNN-feature models are still far from converged.
    "small": Scale(n_train=250, n_test={"common": 150, "challenging": 75}, image=128, size=48, margin=0.1,
                   patch=17, hog_patch=16, hidden=32, fc_width=256, cnn_width=0.5, baseline_width=0.25,
                   steps=5, replicates=1, inits=2, box_noise=0.05, init_noise=0.03, epochs=30, ablation_epochs=3,
                   finetune_epochs=0, batch=16, lr=1e-3, grad_clip=1.0, decay_every=10, sdm_stages=5,
                   sdm_alpha=0.1, patch_gradient=False, fig5=((0, 1), (0, 2), (2, 1)), fig7=(5, 10),
                   eval_steps=20),
    # The paper's protocol (GPU): Sec. 4.1's augmentation (mirrors, 3 box-noise replicates, fine-tuning
    # on 3 new replicates), batch 204, 200 + 200 epochs, learning rate halved every 10 epochs.
    "full": Scale(n_train=3148, n_test={"common": 554, "challenging": 135}, image=256, size=128, margin=0.1,
                  patch=25, hog_patch=32, hidden=64, fc_width=512, cnn_width=1.0, steps=5, replicates=3,
                  inits=1, box_noise=0.05, init_noise=0.03, epochs=200, ablation_epochs=200, finetune_epochs=200,
                  batch=204, lr=3e-4, grad_clip=1.0, decay_every=10, sdm_stages=5, sdm_alpha=0.1,
                  patch_gradient=True, fig5=tuple((d, f) for d in (0, 5, 10, 15, 20) for f in (1, 2, 3)),
                  fig7=(5, 10, 20, 30), eval_steps=40),
}

# Decision [rcsr.optimizer]: Adam with global-norm gradient clipping at every scale. The paper's SGD at lr
# 0.01 belongs to its (Caffe) loss scale: under Eq. 8 as computed here (rcsr.rcsr_loss) SGD 0.01 with
# momentum 0.9 diverged within 13 iterations on SynthFace, and Adam 1e-3 without clipping showed loss
# spikes. The paper's schedule shape (x0.5 every 10 epochs) is kept for "full".


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


def load(cfg: Scale, split: str, *, data: str = "synthetic", root: str = "", seed: int = 0,
         train: bool = False) -> Crops:
    """Grey crops of one split (the mean shape is placed in each crop's :meth:`Crops.crop_boxes`).

    Test crops use the detector-like box as given. Training crops (Sec. 4.1) come in ``replicates``
    copies whose boxes are jittered (:func:`falign.data.transforms.jitter_boxes`: centre, width and
    height by up to ``box_noise`` of the box, uniform; Decision [rcsr.box-noise]: the paper gives no magnitude), each with its mirrored copy.
    """
    n = cfg.n_train if train else cfg.n_test[split]
    faces = load_faces(data, split, preset=PRESET, n=n, size=cfg.image, seed=seed, root=root)
    given = torch.as_tensor(np.stack([s.box for s in faces]) if isinstance(faces, FaceDataset)
                            else faces["detector_boxes"], dtype=torch.float32)
    parts = []
    for boxes in replicate_boxes(cfg, given, seed) if train else [given]:
        crops = crop_faces(faces, cfg.size, cfg.margin, boxes=boxes, grey=True, padding_mode="border")
        parts += [crops, mirror(crops)] if train else [crops]
    return concat(parts)


def replicate_boxes(cfg: Scale, given: torch.Tensor, seed: int) -> list[torch.Tensor]:
    """The boxes of Sec. 4.1's training replicates: one jittered copy of ``given`` per replicate."""
    return [transforms.jitter_boxes(given, cfg.box_noise, cfg.box_noise, rng=seed * 1000 + r)
            for r in range(cfg.replicates)]


def datasets(cfg: Scale, *, data: str = "synthetic", root: str = "", seed: int = 0) -> dict[str, Crops]:
    """The training crops (augmented) and one test set per 300-W subset."""
    out = {"train": load(cfg, "train", data=data, root=root, seed=seed, train=True)}
    out.update({s: load(cfg, s, data=data, root=root, seed=seed) for s in TEST_SUBSETS})
    return out


def initial_shapes(model: torch.nn.Module, crops: Crops) -> torch.Tensor:
    """h^_0: the model's mean shape placed in every crop's face box, (n, N, 2)."""
    return torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(), crops.crop_boxes().numpy()))


class TrainSet(Dataset):
    """Dict batches for :func:`falign.models.rcsr.loss_fn`: ``inits`` jittered initial shapes per
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
    Decision [rcsr.baseline-width] (small scale): LeNet and FAUC are thinned by ``baseline_width`` to fit the CPU budget."""
    if kind == "sdm":
        return rcsr_table4.build_model(kind, stages=cfg.sdm_stages, alpha=cfg.sdm_alpha,
                                     patch_size=cfg.hog_patch, **variant)
    width = cfg.cnn_width if kind.endswith("srcnn") else (cfg.baseline_width or cfg.cnn_width)
    sizes = dict(steps=cfg.steps, hidden=cfg.hidden, fc_width=cfg.fc_width,
                 patch_gradient=cfg.patch_gradient)
    if kind == "gru-hog":
        sizes.update(patch_size=cfg.hog_patch)
    else:
        sizes.update(patch_size=cfg.patch, cnn_width=width)
    return rcsr_table4.build_model(kind, **{**sizes, **variant})


def train(cfg: Scale, train_crops: Crops, *, kind: str = "convgru-srcnn", variant: dict | None = None,
          epochs: int | None = None, finetune_crops: Crops | None = None, device: str | torch.device = "cpu",
          seed: int = 0, checkpoint_dir=None, progress: bool = True):
    """Train one model from scratch and return (model in eval mode, history).

    Recurrent models: ``falign.train.fit`` on Eq. 8, lr halved every ``decay_every`` epochs; with
    ``finetune_crops`` and ``finetune_epochs`` > 0, Sec. 4.1's second round on fresh replicates.
    SDM: closed-form ridge per stage; its history is the training error after each stage.
    """
    torch.manual_seed(seed)
    model = build(cfg, kind, **(variant or {}))
    mean = rcsr.mean_shape(train_crops.landmarks.numpy(), train_crops.crop_boxes().numpy())
    model.mean_shape.copy_(torch.from_numpy(mean))
    data = TrainSet(train_crops, mean, cfg.inits, cfg.init_noise, seed)
    if kind == "sdm":
        images = train_crops.images.float().repeat_interleave(cfg.inits, 0) / 255
        errors = model.to(device).fit(images, data.inits, train_crops.landmarks.repeat_interleave(cfg.inits, 0))
        return model.eval(), errors
    epochs = epochs or cfg.epochs
    decay = trainer.step_decay(list(range(cfg.decay_every, epochs, cfg.decay_every)), 0.5)
    history = trainer.fit(model, rcsr.loss_fn, data, epochs=epochs, batch_size=cfg.batch,
                          optimizer=trainer.adam(cfg.lr), scheduler=decay, device=device, seed=seed,
                          checkpoint_dir=checkpoint_dir, desc=f"rcsr {kind}", progress=progress,
                          grad_clip=cfg.grad_clip)
    if finetune_crops is not None and cfg.finetune_epochs:
        data = TrainSet(finetune_crops, mean, cfg.inits, cfg.init_noise, seed + 1)
        more = trainer.fit(model, rcsr.loss_fn, data, epochs=cfg.finetune_epochs, batch_size=cfg.batch,
                           optimizer=trainer.adam(cfg.lr), scheduler=decay, device=device, seed=seed + 1,
                           checkpoint_dir=None if checkpoint_dir is None else f"{checkpoint_dir}/finetune",
                           desc=f"rcsr {kind} fine-tune", progress=progress, grad_clip=cfg.grad_clip)
        history.epochs += more.epochs
    return model.eval(), history


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
def predict_steps(model: torch.nn.Module, crops: Crops, steps: int | None = None, device="cpu",
                  batch: int = 64) -> torch.Tensor:
    """(steps+1, n, N, 2) shapes after every recurrence, in original image coordinates."""
    model = model.to(device).eval()
    out = batching.in_batches(lambda x, init: model.predict(x.float() / 255, init, steps), crops.images,
                              initial_shapes(model, crops), batch=batch, device=device, dim=1)
    return torch.stack([crops.to_image(s) for s in out])


def predict_adaptive(model: rcsr.RCSR, crops: Crops, gamma: float = 0.01, max_steps: int = 13,
                     device="cpu", batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 4.3's stopping rule: final shapes in image coordinates (n, N, 2) and steps used (n,)."""
    model = model.to(device).eval()
    shapes, steps = batching.in_batches(lambda x, init: model.predict_adaptive(x.float() / 255, init, gamma, max_steps),
                                        crops.images, initial_shapes(model, crops), batch=batch, device=device)
    return crops.to_image(shapes), steps


def ground_truth(tests: dict[str, Crops]) -> dict[str, torch.Tensor]:
    return {s: c.ground_truth() for s, c in tests.items()}


def evaluate(model: torch.nn.Module, tests: dict[str, Crops], *, mode: str = "steps", steps: int | None = None,
             method: str | None = None, eval_scheme: str | None = None, device="cpu") -> pd.DataFrame:
    """The 300-W table of one model (``protocol300w.evaluate``): after ``steps`` recurrences (default
    T) or with the stopping rule (``mode="adaptive"``, recurrent models only)."""
    if mode == "adaptive":
        preds = {s: predict_adaptive(model, c, device=device)[0] for s, c in tests.items()}
    elif mode == "steps":
        preds = {s: predict_steps(model, c, steps, device)[-1] for s, c in tests.items()}
    else:
        raise ValueError(f"mode must be 'steps' or 'adaptive', got {mode!r}")
    return protocol300w.evaluate(preds, ground_truth(tests), SCHEME, eval_scheme=eval_scheme, method=method)


def table1_rows(model: rcsr.RCSR, tests: dict[str, Crops], device="cpu") -> pd.DataFrame:
    """Table 1's three RCSR rows: the same model after 5 and 10 recurrences and with the stopping rule."""
    return pd.concat([
        evaluate(model, tests, steps=5, method="RCSR 5 recurrences", device=device),
        evaluate(model, tests, steps=10, method="RCSR 10 recurrences", device=device),
        evaluate(model, tests, mode="adaptive", method="RCSR adaptive", device=device),
    ], ignore_index=True)


@torch.no_grad()
def convergence(model: rcsr.RCSR, tests: dict[str, Crops], max_steps: int, device="cpu") -> pd.DataFrame:
    """Fig. 6 (and Fig. 7): per subset and recurrence t = 1..max_steps, the mean NME (%) and the mean
    normalised shape increment ||h^_t - h^_{t-1}|| / outer-eye-corner distance (Sec. 4.3)."""
    eyes = get_scheme(SCHEME).outer_eye_corners
    shapes = {s: predict_steps(model, c, max_steps, device) for s, c in tests.items()}
    if {"common", "challenging"} <= set(shapes):
        shapes["full"] = torch.cat([shapes["common"], shapes["challenging"]], dim=1)
    truth = ground_truth(tests)
    if "full" in shapes and "full" not in truth:
        truth["full"] = torch.cat([truth["common"], truth["challenging"]])
    rows = []
    for s, per_step in shapes.items():
        for t in range(1, max_steps + 1):
            nme = protocol300w.subset_errors({s: per_step[t]}, {s: truth[s]}, SCHEME)[s]
            step = rcsr.normalised_increment(per_step[t - 1], per_step[t], eyes)
            rows.append({"subset": s, "step": t, "NME (%, inter-ocular)": 100 * float(np.mean(nme)),
                         "normalised increment": float(step.mean())})
    return pd.DataFrame(rows)


def inference_seconds(model: torch.nn.Module, cfg: Scale, device="cpu", repeats: int = 5) -> float:
    """Seconds per face at batch 1 for T recurrences (Fig. 5's x axis; median after a warm-up)."""
    model = model.to(device).eval()
    x = torch.rand(1, 1, cfg.size, cfg.size, device=device)
    init = torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(),
                                              np.array([[8, 8, cfg.size - 8, cfg.size - 8]]))).to(device)
    return timing.seconds_per_call(lambda: model.predict(x, init), device, repeats)


ABLATION_BUDGET = "Convolutional GRU + SRCNN, ablation budget"


def table4_models(cfg: Scale, train_crops: Crops, work, *, device="cpu", seed: int = 0) -> dict[str, tuple]:
    """Table 4's models, ``label -> (kind, epochs, model)``: every row of the table at the ablation
    budget except the paper's model (ConvGRU + SRCNN, the chapter's main model at ``epochs``), which
    appears once more at the ablation budget (:data:`ABLATION_BUDGET`) so rows can be compared at one
    budget. SDM is fit in closed form (no epochs). Cached under ``work`` like :func:`trained`."""
    out = {}
    for kind, (label, _) in rcsr_table4.TABLE4.items():
        main = kind == "convgru-srcnn"
        epochs = cfg.epochs if main else cfg.ablation_epochs
        model, _ = trained(cfg, train_crops, work, kind if main else f"ablation-{kind}", kind=kind, epochs=epochs,
                           device=device, seed=seed, progress=False)
        out[label] = (kind, "—" if kind == "sdm" else epochs, model)
    model, _ = trained(cfg, train_crops, work, "ablation-convgru-srcnn", epochs=cfg.ablation_epochs, device=device,
                       seed=seed, progress=False)
    out[ABLATION_BUDGET] = ("convgru-srcnn", cfg.ablation_epochs, model)
    return out


def table4_results(models: dict[str, tuple], tests: dict[str, Crops], device="cpu"):
    """Score :func:`table4_models`: (rows with the stopping rule, as Table 4 scores the recurrent models;
    rows after exactly T recurrences; per-subset errors per model with the stopping rule)."""
    truth = ground_truth(tests)
    adaptive, at_T, errors = [], [], {}
    for label, (kind, _, model) in models.items():
        preds = {s: predict_steps(model, c, device=device)[-1] for s, c in tests.items()}
        at_T.append(protocol300w.evaluate(preds, truth, SCHEME, method=label))
        if kind != "sdm":
            preds = {s: predict_adaptive(model, c, device=device)[0] for s, c in tests.items()}
        errors[label] = protocol300w.subset_errors(preds, truth, SCHEME)
        adaptive.append(protocol300w.evaluate(preds, truth, SCHEME, method=label))
    return pd.concat(adaptive, ignore_index=True), pd.concat(at_T, ignore_index=True), errors


def fig5_variants(cfg: Scale) -> dict[str, dict]:
    """Fig. 5's grid at this scale: name "depth-d-fc-f" -> RCSR keyword arguments."""
    return {f"depth-{d}-fc-{f}": {"depth": d, "fc_layers": f} for d, f in cfg.fig5}


def fig7_variants(cfg: Scale) -> dict[str, dict]:
    """Fig. 7's models RCSR5/10/20/30 at this scale. Decision [rcsr.fig7-weights]: Sec. 4.4's printed weights, 10^w with
    w evenly spaced in [-2, 2] (``loss_schedule="sec4.4"``), since that section trains them."""
    return {f"RCSR{T}": {"steps": T, "loss_schedule": "sec4.4"} for T in cfg.fig7}


# --------------------------------------------------------------------------------------------------
# Chapter plumbing shared by the notebooks
# --------------------------------------------------------------------------------------------------
def code_version() -> str:
    """The version of the code that defines and trains the Table 4 models (part of every cache key)."""
    return trainer.code_version(rcsr, sdm, rcsr_table4, sys.modules[__name__], trainer)


def trained(cfg: Scale, train_crops: Crops, work, name: str, *, kind: str = "convgru-srcnn",
            variant: dict | None = None, epochs: int | None = None, device="cpu", seed: int = 0,
            progress: bool = True):
    """:func:`train` cached in ``work/<name>-<key>``, so any notebook gets the same model: a finished
    recurrent run resumes at once; SDM (closed form, no epochs) is saved whole. The key covers the
    scale, kind, variant, epochs, seed, the training crops' fingerprint and the code version, so a
    changed recipe, data set or code never reuses a stale model."""
    epochs = epochs or cfg.epochs
    folder = trainer.cache_dir(work, name, recipe=(cfg, kind, variant, epochs, seed), data=train_crops.fingerprint,
                               code=code_version())
    if kind != "sdm":
        return train(cfg, train_crops, kind=kind, variant=variant, epochs=epochs, device=device, seed=seed,
                     checkpoint_dir=folder, progress=progress)
    path = folder / "sdm.pt"
    if path.exists():
        state = trainer.load_checkpoint(path)
        model = build(cfg, kind, **(variant or {}))
        model.load_state_dict(state["model"])
        return model.eval(), state["errors"]
    model, errors = train(cfg, train_crops, kind=kind, variant=variant, device=device, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        torch.save({"model": model.cpu().state_dict(), "errors": errors}, tmp)
    return model, errors


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
