"""RCSR chapter experiments: data preparation, scale configurations, training and evaluation.

The notebooks of ``notebooks/rcsr`` call these functions; the model is :mod:`falign.models.rcsr`,
the Table 4 baselines :mod:`falign.models.rcsr_table4`, the published numbers :mod:`falign.papers.rcsr`
and the metric :mod:`falign.protocol300w`.

Protocol (Sec. 4, 4.1): 300-W, 68 points; train on 3,148 faces, test on common / challenging / full;
grey crops around the face box; the training set is doubled with mirrored copies and replicated with
noise on the boxes; the initial shape is the training mean shape placed in the box, jittered during
training (Sec. 3.1.1). SynthFace ``300w-like`` stands in for 300-W. Errors are computed in original
image coordinates, normalised by the outer-eye-corner distance. Decisions are marked ``Decision:``.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from falign import atomic, protocol300w
from falign import train as trainer
from falign.data import transforms
from falign.data.crops import Crops, crop_faces, load_faces
from falign.data.sample import FaceDataset
from falign.landmarks import get_scheme
from falign.models import rcsr, rcsr_table4

PRESET, SCHEME = "300w-like", "ibug68"
TEST_SUBSETS = ("common", "challenging")      # "full" is pooled by protocol300w

SCALES = {
    # CI: numbers mean nothing, every notebook in seconds.
    "smoke": dict(n_train=16, n_test={"common": 12, "challenging": 6}, image=64, size=40, margin=0.1,
                  patch=17, hog_patch=16, hidden=8, fc_width=64, cnn_width=0.25, steps=3, replicates=1,
                  inits=1, box_noise=0.05, init_noise=0.03, epochs=1, ablation_epochs=1, finetune_epochs=0,
                  batch=8, lr=1e-3, grad_clip=1.0, decay_every=10, sdm_stages=3, sdm_alpha=0.1,
                  patch_gradient=False, fig5=((0, 1), (0, 2)), fig7=(2, 3), eval_steps=6),
    # CPU-sized (2 cores): 48x48 crops, 17x17 patches, SRCNN at half width and LeNet/FAUC at a quarter,
    # 250 faces (500 crops with the mirrors) with 2 jittered starts each. The main model trains 30
    # epochs (learning rate halved every 10, the paper's schedule), every ablation model 3: Decision,
    # timing probes (1 thread) put one epoch of ConvGRU + SRCNN at about 25 s, and the whole chapter
    # must fit in about half an hour on 2 cores. The CNN-feature models are still far from converged.
    "small": dict(n_train=250, n_test={"common": 150, "challenging": 75}, image=128, size=48, margin=0.1,
                  patch=17, hog_patch=16, hidden=32, fc_width=256, cnn_width=0.5, baseline_width=0.25,
                  steps=5, replicates=1, inits=2, box_noise=0.05, init_noise=0.03, epochs=30, ablation_epochs=3,
                  finetune_epochs=0, batch=16, lr=1e-3, grad_clip=1.0, decay_every=10, sdm_stages=5,
                  sdm_alpha=0.1, patch_gradient=False, fig5=((0, 1), (0, 2), (2, 1)), fig7=(5, 10),
                  eval_steps=20),
    # The paper's protocol (GPU): Sec. 4.1's augmentation (mirrors, 3 box-noise replicates, fine-tuning
    # on 3 new replicates), batch 204, 200 + 200 epochs, learning rate halved every 10 epochs.
    "full": dict(n_train=3148, n_test={"common": 554, "challenging": 135}, image=256, size=128, margin=0.1,
                 patch=25, hog_patch=32, hidden=64, fc_width=512, cnn_width=1.0, steps=5, replicates=3,
                 inits=1, box_noise=0.05, init_noise=0.03, epochs=200, ablation_epochs=200, finetune_epochs=200,
                 batch=204, lr=3e-4, grad_clip=1.0, decay_every=10, sdm_stages=5, sdm_alpha=0.1,
                 patch_gradient=True, fig5=tuple((d, f) for d in (0, 5, 10, 15, 20) for f in (1, 2, 3)),
                 fig7=(5, 10, 20, 30), eval_steps=40),
}

# Decision (optimiser): Adam with global-norm gradient clipping at every scale. The paper's SGD at lr
# 0.01 belongs to its (Caffe) loss scale: under Eq. 8 as computed here (rcsr.rcsr_loss) SGD 0.01 with
# momentum 0.9 diverged within 13 iterations on SynthFace, and Adam 1e-3 without clipping showed loss
# spikes. The paper's schedule shape (x0.5 every 10 epochs) is kept for "full".


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def mirror(crops: Crops) -> Crops:
    """Sec. 4.1's mirrored copies: flip each crop left-right, landmarks renumbered by the flip
    permutation (the subject's left eye stays point 36..41) and the affine composed with the flip."""
    S, perm = crops.size, torch.tensor(np.array(get_scheme(crops.scheme).flip_perm), dtype=torch.long)
    landmarks = crops.landmarks[:, perm].clone()
    landmarks[..., 0] = S - 1 - landmarks[..., 0]
    box = crops.extra["box"].clone()
    box[:, [0, 2]] = S - 1 - crops.extra["box"][:, [2, 0]]
    return Crops(crops.images.flip(-1), landmarks, crops.visible[:, perm], transforms.chain(crops.affines,
                 transforms.hflip(S)), crops.scheme, crops.name + ":mirrored", crops.fingerprint, {"box": box})


def _concat(parts: list[Crops]) -> Crops:
    first = parts[0]
    fields = ("images", "landmarks", "visible", "affines")
    return Crops(*(torch.cat([getattr(p, k) for p in parts]) for k in fields),
                 first.scheme, first.name, first.fingerprint, {"box": torch.cat([p.extra["box"] for p in parts])})


def load(cfg: dict, split: str, *, data: str = "synthetic", root: str = "", seed: int = 0,
         train: bool = False) -> Crops:
    """Grey crops of one split (``extra["box"]``: the face box in crop coordinates, where the mean
    shape is placed).

    Test crops use the detector-like box as given. Training crops (Sec. 4.1) come in ``replicates``
    copies whose boxes are jittered (:func:`falign.data.transforms.jitter_boxes`: centre, width and
    height by up to ``box_noise`` of the box, uniform: Decision, the paper gives no magnitude), each with its mirrored copy.
    """
    n = cfg["n_train"] if train else cfg["n_test"][split]
    faces = load_faces(data, split, preset=PRESET, n=n, size=cfg["image"], seed=seed, root=root)
    given = torch.as_tensor(np.stack([s.box for s in faces]) if isinstance(faces, FaceDataset)
                            else faces["detector_boxes"], dtype=torch.float32)
    parts = []
    for r in range(cfg["replicates"] if train else 1):
        noise = cfg["box_noise"]
        boxes = transforms.jitter_boxes(given, noise, noise, rng=seed * 1000 + r) if train else given
        crops = crop_faces(faces, cfg["size"], cfg["margin"], boxes=boxes, grey=True, padding_mode="border")
        corners = transforms.apply_affine(boxes.view(-1, 2, 2), crops.affines).reshape(-1, 4)
        crops.extra = {"box": corners}
        parts += [crops, mirror(crops)] if train else [crops]
    return _concat(parts)


def datasets(cfg: dict, *, data: str = "synthetic", root: str = "", seed: int = 0) -> dict[str, Crops]:
    """The training crops (augmented) and one test set per 300-W subset."""
    out = {"train": load(cfg, "train", data=data, root=root, seed=seed, train=True)}
    out.update({s: load(cfg, s, data=data, root=root, seed=seed) for s in TEST_SUBSETS})
    return out


def initial_shapes(model: torch.nn.Module, crops: Crops) -> torch.Tensor:
    """h^_0: the model's mean shape placed in every crop's face box, (n, N, 2)."""
    return torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(), crops.extra["box"].numpy()))


