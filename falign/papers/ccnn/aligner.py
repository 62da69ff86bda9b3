"""The CCNN aligner: how a photo and its face box become the network's input, and its output landmarks in
the photo's pixels (:class:`falign.kit.aligner.Aligner`); ``falign.load("ccnn")`` returns one."""

from __future__ import annotations

from torch import nn

from falign.kit.aligner import Aligner, register


@register("ccnn")
class CCNNAligner(Aligner):
    """CCNN (:mod:`falign.papers.ccnn.model`): RGB crops around the face box with the chapter's margin (half
    the box on each side) and border padding, as :func:`falign.papers.ccnn.experiment.datasets` makes them;
    the network reads the crop *and the face box in the crop's pixels* (stage 1 cuts the box out, stages
    2-3 cut their windows from the crop), and returns the points of its last stage; no visibility."""

    modules = ("falign.papers.ccnn.model",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.papers.ccnn.model import CCNN

        return CCNN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"margin": 0.5, "grey": False, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        from falign.papers.ccnn.model import SCHEME

        return SCHEME

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops, boxes), None
