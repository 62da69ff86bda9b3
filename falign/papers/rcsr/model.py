"""Recurrent Convolutional Shape Regression (RCSR): W. Wang, S. Tulyakov, N. Sebe, TPAMI 2018.

A cascade of shape regressors (Eq. 1-3) turned into one recurrent network whose convolutional and
recurrent modules are trained jointly, end to end. Read top to bottom, this file follows the paper's
Section 3:

1. Initial shapes (Sec. 3, 3.1.1): the training mean shape placed in the face box, jittered several
   times per training face.
2. Patches (Sec. 3.2): one bilinear ``grid_sample`` call reads a P x P grid centred on every current
   landmark of every face.
3. Convolutional module (Sec. 3.2, 4.2, 5.2): SRCNN (Eq. 9) with ``depth`` extra 3x3 layers (Fig. 5),
   or the LeNet and FAUC baselines (Fig. 9); HOG for the hand-crafted baselines (Sec. 5.1). Each runs
   once per image and every landmark's maps are read out where its patch lies; the maps of all
   landmarks are stacked into one tensor (Sec. 4.2, 6.3).
4. Recurrent module (Sec. 3.1): a GRU (Eq. 4-7) whose products are convolutions (ConvGRU, Fig. 3a)
   or matrix products on flattened features (traditional GRU, Fig. 3b); a fully connected head turns
   the memory H_t into the overall shape increment h_t, and the estimate is h^_t = h^_0 + h_t.
5. The loss (Eq. 8) with w_t = 10^(t/T), and the stopping rule of Sec. 4.3 with its threshold's
   calibration.

Coordinates are 0-based pixels of the model's input image (x right, y down, pixel centres at
integers). Choices the paper leaves open are marked ``Decision [rcsr.<name>]`` where they are made,
each with what the paper says after ``Paper:``; :func:`falign.kit.decisions.deviations` gathers them
for the chapter's Deviations section.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from falign.baselines.hog import HOGFeatures
from falign.kit.patches import sample_patches, standardise
from falign.measure.landmarks import get_scheme

# ---------------------------------------------------------------------------------------------
# 1. Initial shapes
# ---------------------------------------------------------------------------------------------


def mean_shape(landmarks: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The training mean shape S-bar (Sec. 3: h^_0 = S-bar) in box units: (0, 0) is the box's top-left
    corner and (1, 1) its bottom-right, so that it can be placed in any face box."""
    landmarks, boxes = np.asarray(landmarks, np.float64), np.asarray(boxes, np.float64)
    if landmarks.ndim != 3 or boxes.shape != (len(landmarks), 4):
        raise ValueError(f"mean_shape: expected landmarks (n,N,2) and boxes (n,4), got "
                         f"{landmarks.shape} and {boxes.shape}")
    origin, size = boxes[:, None, :2], boxes[:, None, 2:] - boxes[:, None, :2]
    return ((landmarks - origin) / size).mean(0).astype(np.float32)


def place_in_box(mean: np.ndarray | torch.Tensor, boxes: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """(N,2) box-unit shape, (B,4) boxes x1,y1,x2,y2 -> (B,N,2) pixel shapes: the initial estimate.

    float32 numpy for numpy boxes; for tensor boxes a tensor on their device, so that a model's input
    never makes a round trip through the host (``mean`` may be the model's ``mean_shape`` buffer)."""
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.float()
        mean = torch.as_tensor(mean, dtype=torch.float32, device=boxes.device)
    else:
        boxes, mean = np.asarray(boxes, np.float32), np.asarray(mean, np.float32)
    return boxes[:, None, :2] + mean * (boxes[:, None, 2:] - boxes[:, None, :2])


def jittered_initial_shapes(mean: np.ndarray, boxes: np.ndarray, n_init: int, *, shift: float = 0.05,
                            scale: float = 0.05, seed: int = 0) -> np.ndarray:
    """Sec. 3.1.1: "for each face image, the initial shape is sampled several times by adding noise to
    the mean shape". Returns (B, n_init, N, 2).

    Decision [rcsr.initial-noise] (data): the noise is a random similarity of the placed mean shape, the kind
    of error a face detector makes: a translation N(0, shift * box side) per axis and a scale
    1 + N(0, scale) about the box centre.
    Paper: Sec. 3.1.1: 'the initial shape is sampled several times by adding noise to the mean shape'; the
    noise is not described.
    """
    boxes = np.asarray(boxes, np.float32)
    rng = np.random.default_rng(seed)
    side = (boxes[:, 2:] - boxes[:, :2])[:, None, None, :]                 # (B,1,1,2)
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2)[:, None, None, :]
    placed = place_in_box(mean, boxes)[:, None]                           # (B,1,N,2)
    s = 1 + scale * rng.standard_normal((len(boxes), n_init, 1, 1))
    t = shift * side * rng.standard_normal((len(boxes), n_init, 1, 2))
    return ((placed - centre) * s + centre + t).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# 2. Patches centred on the current landmarks
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# 3. Convolutional module: per-patch feature extractors (each maps (M,1,P,P) -> (M,C,h,w))
# ---------------------------------------------------------------------------------------------


