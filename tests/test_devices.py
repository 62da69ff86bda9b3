"""Every model's forward pass, loss and backward on the ``meta`` device: device bugs without a GPU.

No GPU has been lent to this project, so a tensor made on the host inside a forward pass would first
fail on a user's GPU. The meta device holds no data and refuses such a mix as CUDA does ("Tensor on
device cpu is not on the expected device meta"), on any machine and at no cost. Each arm of every
chapter is built on the CPU at the chapter's smoke size and moved with ``.to("meta")``, as a user moves
a model to ``cuda``; its batch is made on meta, and the chapter's training loss runs forward and
backward there. :func:`arms` is reused by ``test_scales`` for the ``gpu`` and ``full`` sizes.

Not run on meta, each for a reason (meta has shapes but no values, so code that reads values cannot
run on it):

* the batch augmentations of CFDRNN and MSRRN (:func:`falign.papers.cfdrnn.experiment.augment`,
  :func:`falign.papers.msrrn.experiment.augment`): ``falign.data.transforms.transform_landmarks`` reads
  whether any affine mirrors. Their affines are made on the host on purpose (a few numbers per face)
  and moved by ``warp_images``/``apply_affine``; the model part of each loss is tested here;
* SDM's closed-form fit (it returns each stage's training error as a Python float) and RCSR's adaptive
  stopping rule (it stops once every face has converged): both read values by design; their forward
  passes are tested;
* SynthFace's rasteriser (data generation: it sizes its work by what the triangles cover).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch

from falign.kit import aligner
from falign.papers.ccnn import experiment as ccnn_chapter
from falign.papers.cfdrnn import experiment as cfdrnn_chapter, model as cfdrnn
from falign.papers.msrrn import experiment as msrrn_chapter, model as msrrn
from falign.papers.pifa import experiment as pifa_chapter, model as pifa
from falign.papers.rcsr import experiment as rcsr_chapter, model as rcsr, table4 as rcsr_table4
from falign.measure.landmarks import get_scheme
from falign.synthface.morphable import builtin_model

META = torch.device("meta")
B = 2                                   # faces per batch


@dataclass(frozen=True)
class Arm:
    """One trainable network of a chapter: how to build it, the chapter's training loss, and a batch."""

    build: Callable[[], torch.nn.Module]
    loss: Callable[[torch.nn.Module, dict], torch.Tensor]
    batch: Callable[[torch.device], dict]


