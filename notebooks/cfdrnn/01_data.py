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
from falign.kit.chapter import setup
from falign.papers.cfdrnn import experiment as experiments, published as paper
from falign.synthface.dataset import PRESETS

run, cfg, crops = setup("cfdrnn", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's numbers come from `falign.papers.cfdrnn.published` (its Sec. 2, 5 and 6); ours are counted from the
# crops this run built (`experiment.data_sizes`). The paper's full set pools common and challenging; the
# private set pools indoor and outdoor.

# %%
run.table(experiments.data_sizes(cfg, crops, SCALE), "data_sizes", caption="Data of the paper and of this run (faces)")

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
# ## Crops of every split (the analogue of Fig. 1)
#
# The paper's Fig. 1 shows annotated faces of LFPW, Helen, AFW, XM2VTS, i-bug and 300-W; here are this
# run's, one row per split. RGB crops around the (detector-like) face box with a 15% margin on each
# side, resized to the network's input side; landmarks in crop pixels. The paper crops to 256 × 256; at
# the CPU scales the crops are smaller (`size` above).

# %%
run.figure(experiments.samples_figure(crops, shown=6), "samples_per_split")

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
run.table(experiments.light_table(crops), "image_statistics", caption="Light and sharpness of the crops per split",
          precision=3)

# %% [markdown]
# ## Augmentation (Sec. 5.1)
#
# Every training face is changed anew in every epoch: a rotation by a small angle, an enlargement or
# reduction and a shift (one affine about the crop's centre, so pixels and landmarks move together),
# then a change of colour (a gain per colour channel). The paper names the kinds of change, not their
# sizes; ours are `rotate`, `rescale`, `shift` and `colour` of the scale. Each row shows one face and
# four draws of `experiment.augment`, the function the training calls.

# %%
run.figure(experiments.augmentation_figure(crops["train"], cfg, seed=SEED), "augmentation")

# %% [markdown]
# ## Heat-map targets (Eq. 5, Fig. 4)
#
# Each landmark becomes a heat-map on a grid s = 4 times coarser than the image (64 × 64 for the paper's
# 256 × 256 input): a Gaussian of width σ = 1.3 heat-map pixels with its peak of 1 at the landmark, on a
# zero background. Like the paper's Fig. 4 we show each face, the heat-map of one point (the nose tip)
# and the 68 heat-maps overlaid (their maximum).

# %%
run.figure(experiments.targets_figure(crops["train"], cfg), "fig4_targets")

# %% [markdown]
# ## The resolution limit of the heat-map grid
#
# Eq. 1 reads a landmark as s times the position of its heat-map's maximum, so even a *perfect* heat-map
# gives a landmark only to the nearest multiple of s = 4 pixels (Sec. 4.2: "at most 1/4 of the original
# resolution"). The table decodes the ground-truth targets themselves and scores them with the 300-W
# metric in original image coordinates, under both normalisers: the error that the heat-map level
# cannot go below, and that the landmark level's residual ΔL exists to remove.

# %%
floor = experiments.heatmap_floor(cfg, crops)
run.table(floor, "heatmap_floor", caption="Error of Eq. 1 on perfect heat-maps (the grid's resolution limit)")

# %%
# NBVAL_CHECK_OUTPUT
print(sorted(crops), list(floor.columns[:3]))

# %%
run.log(**{s: len(crops[s]) for s in ("train", "validation", *experiments.TEST_SUBSETS)})
run.finish();
