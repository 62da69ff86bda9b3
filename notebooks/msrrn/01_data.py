# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # MSRRN 1: the data
#
# Wang, Sun, Lu, Feng and Zhou's *Multiscale recurrent regression networks for face alignment* (MSRRN,
# Applied Informatics 2017) trains and tests on 300-W with 68 landmarks: 3,148 training faces and three
# test sets, *common* (the LFPW and HELEN test sets), *challenging* (IBUG) and *full* (both). Every face
# box comes from dlib's face detector; the cropped face is rescaled to 200, 100 and 50 pixels, one size
# per stage; the landmarks are normalised to [0, 1]; the training faces are augmented with per-pixel
# Gaussian noise (σ = 0.5), flips and in-plane rotations uniform in ±15°. The error is the mean
# point-to-point distance divided by the distance between the pupils.
#
# 300-W needs registration, so by default this chapter runs on **SynthFace's 300-W-like preset**
# ({doc}`../synthface/01_synthface`), a near-frontal *common* split, a hard *challenging* split and a
# training split covering both. Its numbers measure the method on synthetic faces, not on 300-W. With
# `DATA="300w"` (and `DATA_ROOT`) the same notebooks read the real 300-W.
#
# This notebook shows what the model is given: how many faces dlib finds and what happens to the
# others, the crops, the three scales, the augmentation and the error of the mean shape.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import numpy as np

from falign.kit.chapter import setup
from falign.papers.msrrn import experiment as experiments

run, cfg, crops = setup("msrrn", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's numbers are read from `falign.papers.msrrn.published`; ours are counted from the crops this run
# built (`experiments.data_table`).

# %%
experiments.data_table(cfg, crops, SCALE)

# %% [markdown]
# ## Face boxes from dlib's detector
#
# The paper detects every face it evaluates with dlib. We run the real one, dlib's HOG + linear-SVM
# frontal-face detector (`falign.data.detect`, from the `dlib-bin` wheel), on every photo, and keep the
# detection that overlaps the data set's own box (IoU ≥ 0.3). It is a *frontal* detector: it misses
# turned, occluded and small faces, and the paper does not say what it did with those. Here a missed
# face is cropped with the data set's box, moved and scaled the way dlib's boxes sit relative to the
# data set's (the median offset and size ratio measured on the training faces dlib found), so every
# face is cropped as if dlib had found it. The training faces are cropped the same way. The table
# counts the misses per split; the figure shows faces of the challenging split that dlib found and
# missed (`experiments.detector_figure`).

# %%
detection = experiments.detection_table(cfg, data=DATA, root=DATA_ROOT, seed=SEED)
run.table(detection, "detection", caption="dlib's frontal face detector per split: found and missed faces")
print(experiments.detection_remark(detection))

# %%
fig, calibration = experiments.detector_figure(cfg, data=DATA, root=DATA_ROOT, seed=SEED)
run.figure(fig, "detector_boxes")
print("yellow: the data set's box; cyan: dlib's box; magenta: the data set's box moved and scaled like dlib's")
print("calibration (centre offset in box widths/heights, size ratio):", np.round(calibration, 3).tolist())

# %% [markdown]
# ## Crops
#
# The face crop is the square around the box with a fifth of the box added on each side (dlib's boxes
# run from the eyebrows to the chin, and the normalised coordinates must stay in [0, 1]), grey, at the
# finest scale (`cfg.size` pixels: 200 in the paper).

# %%
run.figure(experiments.samples_figure(crops), "samples_per_subset")

# %% [markdown]
# ## The three scales
#
# Stage t reads the face at its own size, coarse to fine: 50, 100 and 200 pixels in the paper (a
# quarter of each side at `small`). The same [0, 1] shape lands on the same place of the face at every
# size; the patch each stage cuts around a landmark keeps its size in pixels, so it covers a larger
# part of the face at the coarse scale ({doc}`02_model`).

# %%
run.figure(experiments.scales_figure(cfg, crops["common"]), "scales")

# %% [markdown]
# ## Augmentation
#
# Every training batch is augmented afresh: a rotation uniform in ±15° about the crop's centre and a
# mirror with probability ½ (one resampling per crop; the landmarks renumbered by the 68-point flip
# permutation, so point 37, in red, stays the subject's right eye corner), then per-pixel Gaussian
# noise. The paper's σ = 0.5 has no unit. We read it in grey levels of 0-255 images, less than one
# quantisation step; the last panel shows what σ = 0.5 would be on [0, 1] intensities, which buries
# the face.

# %%
run.figure(experiments.augmentation_figure(cfg, crops["train"], seed=SEED), "augmentation")

# %% [markdown]
# ## Where the regression starts: the mean shape
#
# The error of the training mean shape placed in each test crop, with the paper's normaliser (the
# inter-pupil distance; 300-W annotates no pupils, so each pupil is the mean of its eye's six points)
# and the 300-W challenge's (the outer eye corners), in % per face, averaged; computed in original image
# coordinates by `falign.kit.protocol300w`. This is the first row of Table 2 ({doc}`04_analysis`).

# %%
initial = experiments.mean_shape_table(crops)
run.table(initial, "initial_error", caption="Error of the training mean shape in the crop")

# %%
# NBVAL_CHECK_OUTPUT
print(list(detection.columns))
print(f"mean-shape NME, common, inter-pupil: {initial['NME (%, inter-pupil)'].iloc[0]:.3f}%")

# %%
run.log(train_crops=len(crops["train"]), validation_crops=len(crops["validation"]), common=len(crops["common"]),
        challenging=len(crops["challenging"]), missed=detection.set_index("split")["missed (calibrated dataset box)"].to_dict())
run.finish();
