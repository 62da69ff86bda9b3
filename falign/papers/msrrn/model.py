"""Multiscale Recurrent Regression Networks (MSRRN): C. Wang, H. Sun, J. Lu, J. Feng, J. Zhou, Applied
Informatics 2017.

The available text lost the paper's equations 1-6 and its network figure (Fig. 2), so this file
reconstructs the method from the prose of "Proposed method", top to bottom:

1. The cascade (Eq. 1): S^t = S^{t-1} + f(I^(t), S^{t-1}), t = 1..T, from an initial shape S^0.
2. Shape-indexed patches (Eq. 3): phi = I^(t) o S^{t-1}, a P x P patch around every current landmark,
   cut from the face at stage t's own scale, all faces and landmarks in one ``grid_sample`` per stage.
3. The regression network (Eq. 2): convolution, max-pooling and ReLU, then fully connected layers,
   giving the shape residual.
4. Recurrence and multiscale input (Eq. 5): one set of regression weights serves every stage
   ("the parameters of f_RRN are shared across different stages"); stage t reads the face rescaled to
   its own side, coarse to fine (50, 100, 200 pixels for T = 3).
5. The initial shape: "a CNN ... to predict an initial shape for a given face image"; the mean shape
   is the baseline.
6. The objective (Eq. 4-5), sum_t ||S* - S^t||^2 + lambda ||W||^2 with coordinates in [0, 1], and the
   update (Eq. 6) with the gradients of the shared weights averaged over the stages.

Coordinates are normalised to the face crop ("we normalized the ground-truth coordinates ... in the
range of [0, 1]"): (0, 0) is the crop's top-left corner and (1, 1) its bottom-right corner, so pixel
centre i of a side-s image sits at (i + 0.5) / s at every scale. Choices the text leaves open are
marked ``Decision [msrrn.<id>]`` where they are made; :mod:`falign.kit.decisions` says what the paper
gives for each.
"""

from __future__ import annotations

import functools

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from falign.measure.landmarks import get_scheme
from falign.kit.patches import sample_patches, standardise

# ---------------------------------------------------------------------------------------------
# Coordinates and the image pyramid
# ---------------------------------------------------------------------------------------------


def to_pixels(shapes: torch.Tensor, side: int) -> torch.Tensor:
    """[0, 1] crop coordinates -> 0-based pixel coordinates of a side x side image."""
    return shapes * side - 0.5


def to_unit(points: torch.Tensor, side: int) -> torch.Tensor:
    """0-based pixel coordinates of a side x side image -> [0, 1] crop coordinates."""
    return (points + 0.5) / side


def stage_sides(size: int, stages: int, multiscale: bool = True) -> tuple[int, ...]:
    """The side of the face each stage reads, coarse to fine.

    Decision [msrrn.scales] (model): with ``multiscale`` stage t of T reads the face at size / 2^(T - t): 50,
    100, 200 for the paper's size 200 and T = 3 ("we downscale three times ... thus we specified T to
    3"), the coarsest stage first ("in a coarse-to-fine manner"); other T continue the halving. The
    single-scale ablation gives every stage the full-size face (the finest scale).
    Paper: The face is rescaled to 200, 100 and 50 pixels and T = 3 ('we downscale three times'), coarse to
    fine; which stage reads which scale is in the lost Eq. 5."""
    if stages < 1:
        raise ValueError(f"stages must be >= 1, got {stages}")
    if not multiscale:
        return (size,) * stages
    return tuple(max(1, round(size / 2 ** (stages - 1 - t))) for t in range(stages))


def pyramid(images: torch.Tensor, sides) -> dict[int, torch.Tensor]:
    """The face at every side in ``sides``, each rescaled once from the full-size input by area
    averaging (a box filter; exact 2x2 means for the paper's halvings)."""
    size = images.shape[-1]
    return {s: images if s == size else F.interpolate(images, size=(s, s), mode="area") for s in set(sides)}


# ---------------------------------------------------------------------------------------------
# The regression network f_RRN (Eq. 2) and the initial-shape CNN
# ---------------------------------------------------------------------------------------------


