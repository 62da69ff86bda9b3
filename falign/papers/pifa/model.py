"""PIFA: pose-invariant face alignment with a single CNN (Jourabloo et al., ICCV 2017).

Read top to bottom, this file follows Sec. 3 of the paper:

* Sec. 3.1: a face is a 3D morphable model (3DMM) shape ``S_p = S_0 + sum p_k S_k`` (Eq. 1) seen
  through a weak-perspective camera ``U = M [S_p; 1]`` (Eq. 3-4). The network estimates the
  parameters ``P = {M, p}``: the 8 entries of ``M`` and the 228 shape coefficients ``p`` (199
  identity + 29 expression), 236 numbers per face.
* Sec. 3.3: the *visualization layer* draws the current estimate of ``P`` as an image: every vertex
  that faces the camera paints its "frontability" (Eq. 8) times a mask (Eq. 11) at its projected
  position, averaged with Gaussian weights (Eq. 9-10). It is differentiable w.r.t. ``M`` and ``p``,
  which is what lets one CNN be trained end to end.
* Sec. 3.2: six *visualization blocks* (Fig. 2-3, Table 1). Block ``i`` looks at the image, the
  previous block's feature maps and the visualization of ``P^{i-1}``, and adds an update:
  ``P^i = P^{i-1} + dP^i``. Losses: Eq. 6 (weighted parameter error) on blocks 1-3, Eq. 7 (2D
  landmark error) on blocks 4-6, block ``i`` weighted by ``i``.

Everything is in *crop* coordinates: the face box cropped and resized to ``size x size`` (114 in the
paper), 0-based pixels, x right, y down, pixel centres at integers. Decisions where the paper is
silent or ambiguous are marked ``Decision [pifa.<name>]`` where they are made; :mod:`falign.kit.decisions`
holds what the paper says about each, and the chapter's Deviations section shows both.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from falign.synthface.morphable import MorphableModel, project, vertex_normals
from falign.synthface.render import zbuffer_points

# --------------------------------------------------------------------------------------------------
# Sec. 3.1  The parameters P = {M, p}
# --------------------------------------------------------------------------------------------------
N_CAMERA = 8  # m1..m8 of Eq. 4, row-major: [m1 m2 m3 m4; m5 m6 m7 m8]
ROTATION = (0, 1, 2, 4, 5, 6)  # the scaled rotation rows m1 = (m1,m2,m3), m2 = (m5,m6,m7)
TRANSLATION = (3, 7)  # m4, m8


def split_params(P: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 8 + K) -> M (B,2,4), p (B,K).

    Decision [pifa.camera-entries] (model): the network regresses the 8 entries of M directly, as Eq. 4
    writes them (no angles), so M's two rows need not stay orthogonal.
    Paper: Eq. 4 writes the camera as eight entries m1..m8 of M; whether the network regresses them directly
    or through pose angles, and whether M's rows stay orthogonal, is not said."""
    return P[:, :N_CAMERA].reshape(-1, 2, 4), P[:, N_CAMERA:]


