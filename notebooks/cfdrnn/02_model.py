# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # CFDRNN 2: the model
#
# CFDRNN is one network, a directed acyclic graph (Fig. 2-3 of the paper), with two levels. The
# **heat-map level** (HML) finds every landmark coarsely as the brightest pixel of a heat-map on a grid
# s = 4 times coarser than the image; it refines its heat-maps in three recurrent branches. The
# **landmark level** (LML) then adds to each coarse landmark a small residual ΔL, read by regression,
# which recovers the resolution the grid lost. In front of both sits a *resizer* block that shrinks the
# image by s and makes the first heat-maps; it is instantiated twice. The code is
# `falign/papers/cfdrnn/model.py`, written to be read beside Section 4 of the paper.
#
# 1. **Resizer** (Table 2): 3 × 3 convs and two 2 × 2 max-pools reduce the 256 × 256 image I0 to T0
#    (64 × 64); a 1 × 1 conv of T0 gives the "reduced image" D0 (68 channels); 9 × 9 convs, 1 × 1 convs and
#    dropout give the heat-maps H1. The first instance's H1 has a heat-map loss and feeds the HML; the
#    second instance gives Dr and Hr to the LML only, with no loss of its own.
# 2. **HML** (Table 3): branch j reads D0 ⊕ Hj and returns Hj+1 (j = 1, 2, 3) through 7 × 7 and
#    13 × 13 convs: wide filters that relate distant landmarks.
# 3. **LML** (Table 4): branch j reads D0 ⊕ Hj ⊕ Dr ⊕ Hr through stride-2 convs and returns ΔLj, one
#    (Δx, Δy) per landmark in units of the image size. The product Ej in the middle of branch j joins
#    branch j+1, whose 3 × 3 × 512 layer reads Ej+1 ⊕ Ej.
# 4. **Landmarks**: L̂j = s · argmax(Hj) (Eq. 1); Lj = s · argmax(Hj) + ΔLj (Eq. 4); the answer is L4.
# 5. **Losses**: L2 between every heat-map (H1..H4) and Gaussian targets (Eq. 5, σ = 1.3), and a loss on
#    every ΔLj against the residual of Eq. 2, L − s · argmax(Hj).
#
# Batch normalisation follows every conv (Sec. 5.1). Where the paper is silent (padding, the first LML
# branch's missing E0, how ΔL is weighted, initialisation, ...) the code says what it chose in a
# `Decision` comment; {doc}`04_analysis` lists them all.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import torch

from falign.kit.chapter import setup
from falign.papers.cfdrnn import experiment as experiments, model as cfdrnn

run, cfg, crops = setup("cfdrnn", "02_model", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED,
                        load_data=False)
with torch.device("meta"):                  # the paper's network, shapes only: no memory, no compute
    full = experiments.build(experiments.SCALES["full"])
ours = experiments.build(cfg)

# %% [markdown]
# ## Tables 2-4: the paper's layers beside ours
#
# Every conv row of the three tables (kernel k for [k × k], filters, stride), beside the same layer of
# the paper-sized network built by `falign.papers.cfdrnn.model.CFDRNN()` (256 × 256 input, width 1). The
# ReLU, pool and dropout rows are in the code in the same places; the last column gives the input
# channels, which the tables leave implicit (e.g. 272 = 4 × 68 for D0 ⊕ Hj ⊕ Dr ⊕ Hr, and 512 = 2 × 256
# for Ej ⊕ Ej−1).

# %%
for name, table in experiments.layer_tables(full).items():
    caption = f"{experiments.LAYER_TABLES[name]}, paper beside ours (full size)"
    display(run.table(table, f"{name}_layers", caption=caption))

# %% [markdown]
# ## The products of Fig. 2-3
#
# One forward pass of the full-size network on the meta device (shapes without computation): D0, Dr and
# every Hj are 64 × 64 × 68, Ej is 7 × 7 × 256, and each ΔLj is one pair of numbers per landmark. With
# "same" padding, Table 4's strides and stride-1 pools take the 64 × 64 input to exactly 1 × 1 × 136
# (64 → 32 → 31 → 16 → 15 → 8 → 7 → 4 → 3 → 2 → 1 → 1).

# %%
run.table(experiments.product_shapes(full, ours, SCALE), "products",
          caption="Products of the network for one image (batch x channels x height x width)")

# %% [markdown]
# ## Size of the network
#
# The paper-sized network against the one this scale trains (`width` divides every hidden layer's
# channels; the 68 heat-maps and 136 residuals stay). The LML's 3 × 3 × 1024 layers hold most of the
# parameters.

# %%
run.table(experiments.parameter_table(full, ours, SCALE), "parameters", caption="Trainable parameters")

# %%
# NBVAL_CHECK_OUTPUT
print(f"full-size CFDRNN: {experiments.parameter_counts(full)['total']:,} parameters")

# %% [markdown]
# ## Heat-maps in and out: Eq. 5 and Eq. 1
#
# A landmark at image point p is drawn as a Gaussian centred on p / s; the decoder reads s times the
# position of the maximum. Any point within the grid's reach comes back within s / 2 pixels per
# coordinate, which is the heat-map level's resolution; the LML's ΔL is what can do better. Here a
# few random points of a 64-pixel image go through the round trip.

# %%
fig, largest = experiments.round_trip_figure(SEED)
run.figure(fig, "heatmap_round_trip")
print(f"largest error of the round trip: {largest:.2f} px (s / 2 = {cfdrnn.S / 2})")

# %% [markdown]
# ## The Ej link between LML branches
#
# Table 4's row 7 feeds each branch the previous branch's mid-product. The check below
# (`experiment.ej_link`) changes E2 (the output of branch 2's first half) with a forward hook and compares
# the residuals: branch 1, upstream of E2, is unchanged; branches 2 and 3 change (branch 2 reads E2 in its
# own row 7, branch 3 reads E3 ⊕ E2); branch 4 reads E4 ⊕ E3, neither of which depends on E2. The ΔL
# output layers start at zero (so every Lj starts at s · argmax(Hj)); for this check they are given
# random weights.

# %%
experiments.ej_link(cfg, seed=SEED)

# %% [markdown]
# ## Speed of one forward pass
#
# The median time of one forward pass (L4 for one image, batch 1) of the paper-sized network and of the
# network this scale trains, on this run's device. The paper gives no timing.

# %%
run.table(experiments.speed(cfg, ours, run.device), "speed", caption="Forward pass at batch 1")

# %%
run.log(parameters_full=experiments.parameter_counts(full)["total"],
        parameters_ours=experiments.parameter_counts(ours)["total"])
run.finish();
