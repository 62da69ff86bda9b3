"""The RCSR aligner: how a photo and its face box become the network's input, and its output landmarks in
the photo's pixels (:class:`falign.kit.aligner.Aligner`); ``falign.load("rcsr")`` returns one."""

from __future__ import annotations

from torch import nn

from falign.kit.aligner import Aligner, register


@register("rcsr")
class RCSRAligner(Aligner):
    """RCSR and its Table 4 recurrent variants (:mod:`falign.papers.rcsr.model`): grey crops with a 10%
    margin and border padding, as :func:`falign.papers.rcsr.experiment.load` makes them; the initial shape
    is the training mean shape placed in the face box (in crop pixels); no visibility."""

    modules = ("falign.papers.rcsr.model",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.papers.rcsr import table4 as rcsr_table4

        return rcsr_table4.build_model("rcsr", **model_args)   # the stored unit/extractor override

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"margin": 0.1, "grey": True, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return model.config["scheme"]

    def forward_crops(self, crops, boxes):
        from falign.papers.rcsr.model import place_in_box

        return self.model.predict(crops, place_in_box(self.model.mean_shape, boxes))[-1], None