def join_params(M: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return torch.cat([M.reshape(-1, N_CAMERA), p], dim=1)


def toward_camera(M: torch.Tensor) -> torch.Tensor:
    """Eq. 8's direction (m1 x m2) / (|m1| |m2|), signed so that it points at the viewer.

    The model's y axis points up and the image's y axis down, so ``m1 x m2`` itself points *away*
    from the camera (a frontal face has m1 = (s,0,0), m2 = (0,-s,0), m1 x m2 = (0,0,-s^2)); we negate
    it so that a normal facing the camera has positive frontability, which is what Eq. 8 means.
    Same direction as ``falign.synthface.morphable.depth_axis``, but with Eq. 8's |m1| |m2| normaliser, so a
    regressed M whose rows are not orthogonal gives a shorter vector (lower frontability)."""
    m1, m2 = M[:, 0, :3], M[:, 1, :3]
    return -torch.linalg.cross(m1, m2) / (m1.norm(dim=1) * m2.norm(dim=1)).clamp_min(1e-12)[:, None]


# --------------------------------------------------------------------------------------------------
# Sec. 3.3  The visualization layer
# --------------------------------------------------------------------------------------------------
MASKS = ("nose", "five", "none")  # Table 7: mask 1 (Eq. 11, Fig. 4), mask 2 (Fig. 8), no mask


def _standardise(a: torch.Tensor) -> torch.Tensor:
    """'a is pre-computed and normalized for zero-mean and unit standard deviation' (after Eq. 11)."""
    return (a - a.mean()) / a.std()


def _face_width(model: MorphableModel) -> torch.Tensor:
    """Distance between the two jaw ends (iBUG points 0 and 16) of the mean face: the unit in which
    the masks' widths are given, so the masks look the same for any model scale."""
    jaw = model.mean[model.landmark_vertices["ibug68"][[0, 16]]]
    return (jaw[0] - jaw[1]).norm()


def nose_mask(model: MorphableModel, width: float = 0.25) -> torch.Tensor:
    """Mask 1, Eq. 11: a Gaussian around the nose tip (iBUG point 30) of the mean face.

    Decision [pifa.mask1-width] (model): sigma_n is not given; ``width`` * face width (0.25) makes the eyes,
    nose and mouth positive and the cheeks/contour negative after standardisation, as Fig. 4 shows.
    Paper: Eq. 11: a Gaussian of the distance to the nose tip, standardised; sigma_n is not given (Fig. 4
    shows positive values in the middle of the face, negative on the contour)."""
    mean = model.mean.double()
    tip = mean[model.landmark_vertices["ibug68"][30]]
    sigma = width * _face_width(model).double()
    return _standardise(torch.exp(-((mean - tip) ** 2).sum(1) / (2 * sigma**2))).float()


def five_area_mask(model: MorphableModel, width: float = 0.08) -> torch.Tensor:
    """Mask 2, Fig. 8: 'five positive areas, i.e., the eyes, nose tip and two lip corners'.

    Decision [pifa.mask2] (model): the strongest of five Gaussians (sigma = ``width`` * face width) centred on
    the two eye centres (means of iBUG 36-41 and 42-47), the nose tip (30) and the mouth corners (48,
    54), standardised like mask 1; vertices away from the five areas become negative.
    Paper: Fig. 8: mask 2 has 'five positive areas, i.e., the eyes, nose tip and two lip corners',
    standardised; no formula or widths."""
    mean = model.mean.double()
    lm = mean[model.landmark_vertices["ibug68"]]
    centres = torch.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])
    sigma = width * _face_width(model).double()
    d2 = ((mean[:, None, :] - centres[None]) ** 2).sum(-1)
    return _standardise(torch.exp(-d2 / (2 * sigma**2)).amax(1)).float()