def _scaled(channels: int, width: float) -> int:
    """Decision [rcsr.cnn-width] (model): ``width`` < 1 thins a network's channels for CPU-sized runs (the
    experiments' scale configs say where); 1 is the paper's.
    Paper: The CNNs' widths: SRCNN 64/32 (Eq. 9), LeNet 20/50, FAUC 64/128/256 (Sec. 5.2)."""
    return max(1, round(channels * width))


class SRCNN(nn.Sequential):
    """Eq. 9 and Sec. 4.2: W1 = 9x9x64 + ReLU, ``depth`` compound 3x3x64 layers + ReLU (VDSR [46],
    Fig. 5: n = 0, 5, 10, 15, 20) in front of W2 = 1x1x32 + ReLU, and W3 = 5x5 projecting to
    ``out_channels`` feature maps (the paper's W3 is [32 x 5 x 5 x 1]: one map per landmark).

    Decision [rcsr.srcnn-padding] (model): W1 and W3 are unpadded, as in SRCNN [39], so a P x P patch gives
    (P-12) x (P-12) maps; the 3x3 layers pad by 1, as in VDSR.
    Paper: Eq. 9 gives SRCNN's W1 9x9x64, W2 1x1x32, W3 5x5 and the extra 3x3 layers of Fig. 5; padding is not
    given.
    """

    def __init__(self, depth: int = 0, out_channels: int = 1, width: float = 1.0):
        n1, n2 = _scaled(64, width), _scaled(32, width)
        layers: list[nn.Module] = [nn.Conv2d(1, n1, 9), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Conv2d(n1, n1, 3, padding=1), nn.ReLU()]
        layers += [nn.Conv2d(n1, n2, 1), nn.ReLU(), nn.Conv2d(n2, out_channels, 5)]
        super().__init__(*layers)


class LeNet(nn.Sequential):
    """Fig. 9 (2), Sec. 5.2: LeNet [56] without its classifier: 5x5x20 conv, 2x2 max-pool, 5x5x50
    conv, 2x2 max-pool.

    Decision [rcsr.lenet] (model): as in Caffe's LeNet (and the paper's description) no ReLU between them.
    Paper: LeNet [56] without its classifier (Fig. 9): two 5x5 convs (20, 50) with 2x2 max-pooling; no
    activations are listed."""

    def __init__(self, width: float = 1.0):
        c1, c2 = _scaled(20, width), _scaled(50, width)
        super().__init__(nn.Conv2d(1, c1, 5), nn.MaxPool2d(2), nn.Conv2d(c1, c2, 5), nn.MaxPool2d(2))


