# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # CFDRNN 1: the data
#
# Mahpod, Das, Maiorana, Keller and Campisi's *Coarse-to-Fine Deep Recurrent Neural Network* (CFDRNN,
# 2018) trains on 11,007 face images with 68 landmarks (the LFPW and Helen training sets, AFW, XM2VTS
# and the Menpo training set; Sec. 5.2), holds 2,500 of them out for validation, and tests on the 300-W
# protocol (Sec. 6.1): *common* (the LFPW and Helen test sets, 554 faces), *challenging* (iBUG, 135),
# the *public* set (both, 689; "full" in Table 5) and the *private* set of the 300-W challenge (600:
# 300 *indoor* and 300 *outdoor* photos). The network reads the whole face as a 256 × 256 RGB image with
# pixels in [−0.5, 0.5] (Sec. 5.1), and its training images are augmented by colour changes, small
# rotations, enlargements, reductions and shifts.
#
# 300-W needs registration, so by default this chapter runs on **SynthFace's 300-W-like preset**
# ({doc}`../synthface/01_synthface`): a training split covering every condition, a near-frontal
# *common* split, a hard *challenging* split, and private-like *indoor* and *outdoor* splits that differ
# in their light (below). It is not the paper's data: the numbers of this chapter measure the method on
# synthetic faces. With `DATA="300w"` (and `DATA_ROOT`) the same notebooks read the real 300-W,
# private set included (`300W/01_Indoor`, `300W/02_Outdoor`).
#
# This notebook shows what the network is given: the crops of every split, what separates indoor from
# outdoor, the augmentation, the heat-map targets of Eq. 5, and the resolution limit that the heat-map
# grid (s = 4) puts on any method that reads landmarks off it.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from falign.kit import plots
from falign.measure import protocol300w
from falign.synthface.dataset import PRESETS
from falign.papers.cfdrnn import experiment as experiments
from falign.kit.chapter import setup
from falign.papers.cfdrnn import model as cfdrnn
from falign.papers.cfdrnn import published as paper