class VisualizationLayer(nn.Module):
    """Eq. 8-11: render ``P = {M, p}`` as a (B, 1, size, size) image, differentiably.

    Per vertex q: frontability ``g_q = max(0, d(M) . N0_q)`` (Eq. 8, ``N0`` = normals of the *mean*
    face, computed once, as the paper approximates) times the mask ``a_q`` (Eq. 11). Visibility
    follows the paper's two approximations: vertices with g = 0 are pruned, and where several
    vertices land on one pixel only the nearest to the camera is kept (a z-buffer over points; that
    choice is an index, not differentiated). Each pixel (u, v) then averages ``g a`` over the kept
    vertices whose pixel lies in its (2r+1)^2 window with weights ``w = exp(-d^2 / 2 sigma^2)`` of the
    distance to the exact projected position (Eq. 9-10). The values and weights stay differentiable
    w.r.t. M and p. A pixel with no kept vertex in its window is 0 (background).

    Decision [pifa.vis-sigma] (model): sigma (Eq. 10) is not given; 1 pixel with a 5x5 window (r = 2).
    Paper: Eq. 9-10: a Gaussian-weighted average over the vertices near each pixel; sigma and the
    neighbourhood D(u, v) are not given.
    """

    def __init__(self, model: MorphableModel, mask: str = "nose", sigma: float = 1.0, radius: int = 2):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"mask={mask!r} is not one of {MASKS}")
        self.mask_name, self.sigma, self.radius = mask, float(sigma), int(radius)
        normals = vertex_normals(model.mean[None], model.triangles)[0]
        a = {"nose": nose_mask, "five": five_area_mask}.get(mask, lambda m: torch.ones(len(m.mean)))(model)
        _register_shape_buffers(self, model.mean, torch.cat([model.id_basis, model.exp_basis]))
        self.register_buffer("normals0", normals.float(), persistent=False)
        self.register_buffer("mask", a.float(), persistent=False)

    def forward(self, M: torch.Tensor, p: torch.Tensor, size: int, scale: float = 1.0) -> torch.Tensor:
        """M, p in crop coordinates; ``scale`` < 1 renders at a coarser grid (x' = (x + 1/2) s - 1/2),
        e.g. 0.5 for the 57x57 maps of blocks 2-6."""
        dtype = torch.promote_types(M.dtype, torch.float32)
        with _float32_region(M.device):
            M, p = M.to(dtype), p.to(dtype)
            S = _shape(self, p)  # Eq. 1, (B,V,3)
            xy = (project(M, S) + 0.5) * scale - 0.5  # Eq. 3 on the output grid
            d = toward_camera(M)
            g = torch.relu(self.normals0.to(dtype) @ d.T).T  # Eq. 8, (B,V)
            value = g * self.mask.to(dtype)  # g(q) a(q) of Eq. 9
            return self._splat(xy, value, g > 0, (S.detach() @ d.detach()[:, :, None])[..., 0], size)

    def _splat(self, xy, value, keep, depth, size):
        B, r = xy.shape[0], self.radius
        # Pruning and z-buffer: pruned vertices get depth -inf, which zbuffer_points ignores.
        depth = depth.masked_fill(~keep, float("-inf"))
        winner = zbuffer_points(xy.detach(), depth, size, size)
        # Each pixel gathers the winners of its (2r+1)^2 window (Eq. 9's neighbourhood D(u, v)).
        k = 2 * r + 1
        padded = F.pad(winner, (r, r, r, r), value=-1)
        window = padded.unfold(1, k, 1).unfold(2, k, 1).reshape(B, size * size * k * k)
        valid = window >= 0
        q = window.clamp_min(0)
        x = torch.gather(xy[..., 0], 1, q).view(B, size, size, k * k)
        y = torch.gather(xy[..., 1], 1, q).view(B, size, size, k * k)
        val = torch.gather(value, 1, q).view(B, size, size, k * k)
        grid = torch.arange(size, device=xy.device, dtype=xy.dtype)
        d2 = (grid[None, None, :, None] - x) ** 2 + (grid[None, :, None, None] - y) ** 2
        w = torch.exp(-d2 / (2 * self.sigma**2)) * valid.view(B, size, size, k * k)  # Eq. 10
        num, den = (w * val).sum(-1), w.sum(-1)
        return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))[:, None]


