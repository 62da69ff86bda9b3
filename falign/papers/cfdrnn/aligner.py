"""The CFDRNN aligner: how a photo and its face box become the network's input, and its output landmarks in
the photo's pixels (:class:`falign.kit.aligner.Aligner`); ``falign.load("cfdrnn")`` returns one."""

from __future__ import annotations

from torch import nn

from falign.kit.aligner import Aligner, register


@register("cfdrnn")
class CFDRNNAligner(Aligner):
    """CFDRNN (:mod:`falign.papers.cfdrnn.model`): RGB crops of the face box with the chapter's 15% margin
    and border padding, as :func:`falign.papers.cfdrnn.experiment.crop` makes them; the network reads the
    whole crop and returns L4 = s argmax(H4) + dL4 (Eq. 4) in crop pixels; no visibility."""

    modules = ("falign.papers.cfdrnn.model",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.papers.cfdrnn.model import CFDRNN

        return CFDRNN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.15, "grey": False, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        from falign.papers.cfdrnn.model import SCHEME

        return SCHEME

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops), None

# --------------------------------------------------------------------------------------------------
# Saving and loading
# --------------------------------------------------------------------------------------------------
