"""Shape-indexed input: patches centred on the current landmark estimates, and per-image
standardisation, shared by the recurrent regressors and the hand-crafted baselines."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_patches(images: torch.Tensor, points: torch.Tensor, size: int,
                   width: int | None = None, step: float = 1.0) -> torch.Tensor:
    """(B,C,H,W) images, (B,N,2) pixel points -> (B,N,C,size,width) patches whose pixels are ``step``
    pixels apart (``width`` defaults to ``size``: square patches).

    Patch k of face b is centred on points[b, k] (exactly on its centre pixel when the sides are
    odd). All B*N patches come from one bilinear ``grid_sample`` call, so gradients reach the image
    and the landmark positions; outside the image the border pixels repeat.
    """
    B, C, H, W = images.shape
    N, width = points.shape[1], width or size
    rows = (torch.arange(size, device=points.device, dtype=points.dtype) - (size - 1) / 2) * step
    cols = (torch.arange(width, device=points.device, dtype=points.dtype) - (width - 1) / 2) * step
    dy, dx = torch.meshgrid(rows, cols, indexing="ij")
    x = points[..., 0, None, None] + dx                                   # (B,N,size,width)
    y = points[..., 1, None, None] + dy
    grid = torch.stack([2 * x / (W - 1) - 1, 2 * y / (H - 1) - 1], dim=-1)
    # NaN positions (a diverged training) crash grid_sample's CPU backward; zeroed here, they still
    # make the loss NaN, which falign.kit.train.fit reports.
    # In float32 even under bf16 autocast: a bf16 grid would misplace the patches by a tenth of a pixel.
    grid = torch.nan_to_num(grid.reshape(B, N * size, width, 2).float(), nan=0.0)
    patches = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return patches.reshape(B, C, N, size, width).transpose(1, 2)


def standardise(images: torch.Tensor) -> torch.Tensor:
    """Each image to zero mean and unit variance: lighting and contrast vary across faces, and the
    CNN extractors (no batch norm) train far faster on standardised input."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (images - mean) / images.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
