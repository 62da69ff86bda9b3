"""The MSRRN aligner: how a photo and its face box become the network's input, and its output landmarks in
the photo's pixels (:class:`falign.kit.aligner.Aligner`); ``falign.load("msrrn")`` returns one."""

from __future__ import annotations

from torch import nn

from falign.kit.aligner import Aligner, register


@register("msrrn")
class MSRRNAligner(Aligner):
    """MSRRN (:mod:`falign.papers.msrrn.model`): grey crops of the face box with the chapter's 20% margin and
    border padding, as :func:`falign.papers.msrrn.experiment.datasets` makes them around dlib's boxes (give a
    :func:`falign.data.detect.detect_faces` box for the best match); the network reads the crop as its finest
    scale and returns its last stage S^T in [0, 1] crop units, mapped to crop pixels; no visibility."""

    modules = ("falign.papers.msrrn.model",)
    trained_boxes = "dlib-hog"              # the chapter crops around dlib's HOG boxes (msrrn.detector)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.papers.msrrn.model import MSRRN

        return MSRRN(**model_args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        return dict(model.config)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.2, "grey": True, "padding": "border"}

    @classmethod
    def default_scheme(cls, model: nn.Module) -> str:
        return model.config["scheme"]

    def forward_crops(self, crops, boxes):
        from falign.papers.msrrn.model import to_pixels

        return to_pixels(self.model.predict(crops)[-1], crops.shape[-1]), None
