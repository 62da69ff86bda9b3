"""RCSR's Table 4 (Sec. 5): six regressor x feature architectures behind one factory, :func:`build_model`.

Table 4 separates the two halves of RCSR: the regressor (a linear cascade, a traditional GRU, a
ConvGRU) and the features (HOG, LeNet, FAUC, SRCNN). Five rows are :class:`falign.papers.rcsr.model.RCSR`
with other parts; the first is :class:`falign.baselines.sdm.SDM`. Every model answers
``predict(images (B,1,H,W), init_shapes (B,N,2)) -> shapes per step (T+1, B, N, 2)``; SDM is fit in
closed form with :meth:`SDM.fit`, the others with ``falign.kit.train.fit`` and ``rcsr.loss_fn``.
"""

from __future__ import annotations

from torch import nn

from falign.papers.rcsr.model import RCSR
from falign.baselines.sdm import SDM

# Table 4, row by row: kind -> (the row as printed, the RCSR configuration; None for SDM).
TABLE4: dict[str, tuple[str, dict | None]] = {
    "sdm": ("Linear Regressor + HOG (SDM [3])", None),
    "gru-hog": ("Traditional GRU + HOG", dict(unit="gru", extractor="hog")),
    "gru-srcnn": ("Traditional GRU + SRCNN [20]", dict(unit="gru", extractor="srcnn")),
    "convgru-lenet": ("Convolutional GRU + LeNet", dict(unit="convgru", extractor="lenet")),
    "convgru-fauc": ("Convolutional GRU + FAUC", dict(unit="convgru", extractor="fauc")),
    "convgru-srcnn": ("Convolutional GRU + SRCNN", dict(unit="convgru", extractor="srcnn")),
}

KINDS = {"rcsr": "convgru-srcnn", "rcfa": "gru-srcnn"}   # the paper's names for two rows


def build_model(kind: str, **cfg) -> nn.Module:
    """One Table 4 architecture by ``kind`` (see :data:`TABLE4`; "rcsr" = "convgru-srcnn", "rcfa" =
    "gru-srcnn"); ``cfg`` goes to :class:`SDM` or :class:`RCSR` (scheme, steps, patch_size, ...)."""
    kind = KINDS.get(kind, kind)
    if kind not in TABLE4:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(TABLE4)}, rcsr, rcfa")
    base = TABLE4[kind][1]
    return SDM(**cfg) if base is None else RCSR(**{**base, **cfg})


def learned_numbers(model: nn.Module) -> int:
    """How many numbers a Table 4 model learns: its parameters, and SDM's regression matrices (buffers);
    never the mean shape, which is a statistic of the training data."""
    return sum(t.numel() for name, t in model.state_dict().items()
               if t.dtype.is_floating_point and name != "mean_shape")
