"""The PIFA aligner: how a photo and its face box become the network's input, and its output landmarks in
the photo's pixels (:class:`falign.kit.aligner.Aligner`); ``falign.load("pifa")`` returns one."""

from __future__ import annotations

from torch import nn

from falign.kit.aligner import Aligner, register


@register("pifa")
class PIFAAligner(Aligner):
    """PIFA (:mod:`falign.papers.pifa.model`): RGB crops of the face box itself (margin 0, zero padding),
    as :func:`falign.papers.pifa.experiment.load` makes them; visibility from the estimated 3D pose."""

    modules = ("falign.papers.pifa.model",)

    @classmethod
    def build(cls, model_args: dict) -> nn.Module:
        from falign.papers.pifa.model import PIFA
        from falign.synthface.morphable import builtin_model

        args = dict(model_args)
        morphable = args.pop("morphable", "builtin")
        if morphable != "builtin":
            raise ValueError(f"unknown 3DMM {morphable!r} (this falign ships 'builtin')")
        return PIFA(builtin_model(), **args)

    @classmethod
    def describe(cls, model: nn.Module) -> dict:
        """Read the constructor arguments back from the network's layers."""
        block = model.blocks[0]
        convs = [(m.out_channels, m.kernel_size[0]) for b in model.blocks for m in b.features
                 if isinstance(m, nn.Conv2d)]
        vis = model.visualization
        return dict(morphable="builtin", scheme=model.scheme, size=model.size, in_channels=model.in_channels,
                    n_blocks=len(model.blocks), convs=convs, inputs=model.inputs,
                    mask=vis.mask_name if vis is not None else "nose", visualize=model.visualize,
                    fc_hidden=block.regressor[1].out_features, dropout=float(block.regressor[3].p),
                    fc_grid=block.fc_grid, sigma=vis.sigma if vis is not None else 1.0,
                    radius=vis.radius if vis is not None else 2)

    @classmethod
    def default_preprocess(cls, model: nn.Module) -> dict:
        return {"size": model.size, "margin": 0.0, "grey": model.in_channels == 1, "padding": "zeros"}

    def forward_crops(self, crops, boxes):
        return self.model.predict(crops)   # P^0 is fitted to the crop itself, as in training
