"""HOG at the landmarks: the hand-crafted features of SDM and of a recurrent regressor's "traditional
GRU + HOG" arm, as a module with no parameters."""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from falign.kit.patches import sample_patches


class HOGFeatures(nn.Module):
    """Sec. 5.1: HOG descriptors at patches centred on the landmarks, concatenated (the hand-crafted
    F of SDM and of "traditional GRU + HOG"); no parameters, no gradient.

    Decision [hog.cells] (model): SIFT-like defaults, since SDM used SIFT: the P x P patch (16 by default)
    is split into 4x4 cells, 8 orientations, one L2-Hys block -> 128 numbers per landmark at any P.
    The descriptor is ``skimage.feature.hog``'s (central-difference gradients, unsigned orientations
    hard-binned into equal 180/orientations-degree bins, cell means of the gradient magnitude, L2-Hys
    per block), computed like a dense patch CNN's features: :meth:`prepare` makes the per-pixel
    orientation histograms of the whole image and their cell means once, :meth:`forward` reads each
    landmark's cells at its position and normalises its blocks. At an integer position this is
    skimage's HOG of the patch except that gradients on the patch's edge use the true neighbouring
    pixels (skimage zeroes gradients on an image's border); between pixels the cell histograms are
    interpolated.
    Paper: SDM and 'traditional GRU + HOG' use HOG at the landmarks (Sec. 5.1); cells, blocks and orientations
    are not given.
    """

    def __init__(self, n_points: int, patch_size: int = 16, cells: int = 4, block: int = 4,
                 orientations: int = 8):
        super().__init__()
        if patch_size % cells or cells < block:
            raise ValueError(f"HOG: patch_size={patch_size} must split into cells={cells} cells per side, "
                             f"at least block={block}")
        self.n_points, self.patch_size, self.cells, self.block = n_points, patch_size, cells, block
        self.cell = patch_size // cells
        self.orientations = orientations
        self.blocks_per_side = cells - block + 1
        self.pad = patch_size // 2 + 1                      # + 1: the gradient at the patch's edge
        self.out_shape = (n_points * self.blocks_per_side ** 2 * block ** 2 * orientations,)

    @torch.no_grad()
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) -> (B, orientations, H', W'): the mean gradient magnitude per orientation bin of the
        cell whose first pixel is padded-image pixel u (float64 for the angles, as skimage)."""
        x = F.pad(images[:, :1].double(), (self.pad,) * 4, mode="replicate")
        g_row, g_col = torch.zeros_like(x), torch.zeros_like(x)
        g_row[..., 1:-1, :] = x[..., 2:, :] - x[..., :-2, :]
        g_col[..., :, 1:-1] = x[..., :, 2:] - x[..., :, :-2]
        angle = torch.rad2deg(torch.atan2(g_row, g_col)) % 180
        bins = (angle / (180 / self.orientations)).floor().clamp_(0, self.orientations - 1).long()
        per_bin = torch.zeros(x.shape[0], self.orientations, *x.shape[2:], dtype=x.dtype, device=x.device)
        per_bin.scatter_(1, bins, torch.hypot(g_row, g_col))
        return F.avg_pool2d(per_bin, self.cell, stride=1).float()

    @torch.no_grad()
    def forward(self, cells: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        B, N = points.shape[:2]
        n, b, k = self.cells, self.block, self.blocks_per_side
        centre = points.float() + self.pad - (self.patch_size - 1) / 2 + self.cell * (n - 1) / 2
        grid = sample_patches(cells, centre, n, step=self.cell).permute(0, 1, 3, 4, 2)   # (B,N,n,n,O)
        blocks = grid.unfold(2, b, 1).unfold(3, b, 1)                     # (B,N,k,k,O,b,b)
        blocks = blocks.permute(0, 1, 2, 3, 5, 6, 4).reshape(B, N, k, k, -1)
        return l2_hys(blocks).reshape(B, -1)


def l2_hys(blocks: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """HOG's L2-Hys block normalisation over the last axis (as skimage): L2, clip at 0.2, L2 again."""
    out = blocks / torch.sqrt(blocks.pow(2).sum(-1, keepdim=True) + eps ** 2)
    out = out.clamp(max=0.2)
    return out / torch.sqrt(out.pow(2).sum(-1, keepdim=True) + eps ** 2)