class TrainSet(Dataset):
    """Dict batches for :func:`falign.models.rcsr.loss_fn`: ``inits`` jittered initial shapes per
    crop (Sec. 3.1.1), drawn once with ``seed`` so every epoch sees the same set."""

    def __init__(self, crops: Crops, mean: np.ndarray, inits: int, noise: float, seed: int):
        self.crops = crops
        starts = rcsr.jittered_initial_shapes(mean, crops.extra["box"].numpy(), inits, shift=noise,
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
def build(cfg: dict, kind: str = "convgru-srcnn", **variant) -> torch.nn.Module:
    """A Table 4 architecture at a scale's sizes; ``variant`` overrides (depth, fc_layers, steps, ...).
    Decision (small scale): LeNet and FAUC are thinned by ``baseline_width`` to fit the CPU budget."""
    if kind == "sdm":
        return rcsr_table4.build_model(kind, stages=cfg["sdm_stages"], alpha=cfg["sdm_alpha"],
                                     patch_size=cfg["hog_patch"], **variant)
    width = cfg["cnn_width"] if kind.endswith("srcnn") else cfg.get("baseline_width", cfg["cnn_width"])
    sizes = dict(steps=cfg["steps"], hidden=cfg["hidden"], fc_width=cfg["fc_width"],
                 patch_gradient=cfg["patch_gradient"])
    if kind == "gru-hog":
        sizes.update(patch_size=cfg["hog_patch"])
    else:
        sizes.update(patch_size=cfg["patch"], cnn_width=width)
    return rcsr_table4.build_model(kind, **{**sizes, **variant})


def train(cfg: dict, train_crops: Crops, *, kind: str = "convgru-srcnn", variant: dict | None = None,
          epochs: int | None = None, finetune_crops: Crops | None = None, device: str | torch.device = "cpu",
          seed: int = 0, checkpoint_dir=None, progress: bool = True):
    """Train one model from scratch and return (model in eval mode, history).

    Recurrent models: ``falign.train.fit`` on Eq. 8, lr halved every ``decay_every`` epochs; with
    ``finetune_crops`` and ``finetune_epochs`` > 0, Sec. 4.1's second round on fresh replicates.
    SDM: closed-form ridge per stage; its history is the training error after each stage.
    """
    torch.manual_seed(seed)
    model = build(cfg, kind, **(variant or {}))
    mean = rcsr.mean_shape(train_crops.landmarks.numpy(), train_crops.extra["box"].numpy())
    model.mean_shape.copy_(torch.from_numpy(mean))
    data = TrainSet(train_crops, mean, cfg["inits"], cfg["init_noise"], seed)
    if kind == "sdm":
        images = train_crops.images.float().repeat_interleave(cfg["inits"], 0) / 255
        errors = model.to(device).fit(images, data.inits, train_crops.landmarks.repeat_interleave(cfg["inits"], 0))
        return model.eval(), errors
    epochs = epochs or cfg["epochs"]
    decay = trainer.step_decay(list(range(cfg["decay_every"], epochs, cfg["decay_every"])), 0.5)
    history = trainer.fit(model, rcsr.loss_fn, data, epochs=epochs, batch_size=cfg["batch"],
                          optimizer=trainer.adam(cfg["lr"]), scheduler=decay, device=device, seed=seed,
                          checkpoint_dir=checkpoint_dir, desc=f"rcsr {kind}", progress=progress,
                          grad_clip=cfg["grad_clip"])
    if finetune_crops is not None and cfg["finetune_epochs"]:
        data = TrainSet(finetune_crops, mean, cfg["inits"], cfg["init_noise"], seed + 1)
        more = trainer.fit(model, rcsr.loss_fn, data, epochs=cfg["finetune_epochs"], batch_size=cfg["batch"],
                           optimizer=trainer.adam(cfg["lr"]), scheduler=decay, device=device, seed=seed + 1,
                           checkpoint_dir=None if checkpoint_dir is None else f"{checkpoint_dir}/finetune",
                           desc=f"rcsr {kind} fine-tune", progress=progress, grad_clip=cfg["grad_clip"])
        history.epochs += more.epochs
    return model.eval(), history


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def predict_steps(model: torch.nn.Module, crops: Crops, steps: int | None = None, device="cpu",
                  batch: int = 64) -> torch.Tensor:
    """(steps+1, n, N, 2) shapes after every recurrence, in original image coordinates."""
    model = model.to(device).eval()
    init = initial_shapes(model, crops)
    out = torch.cat([model.predict(crops.float_images(slice(i, i + batch)).to(device),
                                   init[i:i + batch].to(device), steps).cpu()
                     for i in range(0, len(crops), batch)], dim=1)
    return torch.stack([crops.to_image(s) for s in out])


@torch.no_grad()
def predict_adaptive(model: rcsr.RCSR, crops: Crops, gamma: float = 0.01, max_steps: int = 13,
                     device="cpu", batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 4.3's stopping rule: final shapes in image coordinates (n, N, 2) and steps used (n,)."""
    model = model.to(device).eval()
    init = initial_shapes(model, crops)
    parts = [model.predict_adaptive(crops.float_images(slice(i, i + batch)).to(device),
                                    init[i:i + batch].to(device), gamma, max_steps)
             for i in range(0, len(crops), batch)]
    shapes = torch.cat([p[0].cpu() for p in parts])
    return crops.to_image(shapes), torch.cat([p[1].cpu() for p in parts])


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


@torch.no_grad()
def inference_seconds(model: torch.nn.Module, cfg: dict, device="cpu", repeats: int = 5) -> float:
    """Seconds per face at batch 1 for T recurrences (Fig. 5's x axis; median after a warm-up)."""
    model = model.to(device).eval()
    x = torch.rand(1, 1, cfg["size"], cfg["size"], device=device)
    init = torch.from_numpy(rcsr.place_in_box(model.mean_shape.cpu().numpy(),
                                              np.array([[8, 8, cfg["size"] - 8, cfg["size"] - 8]]))).to(device)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        model.predict(x, init)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def fig5_variants(cfg: dict) -> dict[str, dict]:
    """Fig. 5's grid at this scale: name "depth-d-fc-f" -> RCSR keyword arguments."""
    return {f"depth-{d}-fc-{f}": {"depth": d, "fc_layers": f} for d, f in cfg["fig5"]}


def fig7_variants(cfg: dict) -> dict[str, dict]:
    """Fig. 7's models RCSR5/10/20/30 at this scale. Decision: Sec. 4.4's printed weights, 10^w with
    w evenly spaced in [-2, 2] (``loss_schedule="sec4.4"``), since that section trains them."""
    return {f"RCSR{T}": {"steps": T, "loss_schedule": "sec4.4"} for T in cfg["fig7"]}


# --------------------------------------------------------------------------------------------------
# Chapter plumbing shared by the notebooks
# --------------------------------------------------------------------------------------------------
def trained(cfg: dict, train_crops: Crops, work, name: str, *, kind: str = "convgru-srcnn",
            variant: dict | None = None, epochs: int | None = None, device="cpu", seed: int = 0,
            progress: bool = True):
    """:func:`train` with its checkpoint in ``work/<name>-<hash>``, so any notebook gets the same model:
    a finished recurrent run resumes at once; SDM (closed form, no epochs) is saved whole. The hash
    covers the scale config, kind, variant and epochs, so a changed config never resumes a stale run."""
    folder = trainer.recipe_dir(work, name, cfg, kind, variant, epochs or cfg["epochs"])
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


def side_by_side(published: pd.DataFrame, ours: pd.DataFrame, value: str = "NME (%, inter-ocular)",
                 key: str = "method") -> pd.DataFrame:
    """A paper table (one row per method, one column per subset) with our numbers beside each subset:
    "<subset> (paper)" and "<subset> (ours)". ``ours`` is long (:func:`protocol300w.evaluate` rows);
    methods we did not run keep an empty "ours" (shown as reported)."""
    subsets = [c for c in published.columns if c in protocol300w.SUBSETS]
    wide = ours.pivot_table(index=key, columns="subset", values=value, sort=False).reset_index()
    out = published.merge(wide, on=key, how="outer", suffixes=(" (paper)", " (ours)"))
    order = list(published[key]) + [m for m in wide[key] if m not in set(published[key])]
    out = out.set_index(key).loc[order].reset_index()                     # the paper's row order
    cols = [c for c in published.columns if c not in subsets]
    return out[cols + [f"{s} ({w})" for s in subsets for w in ("paper", "ours")]]


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
