"""Every chapter's ``gpu`` and ``full`` configuration runs here, on the CPU, so that an error in one
shows before a GPU is lent (none has been, and these configurations had never run).

Two checks per chapter and configuration:

* every arm the chapter trains is built at the configuration's size on the meta device and runs the
  chapter's loss forward and backward there (shapes only, nothing allocated: PIFA's paper network has
  500M weights; see ``test_devices`` for what meta cannot run);
* the chapter's main network, and its closed-form baseline where it has one, is trained through the
  chapter's own entry point with the configuration's data recipe (render and crop sizes, box noise,
  variations, replicates, augmentation), network, optimiser, schedule, loss, batch and caching, on the
  CPU, for one epoch of two optimiser steps (:func:`falign.train.step_cap`).

What differs from the configuration, and why (the point is to run the configured code, not to train):

* the data: SynthFace faces for two training batches, two held out, one test face per subset (the
  configuration's face counts replaced); SDM fits 8 of them (its cost grows with faces, not batches);
* epochs: one (``epochs``, and RCSR's fine-tuning round, replaced; e.g. CFDRNN's full has 1,000);
* precision: float32, without the probe of ``"auto"`` (``falign.precision.native_bf16`` reads False):
  the probe would time 16 more steps of each network on a CPU with native bf16; a GPU needs none;
* PIFA's fully connected layers read each block's features average-pooled to 8x8 (``fc_grid=8``, as at
  ``small``): the paper's FC layers hold 500M weights, for which a training step took 16 GB and 15-20 s
  on a 2-core CPU; their full-size forward and backward run on meta (the first check).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from falign import precision
from falign import train as trainer
from falign.experiments import ccnn, cfdrnn, foundations, msrrn, pifa, rcsr
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


def _batches(cfg, per_face: int = 1) -> int:
    """Faces that make :data:`STEPS` training batches when each face gives ``per_face`` samples."""
    return -(-STEPS * cfg.batch // per_face)


def _one_per_subset(cfg) -> dict:
    return {subset: 1 for subset in cfg.n_test}


# Each chapter's trainings at a scale, on little data (see the module docstring); each returns the
# training-error curves of its closed-form fits (SDM).
def _ccnn(cfg, work) -> list:
    """The CCNN arm: its three stages in series, each on the anchors of the stages before it."""
    per_face = len(ccnn.ANGLES) * len(ccnn.FLIPS)
    faces = ccnn.load(dataclasses.replace(cfg, n_train=_batches(cfg, per_face)), "train")
    ccnn.train(dataclasses.replace(cfg, epochs=1), ccnn.augment(faces, cfg), "ccnn", work=work, progress=False)
    return []


def _cfdrnn(cfg, work) -> list:
    cfg = dataclasses.replace(cfg, epochs=1)
    crops = cfdrnn.datasets(dataclasses.replace(cfg, n_train=_batches(cfg), n_val=2, n_test=_one_per_subset(cfg)))
    cfdrnn.trained(cfg, crops, work, progress=False)
    return []


def _msrrn(cfg, work) -> list:
    """MSRRN and the SDM + HOG baseline."""
    cfg = dataclasses.replace(cfg, epochs=1)
    crops = msrrn.datasets(dataclasses.replace(cfg, n_train=_batches(cfg), n_val=2, n_test=_one_per_subset(cfg)))
    msrrn.train(cfg, crops["train"], val_crops=crops["validation"], work=work, progress=False)
    return [msrrn.train_sdm(cfg, crops["train"].subset(torch.arange(SDM_FACES)), work)[1]]


def _pifa(cfg, work) -> list:
    """The paper's network (the reference arm) and the SDM baseline on its crops."""
    cfg = dataclasses.replace(cfg, epochs=1, fc_grid=8)
    crops = pifa.datasets(dataclasses.replace(cfg, n_train=_batches(cfg, cfg.variations), n_val=2, n_test=1,
                                              n_afw=1))
    pifa.main_network(cfg, crops, work, progress=False)
    faces = crops["train"].subset(torch.arange(SDM_FACES))
    return [pifa.sdm_nme(pifa.train_sdm(cfg, faces), cfg, faces, faces).mean(1).tolist()]


def _rcsr(cfg, work) -> list:
    """ConvGRU + SRCNN (with ``full``'s fine-tuning round) and SDM, which the comparison chapter also fits."""
    cfg = dataclasses.replace(cfg, epochs=1, finetune_epochs=min(cfg.finetune_epochs, 1))
    per_face = 2 * cfg.replicates * cfg.inits            # mirrored, box-noise replicates, jittered starts
    crops = rcsr.datasets(dataclasses.replace(cfg, n_train=_batches(cfg, per_face), n_val=2,
                                              n_test=_one_per_subset(cfg)))
    rcsr.trained(cfg, crops, work, "main", progress=False)
    faces = {"train": crops["train"].subset(torch.arange(SDM_FACES))}
    return [rcsr.trained(cfg, faces, work, "sdm", kind="sdm", progress=False)[1]]


def _foundations(cfg, work) -> list:
    cfg = {**cfg, "epochs": 1}
    train, _ = foundations.datasets({**cfg, "n_train": STEPS * cfg["batch"], "n_test": 1}, seed=0)
    foundations.train(cfg, train, device="cpu", seed=0, checkpoint_dir=work)
    return []


TRAIN = {"ccnn": (ccnn, _ccnn), "cfdrnn": (cfdrnn, _cfdrnn), "msrrn": (msrrn, _msrrn), "pifa": (pifa, _pifa),
         "rcsr": (rcsr, _rcsr), "foundations": (foundations, _foundations)}


@pytest.fixture
def fits(monkeypatch) -> list:
    """Every ``falign.train.fit`` of the test: (the weights before, the model, its History)."""
    calls, real = [], trainer.fit

    def fit(model, *args, **kwargs):
        before = {k: v.clone() for k, v in model.state_dict().items()}
        history = real(model, *args, **kwargs)
        calls.append((before, model, history))
        return history

    monkeypatch.setattr(trainer, "fit", fit)
    return calls


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("paper", TRAIN)
def test_configuration_trains_on_the_cpu(paper, scale, fits, tmp_path, monkeypatch):
    """Finite losses, and every parameter moved: two steps reach the layers behind the zero-initialised
    output layers (MSRRN, RCSR, CFDRNN), which the first step's gradient cannot."""
    monkeypatch.setattr(precision, "native_bf16", lambda: False)     # float32 without a probe
    chapter, run = TRAIN[paper]
    with trainer.step_cap(STEPS):
        closed_form = run(chapter.SCALES[scale], tmp_path)
    assert fits, "no training ran"
    for before, model, history in fits:
        assert len(history.epochs) == 1 and math.isfinite(history.epochs[0]["loss"])
        unchanged = [name for name, p in model.named_parameters() if torch.equal(p.detach(), before[name])]
        assert unchanged == [], "parameters the optimiser never moved"
    for errors in closed_form:                   # closed-form fits: their training error falls stage by stage
        assert all(math.isfinite(e) for e in errors) and errors[-1] < errors[0]
