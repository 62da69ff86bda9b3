# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # MSRRN 2: the model, reconstructed from the prose
#
# A cascaded shape regressor refines a face shape S (68 points) from an initial shape S⁰ in stages,
# Sᵗ = Sᵗ⁻¹ + fᵗ(I, Sᵗ⁻¹), and usually learns a different fᵗ for every stage. MSRRN makes three changes:
#
# 1. **Shape-indexed patches and a CNN regressor.** Each stage cuts a patch around every current
#    landmark and a network of convolution, max-pooling and ReLU layers, then fully connected layers,
#    turns the patches into the shape residual.
# 2. **Recurrence.** One set of regression weights serves every stage; in training the unrolled
#    network's gradients are averaged over the stages.
# 3. **Multiscale input.** Stage t reads the face at its own scale, coarse to fine: 50, 100 and 200
#    pixels for T = 3.
#
# A separate CNN predicts S⁰ (the mean shape is the baseline), and the objective is Σₜ ‖S* − Sᵗ‖² +
# λ‖W‖² with coordinates normalised to [0, 1].
#
# **What the text does not give.** The available text of the paper lost its equations 1-6, the
# network figure (Fig. 2), both tables and the CED figures. The model below is therefore a
# reconstruction from the prose: every size, the way the 68 patches are combined, the initial-shape
# CNN, λ, the optimiser and how "averaging the gradients of different stages" is realised are our
# choices, each a `Decision` in `falign/papers/msrrn/model.py` with its entry in the deviations ledger
# ({doc}`04_analysis`).

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import pandas as pd
import torch

from falign.kit import decisions
from falign.kit.chapter import setup
from falign.papers.msrrn import experiment as experiments, model as msrrn, published as paper

run, cfg, crops = setup("msrrn", "02_model", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## What the available text has lost
#
# The paper refers to these items, which the extraction did not keep; the last column says what this
# book does in their place.

# %%
paper.absent()

# %% [markdown]
# ## Patches at every stage's scale
#
# `MSRRN.patches` cuts a P × P patch around every landmark from the face at the stage's side (one
# bilinear `grid_sample` call for all faces and points). P is the same number of pixels at every scale,
# so one set of convolutions reads all of them, and a patch covers a large part of the face at the
# coarse scale (context for a coarse shape) and a small part at the fine scale (detail for a nearly
# right shape). Below, the patches of a few landmarks (eye corners, nose tip, a mouth corner, chin) of
# one face around its true shape, per stage (`experiments.patches_figure`).

# %%
model = experiments.build(cfg)
model.mean_shape.copy_(experiments.mean_shape(crops["train"]))
face = crops["common"]
run.figure(experiments.patches_figure(model, face), "patches_per_scale")

# %% [markdown]
# ## The network, layer by layer
#
# The regression network f (one patch through the convolutions, then all patches of a face through
# the fully connected layers) and the initial-shape CNN, at the paper's sizes (`full`: a 200-pixel face
# and 16-pixel patches) and at this run's scale.

# %%
experiments.layer_tables(model, SCALE)

# %% [markdown]
# ## Shared weights: the parameter count does not grow with T
#
# MSRRN's regression weights are shared across the stages, so a deeper unrolling adds no parameters;
# the ablation with separate weights per stage grows linearly with T. The initial-shape CNN is counted
# apart. (`tests/test_msrrn.py` checks both, and that the shared weights' update is the mean of the
# stages' gradients.)

# %%
counts = experiments.parameters_by_stages(model, (1, 2, 3, 4))
run.table(counts, "parameters_vs_stages", caption=f"Parameters against the number of stages T ({SCALE} sizes)")

# %% [markdown]
# ## One forward pass
#
# `model(faces)` returns every shape S⁰ … S^T in [0, 1] crop units, shape `(T+1, B, N, 2)`: the loss
# needs all of them. The output layers start at zero, so an untrained model leaves the mean shape in
# place; training moves it.

# %%
with torch.no_grad():
    shapes = model(face.float_images(slice(0, 4)))
print(f"faces {tuple(face.images[:4].shape)} -> shapes {tuple(shapes.shape)} (T = {model.steps}, sides {model.sides})")
print(f"untrained: largest move from the mean shape {float((shapes - model.mean_shape).abs().max()):.2e}")

# %% [markdown]
# ## Choices the text leaves open
#
# Every `Decision` of the model file, as the code states it; {doc}`04_analysis` shows the whole
# deviations ledger with the paper's side of each.

# %%
pd.DataFrame(list(decisions.decisions_in(msrrn.__file__).items()), columns=["id", "decision"])

# %%
# NBVAL_CHECK_OUTPUT
print(counts.to_string(index=False))

# %%
run.log(**{k.replace(" ", "_").replace("-", "_"): v for k, v in msrrn.parameter_counts(model).items()})
run.finish();
