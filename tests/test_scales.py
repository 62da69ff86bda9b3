"""Every chapter's ``gpu`` and ``full`` configuration runs here, on the CPU, so that an error in one
shows before a GPU is lent (none has been, and these configurations had never run).

Two checks per chapter and configuration:

* every arm the chapter trains is built at the configuration's size on the meta device and runs the
  chapter's loss forward and backward there (shapes only, nothing allocated: PIFA's paper network has
  500M weights; see ``test_devices`` for what meta cannot run);
* the chapter's main network (:func:`falign.tools.trainspeed.train_main`), and its closed-form baseline where
  it has one, is trained through the chapter's own entry point with the configuration's data recipe
  (render and crop sizes, box noise, variations, replicates, augmentation), network, optimiser,
  schedule, loss and batch, on the CPU, for one epoch of two optimiser steps
  (:func:`falign.kit.train.step_cap`).

What differs from the configuration, and why (the point is to run the configured code, not to train):

* the data: each experiment's ``tiny`` face counts (two training batches, a few others);
  SDM fits 8 of the training faces (its cost grows with faces, not batches);
* epochs: one (``epochs``, and RCSR's fine-tuning round, replaced; e.g. CFDRNN's full has 1,000);
* precision: float32, without the probe of ``"auto"`` (``falign.kit.precision.native_bf16`` reads False):
  the probe would time 16 more steps of each network on a CPU with native bf16; a GPU needs none;
* PIFA's fully connected layers read each block's features average-pooled to 8x8 (``fc_grid=8``, as at
  ``small``): the paper's FC layers hold 500M weights, for which a training step took 16 GB and 15-20 s
  on a 2-core CPU; their full-size forward and backward run on meta (the first check).
"""

from __future__ import annotations

import math

import pytest
import torch

from falign.kit import precision, train as trainer
from falign.tools import trainspeed
from falign.chapters import foundations
from falign.papers.msrrn import experiment as msrrn
from falign.papers.pifa import experiment as pifa
from falign.papers.rcsr import experiment as rcsr
from test_devices import arms, step_on_meta

SCALES = ("gpu", "full")
STEPS = 2                                   # optimiser steps per epoch
SDM_FACES = 8                               # a closed-form fit's cost grows with its faces, not its batch
# CCNN's networks keep the paper's sizes at every scale (its scales differ in data and budget only), so
# test_devices runs exactly them; the other chapters' networks are sized by the scale.
META_ARMS = {scale: arms(scale, ("cfdrnn", "msrrn", "pifa", "rcsr")) for scale in SCALES}


@pytest.mark.parametrize("scale, name", [(s, name) for s in SCALES for name in META_ARMS[s]])
def test_every_arm_runs_on_meta_at_the_configured_size(scale, name):
    arm = META_ARMS[scale][name]
    with torch.device("meta"):
        model = arm.build()
    step_on_meta(model, arm)


def _closed_form(paper: str, cfg, crops: dict, work) -> list:
    """The chapter's closed-form baseline (SDM) fitted on a few training faces: its training-error curve."""
    if paper not in ("msrrn", "pifa", "rcsr"):
        return []
    faces = crops["train"].subset(torch.arange(SDM_FACES))
    if paper == "msrrn":
        return [msrrn.train_sdm(cfg, faces, work)[1]]
    if paper == "pifa":
        return [pifa.sdm_nme(pifa.train_sdm(cfg, faces), cfg, faces, faces).mean(1).tolist()]
    return [rcsr.train(cfg, {"train": faces}, work, "sdm")[1].errors]


def _train(paper: str, scale: str, work) -> list:
    """The main network's capped training, then the closed-form fits; returns the latter's error curves."""
    if paper == "foundations":
        cfg = {**foundations.SCALES[scale], "epochs": 1}
        train, _ = foundations.datasets({**cfg, "n_train": STEPS * cfg["batch"], "n_test": 1}, seed=0)
        foundations.train(cfg, train, device="cpu", seed=0, checkpoint_dir=work)
        return []
    changes = {"epochs": 1, **({"fc_grid": 8} if paper == "pifa" else {}),
               **({"finetune_epochs": 1} if paper == "rcsr" and rcsr.SCALES[scale].finetune_epochs else {})}
    cfg, crops = trainspeed.data(paper, scale, **changes)
    trainspeed.train_main(paper, cfg, crops)
    return _closed_form(paper, cfg, crops, work)


PAPERS = (*trainspeed.chapters(), "foundations")


@pytest.fixture
def fits(monkeypatch) -> list:
    """Every ``falign.kit.train.fit`` of the test: (the weights before, the model, its History)."""
    calls, real = [], trainer.fit

    def fit(model, *args, **kwargs):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        history = real(model, *args, **kwargs)
        calls.append((before, model, history))
        return history

    monkeypatch.setattr(trainer, "fit", fit)
    return calls


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("paper", PAPERS)
def test_configuration_trains_on_the_cpu(paper, scale, fits, tmp_path, monkeypatch):
    """Finite losses, and every parameter moved: two steps reach the layers behind the zero-initialised
    output layers (MSRRN, RCSR, CFDRNN), which the first step's gradient cannot."""
    monkeypatch.setattr(precision, "native_bf16", lambda: False)     # float32 without a probe
    with trainer.step_cap(STEPS):
        closed_form = _train(paper, scale, tmp_path)
    assert fits, "no training ran"
    for before, model, history in fits:
        assert len(history.epochs) == 1 and math.isfinite(history.epochs[0]["loss"])
        unchanged = [name for name, p in model.named_parameters() if torch.equal(p.detach(), before[name])]
        assert unchanged == [], "parameters the optimiser never moved"
    for errors in closed_form:                   # closed-form fits: their training error falls stage by stage
        assert all(math.isfinite(e) for e in errors) and errors[-1] < errors[0]
