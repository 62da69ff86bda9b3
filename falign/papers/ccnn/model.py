"""CCNN: "Improved face alignment algorithm based on cascaded CNN and the shake mechanism"
(Advances in Multimedia, 2022).

Five points (LE, RE, N, LM, RM: image-left/right eye centre, nose tip, image-left/right mouth
corner; ``falign.measure.landmarks`` scheme ``"five"``) found by 23 small CNNs in three stages. Read top to
bottom, this file follows Sec. 3 of the paper:

* Sec. 3.1.1, Table 1-2: stage 1, three CNNs on the face box resized to 39x39x3 (F1: the whole face
  -> 5 points; EN1: the eyes-and-nose part -> LE, RE, N; NM1: the nose-and-mouth part -> N, LM, RM).
  Each point is the mean of every prediction of it (Eq. 4).
* Sec. 3.1.2-3.1.3, Eq. 5, Fig. 3: stages 2 and 3, ten CNNs each, two per point; CNN k looks at a
  15x15x3 window centred on the previous stage's estimate of its point, of size a*h x b*w (h, w: the
  face box); the two of a point are averaged (Eq. 4). In training the windows are *shaken*
  (translated at random, Sec. 3.1.2, 3.2.3).
* Eq. 9: every CNN predicts its points relative to its own window ("relative positioning",
  :func:`to_window` / :func:`from_window`); Fig. 5's "windows-" arm regresses absolute positions.
* Sec. 3.3, Eq. 6: MSE per network, SGD, Xavier initialisation, ReLU after each conv, max pooling,
  dropout 0.25 on the fully connected layers; the L2 term of Eq. 6 is the optimiser's weight decay.
* Sec. 3.2.4: 643,920 learnable weights (:func:`count_parameters`).

All networks of a stage run as *one* module: their convolutions are one grouped ``Conv2d`` and their
fully connected layers one batched matrix product (:class:`GroupedCNN`), so a stage costs one
forward call, not ten, and training all of a stage's CNNs at once ("parallel within groups", Sec. 3.3)
is exactly training each alone: the summed loss gives every network its own gradient.

Coordinates: points are in *box units*, (0, 0) the face box's top-left corner and (1, 1) its
bottom-right, x right, y down. Decision [ccnn.frame] (model): every point, window, shake and target is in
units of the face box, as Eq. 9 normalises by its frames and Sun et al. 2013 by the box; the unit makes
windows, shake and targets independent of the image resolution.
Paper: Targets are relative to the window (Eq. 9); the unit of the coordinates is not stated.

Boxes are (x1, y1, x2, y2) *edges* in 0-based pixels (pixel centres at integers), as
``falign.kit.crops`` writes them; without boxes the whole image is the face box, i.e. the edges
(-0.5, -0.5, W - 0.5, H - 0.5). :meth:`CCNN.predict` returns image pixels. A *window* is
(x0, y0, w, h) in box units: its top-left corner and size.

Choices the paper leaves open are marked ``Decision [ccnn.<id>]:`` where they are made, each with what
the paper says; :func:`falign.kit.decisions.deviations` collects them for the chapter's Deviations
section.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

SCHEME = "five"
POINTS = ("LE", "RE", "N", "LM", "RM")           # Sec. 3.2: left eye, right eye, nose, mouth corners
N_POINTS = len(POINTS)

# ---------------------------------------------------------------------------------------------
# Windows, relative positioning (Eq. 9) and averaging (Eq. 4)
# ---------------------------------------------------------------------------------------------


def to_window(points: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ((x' - x) / w, (y' - y) / h), points (..., 2) relative to windows (..., 4) = (x, y, w, h),
    x, y the window's top-left corner: (0, 0) top-left, (1, 1) bottom-right of the window."""
    return (points - windows[..., :2]) / windows[..., 2:]