def conv_stack(channels: tuple[int, ...], side: int) -> tuple[nn.Sequential, int]:
    """Conv-pool-ReLU blocks in Eq. 2's order (3x3 convolution with 'same' padding, 2x2 max-pooling,
    ReLU) from one grey channel, and the number of features they leave from a side x side input."""
    layers, c = [], 1
    for c_out in channels:
        layers += [nn.Conv2d(c, c_out, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()]
        c = c_out
    out = side // 2 ** len(channels)
    if out < 1:
        raise ValueError(f"a {side}-pixel input is too small for {len(channels)} poolings")
    return nn.Sequential(*layers), c * out * out


def fc_head(in_features: int, hidden: int, n_points: int) -> nn.Sequential:
    """One hidden fully connected layer (ReLU) and the 2N outputs. The output layer starts at zero:
    an untrained stage leaves the shape where it is, an untrained initial-shape CNN returns the mean
    shape."""
    last = nn.Linear(hidden, 2 * n_points)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), last)


class RegressionNetwork(nn.Module):
    """f_RRN (Eq. 2): the shape residual from the shape-indexed patches of one stage,
    Delta S = W_fc2 ReLU(W_fc1 ReLU(pool(W_conv (x) phi))).

    Decision [msrrn.network] (model): Fig. 2 is lost. Per patch, two conv-pool-ReLU blocks (3x3 kernels,
    ``channels`` = (16, 32) by default: each pooling halves the patch), then one hidden fully connected
    layer (``hidden`` units, ReLU) and the output layer (2N residuals in [0, 1] units, starting at zero).
    Paper: Eq. 2 (lost) and Fig. 2 (lost): 'a set of convolutional layer, pooling layer, and fully connected
    layers', conv, max pooling and ReLU; no sizes.

    Decision [msrrn.patch-combine] (model): the same convolutions read every landmark's patch (the B x N patches
    are one batch); their feature maps are concatenated landmark by landmark into one vector per face,
    which the fully connected layers read, so the residual of every point sees every patch.
    Paper: 'shape-index local patches' phi_i feed the network; how the 68 patches are combined is not said."""

    def __init__(self, n_points: int, patch: int, channels: tuple[int, ...] = (16, 32), hidden: int = 256):
        super().__init__()
        self.features, per_patch = conv_stack(channels, patch)
        self.n_points = n_points
        self.head = fc_head(n_points * per_patch, hidden, n_points)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, 1, P, P) patches -> (B, N, 2) shape residual."""
        B, N = patches.shape[:2]
        maps = self.features(patches.flatten(0, 1))                    # (B*N, C, P', P')
        return self.head(maps.reshape(B, -1)).view(B, N, 2)


class InitialShapeCNN(nn.Module):
    """The CNN that predicts S^0 from the whole face ("we further propose a CNN, which aims to predict
    a initial shape for a given face image").

    Decision [msrrn.init-cnn] (model): it reads the whole face at a quarter of the input side (50 pixels for
    the paper's 200, the coarsest scale of T = 3, whatever T is): three conv-pool-ReLU blocks
    (``channels``), one hidden fully connected layer, and an output layer that starts at zero and is
    added to the mean shape, so training starts from the mean-shape baseline.
    Paper: 'we further propose a CNN, which aims to predict a initial shape'; its layers, input and training
    are not described."""

    def __init__(self, n_points: int, side: int, channels: tuple[int, ...] = (16, 32, 64), hidden: int = 256):
        super().__init__()
        self.features, features = conv_stack(channels, side)
        self.n_points = n_points
        self.head = fc_head(features, hidden, n_points)

    def forward(self, image: torch.Tensor, mean_shape: torch.Tensor) -> torch.Tensor:
        """(B, 1, s, s) face -> (B, N, 2) initial shape in [0, 1] units."""
        return mean_shape + self.head(self.features(image)).view(len(image), self.n_points, 2)


# ---------------------------------------------------------------------------------------------
# MSRRN
# ---------------------------------------------------------------------------------------------


class MSRRN(nn.Module):
    """The multiscale recurrent regression network and its ablations.

    ``size``: side of the input face (the finest scale; 200 in the paper); ``stages``: T; ``patch``: P,
    the patch side in pixels at every scale; ``shared``: one regression network for every stage (the
    paper's) or one per stage (ablation); ``multiscale``: each stage at its own scale (the paper's) or
    every stage at ``size`` (ablation); ``init``: "cnn" (the paper's S^0) or "mean" (the baseline);
    ``average``: with ``shared``, the update uses the mean of the stages' gradients (the paper's Eq. 6)
    or, for the control arm, their sum (the step each stage's gradient gets with separate weights).

    Decision [msrrn.recurrent] (model): "recurrent" is weight tying across stages: stage t applies the one
    shared f to patches read around S^(t-1), and carries no hidden state from stage to stage beyond the
    shape itself (the lost Eq. 1-6 give no other state).
    Paper: 'recurrent regression networks' whose parameters 'are shared across different stages'; the
    equations defining the recurrence are lost in the available text.

    Decision [msrrn.patch-size] (model): the patch keeps the same side in pixels at every scale, so one set of
    convolutions reads all scales and a patch covers 4 times the face area at 50 pixels as at 200
    (context when the shape is coarse, detail when it is fine). The paper gives no patch size.
    Paper: The patch size is not given.

    The buffer ``mean_shape`` holds the training mean shape in [0, 1] crop units, saved with the weights.
    """

    def __init__(self, scheme: str = "ibug68", size: int = 200, stages: int = 3, patch: int = 16,
                 channels: tuple[int, ...] = (16, 32), hidden: int = 256, shared: bool = True,
                 multiscale: bool = True, init: str = "cnn", init_channels: tuple[int, ...] = (16, 32, 64),
                 init_hidden: int = 256, patch_gradient: bool = False, average: bool = True):
        super().__init__()
        if init not in ("cnn", "mean"):
            raise ValueError(f"init must be 'cnn' or 'mean', got {init!r}")
        self.scheme = get_scheme(scheme)
        N = self.scheme.n_points
        self.config = dict(scheme=scheme, size=size, stages=stages, patch=patch, channels=tuple(channels),
                           hidden=hidden, shared=shared, multiscale=multiscale, init=init,
                           init_channels=tuple(init_channels), init_hidden=init_hidden,
                           patch_gradient=patch_gradient, average=average)
        self.n_points, self.steps, self.size, self.patch = N, stages, size, patch
        self.sides = stage_sides(size, stages, multiscale)
        self.init_side = max(1, size // 4)
        self.regressors = nn.ModuleList(RegressionNetwork(N, patch, channels, hidden)
                                        for _ in range(1 if shared else stages))
        self.initial = InitialShapeCNN(N, self.init_side, init_channels, init_hidden) if init == "cnn" else None
        self.register_buffer("mean_shape", torch.full((N, 2), 0.5))
        if shared and average:
            # Decision [msrrn.gradient-average] (training): Eq. 6 updates the shared W and b "by averaging the
            # gradients of different stages". Backpropagation through the unrolled network sums the
            # T stages' contributions to a shared weight; a hook on each shared parameter divides that
            # sum by T, so the update uses their mean (with SGD, a step a third the size of the summed
            # gradient's at T = 3; the weight decay, added by the optimiser, is not divided). Separate
            # weights get one stage's gradient each; the control arm (``average=False``) keeps the sum.
            # Paper: 'the network parameters W and b are updated by averaging the gradients of different
            # stages' (Eq. 6, lost).
            for p in self.regressors[0].parameters():
                p.register_hook(functools.partial(torch.mul, other=1.0 / stages))

    def regressor(self, t: int) -> RegressionNetwork:
        """f for stage t (0-based): the one shared network, or stage t's own."""
        return self.regressors[0 if len(self.regressors) == 1 else t]

    def initial_shape(self, levels: dict[int, torch.Tensor]) -> torch.Tensor:
        """S^0 for a batch: the CNN's prediction from the quarter-size face, or the mean shape."""
        if self.initial is None:
            return self.mean_shape.expand(len(levels[self.size]), -1, -1)
        return self.initial(levels[self.init_side], self.mean_shape)

    def patches(self, image: torch.Tensor, shapes: torch.Tensor) -> torch.Tensor:
        """Eq. 3: the P x P patches around ``shapes`` ([0, 1] units) in ``image`` (B, 1, s, s), from one
        ``grid_sample`` call, (B, N, 1, P, P).

        Decision [msrrn.patch-gradient] (training): the positions are detached by default (``patch_gradient=False``):
        patches are cut where the previous stage put the shape, as in a cascade, and gradients reach the
        earlier stages and the initial-shape CNN through the residual sum S^t = S^{t-1} + Delta S only. RCSR's
        CPU probes (falign.papers.rcsr.model) found the gradient through the sampler positions slowed training.
        Paper: The network is trained 'end-to-end' on the unrolled stages; whether gradients flow through the
        patch positions is not said."""
        where = shapes if self.config["patch_gradient"] else shapes.detach()
        return sample_patches(image, to_pixels(where, image.shape[-1]), self.patch)

    def forward(self, images: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """(B, 1, size, size) faces in [0, 1] -> (steps+1, B, N, 2) shapes S^0 .. S^T in [0, 1] units.

        Decision [msrrn.input] (model): grey faces, each standardised to zero mean and unit variance before the
        pyramid (the text gives neither the colour nor the input normalisation).
        Paper: The input's colour and normalisation are not given."""
        steps = self.steps if steps is None else min(steps, self.steps)
        levels = pyramid(standardise(images), {*self.sides, self.size, self.init_side})
        shapes = [self.initial_shape(levels)]
        for t in range(steps):
            phi = self.patches(levels[self.sides[t]], shapes[-1])
            shapes.append(shapes[-1] + self.regressor(t)(phi))               # Eq. 1
        return torch.stack(shapes)

    @torch.no_grad()
    def predict(self, images: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Inference: every stage's shape, (steps+1, B, N, 2) in [0, 1] units."""
        return self(images, steps)


# ---------------------------------------------------------------------------------------------
# The objective (Eq. 4-5)
# ---------------------------------------------------------------------------------------------


def msrrn_loss(shapes: torch.Tensor, target: torch.Tensor, initial: bool) -> torch.Tensor:
    """Eq. 5's data term, sum_t ||S* - S^t||_2^2 over the stages, in [0, 1] units, mean over the batch.

    Decision [msrrn.loss] (training): with the initial-shape CNN (``initial``) the sum also covers S^0, which
    trains the CNN end to end with the regression network (one objective, one optimiser); with the
    mean shape S^0 is a constant and adds nothing. The sum over the batch is a mean (a rescaling that
    keeps the learning rate independent of the batch size). lambda ||W||^2 is the optimiser's weight
    decay (falign.papers.msrrn.experiment).
    Paper: Eq. 5 (lost): the sum over stages of ||S* - S^t||^2 plus lambda ||W||^2; how the initial-shape CNN
    is trained is not said."""
    err = (shapes.float() - target.float()[None]).pow(2).sum(dim=(-1, -2))   # (T+1, B)
    return err[0 if initial else 1:].sum(0).mean()


def loss_fn(model: nn.Module, batch: dict) -> torch.Tensor:
    """The hook for ``falign.kit.train.fit``: batch = {"image": (B,1,S,S) in [0, 1], "target": (B,N,2) in [0, 1]}."""
    inner = getattr(model, "module", model)                                # unwrap DDP
    return msrrn_loss(model(batch["image"]), batch["target"], inner.initial is not None)


# ---------------------------------------------------------------------------------------------
# Reading the model
# ---------------------------------------------------------------------------------------------


def parameter_counts(model: MSRRN) -> dict[str, int]:
    """Learned parameters of the regression network(s) and of the initial-shape CNN."""
    count = lambda m: sum(p.numel() for p in m.parameters()) if m is not None else 0  # noqa: E731
    return {"regression": count(model.regressors), "initial-shape CNN": count(model.initial),
            "total": count(model)}


def layer_table(model: MSRRN) -> pd.DataFrame:
    """The network for one face, layer by layer: what each stage reads, the regression network's
    layers (one patch, then the face) and the initial-shape CNN's, with output shapes and parameters."""
    rows = [{"part": f"stage {t + 1} input", "layer": "face rescaled", "output": f"1x{s}x{s}", "parameters": 0}
            for t, s in enumerate(model.sides)]
    rows.append({"part": "patches", "layer": f"{model.patch}x{model.patch} per landmark (grid_sample)",
                 "output": f"{model.n_points}x1x{model.patch}x{model.patch}", "parameters": 0})

    def walk(part: str, layers, x: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            x = layer(x)
            if isinstance(layer, (nn.Conv2d, nn.Linear, nn.MaxPool2d)):
                rows.append({"part": part, "layer": repr(layer).split("(")[0] + _args(layer),
                             "output": "x".join(map(str, x.shape[1:])),
                             "parameters": sum(p.numel() for p in layer.parameters())})
        return x

    net = model.regressor(0)
    with torch.no_grad():
        maps = walk("f_RRN, per patch", net.features, torch.zeros(1, 1, model.patch, model.patch))
        walk("f_RRN, per face", net.head, maps.new_zeros(1, model.n_points, *maps.shape[1:]))
        if model.initial is not None:
            side = model.init_side
            maps = walk("initial-shape CNN", model.initial.features, torch.zeros(1, 1, side, side))
            walk("initial-shape CNN", model.initial.head, maps)
    return pd.DataFrame(rows)


def _args(layer: nn.Module) -> str:
    if isinstance(layer, nn.Conv2d):
        return f" {layer.kernel_size[0]}x{layer.kernel_size[1]}x{layer.out_channels}"
    if isinstance(layer, nn.Linear):
        return f" {layer.in_features}->{layer.out_features}"
    return f" {layer.kernel_size}x{layer.kernel_size}"
