"""Batched prediction: run a model over many faces in fixed-size batches, on any device.

Every chapter's evaluation goes through :func:`in_batches`, so memory stays bounded and results come
back on the CPU in the input order, concatenated along the axis the model puts its batch on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


@torch.no_grad()
def in_batches(fn: Callable[..., Any], *inputs: torch.Tensor, batch: int = 64, device: torch.device | str = "cpu",
               dim: int = 0) -> Any:
    """``fn`` applied to slices of ``inputs`` (all of the same length), moved to ``device``.

    ``fn`` returns a tensor or a tuple/list of tensors; each output is concatenated along ``dim``
    (its batch axis: 0 for landmarks, 1 for a recurrent model's per-step shapes) and returned on the CPU.
    """
    n = len(inputs[0])
    if any(len(x) != n for x in inputs):
        raise ValueError(f"in_batches: inputs of different lengths {[len(x) for x in inputs]}")
    if n == 0:
        raise ValueError("in_batches: no inputs to predict")
    outputs = [fn(*(x[i:i + batch].to(device) for x in inputs)) for i in range(0, n, batch)]
    if isinstance(outputs[0], torch.Tensor):
        return torch.cat([o.cpu() for o in outputs], dim)
    return type(outputs[0])(torch.cat([o[k].cpu() for o in outputs], dim) for k in range(len(outputs[0])))
