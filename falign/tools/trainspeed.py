"""Every chapter's real training code at any scale, for a few optimiser steps on a few faces.

Three users need it: ``make bench`` (training samples/s of each chapter's configuration against
float32, measured in one run), the tests (every ``gpu`` and ``full`` configuration runs on the CPU, so a
configuration error cannot wait for a GPU) and ``make device-check`` (the same on a lent GPU). Only the
data sizes shrink (each experiment's ``tiny``); model, loss, optimiser, batch and precision are the scale's own, and
each training stops its epochs after ``steps`` steps (:func:`falign.kit.train.step_cap`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from falign.kit import registry, train

def chapters() -> list[str]:
    """The chapters whose experiment trains a model (it defines ``tiny`` and ``main_training``)."""
    return [c.name for c in registry.papers() if hasattr(c.module(), "main_training")]


def train_main(chapter: str, cfg, crops: dict, device: str | torch.device = "cpu") -> list[train.History]:
    """One training of the chapter's main model through its own entry point (its experiment's
    ``main_training``); its histories."""
    return registry.experiment(chapter).main_training(cfg, crops, device=device)


def scale(chapter: str, name: str, **changes: Any):
    """The chapter's configuration ``name`` with its data shrunk by its experiment's ``tiny`` (enough
    training faces for two batches after the scale's own augmentation, a few others) and ``changes``."""
    module = registry.experiment(chapter)
    cfg = module.SCALES[name]
    return dataclasses.replace(cfg, **{**module.tiny(cfg), **changes})


def data(chapter: str, name: str, **changes: Any) -> tuple[Any, dict]:
    """(configuration, crops): scale ``name`` shrunk by :func:`scale` with ``changes``, and its data."""
    cfg = scale(chapter, name, **changes)
    return cfg, registry.experiment(chapter).datasets(cfg)


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