run, cfg, crops = setup("cfdrnn", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
tests = {s: crops[s] for s in experiments.TEST_SUBSETS}

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's numbers come from `falign.papers.cfdrnn.published` (its Sec. 2, 5 and 6); ours are counted from the
# crops this run built. The paper's full set pools common and challenging; the private set pools indoor
# and outdoor.

# %%
protocol = paper.training_protocol()
n = lambda k: paper.number(f"text_numbers/{k}")  # noqa: E731
data_table = pd.DataFrame({
    "item": ["training images", "validation images (held out of training)", "common test", "challenging test",
             "public (full) test", "private indoor", "private outdoor", "private (both)", "input side (px)",
             "heat-map side (px)", "landmarks"],
    "paper": [protocol["train_images"] - protocol["validation_images"], protocol["validation_images"],
              n("common-images"), n("challenging-images"), n("public-images"), n("private-images/1"),
              n("private-images/2"), n("private-total"), protocol["input_size"], protocol["heatmap_size"],
              protocol["landmarks"]],
    f"ours ({SCALE})": [len(crops["train"]), len(crops["validation"]), len(tests["common"]), len(tests["challenging"]),
                       len(tests["common"]) + len(tests["challenging"]), len(tests["indoor"]), len(tests["outdoor"]),
                       len(tests["indoor"]) + len(tests["outdoor"]), cfg.size, cfg.size // cfdrnn.S, 68],
})
run.table(data_table.astype({"paper": int}), "data_sizes", caption="Data of the paper and of this run (faces)")

# %% [markdown]
# The paper's "11,007 training images" includes the 2,500 it validates on; we count them apart. The
# paper lists the data sets, not how each was used beyond that; its sums are discussed in the notes of
# {doc}`04_analysis`.
#
# ## Table 1: the related work
#
# Table 1 of the paper summarises the methods it compares with: their training data, test sets, number
# of landmarks and published NME. The table names no normaliser; each of its numbers reappears in one
# normaliser's block of Table 5 or 6, recorded here in the `normaliser` column. Our own rows are added
# in {doc}`03_train`, once the network is trained.

# %%
run.table(paper.table1(), "table1_paper", caption="Table 1 of the paper, transcribed (NME %, as published)")

# %% [markdown]
# ## Crops of every split
#
# RGB crops around the (detector-like) face box with a 15% margin on each side, resized to the network's
# input side; landmarks in crop pixels. The paper crops to 256 × 256; at the CPU scales the crops are
# smaller (`size` above).

# %%
shown = 6
splits = ("train", "validation", *experiments.TEST_SUBSETS)
fig, axes = plt.subplots(len(splits), shown, figsize=(1.7 * shown, 1.8 * len(splits)))
for row, split in enumerate(splits):
    c = crops[split]
    for col, i in enumerate(np.linspace(0, len(c) - 1, shown).astype(int)):
        plots.landmarks(axes[row, col], c.images[i], c.landmarks[i], size=2)
    axes[row, 0].set_title(split, fontsize=9, loc="left")
fig.tight_layout()
run.figure(fig, "samples_per_split")

# %% [markdown]
# ## Indoor and outdoor
#
# The 300-W challenge's private set was collected as 300 indoor and 300 outdoor photos. In SynthFace the
# two halves have the training set's poses, expressions and occluders and differ in their light:

# %%
if DATA == "synthetic":
    print(PRESETS[experiments.PRESET].description)

# %% [markdown]
# The table measures what that does to the crops: the mean brightness, the contrast (standard deviation
# of the grey levels) and the sharpness (mean absolute difference of neighbouring pixels) of each
# split. On real 300-W the same numbers describe the photographs.

# %%
run.table(pd.DataFrame([{"split": s, **crops[s].light()} for s in ("train", *experiments.TEST_SUBSETS)]),
          "image_statistics", caption="Light and sharpness of the crops per split", precision=3)

# %% [markdown]
# ## Augmentation (Sec. 5.1)
#
# Every training face is changed anew in every epoch: a rotation by a small angle, an enlargement or
# reduction and a shift (one affine about the crop's centre, so pixels and landmarks move together),
# then a change of colour (a gain per colour channel). The paper names the kinds of change, not their
# sizes; ours are `rotate`, `rescale`, `shift` and `colour` of the scale. Each row shows one face and
# four draws.

# %%
torch.manual_seed(SEED)
train = crops["train"]
fig, axes = plt.subplots(3, 5, figsize=(8.5, 5.2))
for row, i in enumerate(range(3)):
    plots.landmarks(axes[row, 0], train.images[i], train.landmarks[i], size=2)
    images, points = experiments.augment(train.images[i:i + 1].expand(4, -1, -1, -1), train.landmarks[i:i + 1].expand(4, -1, -1),
                                         cfg)
    for col in range(4):
        plots.landmarks(axes[row, col + 1], images[col], points[col], size=2)
axes[0, 0].set_title("as cropped", fontsize=9)
for col in range(1, 5):
    axes[0, col].set_title(f"draw {col}", fontsize=9)
fig.tight_layout()
run.figure(fig, "augmentation")

# %% [markdown]
# ## Heat-map targets (Eq. 5, Fig. 4)
#
# Each landmark becomes a heat-map on a grid s = 4 times coarser than the image (64 × 64 for the paper's
# 256 × 256 input): a Gaussian of width σ = 1.3 heat-map pixels with its peak of 1 at the landmark, on a
# zero background. Like the paper's Fig. 4 we show each face, the heat-map of one point (the nose tip)
# and the 68 heat-maps overlaid (their maximum).

# %%
faces = train.subset(torch.arange(4))
targets = cfdrnn.render_heatmaps(faces.landmarks, cfg.size // cfdrnn.S)
nose = 30
fig, axes = plt.subplots(3, 4, figsize=(7, 5.4))
for col in range(4):
    plots.landmarks(axes[0, col], faces.images[col], faces.landmarks[col], size=2)
    axes[1, col].imshow(targets[col, nose], cmap="magma", vmin=0, vmax=1)
    axes[2, col].imshow(targets[col].amax(0), cmap="magma", vmin=0, vmax=1)
    for row in (1, 2):
        axes[row, col].axis("off")
axes[1, 0].set_title("one point (nose tip)", fontsize=8, loc="left")
axes[2, 0].set_title("68 points", fontsize=8, loc="left")
fig.tight_layout()
run.figure(fig, "fig4_targets")

# %% [markdown]
# ## The resolution limit of the heat-map grid
#
# Eq. 1 reads a landmark as s times the position of its heat-map's maximum, so even a *perfect* heat-map
# gives a landmark only to the nearest multiple of s = 4 pixels (Sec. 4.2: "at most 1/4 of the original
# resolution"). The table decodes the ground-truth targets themselves and scores them with the 300-W
# metric in original image coordinates, under both normalisers: the error that the heat-map level
# cannot go below, and that the landmark level's residual ΔL exists to remove.

# %%
truth = experiments.ground_truth(tests)
decoded = {s: c.to_image(cfdrnn.coarse_landmarks(cfdrnn.render_heatmaps(c.landmarks, cfg.size // cfdrnn.S)))
           for s, c in tests.items()}
floor = experiments.scores(decoded, truth, "s·argmax of the true heat-map")
run.table(floor, "heatmap_floor", caption="Error of Eq. 1 on perfect heat-maps (the grid's resolution limit)")

# %%
# NBVAL_CHECK_OUTPUT
print(sorted(crops), list(floor.columns[:3]))

# %%
run.log(train=len(crops["train"]), validation=len(crops["validation"]), **{s: len(c) for s, c in tests.items()})
run.finish();