def from_window(rel: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """The inverse of Eq. 9: window-relative points back to the frame the windows are given in."""
    return windows[..., :2] + rel * windows[..., 2:]


def average_points(preds: torch.Tensor, owners: torch.Tensor, n_points: int = N_POINTS) -> torch.Tensor:
    """Eq. 4: (x, y)_p = 1/N sum_i (x_i, y_i) over the N predictions of point p.

    ``preds`` (B, P, 2) are predictions of the points ``owners`` (P,) (indices into the n_points), e.g.
    stage 1's 11 predictions or stage 2's 10. Returns (B, n_points, 2)."""
    onehot = F.one_hot(owners.long(), n_points).to(preds.dtype)            # (P, n_points)
    weights = onehot / onehot.sum(0).clamp_min(1)
    return torch.einsum("bpc,pn->bnc", preds, weights)


def windows_around(anchors: torch.Tensor, point_of_window: torch.Tensor, half_sizes: torch.Tensor,
                   shake_std: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Eq. 5: window k is centred on anchor point ``point_of_window[k]`` and spans
    +-half_sizes[k] = (b w, a h) around it. anchors (B, n_points, 2) -> windows (B, K, 4).

    ``shake_std`` > 0 translates every window (each face, each window, each axis independently) by
    N(0, shake_std^2) box units: the shake of Sec. 3.1.2 (applied by the stages in training only)."""
    centres = anchors[:, point_of_window.long()]                             # (B, K, 2)
    if shake_std > 0:
        centres = centres + shake_std * torch.randn(centres.shape, generator=generator,
                                                    device=centres.device, dtype=centres.dtype)
    half = half_sizes.to(centres)
    return torch.cat([centres - half, (2 * half).expand_as(centres)], dim=-1)


def image_window(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The whole image as a window in box units, (B, 4): what "absolute positioning" is relative to."""
    size = boxes[:, 2:] - boxes[:, :2]
    edge = boxes.new_tensor([width, height])
    return torch.cat([(-0.5 - boxes[:, :2]) / size, edge / size], dim=1)


def default_boxes(images: torch.Tensor, boxes: torch.Tensor | None) -> torch.Tensor:
    """The given (B, 4) boxes as float, or the whole image: edges (-0.5, -0.5, W - 0.5, H - 0.5)."""
    if boxes is not None:
        return torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(-1, 4)
    B, _, H, W = images.shape
    return images.new_tensor([-0.5, -0.5, W - 0.5, H - 0.5], dtype=torch.float32).expand(B, 4)


def box_to_pixels(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Box units (B, N, 2) -> image pixels, boxes (B, 4) x1, y1, x2, y2 edges."""
    return boxes[:, None, :2] + points * (boxes[:, None, 2:] - boxes[:, None, :2])


def pixels_to_box(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Image pixels (B, N, 2) -> box units: the frame of every training target."""
    return (points - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2])


def crop_windows(images: torch.Tensor, boxes: torch.Tensor, windows: torch.Tensor, size: int,
                 supersample: int = 1) -> torch.Tensor:
    """Cut window k of face b out of image b and resample it to size x size: (B, K, C, size, size).

    One bilinear ``grid_sample`` call for all B*K windows. Output pixel (i, j) samples the centre of
    cell (i, j) of the window divided into size x size cells; outside the image the border repeats.
    ``supersample`` = s > 1 samples s x s points per cell and averages them (a box filter against
    aliasing when a window spans many more image pixels than ``size``). Decision [ccnn.sampling] (data):
    windows are resampled bilinearly, the image's border repeated outside it, box-filtered with
    ``supersample`` > 1.
    Paper: The windows are resized to 15x15 (Fig. 3); the paper does not say how."""
    B, C, H, W = images.shape
    K, n = windows.shape[1], size * supersample
    t = (torch.arange(n, device=images.device, dtype=torch.float32) + 0.5) / n      # cell centres
    win = windows.float()
    u = win[..., 0, None] + t * win[..., 2, None]                                  # (B, K, n) box units
    v = win[..., 1, None] + t * win[..., 3, None]
    bx, by = boxes[:, None, 0, None].float(), boxes[:, None, 1, None].float()
    bw = (boxes[:, 2] - boxes[:, 0])[:, None, None].float()
    bh = (boxes[:, 3] - boxes[:, 1])[:, None, None].float()
    gx = (2 * (bx + u * bw) + 1) / W - 1                                           # align_corners=False
    gy = (2 * (by + v * bh) + 1) / H - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)
    grid = torch.nan_to_num(grid, nan=0.0).reshape(B, K * n, n, 2).to(images.dtype)
    crops = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    crops = crops.reshape(B, C, K, n, n).transpose(1, 2)
    if supersample > 1:
        crops = F.avg_pool2d(crops.reshape(B * K, C, n, n), supersample).reshape(B, K, C, size, size)
    return crops


def standardise(crops: torch.Tensor) -> torch.Tensor:
    """Sec. 4.1, "minus the mean and dividing the variance". Decision [ccnn.standardise] (data): per network
    input (each crop or window), over its pixels and channels, to zero mean and unit *standard
    deviation* (dividing by the variance, as printed, would not standardise); as Sun et al.'s
    released preprocessing does. Needs no dataset statistics, so an aligner carries none.
    Paper: Sec. 4.1: inputs are standardised by 'minus the mean and dividing the variance'; over what (each
    input or the data set) is not said."""
    x = crops.float()
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    return (x - mean) / x.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-3)