def _float32_region(device: torch.device):
    """Leave any autocast region for geometry that bfloat16 would round. Devices without autocast
    (``meta``, on which the tests run every model to catch tensors left on the host) have none to
    leave, and ``torch.autocast`` refuses them."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _register_shape_buffers(module: nn.Module, mean: torch.Tensor, bases: torch.Tensor) -> None:
    """Keep S_0 (V, 3) and the stacked bases (K, V, 3; identity then expression) as non-persistent
    buffers so they follow ``.to(device)`` without bloating checkpoints."""
    module.register_buffer("shape_mean", mean.float(), persistent=False)
    module.register_buffer("shape_bases", bases.float().reshape(bases.shape[0], -1), persistent=False)


def _shape(module: nn.Module, p: torch.Tensor) -> torch.Tensor:
    """Eq. 1: S_p = S_0 + sum_k p_k S_k, for the vertices the module keeps."""
    mean = module.shape_mean.to(p.dtype)
    return mean + (p @ module.shape_bases.to(p.dtype)).view(p.shape[0], *mean.shape)


# --------------------------------------------------------------------------------------------------
# Sec. 3.2  The network: visualization blocks
# --------------------------------------------------------------------------------------------------
# Table 1, the 12 conv layers in order as (filters, kernel).
# Decision [pifa.table8-split] (model): block i of N_v takes N_c = 12 / N_v of them in sequence, for Table 8's
# 4x3 and 3x4, which the paper does not tabulate.
# Paper: Table 8 tests 4 blocks x 3 conv layers and 3 x 4; Table 1 gives filters only for 6 blocks x 2.
TABLE1_CONVS: tuple[tuple[int, int], ...] = (
    (12, 5), (16, 5), (20, 3), (24, 3), (28, 3), (32, 3), (36, 3), (40, 3), (40, 3), (40, 3), (40, 3), (40, 3),
)
INPUTS = ("IFV", "FV", "IV")  # Table 6 architectures a, b, c


class VisualizationBlock(nn.Module):
    """Fig. 3: conv layers (each conv + BN + ReLU) extract deeper features; two fully connected
    layers (800 + ReLU + dropout, then 236) estimate the update dP from them.

    Decision [pifa.block-padding] (model): 'same' padding keeps 57x57 maps through blocks 2-6 (the paper
    states the 57x57 input size); conv layers have no bias (BN follows).
    Paper: Blocks 2-6 take 57x57 input (Sec. 4.1); conv padding and biases are not given (each conv is
    followed by BN and ReLU, Sec. 3.2).

    Decision [pifa.dropout] (model): dropout p = 0.5 (not given).
    Paper: The first FC layer is followed by ReLU and dropout (Sec. 3.2); the rate is not given.

    Decision [pifa.fc-input] (model): ``fc_grid`` = None feeds the full feature map to the first FC layer as
    the paper implies (no pooling is mentioned; that is ~40-104M weights per block); an int
    adaptively average-pools to fc_grid x fc_grid first, for CPU-sized runs (small: the 32x32 maps
    of blocks 2-6 pooled to 8x8; a 4x4 grid discarded most of the spatial detail V adds).
    Paper: No pooling before the FC layers is mentioned: the first FC layer (800 units) reads the whole 57x57
    feature map of its block."""

    def __init__(self, in_channels: int, convs: Sequence[tuple[int, int]], pool_first: bool, hw: int,
                 n_out: int, fc_hidden: int = 800, dropout: float = 0.5, fc_grid: int | None = None):
        super().__init__()
        layers, c = [], in_channels
        for j, (filters, kernel) in enumerate(convs):
            layers += [nn.Conv2d(c, filters, kernel, padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(filters), nn.ReLU(inplace=True)]
            if j == 0 and pool_first:  # Sec. 4.1: pooling after block 1's first conv, 114 -> 57
                layers.append(nn.MaxPool2d(2))
            c = filters
        self.features = nn.Sequential(*layers)
        self.fc_grid = fc_grid
        g = hw if fc_grid is None else fc_grid
        self.regressor = nn.Sequential(nn.Flatten(), nn.Linear(c * g * g, fc_hidden), nn.ReLU(inplace=True),
                                       nn.Dropout(dropout), nn.Linear(fc_hidden, n_out))
        # Decision [pifa.last-fc-init] (model): the paper trains from scratch and gives no initialisation; the
        # last FC layer starts near zero (weights N(0, 1e-3^2), bias 0), so every block's first update
        # dP^i is about 0 and P^0 passes through all blocks at initialisation (the residual path
        # P^i = P^{i-1} + dP^i starts as the identity). Every other layer keeps PyTorch's default init.
        # Paper: The network is trained 'from scratch' (Sec. 4); no initialisation is given.
        nn.init.normal_(self.regressor[-1].weight, std=1e-3)
        nn.init.zeros_(self.regressor[-1].bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        pooled = feats if self.fc_grid is None else F.adaptive_avg_pool2d(feats, self.fc_grid)
        return feats, self.regressor(pooled)


class PIFA(nn.Module):
    """Fig. 2: ``n_blocks`` visualization blocks chained through features and parameters.

    Arguments name the paper's ablations: ``n_blocks`` with Table 1's 12 conv layers split evenly
    (Table 8: 6x2, 4x3, 3x4); ``inputs`` "IFV" | "FV" | "IV" (Table 6); ``mask`` "nose" | "five" |
    "none" (Table 7); ``visualize=False`` is the "without any visualization layer" network of
    Sec. 4.3 (7.18%): the same blocks with the V channel removed, so the estimate of P reaches later
    blocks only through the residual sum P^i = P^{i-1} + dP^i. ``scheme`` names the landmark set
    b of Eq. 3/7 (any scheme of ``model.landmark_model``).

    ``forward(image, box=None)`` returns the list [P^0, P^1, ..., P^{n_blocks}] of (B, 236)
    parameter estimates (Table 3 needs every one). Blocks 2+ work at half resolution: the image is
    2x2-average-pooled and V rendered at that grid.
    """

    def __init__(self, model: MorphableModel, *, scheme: str = "aflw-pifa34", size: int = 114,
                 in_channels: int = 3, n_blocks: int = 6, convs: Sequence[tuple[int, int]] = TABLE1_CONVS,
                 inputs: str = "IFV", mask: str = "nose", visualize: bool = True, fc_hidden: int = 800,
                 dropout: float = 0.5, fc_grid: int | None = None, sigma: float = 1.0, radius: int = 2):
        super().__init__()
        if inputs not in INPUTS:
            raise ValueError(f"inputs={inputs!r} is not one of {INPUTS}")
        if len(convs) % n_blocks:
            raise ValueError(f"{len(convs)} conv layers cannot be split into {n_blocks} equal blocks")
        if size % 2:
            raise ValueError(f"size={size} must be even (block 1 pools by 2)")
        self.scheme, self.size, self.in_channels = scheme, size, in_channels
        self.inputs, self.visualize = inputs, visualize
        self.n_params = model.id_basis.shape[0] + model.exp_basis.shape[0]
        self.n_out = N_CAMERA + self.n_params
        self.visualization = VisualizationLayer(model, mask, sigma, radius) if visualize else None

        per_block, half, c = len(convs) // n_blocks, size // 2, 0
        blocks = []
        for i in range(n_blocks):
            uses_image = i == 0 or "I" in inputs
            uses_feats = i > 0 and "F" in inputs
            in_ch = in_channels * uses_image + c * uses_feats + int(visualize)
            layers = convs[i * per_block:(i + 1) * per_block]
            blocks.append(VisualizationBlock(in_ch, layers, i == 0, half, self.n_out, fc_hidden, dropout, fc_grid))
            c = layers[-1][0]
        self.blocks = nn.ModuleList(blocks)

        # Eq. 3 only needs the landmarks b: the scheme's vertices, or for schemes derived from
        # iBUG-68 (AFW's eye centres...) the same averages of vertices, a linear map like S itself.
        lm_mean, lm_bases = model.landmark_model(scheme)
        _register_shape_buffers(self, lm_mean, lm_bases)
        normals = vertex_normals(model.mean, model.triangles)
        lm_normals = dataclasses.replace(model, mean=normals).landmark_model(scheme)[0]  # same averages
        self.register_buffer("landmark_normals", F.normalize(lm_normals.float(), dim=1), persistent=False)
        self.register_buffer("p_sigma", model.sigma.float(), persistent=False)
        self._init_box_fit(lm_mean.float())

    # ---- P^0: the mean shape fitted into the face box ---------------------------------------------
    def _init_box_fit(self, mean_landmarks: torch.Tensor) -> None:
        """Decision [pifa.initial-params] (model): P^0 = (frontal M^0, p = 0) with the mean face's landmark
        bounding box fitted into the face box (its longer side = sqrt(w h) of the box, centred on the box
        centre).
        ``calibrate`` replaces the scale ratio and centre offset with their averages over the
        training ground truth, since a dataset's boxes are usually larger than the landmarks.
        Paper: The input includes 'an initial estimation of the parameter P^0' (Sec. 3.2) from the given box;
        how the mean face is placed in the box is not given (Table 3: initial NME 25.8%)."""
        lo, hi = mean_landmarks[:, :2].min(0).values, mean_landmarks[:, :2].max(0).values
        self.register_buffer("landmark_centre", torch.cat([(lo + hi) / 2, mean_landmarks[:, 2].mean()[None]]))
        self.register_buffer("init_scale", 1.0 / (hi - lo).max())  # s^0 / sqrt(w h) of the box
        self.register_buffer("init_offset", torch.zeros(2))  # (centre - box centre) / sqrt(w h)
        # Eq. 6's r (mean |scaled rotation| / mean |translation|); default from P^0 of the full crop.
        M0 = split_params(self.initial_params(self.crop_box(1)))[0].flatten(1)
        self.register_buffer("rotation_ratio", M0[:, ROTATION].abs().mean() / M0[:, TRANSLATION].abs().mean())

    def crop_box(self, batch: int, device=None) -> torch.Tensor:
        """The crop itself as a box (x1, y1, x2, y2): pixel edges -1/2 .. size - 1/2."""
        b = torch.tensor([-0.5, -0.5, self.size - 0.5, self.size - 0.5], device=device)
        return b.expand(batch, 4)

    def initial_params(self, box: torch.Tensor) -> torch.Tensor:
        """P^0 (B, 236) for boxes (B, 4): frontal M^0 = [[s,0,0,tx],[0,-s,0,ty]], p^0 = 0."""
        wh = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).sqrt()
        s = self.init_scale * wh
        centre = (box[:, :2] + box[:, 2:]) / 2 + self.init_offset * wh[:, None]
        cx, cy = self.landmark_centre[0], self.landmark_centre[1]
        zero = torch.zeros_like(s)
        M = torch.stack([torch.stack([s, zero, zero, centre[:, 0] - s * cx], 1),
                         torch.stack([zero, -s, zero, centre[:, 1] + s * cy], 1)], 1)
        return join_params(M, torch.zeros(len(box), self.n_params, device=box.device))

    @torch.no_grad()
    def calibrate(self, M: torch.Tensor, box: torch.Tensor | None = None) -> None:
        """Set the box-fit of P^0 and Eq. 6's ratio r from training ground truth M (n, 2, 4) and
        the boxes they belong to (default: the crop)."""
        M = M.to(self.init_scale)
        box = self.crop_box(len(M), M.device) if box is None else box.to(M)
        wh = ((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])).sqrt()
        s = (M[:, 0, :3].norm(dim=1) * M[:, 1, :3].norm(dim=1)).sqrt()
        centre = M[:, :, :3] @ self.landmark_centre + M[:, :, 3]
        self.init_scale.copy_((s / wh).mean())
        self.init_offset.copy_(((centre - (box[:, :2] + box[:, 2:]) / 2) / wh[:, None]).mean(0))
        flat = M.flatten(1)
        self.rotation_ratio.copy_(flat[:, ROTATION].abs().mean() / flat[:, TRANSLATION].abs().mean())

    # ---- parameter units ---------------------------------------------------------------------------
    def update_scale(self) -> torch.Tensor:
        """Decision [pifa.parameter-units] (model): this is the one place M and p are normalised: the last FC
        layer outputs dP in natural units, multiplied here into raw parameters: p_k in units of its std
        sigma_k, the scaled rotation entries of M in units of the box-fitted scale s^0, translations in
        units of the crop size. A fixed per-output rescaling, so Eq. 6-7 still act on raw P.
        Paper: The last FC layer has 236 outputs (Table 1); in what units M and p are regressed (any
        normalisation of the update) is not given."""
        s0 = self.init_scale * self.size
        cam = torch.full((N_CAMERA,), float(self.size), device=s0.device)
        cam[list(ROTATION)] = s0
        return torch.cat([cam, self.p_sigma])

    # ---- forward ------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, box: torch.Tensor | None = None,
                return_visualizations: bool = False):
        B = image.shape[0]
        if image.shape[-2:] != (self.size, self.size):
            raise ValueError(f"PIFA expects {self.size}x{self.size} crops, got {tuple(image.shape[-2:])}")
        P = self.initial_params(self.crop_box(B, image.device) if box is None else box)
        half = F.avg_pool2d(image, 2)
        scale = self.update_scale()
        params, vis, feats = [P], [], None
        for i, block in enumerate(self.blocks):
            size, img = (self.size, image) if i == 0 else (self.size // 2, half)
            parts = []
            if i == 0 or "I" in self.inputs:
                parts.append(img)
            if i > 0 and "F" in self.inputs:
                parts.append(feats)
            if self.visualize:
                # Without a box, P^0 is the same for every face: block 1's V is rendered once (the
                # same pixels as rendering each face, without B - 1 identical renderings).
                same = i == 0 and box is None
                V = self.visualization(*split_params(P[:1] if same else P), size, size / self.size)
                V = V.expand(B, -1, -1, -1) if same else V
                parts.append(V.to(img.dtype))
                vis.append(V)
            feats, dP = block(torch.cat(parts, 1))
            P = P + dP.float() * scale  # the ResNet-like parameter path: P^i = P^{i-1} + dP^i
            params.append(P)
        return (params, vis) if return_visualizations else params

    # ---- outputs --------------------------------------------------------------------------------------
    def landmarks(self, P: torch.Tensor) -> torch.Tensor:
        """Eq. 3: the 2D landmarks f(P) = M [S_p(:, b); 1], (B, N, 2) in crop pixels (float32 even
        under autocast: bfloat16 would round pixel coordinates by up to half a pixel)."""
        with _float32_region(P.device):
            M, p = split_params(P.float())
            return project(M, _shape(self, p))

    def visibility(self, P: torch.Tensor) -> torch.Tensor:
        """Landmark visibility 'naturally derived' from P (Sec. 3.1).

        Decision [pifa.visibility] (model): a landmark is visible when its frontability (Eq. 8, mean-face
        normal) is positive, i.e. it faces the camera.
        Paper: Landmark visibility is estimated from the fitted 3D shape and pose (Sec. 3.1); the test is not
        stated."""
        M = split_params(P.float())[0]
        return (self.landmark_normals @ toward_camera(M).T).T > 0

    @torch.no_grad()
    def predict(self, image: torch.Tensor, box: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Landmarks (B, N, 2) and visibility (B, N) in crop pixels from the final block."""
        P = self(image, box)[-1]
        return self.landmarks(P), self.visibility(P)


