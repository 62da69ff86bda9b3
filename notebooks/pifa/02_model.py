# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # PIFA 2: the visualization layer, the network and the losses
#
# This notebook walks through Sec. 3 of the paper with the code of `falign/papers/pifa/model.py`: the
# visualization layer (Sec. 3.3, Eq. 8-11), the network of six visualization blocks (Sec. 3.2, Fig. 2-3,
# Table 1) and the two losses (Eq. 6-7). Data are in {doc}`01_data`, training and results in
# {doc}`03_train`.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | aflw-pifa
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import torch

from falign.kit.chapter import setup
from falign.papers.pifa import experiment as experiments, model as pifa
from falign.synthface.morphable import builtin_model, centred_camera

run, cfg, _ = setup("pifa", "02_model", load_data=False, SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
model = builtin_model()

# %% [markdown]
# ## The parameters and the camera (Sec. 3.1)
#
# A face is the 3DMM shape `S_p = S_0 + Σ_k p_k S_k` (Eq. 1) with 199 identity and 29 expression bases,
# seen through the weak-perspective camera `U = M [S_p; 1]` (Eq. 3-4), where `M` is a 2×4 matrix: a
# scaled rotation (its first three columns, rows `m1`, `m2`) and a translation. The network regresses all
# 8 entries of `M` and the 228 entries of `p`: 236 numbers. Landmarks are the projections of the
# scheme's vertices `b`, and the visibility of each landmark follows from its surface normal and the
# viewing direction `m1 × m2`.
#
# ## The visualization layer (Sec. 3.3)
#
# The layer draws the current estimate of `P` as an image, so that the next block can *see* how well
# the 3D face fits the photograph. For every vertex `q`:
#
# * Eq. 8, *frontability*: `v(q) = max(0, (m1 × m2)/(‖m1‖‖m2‖) · N0_q)`, the cosine between the
#   vertex normal of the mean face `N0_q` and the direction towards the camera; vertices facing away
#   get 0 and are pruned.
# * Eq. 11, the *mask* `a(q)`: a fixed per-vertex value, positive in the middle of the face (around
#   the nose) and negative on the contour, standardised to zero mean and unit standard deviation.
# * Eq. 9-10: each pixel `(u, v)` is the average of `v(q) a(q)` over the visible vertices projected
#   into its neighbourhood, weighted by `exp(-d²/2σ²)` of the distance to the exact projected
#   position. Where several vertices land on one pixel only the nearest to the camera counts.
#
# All of it is differentiable with respect to `M` and `p` (the tests check it with `gradcheck`), which
# lets one CNN be trained end to end. Below: the mean face (`p = 0`) rendered by the layer at the
# paper's 114×114 crop, for yaws from −90° to 90° and a pitched view. As the face turns, the far side
# is pruned and the bright nose region moves with the pose.

# %%
layer = pifa.VisualizationLayer(model, "nose")
views = [(-90, 0), (-60, 0), (-30, 0), (0, 0), (30, 0), (60, 0), (90, 0), (0, 30)]
zero = torch.zeros(1, model.n_params)
fig, axes = plt.subplots(1, len(views), figsize=(2 * len(views), 2.3))
for ax, (yaw, pitch) in zip(axes, views):
    V = layer(centred_camera(model, yaw, pitch), zero, 114)[0, 0]
    ax.imshow(V.numpy(), cmap="gray")
    ax.set_title(f"yaw {yaw}°, pitch {pitch}°", fontsize=8)
    ax.axis("off")
fig.tight_layout()
run.figure(fig, "visualization_poses")

# %% [markdown]
# Blocks 2-6 work on 57×57 maps (the first block pools by two), so their visualization is rendered on
# the coarser grid. The shape coefficients change the picture too: below, the frontal mean face and the
# same face with the first identity and expression coefficients at ±3 standard deviations, at 57×57.

# %%
variants = experiments.shape_variants(model)
fig, axes = plt.subplots(1, len(variants), figsize=(2 * len(variants), 2.3))
for ax, (name, p) in zip(axes, variants.items()):
    ax.imshow(layer(centred_camera(model, 20), p, 57, 0.5)[0, 0].numpy(), cmap="gray")
    ax.set_title(name, fontsize=8)
    ax.axis("off")
fig.tight_layout()
run.figure(fig, "visualization_shapes")

# %% [markdown]
# ## The masks (Eq. 11, Fig. 4 and Fig. 8)
#
# Mask 1 (Eq. 11, Fig. 4) is a Gaussian around the nose tip; the paper does not give its width (a
# Decision: a quarter of the face width). Mask 2 (Fig. 8, used only in Table 7) has five positive areas:
# the eyes, the nose tip and the two mouth corners. "No mask" sets `a(q) = 1`, so the image only shows
# frontability. Top row: the mask values on the mean face's vertices (frontal view, red positive,
# blue negative); bottom row: the resulting visualization at 30° yaw.

# %%
fig, axes = plt.subplots(2, len(pifa.MASKS), figsize=(3.2 * len(pifa.MASKS), 6.2))
for col, name in enumerate(pifa.MASKS):
    vis_layer = pifa.VisualizationLayer(model, name)
    a = vis_layer.mask.numpy()
    scale = max(abs(a).max(), 1e-6)
    axes[0, col].scatter(*model.mean.numpy()[:, :2].T, c=a, s=2, cmap="coolwarm", vmin=-scale, vmax=scale)
    axes[0, col].set(aspect="equal", title=experiments.MASK_NAMES[name])
    axes[1, col].imshow(vis_layer(centred_camera(model, 30), zero, 114)[0, 0].numpy(), cmap="gray")
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
run.figure(fig, "masks")
run.table(experiments.mask_table(model), "masks", caption="Mask values over the 3DMM vertices", precision=3)

# %% [markdown]
# ## The network (Sec. 3.2, Fig. 2-3, Table 1)
#
# Six visualization blocks in a chain. Block `i` takes the input image `I`, the feature maps `F` of
# block `i−1` and the visualization `V` of `P^{i−1}`; two conv layers (each with batch normalisation
# and ReLU) extract features, and two fully connected layers (800, then 236) estimate the update:
# `P^i = P^{i−1} + ΔP^i`, a ResNet-like path for the parameters. `P^0` is the mean face placed in the
# given box. The first block pools after its first conv layer, so blocks 2-6 work at 57×57.
#
# The table puts the paper's Table 1 beside our implementation of it with parameter counts (the paper
# gives none). The first FC layer dominates: fed with the full 57×57 feature maps, as the paper
# implies, it has tens of millions of weights per block (the table). Every block's last FC layer starts
# near zero, so at initialisation each block passes `P` on unchanged (the paper gives no initialisation;
# a `Decision`). The CPU scales average-pool the feature maps to a
# small grid before the FC layers and use fewer hidden units (see `fc_grid`, `fc_hidden` in
# `experiments.SCALES`); their blocks' conv layers are Table 1's.

# %%
table1, totals = experiments.table1(cfg, SCALE)
print(totals.to_string(index=False))
run.table(table1, "table1", caption="Table 1: conv filters per visualization block, paper beside ours, "
          "with trainable parameter counts (conv + batch norm, FC)")

# %% [markdown]
# ## The losses (Eq. 6-7) and the block weights
#
# The first three blocks are trained on the parameters (Eq. 6), the last three on the landmarks (Eq. 7):
#
# * Eq. 6: `E_P^i = (ΔP^i − ΔP̄^i)ᵀ W (ΔP^i − ΔP̄^i)` with a diagonal `W`: `1/σ_k` for each shape
#   coefficient (its standard deviation in the 3DMM), `1/r` for the scaled-rotation entries of `M`
#   (`r` = mean scaled rotation over mean translation in the training data) and 1 for the translations.
#   Since `ΔP̄^i = P̄ − P^{i−1}`, this is the weighted distance between `P^i` and the ground truth.
# * Eq. 7: `E_S^i = ‖f(P^i) − U‖²`, the squared distance of the projected landmarks to the ground truth
#   (all landmarks, since the 3D ground truth defines the hidden ones too).
#
# The blocks are trained jointly from scratch; the loss of block `i` is weighted by `i` (1, 2, ..., 6),
# so the later, landmark-level blocks dominate while their gradients still reach the first block. For
# Table 8's networks with 4 and 3 blocks the paper gives no split; ours use Eq. 6 on the first half of
# the blocks and Eq. 7 on the rest, block `i` again weighted by `i` (a `Decision`). Below:
# the per-block losses of the untrained network on a few training faces of this scale (the two loss
# types have different units, which is one reason for the weighting).

# %%
sample = experiments.load(cfg, "train", data=DATA, root=DATA_ROOT, seed=SEED, n=8)
run.dataset(sample.name, sample.fingerprint)
loss_table, ratio = experiments.initial_losses(cfg, sample, SEED)
print(f"Eq. 6's ratio r from the training ground truth: {ratio:.4g}")
run.table(loss_table, "losses", caption="Per-block losses of the untrained network (8 training faces)")

# %%
# NBVAL_CHECK_OUTPUT
nose = pifa.VisualizationLayer(model, "nose").mask
print(f"mask 1: mean {nose.mean().item():.3f}, std {nose.std().item():.3f}, "
      f"positive share {(nose > 0).float().mean().item():.3f}")

# %%
run.log(parameters_paper_network=int(totals["parameters"][0]), parameters_scale_network=int(totals["parameters"][1]))
run.finish();
