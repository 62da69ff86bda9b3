"""Every chapter's real training code at any scale, for a few optimiser steps on a few faces.

Three users need it: ``make bench`` (training samples/s of each chapter's configuration against
float32, measured in one run), the tests (every ``gpu`` and ``full`` configuration runs on the CPU, so a
configuration error cannot wait for a GPU) and ``make device-check`` (the same on a lent GPU). Only the
data sizes shrink (:data:`TINY`); model, loss, optimiser, batch and precision are the scale's own, and
each training stops its epochs after ``steps`` steps (:func:`falign.kit.train.step_cap`).
"""

from __future__ import annotations

import dataclasses
import importlib
import tempfile
from typing import Any, Callable

import torch

from falign.kit import train

CHAPTERS = ("pifa", "rcsr", "ccnn", "msrrn", "cfdrnn")


def _tests(cfg) -> dict[str, int]:
    return {k: 2 for k in cfg.n_test}


def _faces(cfg, per_face: int = 1) -> int:
    """Training faces for two batches when each face gives ``per_face`` samples."""
    return -(-2 * cfg.batch // per_face)


# The fields that only count a scale's faces: enough training faces for two batches (after the scale's
# own augmentation, variations and replicates, which stay), a few others.
TINY: dict[str, Callable[[Any], dict[str, Any]]] = {
    "pifa": lambda cfg: dict(n_train=_faces(cfg, cfg.variations), n_val=2, n_test=2, n_afw=2),
    "rcsr": lambda cfg: dict(n_train=_faces(cfg, 2 * cfg.replicates * cfg.inits), n_val=2, n_test=_tests(cfg)),
    "ccnn": lambda cfg: dict(n_train=_faces(cfg, 6), n_test=2),                 # x6: rotations and mirrors
    "msrrn": lambda cfg: dict(n_train=_faces(cfg), n_val=2, n_test=_tests(cfg)),
    "cfdrnn": lambda cfg: dict(n_train=_faces(cfg), n_val=2, n_test=_tests(cfg)),
}


def train_main(chapter: str, cfg, crops: dict, device: str | torch.device = "cpu") -> list[train.History]:
    """One training of the chapter's main model through its own entry point; its histories."""
    module = importlib.import_module(f"falign.kit.chapter.{chapter}")
    if chapter == "pifa":
        return [module.train(cfg, crops["train"], device=device, progress=False)[1]]
    if chapter == "rcsr":
        return [module.train(cfg, crops, device=device, progress=False)[1]]
    if chapter == "ccnn":
        return module.train(cfg, crops["train"], device=device, progress=False)[1]
    if chapter == "msrrn":
        return [module.train(cfg, crops["train"], val_crops=crops["validation"], device=device, progress=False)[1]]
    with tempfile.TemporaryDirectory() as work:                      # cfdrnn always caches its trainings
        return [module.trained(cfg, crops, work, device=device, progress=False)[1]]


def scale(chapter: str, name: str, **changes: Any):
    """The chapter's configuration ``name`` with its data shrunk to :data:`TINY` and ``changes``."""
    cfg = importlib.import_module(f"falign.kit.chapter.{chapter}").SCALES[name]
    return dataclasses.replace(cfg, **{**TINY[chapter](cfg), **changes})


def data(chapter: str, name: str, **changes: Any) -> tuple[Any, dict]:
    """(configuration, crops): scale ``name`` with :data:`TINY`'s face counts and ``changes``, and its data."""
    cfg = scale(chapter, name, **changes)
    return cfg, importlib.import_module(f"falign.kit.chapter.{chapter}").datasets(cfg)


def run(chapter: str, name: str, *, steps: int = 2, epochs: int = 2, precision: str | None = None,
        device: str | torch.device = "cpu", **changes: Any) -> list[train.History]:
    """Train the chapter's main model at scale ``name`` for ``epochs`` epochs of ``steps`` steps on tiny
    data (the scale's precision unless ``precision`` is given, and any other field ``changes``); one
    History per trained network."""
    cfg, crops = data(chapter, name, epochs=epochs, **({"precision": precision} if precision else {}), **changes)
    torch.manual_seed(0)
    with train.step_cap(steps):
        return train_main(chapter, cfg, crops, device)


def samples_per_s(histories: list[train.History]) -> float:
    """Training throughput of the last epoch of every network together (the first epoch warms up)."""
    last = [h.epochs[-1] for h in histories]
    return sum(e["samples_per_s"] * e["seconds"] for e in last) / sum(e["seconds"] for e in last)
