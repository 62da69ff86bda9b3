"""Coarse-to-Fine Deep Recurrent Neural Network (CFDRNN): S. Mahpod, R. Das, E. Maiorana, Y. Keller,
P. Campisi, arXiv 2018.

One network (a directed acyclic graph, Fig. 2-3) that finds the landmarks coarsely on heat-maps and
then refines them as numbers. Read top to bottom, this file follows the paper's Section 4:

1. Heat-maps (Eq. 5) and their decoding (Eq. 1): a Gaussian of width sigma = 1.3 per landmark on a
   grid s = 4 times coarser than the image; the landmark is s times the position of the maximum.
2. The resizer block (Table 2, Sec. 4.1): narrow 3x3 convs and two max-pools reduce the image I0 to
   T0; a 1x1 conv of T0 gives the "reduced image" D0; wide 9x9 convs of T0 give the heat-maps H1.
   The network holds two instances: the first (D0, H1; heat-map loss) feeds the HML, the second
   (Dr, Hr; no loss of its own) feeds only the LML.
3. The recurrent heat-map level, HML (Table 3, Sec. 4.2): three branches D0 (+) Hj -> Hj+1, j = 1..3,
   wide 7x7 and 13x13 convs without any reduction.
4. The recurrent landmark level, LML (Table 4, Sec. 4.3): four branches D0 (+) Hj (+) Dr (+) Hr ->
   dLj, strided convs down to one 136-vector; the product Ej in the middle of branch j joins the next
   branch, whose 3x3x512 layer reads Ej+1 (+) Ej.
5. Landmarks (Eq. 2-4): Lj = s argmax(Hj) + dLj; the network's answer is L4. The losses: L2 on every
   heat-map (H1..H4) against the Eq. 5 targets and L2 on every dLj against the residual of Eq. 2.

Coordinates are 0-based pixels of the network's input image (x right, y down, pixel centres at
integers); dL is output, as the paper says (Sec. 5.1), in units of the image size. Choices the paper
leaves open are marked ``Decision [cfdrnn.<name>]`` where they are made; :mod:`falign.kit.decisions`
holds what the paper says about each.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

N_POINTS = 68        # Sec. 5.1: the 300-W convention
S = 4                # Sec. 4: the reduction factor (two 2x2 max-pools of Table 2)
SIGMA = 1.3          # Sec. 5.1, Eq. 5 (heat-map pixels)
DROPOUT = 0.5        # Sec. 5.1: before the resizer's last layer
HEATMAP_GAIN = 0.1   # initial scale of the heat-map outputs' batch norms (see _init)
SCHEME = "ibug68"

# ---------------------------------------------------------------------------------------------
# 1. Heat-maps (Eq. 5) and their decoding (Eq. 1)
# ---------------------------------------------------------------------------------------------
# Decision [cfdrnn.heatmap-grid] (model): Eq. 1 read literally: heat-map pixel (u, v) stands for image pixel
# (s u, s v), so a landmark at image point p is drawn at p / s and decoded as s argmax(H). (The
# max-pooled pixel u covers image pixels s u .. s u + s - 1; the residual dL absorbs any offset.)
# Paper: Eq. 1: L^ = s x the index of the heat-map's maximum; which image point a heat-map pixel stands for
# (its corner or its centre) is not said.


def render_heatmaps(points: torch.Tensor, size: int, s: int = S, sigma: float = SIGMA) -> torch.Tensor:
    """Eq. 5: (B, N, 2) image-pixel landmarks -> (B, N, size, size) Gaussian heat-maps on a zero
    background, peak 1 at p / s (heat-map pixels), width ``sigma`` in heat-map pixels."""
    grid = torch.arange(size, device=points.device, dtype=points.dtype)
    centre = points / s
    dx2 = (grid - centre[..., 0, None]) ** 2                       # (B, N, size) along x
    dy2 = (grid - centre[..., 1, None]) ** 2                       # (B, N, size) along y
    return torch.exp(-(dy2[..., :, None] + dx2[..., None, :]) / (2 * sigma ** 2))


def heatmap_argmax(heatmaps: torch.Tensor) -> torch.Tensor:
    """(B, N, h, w) -> (B, N, 2) the (x, y) heat-map pixel of each map's maximum.

    Decision [cfdrnn.argmax-ties] (model): a tie (e.g. an all-zero map after the ReLU) goes to the first
    maximum in row-major order, torch.argmax's rule: deterministic, and (0, 0) for a dead map.
    Paper: Eq. 1 takes 'the maximum point in each one of the heat-map images'; ties (e.g. an all-zero map) are
    not discussed."""
    w = heatmaps.shape[-1]
    index = heatmaps.flatten(-2).argmax(-1)
    return torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], -1).to(heatmaps.dtype)


def coarse_landmarks(heatmaps: torch.Tensor, s: int = S) -> torch.Tensor:
    """Eq. 1: L^ = s argmax(H), image pixels (B, N, 2)."""
    return s * heatmap_argmax(heatmaps).float()


# ---------------------------------------------------------------------------------------------
# Layers: every conv is followed by batch normalisation (Sec. 5.1)
# ---------------------------------------------------------------------------------------------
# Decision [cfdrnn.padding] (model): "same" zero padding (k // 2) on every conv: Sec. 4.1-4.2 say the resizer's
# wide part and the HML keep the product sizes, and D0 (64x64 for a 256 image) must match H1.
# Table 4's strided convs use the same padding, so the LML maps 64 -> 32 -> 31 -> 16 -> 15 -> 8 -> 7 (Ej)
# -> 4 -> 3 -> 2 -> 1 -> 1: exactly one 136-vector at the paper's size.
# Paper: Tables 2-4 give kernels and strides, not padding; Sec. 4.1 says the resizer's wide part keeps the
# product sizes and Sec. 4.2 that the HML has 'no reduction'.


def _scaled(channels: int, width: float) -> int:
    """Decision [cfdrnn.width] (model): ``width`` < 1 divides every hidden layer's channels for CPU-sized runs
    (the experiments' scale configs say by how much); the outputs (68 heat-maps, D0's 68 maps, the
    136 dL values) keep their sizes. 1 is the paper's network.
    Paper: Tables 2-4 fix every layer's channels (64 ... 1024); the paper has one network."""
    return max(1, round(channels * width))


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> nn.Sequential:
    """conv k x k (+ batch norm, Sec. 5.1) (+ ReLU).

    Decision [cfdrnn.bn-order] (model): batch norm sits between the conv and its ReLU, as MatConvNet's
    vl_nnbnorm is used; convs feeding a batch norm have no bias.
    Paper: Sec. 5.1: 'In all of the network's linear layers (conv layers), we use the batch normalization
    method'; where it sits relative to the ReLU, and conv biases, are not said."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers)


class Pool(nn.Module):
    """A k x k max-pool; Table 4's stride-1 pools shrink a map by one pixel.

    Decision [cfdrnn.small-maps] (model): at the CPU scales' smaller heat-maps a map can reach 1x1 before
    Table 4 ends; a pool is then skipped (at the paper's 64x64 every pool has a map of at least 2x2),
    and dL is read as the spatial mean of the last layer's output, which is its single pixel at 64x64.
    Paper: Table 4 is written for 64x64 heat-maps (a 256x256 input); smaller inputs are not considered.
    """

    def __init__(self, k: int, stride: int):
        super().__init__()
        self.k, self.stride = k, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.k:
            return x
        return F.max_pool2d(x, self.k, self.stride)


# ---------------------------------------------------------------------------------------------
# 2. The resizer block (Table 2)
# ---------------------------------------------------------------------------------------------


class Resizer(nn.Module):
    """Table 2: I0 -> (D0, H1). Rows 1-14: 3x3 convs (64, 64 | pool | 64, 128 | pool | 128, 128) give
    T0 at 1/s of the image; row 15: D0 = 1x1x68 conv of T0 (no ReLU row in the table); rows 16-26:
    9x9x128, 9x9x128, 1x1x256, 1x1x256, dropout 0.5, 1x1x68 + ReLU give H1."""

    def __init__(self, width: float = 1.0, n_points: int = N_POINTS, dropout: float = DROPOUT):
        super().__init__()
        c = lambda n: _scaled(n, width)  # noqa: E731
        self.reduce = nn.Sequential(
            conv_bn(3, c(64), 3), conv_bn(c(64), c(64), 3), nn.MaxPool2d(2, 2),
            conv_bn(c(64), c(64), 3), conv_bn(c(64), c(128), 3), nn.MaxPool2d(2, 2),
            conv_bn(c(128), c(128), 3), conv_bn(c(128), c(128), 3),
        )
        self.d = conv_bn(c(128), n_points, 1, relu=False)
        self.wide = nn.Sequential(
            conv_bn(c(128), c(128), 9), conv_bn(c(128), c(128), 9),
            conv_bn(c(128), c(256), 1), conv_bn(c(256), c(256), 1),
            nn.Dropout(dropout), conv_bn(c(256), n_points, 1),
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t0 = self.reduce(image)
        return self.d(t0), self.wide(t0)


# ---------------------------------------------------------------------------------------------
# 3. The recurrent heat-map level (Table 3)
# ---------------------------------------------------------------------------------------------


class HMLBranch(nn.Sequential):
    """Table 3: D0 (+) Hj -> Hj+1 with 7x7x64, 13x13x64, 1x1x128, 1x1x68 convs, each + ReLU, stride 1."""

    def __init__(self, width: float = 1.0, n_points: int = N_POINTS):
        c = lambda n: _scaled(n, width)  # noqa: E731
        super().__init__(conv_bn(2 * n_points, c(64), 7), conv_bn(c(64), c(64), 13),
                         conv_bn(c(64), c(128), 1), conv_bn(c(128), n_points, 1))


# ---------------------------------------------------------------------------------------------
# 4. The recurrent landmark level (Table 4)
# ---------------------------------------------------------------------------------------------


class LMLBranch(nn.Module):
    """Table 4: (D0 (+) Hj (+) Dr (+) Hr, Ej-1) -> (dLj, Ej).

    Rows 1-6: 7x7x64, 5x5x128, 3x3x256 convs of stride 2, each followed by a 2x2 max-pool of stride 1;
    the last pool's product is Ej. Rows 7-11: Ej (+) Ej-1 -> 3x3x512 and 3x3x1024 (stride 2, pools) ->
    1x1x136 (stride 2): dLj, two numbers per landmark in units of the image size.

    Decision [cfdrnn.lml-relu] (model): Table 4 prints no ReLU rows; a ReLU follows every conv but the last
    (without them the branch would be one linear map between its batch norms).
    Paper: Table 4 lists convs and pools only, no ReLU rows (Tables 2 and 3 list a ReLU after every conv).

    Decision [cfdrnn.delta-head] (model): the 1x1x136 output layer has a bias and no batch norm: Sec. 5.1 puts
    batch norm after every conv, but a batch norm on the output would pin the batch's mean residual to
    a learned constant (and at batch 2 its statistics are two numbers per channel).
    Paper: Sec. 5.1 puts batch normalisation after every conv layer, which includes Table 4's 1x1x136 output
    layer.
    """

    def __init__(self, in_channels: int, width: float = 1.0, n_points: int = N_POINTS):
        super().__init__()
        c = lambda n: _scaled(n, width)  # noqa: E731
        self.n_points = n_points
        self.to_e = nn.Sequential(conv_bn(in_channels, c(64), 7, 2), Pool(2, 1),
                                  conv_bn(c(64), c(128), 5, 2), Pool(2, 1),
                                  conv_bn(c(128), c(256), 3, 2), Pool(2, 1))
        self.e_channels = c(256)
        self.head = nn.Sequential(conv_bn(2 * c(256), c(512), 3, 2), Pool(2, 1),
                                  conv_bn(c(512), c(1024), 3, 2), Pool(2, 1),
                                  nn.Conv2d(c(1024), 2 * n_points, 1, 2))

    def forward(self, x: torch.Tensor, e_prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.to_e(x)
        if e_prev is None:
            # Decision [cfdrnn.e0] (model): the first branch has no E0 (Table 4 row 7 reads Ej (+) Ej-1); it
            # reads zeros in its place, so all four branches share one layer shape.
            # Paper: Table 4 row 7 reads Ej (+) Ej-1; the first branch has no E0 and the text does not say
            # what it reads instead.
            e_prev = torch.zeros_like(e)
        delta = self.head(torch.cat([e, e_prev], 1)).mean((-2, -1))
        return delta.view(-1, self.n_points, 2), e


# ---------------------------------------------------------------------------------------------
# The network (Fig. 2-3)
# ---------------------------------------------------------------------------------------------


class Output(NamedTuple):
    heatmaps: list[torch.Tensor]   # H1 (first resizer), H2..H4 (HML), each (B, N, h, w)
    deltas: list[torch.Tensor]     # dL1..dL4 (LML), each (B, N, 2) in units of the image size
    d0: torch.Tensor               # the reduced image D0 (B, N, h, w)


class CFDRNN(nn.Module):
    """The whole DAG of Fig. 3: two resizer instances, 3 HML branches, 4 LML branches.

    ``size`` is the input side (256 in the paper; a multiple of s), ``width`` the channel multiplier
    (1: the paper's), ``second_resizer=False`` the ablation without (Dr, Hr): the LML then reads
    D0 (+) Hj only. ``detach_lml=True`` is a diagnosis arm, not the paper's: the LML reads D0 and the Hj
    detached, so its losses no longer reach the first resizer and the HML (the heat-maps then learn
    from their own losses only). Input: RGB images (B, 3, size, size) in [0, 1], shifted here to
    [-0.5, 0.5] (Sec. 5.1).
    """

    def __init__(self, size: int = 256, width: float = 1.0, n_points: int = N_POINTS, hml_branches: int = 3,
                 second_resizer: bool = True, sigma: float = SIGMA, dropout: float = DROPOUT,
                 detach_lml: bool = False):
        super().__init__()
        if size % S:
            raise ValueError(f"CFDRNN input size must be a multiple of s = {S}, got {size}")
        self.config = dict(size=size, width=width, n_points=n_points, hml_branches=hml_branches,
                           second_resizer=second_resizer, sigma=sigma, dropout=dropout, detach_lml=detach_lml)
        self.detach_lml = detach_lml
        self.size, self.s, self.sigma, self.n_points = size, S, sigma, n_points
        self.heatmap_size = size // S
        self.resizer = Resizer(width, n_points, dropout)
        # Decision [cfdrnn.second-instance] (model): the second resizer "instance" has weights of its own, trained
        # only through the LML's losses (Sec. 4.3: "the LML loss functions can independently affect these
        # parts"); the LML's losses also reach D0 and the Hj (one DAG trained end to end).
        # Paper: 'a double instance of the resizer block' (Sec. 4.1); whether the two instances share weights
        # is not said; the second has no loss of its own.
        self.resizer_r = Resizer(width, n_points, dropout) if second_resizer else None
        self.hml = nn.ModuleList(HMLBranch(width, n_points) for _ in range(hml_branches))
        lml_in = (4 if second_resizer else 2) * n_points
        self.lml = nn.ModuleList(LMLBranch(lml_in, width, n_points) for _ in range(hml_branches + 1))
        self.apply(_init)
        for head in [self.resizer.wide[-1], *(b[-1] for b in self.hml)]:
            nn.init.constant_(head[1].weight, HEATMAP_GAIN)

    def forward(self, images: torch.Tensor) -> Output:
        x = images - 0.5
        d0, h = self.resizer(x)
        heatmaps = [h]
        for branch in self.hml:                       # Table 3: Hj+1 = HML_j(D0 (+) Hj)
            heatmaps.append(branch(torch.cat([d0, heatmaps[-1]], 1)))
        cut = (lambda t: t.detach()) if self.detach_lml else (lambda t: t)
        shared = [cut(d0)] + (list(self.resizer_r(x)) if self.resizer_r is not None else [])
        deltas, e = [], None
        for branch, hj in zip(self.lml, heatmaps):    # Table 4: (D0 (+) Hj (+) Dr (+) Hr, Ej-1) -> dLj, Ej
            delta, e = branch(torch.cat([shared[0], cut(hj), *shared[1:]], 1), e)
            deltas.append(delta)
        return Output(heatmaps, deltas, d0)

    def landmarks(self, out: Output) -> list[torch.Tensor]:
        """Eq. 4 for every branch j: Lj = s argmax(Hj) + dLj, image pixels (B, N, 2) each."""
        return [coarse_landmarks(h, self.s) + self.size * d.float() for h, d in zip(out.heatmaps, out.deltas)]

    @torch.no_grad()
    def stages(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every estimate the network makes, image pixels: "argmax H1".."argmax H4" (Eq. 1) and
        "L1".."L4" (Eq. 4; L4 is the network's answer)."""
        out = self(images)
        coarse = {f"argmax H{j}": coarse_landmarks(h, self.s) for j, h in enumerate(out.heatmaps, 1)}
        return {**coarse, **{f"L{j}": p for j, p in enumerate(self.landmarks(out), 1)}}

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """L4 (Eq. 4), (B, N, 2) image pixels."""
        return self.landmarks(self(images))[-1]


def _init(module: nn.Module) -> None:
    """Decision [cfdrnn.init] (model): the paper does not say how weights start (MatConvNet offers several).
    Convs: He (Kaiming) normal for ReLU nets, fan-out; batch norms: scale 1, shift 0, except those of
    the heat-map outputs (H1..H4), whose scale starts at HEATMAP_GAIN = 0.1 so the first maps are
    near the targets' zero background instead of unit-variance noise (with scale 1 a probe's heat-map
    loss started 12x above that of all-zero maps and the argmax was still no better than chance after
    6 epochs); the dL output layer: zero, so every Lj starts at s argmax(Hj).
    Paper: Weight initialisation is not given (MatConvNet 1.0-beta23)."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    if isinstance(module, LMLBranch):
        last = module.head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)


# ---------------------------------------------------------------------------------------------
# 5. Losses
# ---------------------------------------------------------------------------------------------


def loss(model: CFDRNN, images: torch.Tensor, landmarks: torch.Tensor, delta_weight: float | None = None,
         out: Output | None = None) -> torch.Tensor:
    """The training loss of one batch: images (B, 3, S, S) in [0, 1], true landmarks (B, N, 2) image
    pixels.

    * Heat-maps (Sec. 4.2): L2 between every Hj (H1 of the first resizer, H2..H4 of the HML) and the
      Eq. 5 targets of the true landmarks.
    * Residuals (Eq. 2-3): L2 between every dLj and (L - s argmax(Hj)) / size, the argmax taken on
      the network's own (detached) Hj.

    Decision [cfdrnn.loss-scale] (training): each L2 is summed over its elements (MatConvNet's convention) and
    averaged over the batch, so the loss does not grow with the batch size.
    Paper: 'the L2 loss' for the heat-maps (Sec. 4.2); its reduction (sum or mean, over pixels and the batch)
    is not given.

    Decision [cfdrnn.delta-weight] (training): the paper does not weigh the dL losses against the heat-map
    losses; by default dL's L2 is multiplied by (size / s)^2, i.e. measured in heat-map pixels, where
    its typical size (a fraction of a pixel once the argmax is right) is comparable to the heat-map
    L2 of a nearly right map.
    Paper: Each LML branch has a loss on dLj (Fig. 3, Eq. 2-3); its form and its weight against the heat-map
    losses are not given.
    """
    out = model(images) if out is None else out
    size, s = model.size, model.s
    weight = (size / s) ** 2 if delta_weight is None else delta_weight
    h = out.heatmaps[0]
    target = render_heatmaps(landmarks.float(), h.shape[-1], s, model.sigma).to(h.dtype)
    batch = images.shape[0]
    heat = sum(((hj.float() - target.float()) ** 2).sum() for hj in out.heatmaps) / batch
    delta = 0.0
    for hj, dj in zip(out.heatmaps, out.deltas):
        residual = (landmarks.float() - coarse_landmarks(hj.detach(), s)) / size
        delta = delta + ((dj.float() - residual) ** 2).sum() / batch
    return heat + weight * delta