def count_parameters(net: PIFA) -> pd.DataFrame:
    """Trainable parameters per visualization block (conv+BN, FC) for the Table 1 reproduction."""
    rows = []
    for i, block in enumerate(net.blocks, 1):
        conv = sum(t.numel() for t in block.features.parameters())
        fc = sum(t.numel() for t in block.regressor.parameters())
        convs = [f"{m.out_channels} ({m.kernel_size[0]}x{m.kernel_size[1]})" for m in block.features
                 if isinstance(m, nn.Conv2d)]
        rows.append({"block": i, "conv layers": ", ".join(convs), "in channels": block.features[0].in_channels,
                     "conv+BN params": conv, "FC params": fc, "total": conv + fc})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------------
# Sec. 3.2  Loss functions
# --------------------------------------------------------------------------------------------------
def parameter_weights(net: PIFA) -> torch.Tensor:
    """Eq. 6's diagonal W: 1/sigma_k for each p_k, 1/r for the scaled rotation entries of M (r = mean
    |rotation| / mean |translation| in the training data, see ``PIFA.calibrate``), 1 for m4, m8."""
    cam = torch.ones(N_CAMERA, device=net.p_sigma.device)
    cam[list(ROTATION)] = 1.0 / net.rotation_ratio
    return torch.cat([cam, 1.0 / net.p_sigma])