# ---------------------------------------------------------------------------------------------
# Table 2, Fig. 3: the CNNs of a stage, all evaluated in one call
# ---------------------------------------------------------------------------------------------


def _xavier_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Sec. 3.3: Xavier [19] (uniform, Glorot's form) with the fans of *one* network's layer, so a
    grouped layer starts exactly as its networks would alone."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(weight, -bound, bound)


class GroupedLinear(nn.Module):
    """G fully connected layers side by side: network g maps its own (in_features,) input to
    ``out_features[g]`` outputs. x (B, G, in) -> (B, sum(out_features)), network-major.

    The weights of all networks are one (sum_out, in) matrix whose rows belong to the networks in
    turn (stage 1's last layers have 10, 6 and 6 outputs); the forward pass is one batched product
    over networks (``einsum``), with the ragged rows padded only for the product."""

    def __init__(self, groups: int, in_features: int, out_features: int | Sequence[int]):
        super().__init__()
        outs = [out_features] * groups if isinstance(out_features, int) else list(out_features)
        if len(outs) != groups:
            raise ValueError(f"GroupedLinear: {len(outs)} output sizes for {groups} networks")
        self.groups, self.in_features, self.out_features = groups, in_features, tuple(outs)
        self.width = max(outs)
        self.weight = nn.Parameter(torch.empty(sum(outs), in_features))
        self.bias = nn.Parameter(torch.zeros(sum(outs)))
        rows = torch.cat([g * self.width + torch.arange(o) for g, o in enumerate(outs)])
        self.register_buffer("rows", rows, persistent=False)   # row r of weight -> slot in (G*width)
        self.ragged = len(set(outs)) > 1
        for w, o in zip(self.weight.split(outs), outs):
            _xavier_(w.data, in_features, o)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if self.ragged:
            weight = weight.new_zeros(self.groups * self.width, self.in_features).index_copy(0, self.rows, weight)
        y = torch.einsum("bgi,goi->bgo", x, weight.view(self.groups, self.width, self.in_features))
        y = y.reshape(x.shape[0], self.groups * self.width)
        if self.ragged:
            y = y[:, self.rows]
        return y + bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, in_features={self.in_features}, out_features={self.out_features}"


class GroupedCNN(nn.Module):
    """G independent CNNs of one architecture (Table 2 / Fig. 3), one forward call for all of them.

    Each network: [conv k x k x c (stride 1, no padding) -> ReLU -> 2x2 max pool (stride 2)] per entry
    of ``convs``, then dropout -> fc ``hidden`` -> ReLU -> dropout -> fc ``outputs[g]``.
    x (B, G, C, S, S): network g reads x[:, g] -> (B, sum(outputs)).

    The convolutions are grouped ``Conv2d`` layers (``groups=G``: network g owns input channels
    g*C..(g+1)*C-1 and output channels g*c..(g+1)*c-1), the fc layers :class:`GroupedLinear`.
    :meth:`network` cuts network g out as a plain ``nn.Sequential`` (the test of this grouping).
    Speed, not a change of model: the input goes channels-last (NHWC) before the grouped
    convolutions; on CPU oneDNN then runs them 1.5-2x faster than NCHW, which for stage 1 is slower
    than a Python loop over the three networks (``channels_last = False`` restores NCHW).

    Decision [ccnn.fc-relu] (model): ReLU after the hidden fc layer (the paper names ReLU after the convs
    only; without a nonlinearity the two fc layers would collapse into one linear map); the output
    layer is linear (a regression).
    Paper: ReLU is named after the conv layers (Sec. 3.3); the fc layers' activations are not listed.

    Decision [ccnn.dropout] (model): dropout 0.25 (Sec. 3.3) on the input of
    both fc layers, "the fully connected layers use dropout".
    Paper: Sec. 3.3: 'the fully connected layers use dropout', rate 0.25; where exactly is not said.
    """

    def __init__(self, groups: int, in_channels: int, input_size: int, convs: Sequence[tuple[int, int]],
                 hidden: int, outputs: int | Sequence[int], dropout: float = 0.25):
        super().__init__()
        self.groups, self.in_channels, self.input_size = groups, in_channels, input_size
        layers: list[nn.Module] = []
        c, s = in_channels, input_size
        for channels, kernel in convs:
            conv = nn.Conv2d(groups * c, groups * channels, kernel, groups=groups)
            _xavier_(conv.weight.data, c * kernel * kernel, channels * kernel * kernel)
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c, s = channels, (s - kernel + 1) // 2
            if s < 1:
                raise ValueError(f"GroupedCNN: a {input_size}x{input_size} input is too small for {list(convs)}")
        self.features = nn.Sequential(*layers)
        self.feature_shape = (c, s, s)                         # per network, before the fc layers
        self.drop = nn.Dropout(dropout)
        self.channels_last = True
        self.fc1 = GroupedLinear(groups, c * s * s, hidden)
        self.fc2 = GroupedLinear(groups, hidden, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        y = x.reshape(B, -1, *x.shape[-2:])                    # (B, G*C, S, S), network-major channels
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        y = self.features(y)                                   # (B, G*c, s, s)
        y = self.drop(y.reshape(B, self.groups, -1))          # per network: flattened (c, s, s)
        y = F.relu(self.fc1(y)).reshape(B, self.groups, -1)
        return self.fc2(self.drop(y))

    @torch.no_grad()
    def network(self, g: int) -> nn.Sequential:
        """Network g alone, as plain torch layers holding copies of its weights (eval-equivalent)."""
        layers: list[nn.Module] = []
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                n_out = m.out_channels // self.groups
                conv = nn.Conv2d(m.in_channels // self.groups, n_out, m.kernel_size)
                conv.weight.copy_(m.weight[g * n_out:(g + 1) * n_out])
                conv.bias.copy_(m.bias[g * n_out:(g + 1) * n_out])
                layers.append(conv)
            else:
                layers.append(type(m)(**({"kernel_size": 2} if isinstance(m, nn.MaxPool2d) else {})))
        layers.append(nn.Flatten())
        for i, fc in enumerate((self.fc1, self.fc2)):
            start = sum(fc.out_features[:g])
            lin = nn.Linear(fc.in_features, fc.out_features[g])
            lin.weight.copy_(fc.weight[start:start + fc.out_features[g]])
            lin.bias.copy_(fc.bias[start:start + fc.out_features[g]])
            layers += [lin] + ([nn.ReLU()] if i == 0 else [])
        return nn.Sequential(*layers)


class StageOutput(NamedTuple):
    """What a stage returns. ``points`` (B, 5, 2): Eq. 4's averages in box units; ``rel`` (B, P, 2):
    every prediction in its own window's frame (Eq. 9, what the loss compares); ``windows``
    (B, P, 4): the window of each prediction in box units (shaken in training)."""

    points: torch.Tensor
    rel: torch.Tensor
    windows: torch.Tensor


# ---------------------------------------------------------------------------------------------
# Sec. 3.1.1, Table 2: stage 1
# ---------------------------------------------------------------------------------------------
STAGE1_SIZE = 39                                               # Table 1, step 1: resize X to 39x39x3
STAGE1_CONVS = ((20, 4), (40, 3), (60, 3))                     # Table 2: 4x4x20, 3x3x40, 3x3x60
STAGE1_HIDDEN = 120                                            # Table 2: 120d-fc1
STAGE1_NETS = ("F1", "EN1", "NM1")
STAGE1_POINTS = ((0, 1, 2, 3, 4), (0, 1, 2), (2, 3, 4))        # F1: all five; EN1: LE RE N; NM1: N LM RM
# Decision [ccnn.en1-nm1-region] (data): Sec. 3.1.1 crops EN1's "eyes and nose" and NM1's "nose and mouth"
# areas out of the face box but gives no bounds. We take Sun et al. 2013's (the paper's ref. [22]):
# rows 0-30 and 8-38 of the 39x39 face, i.e. the top and bottom 31/39 of the box, full width. Table 2
# gives all three CNNs the same 39x39 input and the same 64,800-weight fc1 (3x3x60 -> 120), and
# Sec. 3.2.4's total of 643,920 weights holds only then, so each part is stretched to 39x39 (Sun et
# al. fed 39x31).
# Paper: Sec. 3.1.1: EN1 sees the 'eyes and nose' and NM1 the 'nose and mouth' parts of the face box; no
# bounds are given, and Table 2 gives all three stage-1 CNNs a 39x39 input.
STAGE1_REGIONS = ((0.0, 0.0, 1.0, 1.0), (0.0, 0.0, 1.0, 31 / 39), (0.0, 8 / 39, 1.0, 31 / 39))
POSITIONING = ("relative", "absolute")                         # Fig. 5: windows+ / windows-


class Stage1(nn.Module):
    """Stage 1 (Sec. 3.1.1): F1, EN1, NM1 on their 39x39x3 parts of the face box; Eq. 4 averages
    their 11 predictions into 5 points (LE, RE: F1 and EN1; N: all three; LM, RM: F1 and NM1).

    ``positioning="relative"`` (the paper's, Eq. 9, Fig. 5 "windows+"): each CNN predicts relative to
    the part it sees. ``"absolute"`` (Fig. 5 "windows-"): relative to the whole image, x / W, y / H
    (Decision [ccnn.absolute] (model): "absolute positioning" is read as image coordinates normalised by the
    image size, so the regression target's scale stays that of a window's; with face crops as
    images and no boxes the two coincide for F1, so that ablation needs whole images with boxes.
    Paper: Fig. 5 compares 'absolute positioning' (windows-) with relative positioning (windows+); absolute positioning is not defined.).

    ``input_size`` is the side each part is resampled to: Table 2's 39, or larger for a frame larger
    than the face box read at the box's resolution (Fig. 5's windows- arm; its fc1 grows with it).

    ``shake_std`` > 0 shakes the three parts in training like the windows of stages 2-3.
    Decision [ccnn.fig6-stage] (training): stage 1 is not shaken by default (``shake_std=0``); ``shake_std``
    > 0 shakes its three parts in training, for Fig. 6's shake+ arm only.
    Paper: Fig. 6 reports shake-/shake+ 'in the first stage', whose input Sec. 3.1.1 does not shake.
    """

    def __init__(self, in_channels: int = 3, dropout: float = 0.25, positioning: str = "relative",
                 shake_std: float = 0.0, supersample: int = 1, input_size: int = STAGE1_SIZE):
        super().__init__()
        if positioning not in POSITIONING:
            raise ValueError(f"positioning must be one of {POSITIONING}, got {positioning!r}")
        self.positioning, self.shake_std, self.supersample = positioning, float(shake_std), supersample
        self.names, self.input_size = STAGE1_NETS, input_size
        self.cnn = GroupedCNN(3, in_channels, input_size, STAGE1_CONVS, STAGE1_HIDDEN,
                              [2 * len(p) for p in STAGE1_POINTS], dropout)
        owners = torch.tensor([p for pts in STAGE1_POINTS for p in pts])
        net_of_pred = torch.cat([torch.full((len(p),), g) for g, p in enumerate(STAGE1_POINTS)])
        self.register_buffer("owners", owners, persistent=False)             # (11,) point of prediction
        self.register_buffer("net_of_pred", net_of_pred, persistent=False)   # (11,) network of prediction
        self.register_buffer("regions", torch.tensor(STAGE1_REGIONS), persistent=False)

    def parts(self, batch: int) -> torch.Tensor:
        """The three input windows (B, 3, 4) in box units, shaken in training if ``shake_std`` > 0."""
        regions = self.regions.expand(batch, 3, 4)
        if self.training and self.shake_std > 0:
            regions = regions.clone()
            regions[..., :2] += self.shake_std * torch.randn_like(regions[..., :2])
        return regions

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None) -> StageOutput:
        boxes = default_boxes(images, boxes)
        parts = self.parts(images.shape[0])
        x = standardise(crop_windows(images, boxes, parts, self.input_size, self.supersample))
        rel = self.cnn(x).float().view(images.shape[0], -1, 2)
        if self.positioning == "relative":
            windows = parts[:, self.net_of_pred]                              # (B, 11, 4)
        else:
            windows = image_window(boxes, *images.shape[-2:])[:, None].expand(-1, len(self.owners), 4)
        return StageOutput(average_points(from_window(rel, windows), self.owners), rel, windows)


# ---------------------------------------------------------------------------------------------
# Sec. 3.1.2-3.1.3, Eq. 5, Fig. 3: stages 2 and 3
# ---------------------------------------------------------------------------------------------
WINDOW_SIZE = 15                                               # Sec. 3.2.2: 15x15x3 input
WINDOW_CONVS = ((20, 4), (40, 3))                              # Fig. 3: 4x4x20, 3x3x40
WINDOW_HIDDEN = 60                                             # Fig. 3: fc 60, fc 2
STAGE_WINDOWS = {2: (0.16, 0.18), 3: (0.08, 0.09)}             # Eq. 5: a1 = b1, a2 = b2
# Decision [ccnn.shake-unit] (training): shake ~ N(0, 1e-4) (Sec. 3.1.2) has no unit. Read as a variance of
# 1e-4 in box units: the window moves by N(0, 0.01^2) face-box widths horizontally and heights
# vertically, each axis, each window, each training sample independently (std 0.01 box = 6% of a
# stage-2 window's half-side of 0.16, 12.5% of a stage-3 one). Stage 3 uses the same shake
# ("shake is the same as the second stage", Sec. 3.1.3).
# Paper: Sec. 3.1.2: shake ~ N(0, 1e-4) for the windows of stage 2 (stage 3 the same); no unit, and variance
# or std is not said.
SHAKE_VARIANCE = 1e-4
SHAKE_STD = math.sqrt(SHAKE_VARIANCE)
# Decision [ccnn.window-extent] (model): Eq. 5 sets windows_i = a*h, b*w, "expanded to the top, bottom, left
# and right of the anchor points". We read a*h as the extent on *each* side (window = 2a*h x 2b*w),
# as Sun et al. 2013's +-0.16/+-0.18 patches of the box that these values come from; "full" reads
# a*h as the whole side instead.
# Paper: Eq. 5: windows_i = a*h, b*w 'expanded to the top, bottom, left and right of the anchor points': the
# whole side or the extent on each side is ambiguous.
EXTENTS = ("half", "full")


class WindowStage(nn.Module):
    """Stage 2 or 3: ten CNNs (Fig. 3), two per point. Network k (k = 0..9) sees the 15x15x3 window of
    Eq. 5 centred on the previous stage's estimate of point k % 5, with the half-sizes
    (b1 w, a1 h) for k < 5 and (b2 w, a2 h) for k >= 5 (Eq. 5's i = 1..5 and j = 6..10); it predicts
    that point relative to its window (Eq. 9), and Eq. 4 averages each pair.

    Names follow Sec. 3.2.1: LE21 is stage 2's first left-eye CNN (window a1), LE22 its second (a2).
    Decision [ccnn.order] (model): the networks are ordered as Eq. 5 numbers the windows (all a1, then all
    a2), not as Sec. 3.2.1 lists them (LE21, LE22, RE21, ...).
    Paper: Sec. 3.2.1 lists stage 2's networks point by point (LE21, LE22, RE21, ...) while Eq. 5 numbers the
    windows size by size.

    ``shake_std``: the shake of Sec. 3.1.2, applied in ``train()`` mode only; ``eval()`` never shakes.
    """

    def __init__(self, stage: int = 2, sizes: tuple[float, float] | None = None, *, in_channels: int = 3,
                 dropout: float = 0.25, shake_std: float = SHAKE_STD, extent: str = "half",
                 supersample: int = 1):
        super().__init__()
        if extent not in EXTENTS:
            raise ValueError(f"extent must be one of {EXTENTS}, got {extent!r}")
        a1, a2 = STAGE_WINDOWS[stage] if sizes is None else sizes
        self.stage, self.sizes, self.extent = stage, (a1, a2), extent
        self.shake_std, self.supersample = float(shake_std), supersample
        self.names = tuple(f"{p}{stage}{j}" for j in (1, 2) for p in POINTS)
        self.cnn = GroupedCNN(2 * N_POINTS, in_channels, WINDOW_SIZE, WINDOW_CONVS, WINDOW_HIDDEN, 2, dropout)
        half = torch.tensor([a1] * N_POINTS + [a2] * N_POINTS) * (1.0 if extent == "half" else 0.5)
        self.register_buffer("half_sizes", half[:, None].repeat(1, 2), persistent=False)   # (10, 2): (b w, a h)
        self.register_buffer("owners", torch.arange(2 * N_POINTS) % N_POINTS, persistent=False)

    def windows(self, anchors: torch.Tensor) -> torch.Tensor:
        """Eq. 5 around anchors (B, 5, 2) in box units -> (B, 10, 4); shaken in training only."""
        shake = self.shake_std if self.training else 0.0
        return windows_around(anchors.detach().float(), self.owners, self.half_sizes, shake)

    def forward(self, images: torch.Tensor, anchors: torch.Tensor, boxes: torch.Tensor | None = None) -> StageOutput:
        boxes = default_boxes(images, boxes)
        windows = self.windows(anchors)
        x = standardise(crop_windows(images, boxes, windows, WINDOW_SIZE, self.supersample))
        rel = self.cnn(x).float().view(images.shape[0], -1, 2)
        return StageOutput(average_points(from_window(rel, windows), self.owners), rel, windows)


# ---------------------------------------------------------------------------------------------
# Sec. 3.1, Table 1: the cascade
# ---------------------------------------------------------------------------------------------


class CCNN(nn.Module):
    """Table 1: stage 1 on the face box, stages 2 and 3 on windows around the previous estimate.

    ``forward(images, boxes=None)`` -> (n_stages, B, 5, 2): each stage's points in box units (stage
    k + 1 anchored on stage k's *detached* estimate: the stages are trained in series, Sec. 3.3).
    :meth:`predict` returns image pixels. Train a stage on its own with :func:`loss_fn` and the anchors
    :meth:`anchors` computes from the stages before it (the order of Sec. 3.3).
    ``n_stages`` 1-3 (Fig. 4 compares the stages; Sec. 4.2 suggests the first two for speed).
    """

    def __init__(self, n_stages: int = 3, in_channels: int = 3, dropout: float = 0.25,
                 shake_std: float = SHAKE_STD, positioning: str = "relative", extent: str = "half",
                 stage1_shake_std: float = 0.0, supersample: int = 1, stage1_input: int = STAGE1_SIZE):
        super().__init__()
        if not 1 <= n_stages <= 3:
            raise ValueError(f"n_stages must be 1, 2 or 3, got {n_stages}")
        self.config = dict(n_stages=n_stages, in_channels=in_channels, dropout=dropout, shake_std=shake_std,
                           positioning=positioning, extent=extent, stage1_shake_std=stage1_shake_std,
                           supersample=supersample, stage1_input=stage1_input)
        self.stages = nn.ModuleList(
            [Stage1(in_channels, dropout, positioning, stage1_shake_std, supersample, stage1_input)]
            + [WindowStage(k, in_channels=in_channels, dropout=dropout, shake_std=shake_std, extent=extent,
                           supersample=supersample) for k in range(2, n_stages + 1)])

    def forward(self, images: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        return torch.stack(self._cascade(images, boxes, len(self.stages)))

    def _cascade(self, images: torch.Tensor, boxes: torch.Tensor | None, n: int) -> list[torch.Tensor]:
        """The points of the first ``n`` stages, each stage anchored on the previous one's estimate."""
        points: list[torch.Tensor] = []
        for stage in self.stages[:n]:
            out = stage(images, boxes) if not points else stage(images, points[-1].detach(), boxes)
            points.append(out.points)
        return points

    @torch.no_grad()
    def anchors(self, stage: int, images: torch.Tensor, boxes: torch.Tensor | None = None,
                batch_size: int = 1024) -> torch.Tensor:
        """The anchors stage ``stage`` (2 or 3) is trained and run on: the estimate of the stages before
        it, in eval mode (no shake, no dropout), in batches. (n, 5, 2) box units. Stage k + 1's
        windows are then ``self.stages[k].windows(anchors)`` (shaken while that stage trains)."""
        if not 2 <= stage <= len(self.stages):
            raise ValueError(f"anchors: stage must be 2..{len(self.stages)}, got {stage}")
        was = self.training
        self.eval()
        out = []
        for i in range(0, images.shape[0], batch_size):
            b = None if boxes is None else boxes[i:i + batch_size]
            out.append(self._cascade(images[i:i + batch_size].float(), b, stage - 1)[-1])
        self.train(was)
        return torch.cat(out)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, boxes: torch.Tensor | None = None, stage: int | None = None,
                batch_size: int = 1024) -> torch.Tensor:
        """The aligner: images (B, C, H, W), boxes (B, 4) x1, y1, x2, y2 edges (None: the whole image)
        -> (B, 5, 2) image pixels after ``stage`` (default: the last), eval mode, in batches."""
        stage = len(self.stages) if stage is None else stage
        was = self.training
        self.eval()
        out = []
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].float()
            b = default_boxes(x, None if boxes is None else boxes[i:i + batch_size])
            out.append(box_to_pixels(self(x, b)[stage - 1], b))
        self.train(was)
        return torch.cat(out)


# ---------------------------------------------------------------------------------------------
# Sec. 3.3, Eq. 6: the loss
# ---------------------------------------------------------------------------------------------


def stage_loss(out: StageOutput, target: torch.Tensor, owners: torch.Tensor,
               net_of_pred: torch.Tensor) -> torch.Tensor:
    """Eq. 6 without its L2 term, for every network of a stage at once: network n's loss is
    (1/m) sum_j 1/(2 N_n) sum_i ||y_i^j - d_i^j||^2 over its N_n points i and the m faces j of the
    batch, both in that network's window frame (Eq. 9); the stage's loss is the *sum* over its
    networks, so each network gets exactly its own gradient ("parallel within groups").
    Decision [ccnn.loss] (training): Eq. 6's i runs over a network's points (N_n = 5, 3 or 1), and every network is
    trained on its own predictions, not on the Eq. 4 average.
    Paper: Eq. 6 sums over 'the points' and 'the samples' without saying whether each network is trained on
    its own output or on the Eq. 4 average.

    The L2 term (1/2) eta ||W||^2 is the optimiser's ``weight_decay=eta`` (its gradient eta W), e.g.
    ``falign.kit.train.sgd(5e-3, weight_decay=eta)`` (the same gradient); eta, and which parameters it
    decays, are the chapter's optimiser's (the ``ccnn.eta`` decision)."""
    d = to_window(target.float()[:, owners], out.windows)             # (B, P, 2) targets, window frame
    sq = (out.rel.float() - d).pow(2).sum(-1)                          # ||y - d||^2 per prediction
    # N_n of each prediction's network, counted by comparison: bincount's output size depends on the
    # values (a device-to-host sync on CUDA, and no kernel on the meta device the tests run models on).
    points_per_net = (net_of_pred[:, None] == net_of_pred[None]).sum(1).to(sq)
    return (sq / (2 * points_per_net)).sum(1).mean()


def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
    """The ``falign.kit.train.fit`` hook for one stage: batch = {"image": (B, C, H, W), "target": (B, 5, 2)
    box units, optional "box": (B, 4), and for stages 2-3 "anchors": (B, 5, 2) box units}."""
    stage = getattr(model, "module", model)                            # unwrap DDP
    if isinstance(stage, Stage1):
        out = model(batch["image"], batch.get("box"))
        return stage_loss(out, batch["target"], stage.owners, stage.net_of_pred)
    if isinstance(stage, WindowStage):
        out = model(batch["image"], batch["anchors"], batch.get("box"))
        return stage_loss(out, batch["target"], stage.owners, torch.arange(len(stage.owners), device=out.rel.device))
    raise TypeError(f"ccnn.loss_fn trains one stage (Stage1 or WindowStage), got {type(stage).__name__}")


# ---------------------------------------------------------------------------------------------
# Sec. 3.2.4, Table 2-3: parameters
# ---------------------------------------------------------------------------------------------
PAPER_WEIGHTS = 643_920            # Sec. 3.2.4 and Sec. 4.2: "only 643,920" learnable weights
PAPER_MB = 2.46                    # "approximately 2.46 MB" (Table 3)


def megabytes(n_parameters: int, bytes_per_parameter: int = 4) -> float:
    """float32 size in MiB (2^20 bytes): the unit that makes 643,920 weights "2.46 MB" (2.456)."""
    return n_parameters * bytes_per_parameter / 2**20


def _layers(cnn: GroupedCNN) -> list[tuple[str, nn.Module]]:
    convs = [m for m in cnn.features if isinstance(m, nn.Conv2d)]
    return [(f"conv{i + 1}", m) for i, m in enumerate(convs)] + [("fc1", cnn.fc1), ("fc2", cnn.fc2)]


def count_parameters(model: nn.Module) -> pd.DataFrame:
    """One row per network and layer: ``weights`` (without biases, how Table 2 counts: conv1 =
    4x4x3x20 = 960), ``biases`` and ``with_biases``, with the layer's per-network ``shape``.

    Accepts a :class:`CCNN`, a :class:`Stage1` or a :class:`WindowStage`. Stage 1 has F1 95,760 +
    EN1 95,280 + NM1 95,280 = 286,320 weights (960 + 7,200 + 21,600 + 64,800 + 120 x 10 or 6), each
    window stage 10 x 17,880 = 178,800 (960 + 7,200 + 2x2x40 x 60 + 60 x 2), so the cascade has
    286,320 + 2 x 178,800 = 643,920, Sec. 3.2.4's number exactly: no other reading is needed."""
    stages = list(model.stages) if isinstance(model, CCNN) else [model]
    rows = []
    for k, stage in enumerate(stages, start=1):
        stage_id = getattr(stage, "stage", k)
        cnn = stage.cnn
        for g, name in enumerate(stage.names):
            for layer, m in _layers(cnn):
                if isinstance(m, nn.Conv2d):
                    o, i = m.out_channels // cnn.groups, m.in_channels // cnn.groups
                    kh, kw = m.kernel_size
                    shape, weights, biases = f"{kh}x{kw}x{i}x{o}", kh * kw * i * o, o
                else:
                    o, i = m.out_features[g], m.in_features
                    shape, weights, biases = f"{i}x{o}", i * o, o
                rows.append((stage_id, name, layer, shape, weights, biases))
    df = pd.DataFrame(rows, columns=["stage", "network", "layer", "shape", "weights", "biases"])
    df["with_biases"] = df["weights"] + df["biases"]
    # The per-row arithmetic must account for every parameter the modules hold.
    held = sum(p.numel() for s in stages for p in s.parameters())
    if held != int(df["with_biases"].sum()):
        raise AssertionError(f"count_parameters: rows sum to {int(df['with_biases'].sum())}, modules hold {held}")
    return df