class FAUC(nn.Sequential):
    """Fig. 9 (3), Sec. 5.2: the facial action unit network [55] without its classifier: three
    bias-free 5x5 convs with 64, 128, 256 filters, each followed by ReLU; 2x2 max-pooling after the
    first two and quadrant pooling [58] (the mean of each image quadrant: 2x2 maps) after the third.

    Decision [rcsr.fauc-padding] (model): the convs pad by 2 ("same"), since a landmark patch is far smaller
    than FAUC's 96x96 faces and three unpadded 5x5 convs with two poolings would consume it.
    Paper: FAUC [55] (Fig. 9) was designed for 96x96 faces; how it applies to landmark patches is not said.
    """

    def __init__(self, width: float = 1.0):
        c1, c2, c3 = _scaled(64, width), _scaled(128, width), _scaled(256, width)
        super().__init__(
            nn.Conv2d(1, c1, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 5, padding=2, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )


EXTRACTORS = {"srcnn": SRCNN, "lenet": LeNet, "fauc": FAUC}


class PatchCNN(nn.Module):
    """F(I, h): the CNN's feature maps of the P x P patch around every landmark, for all landmarks.

    Decision [rcsr.stacking] (model): the maps are stacked along channels, landmark-major, giving a
    (B, N*C, h, w) tensor whose spatial layout is the patch's, which is what the ConvGRU's convolutions
    can exploit (Sec. 6.3).
    Paper: 'we stack the feature maps of the 68 landmarks' (Sec. 4.2); the axis is not stated.

    Decision [rcsr.dense-features] (model): the CNN runs once per image, densely, and each landmark's maps are
    read out of the dense response at its current position (bilinearly, ``step`` pixels apart), not
    recomputed on 68 patches at every recurrence. Convolutions at stride 1 commute with shifts, and a
    2x2 max-pooling (or an average pooling) becomes a stride-1 pooling followed by layers dilated by
    the pooling's stride ("a trous"), so for a patch at an integer position the read-out equals the CNN
    applied to that patch exactly when no layer pads (SRCNN at depth 0, LeNet); a padded layer (the
    extra 3x3 layers of Fig. 5, FAUC's convolutions) reads the pixels around the patch where the
    per-patch network reads zeros. Between pixels the features are interpolated instead of the
    pixels. The image is padded by repeating its border, as the per-patch sampler repeats it. This is
    what makes the CPU scales affordable: the CNN's cost no longer grows with landmarks x recurrences.
    Paper: F(I, h) applies the CNN to the patches around the landmarks (Sec. 3.2); how it is computed is not
    said.

    Speed: the CNN's weights and the dense maps are kept channels-last, 1.2-1.4x faster for SRCNN on
    the CPU (measured); the numbers are the same.
    """

    def __init__(self, cnn: nn.Sequential, n_points: int, patch_size: int):
        super().__init__()
        self.cnn, self.n_points, self.patch_size = cnn, n_points, patch_size
        self.pad = patch_size // 2
        x, self._sizes = torch.zeros(1, 1, patch_size, patch_size), []
        with torch.no_grad():
            for layer in cnn:
                _check_dense(layer)
                self._sizes.append(x.shape[-1])                            # the per-patch input side
                try:
                    x = layer(x)
                except RuntimeError as err:
                    raise ValueError(f"patch_size={patch_size} is too small for {type(cnn).__name__}") from err
        c, h, w = x.shape[1:]
        if min(h, w) < 1:
            raise ValueError(f"patch_size={patch_size} is too small for {type(cnn).__name__}")
        self.out_shape = (n_points * c, h, w)
        self.step = 1                                                      # the read-out's pixel spacing
        for layer, side in zip(cnn, self._sizes):
            self.step *= _stride(layer, side)
        cnn.to(memory_format=torch.channels_last)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Once per image: the dense response of the CNN on the border-padded image; response pixel u
        is the per-patch output unit whose patch starts at padded-image pixel u."""
        x = F.pad(images, (self.pad,) * 4, mode="replicate").contiguous(memory_format=torch.channels_last)
        dilation = 1
        for layer, side in zip(self.cnn, self._sizes):
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, layer.weight, layer.bias, padding=tuple(dilation * p for p in layer.padding),
                             dilation=dilation)
            elif isinstance(layer, nn.MaxPool2d):
                x = _dilated_max(x, layer.kernel_size, dilation)
            elif isinstance(layer, nn.AdaptiveAvgPool2d):
                k = _stride(layer, side)
                kernel = x.new_full((x.shape[1], 1, k, k), 1 / k ** 2)
                x = F.conv2d(x, kernel, dilation=dilation, groups=x.shape[1])
            else:
                x = layer(x)
            dilation *= _stride(layer, side)
        return x

    def forward(self, dense: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        B, N = points.shape[:2]
        _, h, w = self.out_shape
        start = points + self.pad - (self.patch_size - 1) / 2            # each patch's first pixel
        centre = start + self.step * points.new_tensor([(w - 1) / 2, (h - 1) / 2])
        maps = sample_patches(dense, centre, h, w, step=self.step)       # (B,N,C,h,w)
        return maps.reshape(B, N * maps.shape[2], h, w)


def _check_dense(layer: nn.Module) -> None:
    """The layers :class:`PatchCNN` can run densely: stride-1 convolutions, non-overlapping max-pooling,
    adaptive average pooling, and element-wise layers."""
    if isinstance(layer, nn.Conv2d):
        ok = layer.stride == (1, 1) and layer.dilation == (1, 1) and layer.padding_mode == "zeros"
    elif isinstance(layer, nn.MaxPool2d):
        ok = layer.stride == layer.kernel_size and layer.padding == 0 and layer.dilation == 1
    else:
        ok = isinstance(layer, (nn.AdaptiveAvgPool2d, nn.ReLU))
    if not ok:
        raise ValueError(f"PatchCNN cannot run {layer} densely")


def _dilated_max(x: torch.Tensor, k: int, dilation: int) -> torch.Tensor:
    """A k x k max-pooling at stride 1 whose taps are ``dilation`` apart, as the running maximum of the
    k^2 shifted views (several times faster on the CPU than ``max_pool2d(..., dilation=d)``)."""
    h, w = x.shape[-2] - dilation * (k - 1), x.shape[-1] - dilation * (k - 1)
    out = x[..., :h, :w]
    for i, j in itertools.product(range(k), repeat=2):
        if i or j:
            out = torch.maximum(out, x[..., i * dilation:i * dilation + h, j * dilation:j * dilation + w])
    return out


def _stride(layer: nn.Module, side: int) -> int:
    """How far apart, in the layer's input pixels, its outputs for one patch are."""
    if isinstance(layer, nn.MaxPool2d):
        return layer.kernel_size
    if isinstance(layer, nn.AdaptiveAvgPool2d):
        out = layer.output_size if isinstance(layer.output_size, int) else layer.output_size[0]
        if side % out:
            raise ValueError(f"{layer}: a {side}-pixel map does not split into {out} equal parts")
        return side // out
    return 1


# ---------------------------------------------------------------------------------------------
# 4. Recurrent module
# ---------------------------------------------------------------------------------------------


class GRU(nn.Module):
    """Eq. 4-7, one recurrence:

        z_t = sigmoid(W_zH * H_{t-1} + W_zf * f_t + b_z)                     (4)
        r_t = sigmoid(W_rH * H_{t-1} + W_rf * f_t + b_r)                     (5)
        c_t = tanh(W_cH * (r_t . H_{t-1}) + W_cf * f_t + b_c)                (6)
        H_t = (1 - z_t) . H_{t-1} + z_t . c_t                                (7)

    With ``conv=True`` every "*" is a k x k convolution and H_t is a (hidden, h, w) tensor: the
    ConvGRU of Fig. 3a, which keeps the features' spatial layout in memory. With ``conv=False`` they
    are matrix products on flattened features and H_t a vector: the traditional GRU of Fig. 3b [20].
    The three W_.f (and the biases) are one layer, as are W_zH and W_rH.
    """

    def __init__(self, in_channels: int, hidden: int, *, conv: bool, kernel: int = 3):
        super().__init__()
        self.conv, self.hidden = conv, hidden
        if conv:
            def layer(i: int, o: int, bias: bool) -> nn.Module:
                return nn.Conv2d(i, o, kernel, padding=kernel // 2, bias=bias)
        else:
            def layer(i: int, o: int, bias: bool) -> nn.Module:
                return nn.Linear(i, o, bias=bias)
        self.W_f = layer(in_channels, 3 * hidden, True)      # W_zf, W_rf, W_cf; b_z, b_r, b_c
        self.W_zrH = layer(hidden, 2 * hidden, False)        # W_zH, W_rH
        self.W_cH = layer(hidden, hidden, False)

    def initial_state(self, f: torch.Tensor) -> torch.Tensor:
        """H_0 = 0, shaped like the memory for input f."""
        shape = (f.shape[0], self.hidden, *f.shape[2:]) if self.conv else (f.shape[0], self.hidden)
        return f.new_zeros(shape)

    def forward(self, f: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
        if not self.conv:
            f = f.flatten(1)
        f_z, f_r, f_c = self.W_f(f).chunk(3, dim=1)
        H_z, H_r = self.W_zrH(H).chunk(2, dim=1)
        z = torch.sigmoid(H_z + f_z)                          # (4)
        r = torch.sigmoid(H_r + f_r)                          # (5)
        c = torch.tanh(self.W_cH(r * H) + f_c)                # (6)
        return (1 - z) * H + z * c                            # (7)


def fc_head(in_features: int, out_features: int, layers: int, width: int) -> nn.Sequential:
    """"fc" of Fig. 2 (1-3 layers in Fig. 5; ReLU between them).

    Decision [rcsr.head] (model): hidden layers ``width`` wide (512 by default); the last layer starts at zero
    so that training begins from h^_t = h^_0, the mean shape; h_t is predicted in units of the input
    image side (:class:`RCSR` multiplies the output by (W, H)), so the head's scale does not depend on
    the crop resolution.
    Paper: An fc layer maps the memory to the shape increment h_t (Fig. 2; 1-3 layers in Fig. 5); its widths,
    initialisation and output units are not given."""
    dims = [in_features] + [width] * (layers - 1)
    mods: list[nn.Module] = [nn.Flatten()]
    for i, o in zip(dims[:-1], dims[1:]):
        mods += [nn.Linear(i, o), nn.ReLU()]
    last = nn.Linear(dims[-1], out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*mods, last)


# Decision [rcsr.memory] (model): the ConvGRU keeps 64 channels (3x3 kernels, 'same' padding); the traditional GRU
# gets as many units as give it, with its fc head, the parameter count of the ConvGRU and its fc head on
# SRCNN's maps (:func:`gru_units`: 49 units at the paper's sizes), so Table 4's two regressors compare at
# equal parameters. (Equal state size, the other fair reading, would give the GRU 10,816 units and 220
# times the ConvGRU's parameters at the paper's sizes, and cost more than the rest of the chapter on the
# CPU.) The GRU + HOG row uses the same units, so that it differs from GRU + SRCNN in the features only.
# H_0 = 0.
# Paper: The ConvGRU's memory channels and the traditional GRU's units are not given; Table 4 compares the two
# regressors (Sec. 5.1) without saying at what size.
CONVGRU_CHANNELS = 64
# Decision [rcsr.patches] (model): patch side 25 pixels for the CNNs, 16 for HOG (the experiments' scale configs
# set it per crop size); features are read at the landmark's sub-pixel position by bilinear
# interpolation, the image's border pixels repeated (:class:`PatchCNN`, :func:`sample_patches`).
# Paper: Shape-indexed patches around the landmarks (Sec. 3.2); their size and sampling are not given.
DEFAULT_PATCH = {"srcnn": 25, "lenet": 25, "fauc": 25, "hog": 16}
UNITS = ("convgru", "gru")


def gru_units(channels: int, patch_size: int, n_points: int = 68) -> int:
    """Units of a traditional GRU on the stacked SRCNN maps of P x P patches whose parameters, with a
    one-layer fc head, equal those of a ConvGRU with ``channels`` channels and its fc head (the root of
    3u^2 + (3D + 3 + 2N) u + 2N = target for D inputs and N points, rounded)."""
    in_channels, h, w = PatchCNN(SRCNN(), n_points, patch_size).out_shape
    target = _count(GRU(in_channels, channels, conv=True)) + (channels * h * w + 1) * 2 * n_points
    a, b, c = 3, 3 * in_channels * h * w + 3 + 2 * n_points, 2 * n_points - target
    return max(1, round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)))


class RCSR(nn.Module):
    """The recurrent convolutional shape regressor (Fig. 2), and its Table 4 / Fig. 5 variants.

    ``extractor``: "srcnn" (the paper's), "lenet", "fauc" or "hog"; ``unit``: "convgru" (the paper's)
    or "gru"; ``depth``: extra SRCNN layers (Fig. 5); ``fc_layers``: 1-3 (Fig. 5); ``steps``: T, the
    recurrences trained (5 in Sec. 4.2; 10, 20, 30 in Sec. 4.4); ``scheme``: "ibug68" or "ibug49"
    (fixes N and the eye corners the stopping rule normalises by); ``cnn_width``: channel multiplier
    of the CNN (1 = the paper's widths); ``hidden``: the ConvGRU's channels (default 64) or the
    traditional GRU's units (default: :func:`gru_units` of 64 channels at this ``patch_size`` and N;
    for GRU + HOG, whose patch is HOG's, at SRCNN's default patch).

    The buffer ``mean_shape`` holds S-bar in box units (:func:`mean_shape`), set from the training set
    and saved with the weights, so a checkpoint knows its own initial shape h^_0.

    h_t is predicted in units of the input image side (the fc output is multiplied by (W, H); see
    :func:`fc_head`).

    Decision [rcsr.input] (model): the CNN extractors read each image standardised to zero mean and unit
    variance (:func:`standardise`; HOG normalises its own blocks and reads the raw image, so "GRU +
    HOG" and SDM see the same features).
    Paper: The CNN's input normalisation is not given.

    Decision [rcsr.patch-gradient] (training): the paper trains the CNN and the recurrent module jointly, end to
    end (Sec. 3); it does not discuss gradients through the patch positions. By default
    (``patch_gradient=False``, every scale) the positions are detached (``shape.detach()``): each
    recurrence reads its features where the previous one put the landmarks, as in a cascade, and the
    gradient reaches the CNN through the features only. ``patch_gradient=True`` is the other reading,
    gradients also flowing through the bilinear read-out into the positions.
    Paper: The CNN and the recurrent module are trained jointly, end to end (Sec. 3); gradients through the
    patch positions are not discussed.
    """

    def __init__(self, scheme: str = "ibug68", steps: int = 5, extractor: str = "srcnn",
                 unit: str = "convgru", patch_size: int | None = None, depth: int = 0,
                 fc_layers: int = 1, fc_width: int = 512, hidden: int | None = None, kernel: int = 3,
                 loss_schedule: str = "eq8", cnn_width: float = 1.0, patch_gradient: bool = False):
        super().__init__()
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {list(UNITS)}, got {unit!r}")
        if extractor not in DEFAULT_PATCH:
            raise ValueError(f"extractor must be one of {sorted(DEFAULT_PATCH)}, got {extractor!r}")
        if extractor == "hog" and unit == "convgru":
            raise ValueError("ConvGRU + HOG is not defined: HOG vectors have no spatial layout "
                             "(the paper does not report it, Sec. 5.1)")
        if depth and extractor != "srcnn":
            raise ValueError("depth (extra 3x3 layers, Fig. 5) applies to the SRCNN extractor only")
        if not 1 <= fc_layers <= 3:
            raise ValueError(f"fc_layers must be 1, 2 or 3 (Fig. 5), got {fc_layers}")
        self.scheme = get_scheme(scheme)
        N, P = self.scheme.n_points, patch_size or DEFAULT_PATCH[extractor]
        if hidden is None:       # rcsr.memory's rule at this patch size and N
            srcnn_patch = DEFAULT_PATCH["srcnn"] if extractor == "hog" else P
            hidden = CONVGRU_CHANNELS if unit == "convgru" else gru_units(CONVGRU_CHANNELS, srcnn_patch, N)
        self.config = dict(scheme=scheme, steps=steps, extractor=extractor, unit=unit, patch_size=P, depth=depth,
                           fc_layers=fc_layers, fc_width=fc_width, hidden=hidden, kernel=kernel,
                           loss_schedule=loss_schedule, cnn_width=cnn_width, patch_gradient=patch_gradient)
        self.steps, self.n_points = steps, N
        if extractor == "hog":
            self.features: nn.Module = HOGFeatures(N, P)
        else:
            cnn = SRCNN(depth, width=cnn_width) if extractor == "srcnn" else EXTRACTORS[extractor](cnn_width)
            self.features = PatchCNN(cnn, N, P)
        in_shape = self.features.out_shape
        conv = unit == "convgru"
        self.gru = GRU(in_shape[0] if conv else int(np.prod(in_shape)), hidden, conv=conv, kernel=kernel)
        memory = hidden * int(np.prod(in_shape[1:])) if conv else hidden
        self.head = fc_head(memory, 2 * N, fc_layers, fc_width)
        self.register_buffer("loss_weights", loss_weights(steps, loss_schedule), persistent=False)
        self.register_buffer("mean_shape", torch.zeros(N, 2))

    def recurrences(self, images: torch.Tensor, init: torch.Tensor) -> Iterator[torch.Tensor]:
        """Yield h^_1, h^_2, ... without end: the recurrence may run past the trained T (Sec. 4.3)."""
        B, N, _ = init.shape
        side = init.new_tensor([images.shape[-1], images.shape[-2]])
        shape, H = init, None
        prepared = self.features.prepare(images if isinstance(self.features, HOGFeatures) else standardise(images))
        while True:
            where = shape if self.config["patch_gradient"] else shape.detach()
            f = self.features(prepared, where)                             # f_t = F(I, h^_{t-1})
            H = self.gru(f, self.gru.initial_state(f) if H is None else H)  # Eq. 4-7
            h = self.head(H).view(B, N, 2) * side                          # h_t: overall increment
            shape = init + h                                               # h^_t = h^_0 + h_t
            yield shape

    def forward(self, images: torch.Tensor, init: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """(B,1,H,W) images, (B,N,2) initial shapes -> (steps+1, B, N, 2): h^_0 (the input) .. h^_T."""
        steps = self.steps if steps is None else steps
        return torch.stack([init, *itertools.islice(self.recurrences(images, init), steps)])

    @torch.no_grad()
    def predict(self, images: torch.Tensor, init_shapes: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Inference with T (or ``steps``) recurrences: shapes per step, (steps+1, B, N, 2)."""
        return self(images, init_shapes, steps)

    @torch.no_grad()
    def predict_adaptive(self, images: torch.Tensor, init_shapes: torch.Tensor, gamma: float = 0.01,
                         max_steps: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
        """Sec. 4.3: recur until the normalised shape increment falls below ``gamma`` (the paper's 0.01,
        or one set by :func:`calibrate_gamma`), at most ``max_steps`` (13) times. Returns the final
        shapes (B,N,2) and the steps used per face (B,)."""
        return adaptive_stop(self.recurrences(images, init_shapes), init_shapes,
                             self.scheme.outer_eye_corners, gamma, max_steps)


# ---------------------------------------------------------------------------------------------
# 5. Loss (Eq. 8) and the stopping rule (Sec. 4.3)
# ---------------------------------------------------------------------------------------------


def loss_weights(T: int, schedule: str = "eq8") -> torch.Tensor:
    """Step weights w_1..w_T, increasing so that later recurrences matter more.

    "eq8" (Sec. 3.1.1): w_t = 10^(t/T). "sec4.4": 10^w with w evenly spaced in [-2, 2], the weights
    Sec. 4.4 prints for the models trained with T = 5, 10, 20, 30 recurrences (the same section also
    says they follow Sec. 3.1.1; the two disagree, so both are offered).

    Decision [rcsr.loss-weights] (training): "eq8" is the default (the main and Table 4 models); the experiments
    choose "sec4.4" where Sec. 4.4 trains (Fig. 7).
    Paper: Sec. 3.1.1: w_t = 10^(t/T); Sec. 4.4 prints 10^w with w evenly spaced in [-2, 2] and then says the
    weights follow Sec. 3.1.1.
    """
    if schedule == "eq8":
        return 10 ** (torch.arange(1, T + 1, dtype=torch.float32) / T)
    if schedule == "sec4.4":
        return 10 ** torch.linspace(-2, 2, T)
    raise ValueError(f"loss schedule must be 'eq8' or 'sec4.4', got {schedule!r}")


def rcsr_loss(shapes: torch.Tensor, target: torch.Tensor, side: torch.Tensor,
              weights: torch.Tensor) -> torch.Tensor:
    """Eq. 8: J = sum_i sum_t w_t || (h^_0 + h_t^i) - h_*^i ||_F^2 over shapes (T+1,B,N,2) (step 0,
    the initial shape, is not penalised).

    Decision [rcsr.loss-scale] (training): coordinates are measured in image sides (divided by ``side`` = (W, H))
    and the sum over the mini-batch is a mean: both only rescale J, and make the learning rate
    independent of the crop resolution and the batch size.
    Paper: Eq. 8 sums the squared pixel errors over faces and steps, weighted by w_t.
    """
    err = (shapes[1:].float() - target.float()[None]) / side
    return (weights.to(err)[:, None] * err.pow(2).sum(dim=(-1, -2))).sum(0).mean()


def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
    """The hook for ``falign.kit.train.fit``: batch = {"image": (B,1,H,W), "init": (B,N,2), "target": (B,N,2)}."""
    images = batch["image"]
    shapes = model(images, batch["init"])
    side = images.new_tensor([images.shape[-1], images.shape[-2]], dtype=torch.float32)
    weights = getattr(model, "module", model).loss_weights                # unwrap DDP
    return rcsr_loss(shapes, batch["target"], side, weights)


def normalised_increment(prev: torch.Tensor, new: torch.Tensor, eyes: tuple[int, int]) -> torch.Tensor:
    """Sec. 4.3: the shape increment h^_t - h^_{t-1} divided by the distance between the outer eye
    corners (of the current estimate: there is no ground truth at test time). Returns (B,).

    Decision [rcsr.stopping] (evaluation): the increment is measured per point, as the mean point displacement,
    so that it is in the units of the 300-W error the paper reports (a mean point distance over the
    eye-corner distance) and gamma = 0.01 reads "the points moved 1% of the eye distance". The
    literal ||h^_t - h^_{t-1}||_2 of the whole 2N-vector would be about sqrt(N) (8 for 68 points) times
    larger for the same move.
    Paper: Sec. 4.3: 'dividing the l2 norm of the shape increment with the distance between the outer corners
    of the eyes', stop below 0.01, at most 13 steps; whether the norm is of the whole 2N-vector or per point,
    and whose eye corners (no ground truth at test time), is not stated.
    """
    step = (new - prev).norm(dim=-1).mean(dim=1)
    iod = (new[:, eyes[0]] - new[:, eyes[1]]).norm(dim=-1)
    return step / iod.clamp_min(1e-6)


def adaptive_stop(shapes: Iterator[torch.Tensor], init: torch.Tensor, eyes: tuple[int, int],
                  gamma: float = 0.01, max_steps: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
    """Sec. 4.3 for any recurrence ``shapes`` (an iterator of (B,N,2) estimates h^_1, h^_2, ...).

    Face b stops after the first step t whose normalised increment is below ``gamma`` and keeps
    h^_t; faces that never get there stop at ``max_steps``. The batch keeps recurring until all have
    stopped (the extra work on stopped faces is discarded), so results do not depend on batching.
    """
    final = init.clone()
    used = torch.full((init.shape[0],), max_steps, dtype=torch.long, device=init.device)
    active = torch.ones(init.shape[0], dtype=torch.bool, device=init.device)
    prev = init
    for t, new in enumerate(itertools.islice(shapes, max_steps), start=1):
        final[active] = new[active]
        stop = active & (normalised_increment(prev, new, eyes) < gamma)
        used[stop] = t
        active &= ~stop
        prev = new
        if not active.any():          # one read of the device per recurrence, by design: stop once all have
            break
    return final, used


def calibrate_gamma(errors: np.ndarray, increments: np.ndarray) -> float:
    """Sec. 4.3's procedure for the threshold: "take the normalized shape increment when the minimum
    error is achieved". ``errors`` and ``increments`` are the mean error and the mean normalised
    increment after recurrences t = 1, 2, ... of a model on held-out faces (never the test set);
    gamma is the increment at the step of the lowest error (the first such step on a tie)."""
    errors, increments = np.asarray(errors, float), np.asarray(increments, float)
    if errors.shape != increments.shape or errors.ndim != 1 or not len(errors):
        raise ValueError(f"calibrate_gamma: need two equal 1-d curves, got {errors.shape} and {increments.shape}")
    return float(increments[int(np.argmin(errors))])


def layer_table(model: RCSR) -> pd.DataFrame:
    """The architecture for one face, layer by layer: output shape and parameters of every SRCNN
    convolution (per patch), the stacked landmark maps, the ConvGRU and the fully connected head."""
    rows, x = [], torch.zeros(1, 1, model.config["patch_size"], model.config["patch_size"])
    for layer in model.features.cnn:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            rows.append({"block": "SRCNN (per patch)", "layer": f"conv {layer.kernel_size[0]}x{layer.kernel_size[1]}",
                         "output": f"{tuple(x.shape[1:])}", "parameters": _count(layer)})
    stacked = model.features.out_shape
    rows.append({"block": "stack", "layer": f"{model.n_points} landmarks", "output": f"{stacked}", "parameters": 0})
    rows.append({"block": "ConvGRU (Eq. 4-7)", "layer": f"{model.config['kernel']}x{model.config['kernel']} convs",
                 "output": f"({model.config['hidden']}, {stacked[1]}, {stacked[2]})", "parameters": _count(model.gru)})
    rows.append({"block": "fc", "layer": "linear", "output": f"({2 * model.n_points},)",
                 "parameters": _count(model.head)})
    return pd.DataFrame(rows)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