def block_losses(net: PIFA, params: Sequence[torch.Tensor], target: dict[str, torch.Tensor],
                 param_blocks: int | None = None) -> torch.Tensor:
    """Per-block losses (n_blocks,), each averaged over the batch.

    Blocks 1..param_blocks (default n_blocks // 2, i.e. 1-3 of 6) use Eq. 6 on P^i - P_bar (the
    update's error dP^i - dP_bar^i with dP_bar^i = P_bar - P^{i-1}); later blocks use Eq. 7 on all N
    landmarks (Eq. 7 has no visibility term; ground truth gives invisible points too).

    Decision [pifa.table8-losses] (training): Sec. 4 gives the loss split (Eq. 6 on blocks 1-3, Eq. 7 on 4-6) and
    the block weights 1..6 for the six-block network only. Table 8's networks keep the same rule: the
    first half of the blocks use Eq. 6 and the second half Eq. 7 (4 blocks: 2 + 2; 3 blocks: 1 + 2),
    and block i is weighted by i (:func:`pifa_loss`).
    Paper: Eq. 6 on blocks 1-3, Eq. 7 on blocks 4-6 and block weights 1..6 (Sec. 4) are given for six blocks
    only; Table 8's 4- and 3-block networks get no loss split.

    Decision [pifa.loss-convention] (training): Caffe's EuclideanLoss convention (1/2, summed over entries);
    gradients flow through P^{i-1} as well, so every loss reaches all earlier blocks (end-to-end,
    Sec. 4).
    Paper: Eq. 6-7 are 'Euclidean losses' (Caffe); the 1/2 factor, the reduction over entries, and whether
    each block's loss reaches earlier blocks through P^{i-1} are not stated ('joint optimization ... through
    backpropagation')."""
    n = len(params) - 1
    param_blocks = n // 2 if param_blocks is None else param_blocks
    W = parameter_weights(net)
    P_bar = join_params(target["M"].float(), target["p"].float())
    U_bar = target["landmarks"].float()
    out = []
    for i in range(1, n + 1):
        P = params[i].float()
        if i <= param_blocks:
            e = ((P - P_bar) ** 2 * W).sum(1)  # Eq. 6
        else:
            e = ((net.landmarks(P) - U_bar) ** 2).sum((1, 2))  # Eq. 7
        out.append(0.5 * e.mean())
    return torch.stack(out)


def pifa_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training objective for ``falign.kit.train.fit``: sum_i i * E^i (block weights 1..n, Sec. 4).

    ``batch`` (crop coordinates): ``image`` (B,C,size,size) float, ``M`` (B,2,4), ``p`` (B,K),
    ``landmarks`` (B,N,2) for ``net.scheme``; optional ``box`` (B,4) to start from (default: the
    crop). ``model`` may be DDP-wrapped."""
    missing = {"image", "M", "p", "landmarks"} - set(batch)
    if missing:
        raise KeyError(f"pifa_loss: batch lacks {sorted(missing)}")
    net = getattr(model, "module", model)
    params = model(batch["image"], batch.get("box"))
    losses = block_losses(net, params, batch)
    weights = torch.arange(1, len(losses) + 1, device=losses.device, dtype=losses.dtype)
    return (weights * losses).sum()