def _rand(device, *shape, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.rand(shape, device=device)


def _ccnn_batch(device, size: int, anchors: bool) -> dict:
    n = len(ccnn_chapter.POINTS)
    box = torch.tensor([size / 4, size / 4, 3 * size / 4, 3 * size / 4], device=device).expand(B, 4)
    batch = {"image": torch.zeros(B, 3, size, size, dtype=torch.uint8, device=device), "box": box,
             "target": _rand(device, B, n, 2)}
    return {**batch, "anchors": _rand(device, B, n, 2)} if anchors else batch


def _ccnn_arms(cfg) -> dict[str, Arm]:
    """Every stage of every CCNN arm (the chapter trains them one by one)."""
    out = {}
    for name, variant in ccnn_chapter.VARIANTS.items():
        for k in range(1, variant.n_stages + 1):
            def build(variant=variant, k=k):
                return ccnn_chapter.build(variant, cfg.supersample).stages[k - 1]
            out[f"{name} stage {k}"] = Arm(build, ccnn_chapter.loss,
                                           functools.partial(_ccnn_batch, size=cfg.size, anchors=k > 1))
    return out


def _cfdrnn_loss(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    """The chapter's loss after its augmentation (see the module docstring)."""
    return cfdrnn.loss(model, batch["image"], batch["landmarks"], out=model(batch["image"]))


def _cfdrnn_arms(cfg) -> dict[str, Arm]:
    batch = lambda d: {"image": _rand(d, B, 3, cfg.size, cfg.size),  # noqa: E731
                       "landmarks": _rand(d, B, cfdrnn.N_POINTS, 2, scale=cfg.size)}
    return {arm: Arm(functools.partial(cfdrnn_chapter.build, cfg, arm), _cfdrnn_loss, batch)
            for arm in cfdrnn_chapter.ARMS}


def _msrrn_arms(cfg) -> dict[str, Arm]:
    n = get_scheme(msrrn_chapter.SCHEME).n_points
    batch = lambda d: {"image": _rand(d, B, 1, cfg.size, cfg.size), "target": _rand(d, B, n, 2)}  # noqa: E731
    return {arm: Arm(functools.partial(msrrn_chapter.build, cfg, arm), msrrn.loss_fn, batch)
            for arm in msrrn_chapter.ARMS}


def _pifa_arms(cfg) -> dict[str, Arm]:
    model = builtin_model()             # real tensors even when the network is built on meta
    n = get_scheme(pifa_chapter.SCHEME).n_points
    k = model.id_basis.shape[0] + model.exp_basis.shape[0]
    batch = lambda d: {"image": _rand(d, B, 3, cfg.size, cfg.size), "M": _rand(d, B, 2, 4),  # noqa: E731
                       "p": _rand(d, B, k), "landmarks": _rand(d, B, n, 2, scale=cfg.size)}
    return {arm: Arm(functools.partial(pifa_chapter.build_network, cfg, model, **variant), pifa.pifa_loss, batch)
            for arm, variant in pifa_chapter.ARMS.items()}


def _rcsr_arms(cfg) -> dict[str, Arm]:
    """Table 4's recurrent rows and the Fig. 5 and Fig. 7 variants (SDM has no loss: see above)."""
    n = get_scheme(rcsr_chapter.SCHEME).n_points
    batch = lambda d: {"image": _rand(d, B, 1, cfg.size, cfg.size),  # noqa: E731
                       "init": _rand(d, B, n, 2, scale=cfg.size), "target": _rand(d, B, n, 2, scale=cfg.size)}
    variants = {kind: (kind, {}) for kind in rcsr_table4.TABLE4 if kind != "sdm"}
    variants.update({name: ("convgru-srcnn", v) for name, v in
                     {**rcsr_chapter.fig5_variants(cfg), **rcsr_chapter.fig7_variants(cfg)}.items()})
    return {name: Arm(functools.partial(rcsr_chapter.build, cfg, kind, **v), rcsr.loss_fn, batch)
            for name, (kind, v) in variants.items()}


CHAPTERS = {"ccnn": (ccnn_chapter, _ccnn_arms), "cfdrnn": (cfdrnn_chapter, _cfdrnn_arms),
            "msrrn": (msrrn_chapter, _msrrn_arms), "pifa": (pifa_chapter, _pifa_arms),
            "rcsr": (rcsr_chapter, _rcsr_arms)}


def arms(scale: str, papers=tuple(CHAPTERS)) -> dict[str, Arm]:
    """``"<chapter> <arm>" -> Arm`` for every chapter of ``papers`` at one of its scales."""
    return {f"{paper} {name}": arm for paper in papers
            for name, arm in CHAPTERS[paper][1](CHAPTERS[paper][0].SCALES[scale]).items()}


def step_on_meta(model: torch.nn.Module, arm: Arm) -> None:
    """The arm's loss, forward and backward, on meta: a scalar, and a gradient for every parameter."""
    model = model.to(META).train()
    loss = arm.loss(model, arm.batch(META))
    assert loss.device == META and loss.shape == ()
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


SMOKE = arms("smoke")


@pytest.mark.parametrize("name", SMOKE)
def test_training_step_runs_on_meta(name):
    step_on_meta(SMOKE[name].build(), SMOKE[name])


def _smoke(paper: str):
    return CHAPTERS[paper][0].SCALES["smoke"]


# Each aligner kind's network at a small size: (build, crop channels, crop side).
ALIGNED = {
    "pifa": (lambda: pifa_chapter.build_network(_smoke("pifa")), 3, _smoke("pifa").size),
    "rcsr": (lambda: rcsr_chapter.build(_smoke("rcsr")), 1, _smoke("rcsr").size),
    "ccnn": (lambda: ccnn_chapter.build(ccnn_chapter.VARIANTS["ccnn"]), 3, _smoke("ccnn").size),
    "msrrn": (lambda: msrrn_chapter.build(_smoke("msrrn")), 1, _smoke("msrrn").size),
    "cfdrnn": (lambda: cfdrnn_chapter.build(_smoke("cfdrnn")), 3, _smoke("cfdrnn").size),
}


# dlib's ERT (falign.baselines.dlib_ert) runs inside dlib, on the CPU: it has no torch device to mix up.
HOST_ONLY = {"dlib-ert"}


def test_every_aligner_kind_is_covered():
    import falign.baselines.dlib_ert  # noqa: F401 - registers the peer's kind, as falign.load("dlib-ert-68") would

    assert set(ALIGNED) == set(aligner.kinds()) - HOST_ONLY


@pytest.mark.parametrize("kind", sorted(ALIGNED))
def test_aligner_predicts_on_meta(kind):
    """The network call of ``Aligner.align`` (its crops and mapping back stay on the host by design)."""
    build, channels, size = ALIGNED[kind]
    wrapped = aligner.make(build(), kind, preprocess={"size": size}).to(META)
    crops = torch.rand(B, channels, size, size, device=META)
    boxes = torch.tensor([2.0, 2.0, size - 2.0, size - 2.0], device=META).expand(B, 4)
    points, visible = wrapped.forward_crops(crops, boxes)
    n = get_scheme(wrapped.scheme).n_points
    assert points.device == META and points.shape == (B, n, 2)
    assert visible is None or visible.shape == (B, n)


def test_sdm_forward_on_meta():
    cfg, n = _smoke("rcsr"), get_scheme(rcsr_chapter.SCHEME).n_points
    model = rcsr_chapter.build(cfg, "sdm").to(META)
    shapes = model(_rand(META, B, 1, cfg.size, cfg.size), _rand(META, B, n, 2, scale=cfg.size))
    assert shapes.device == META and shapes.shape == (cfg.sdm_stages + 1, B, n, 2)


def test_place_in_box_keeps_tensors_on_their_device():
    """RCSR's initial shape: the same numbers from numpy and from tensors, which stay where they are."""
    mean = np.random.default_rng(0).random((68, 2), dtype=np.float32)
    boxes = np.array([[10.0, 20.0, 50.0, 70.0], [0.0, 0.0, 8.0, 8.0]], np.float32)
    placed = rcsr.place_in_box(mean, boxes)
    assert isinstance(placed, np.ndarray) and placed.dtype == np.float32
    np.testing.assert_array_equal(rcsr.place_in_box(torch.from_numpy(mean), torch.from_numpy(boxes)).numpy(), placed)
    on_meta = rcsr.place_in_box(torch.from_numpy(mean).to(META), torch.from_numpy(boxes).to(META))
    assert on_meta.device == META and on_meta.shape == (2, 68, 2)
