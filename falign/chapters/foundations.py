"""The Foundations chapter's tiny end-to-end example: a small CNN regressing five landmarks.

It exists to show the path every paper chapter takes (data -> crops -> model -> ``train.fit`` ->
predictions in image coordinates -> metrics), not to be a good face aligner.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from falign.kit import train as trainer
from falign.data.crops import Crops, crop_faces, load_faces

SCALES = {
    "smoke": dict(n_train=256, n_test=64, image=96, crop=48, epochs=3, batch=32, lr=2e-3),
    "small": dict(n_train=4000, n_test=500, image=128, crop=64, epochs=12, batch=64, lr=2e-3),
    "gpu": dict(n_train=20000, n_test=2000, image=128, crop=64, epochs=30, batch=128, lr=2e-3),
    "full": dict(n_train=20000, n_test=2000, image=128, crop=64, epochs=30, batch=128, lr=2e-3),
}
PRESET = "lfpw5-like"
DATASETS = ("synthetic",)   # the DATA it honours (checked before a run)
MARGIN = 0.15


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
