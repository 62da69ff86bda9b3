"""The Foundations chapter: the environment a run records, the landmark schemes in brief, and a tiny
end-to-end example, a small CNN regressing five landmarks.

The example exists to show the path every paper chapter takes (data -> crops -> model -> ``train.fit``
-> predictions in image coordinates -> metrics), not to be a good face aligner. The notebook
``notebooks/foundations/01_foundations`` calls these functions and explains them.
"""

from __future__ import annotations

import platform
import sys

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import TensorDataset

from falign.kit import plots, report, train as trainer
from falign.kit.crops import Crops, crop_faces, load_faces
from falign.measure import landmarks, metrics

SCALES = {
    "smoke": dict(n_train=256, n_test=64, image=96, crop=48, epochs=3, batch=32, lr=2e-3),
    "small": dict(n_train=4000, n_test=500, image=128, crop=64, epochs=12, batch=64, lr=2e-3),
    "gpu": dict(n_train=20000, n_test=2000, image=128, crop=64, epochs=30, batch=128, lr=2e-3),
    "full": dict(n_train=20000, n_test=2000, image=128, crop=64, epochs=30, batch=128, lr=2e-3),
}
PRESET = "lfpw5-like"
DATASETS = ("synthetic",)   # the DATA it honours (checked before a run)
MARGIN = 0.15
SCHEMES = ("ibug68", "ibug51", "ibug49", "five", "afw6", "aflw-pifa34")   # the schemes the chapter lists
NORM, FAILURE = "inter-pupil", 0.10        # the five points' normaliser and failure threshold


def environment(run) -> pd.DataFrame:
    """Where a run (:class:`falign.kit.report.Run`) ran: Python, torch, device, threads, scale, seed."""
    return pd.DataFrame({
        "item": ["python", "torch", "device", "threads", "scale", "seed"],
        "value": [platform.python_version(), torch.__version__, report.describe_device(run.device),
                  torch.get_num_threads(), run.scale, run.seed],
    })


def scheme_summary(names=SCHEMES) -> pd.DataFrame:
    """Points and outer eye corners (the inter-ocular normaliser's points) of each scheme of ``names``."""
    return pd.DataFrame([
        {"scheme": s.name, "points": s.n_points,
         "outer eye corners": s.outer_eye_corners if s.outer_eye_corners is not None else "—"}
        for s in map(landmarks.get_scheme, names)
    ])


def datasets(cfg: dict, seed: int, data: str = "synthetic", root: str = "") -> tuple[Crops, Crops]:
    """Train and test crops of the five-point data (SynthFace ``lfpw5-like`` by default)."""
    def load(split: str, n: int) -> Crops:
        faces = load_faces(data, split, preset=PRESET, n=n, size=cfg["image"], seed=seed, root=root)
        return crop_faces(faces, cfg["crop"], MARGIN)

    return load("train", cfg["n_train"]), load("test", cfg["n_test"])


class TinyNet(nn.Module):
    """Three conv blocks and a linear head predicting points in [-1, 1] crop units."""

    def __init__(self, n_points: int = 5, channels: int = 3):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(block(channels, 16), block(16, 32), block(32, 64),
                                      nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.head = nn.Linear(64 * 9, n_points * 2)
        self.n_points = n_points

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images)).view(-1, self.n_points, 2)


def _to_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    return points / (size - 1) * 2 - 1


def _from_unit(points: torch.Tensor, size: int) -> torch.Tensor:
    return (points + 1) / 2 * (size - 1)


def _loss(model: nn.Module, batch) -> torch.Tensor:
    images, targets = batch
    return nn.functional.mse_loss(model(images.float() / 255.0), targets)


def train(cfg: dict, crops: Crops, *, device, seed: int, checkpoint_dir=None):
    """Train a :class:`TinyNet` with Adam; returns the model and its training history. With
    ``checkpoint_dir`` the run is cached in a folder below it keyed by the recipe, the training data's
    fingerprint and the code version (:func:`falign.kit.train.cache_dir`)."""
    torch.manual_seed(seed)
    model = TinyNet(crops.landmarks.shape[1], crops.images.shape[1])
    data = TensorDataset(crops.images, _to_unit(crops.landmarks, crops.size))
    folder = None if checkpoint_dir is None else trainer.cache_dir(
        checkpoint_dir, "tiny", recipe=(cfg, seed), data=crops.fingerprint,
        code=trainer.code_version(sys.modules[__name__], trainer))
    history = trainer.fit(model, _loss, data, epochs=cfg["epochs"], batch_size=cfg["batch"],
                          optimizer=trainer.adam(cfg["lr"]), device=device, seed=seed,
                          checkpoint_dir=folder, desc="tiny")
    return model, history


@torch.no_grad()
def predict(model: nn.Module, crops: Crops, *, device) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true landmarks in original image coordinates."""
    model.to(device).eval()
    unit = torch.cat([model(crops.float_images(slice(i, i + 256)).to(device)).cpu()
                      for i in range(0, len(crops), 256)])
    pred = crops.to_image(_from_unit(unit, crops.size))
    return pred.numpy(), crops.ground_truth().numpy()


def mean_shape_baseline(train_crops: Crops, test_crops: Crops) -> np.ndarray:
    """The training mean shape placed in each test crop: the error any model must beat."""
    mean = train_crops.landmarks.mean(0, keepdim=True).expand(len(test_crops), -1, -1)
    return test_crops.to_image(mean).numpy()


def loss_figure(history):
    """The tiny model's training loss per epoch (linear axis)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    plots.loss_curve(ax, history, ylabel="training loss (MSE, crop units)", log=False,
                     title="Tiny 5-point regressor")
    return fig


def evaluate(model: nn.Module, train_crops: Crops, test_crops: Crops, *, device) -> tuple[pd.DataFrame, np.ndarray]:
    """The tiny model beside the mean shape in the box (:func:`mean_shape_baseline`) on the test crops:
    NME (inter-pupil, %) and failure@0.10 (%); also the tiny model's per-image errors."""
    pred, gt = predict(model, test_crops, device=device)
    errors = {"mean shape in the box": metrics.nme(mean_shape_baseline(train_crops, test_crops), gt, norm=NORM,
                                                   scheme="five"),
              "tiny CNN": metrics.nme(pred, gt, norm=NORM, scheme="five")}
    table = pd.DataFrame({
        "method": list(errors),
        f"NME ({NORM}, %)": [100 * metrics.mean_error(e) for e in errors.values()],
        f"failure@{FAILURE:.2f} (%)": [100 * metrics.failure_rate(e, FAILURE) for e in errors.values()],
    })
    return table, errors["tiny CNN"]
