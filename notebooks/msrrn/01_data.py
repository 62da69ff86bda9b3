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
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from falign.kit import plots
from falign.measure import protocol300w
from falign.papers.msrrn import experiment as experiments
from falign.kit.chapter import setup
from falign.measure.landmarks import get_scheme
from falign.papers.msrrn import model as msrrn
from falign.papers.msrrn import published as paper

run, cfg, crops = setup("msrrn", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
tests = {s: crops[s] for s in experiments.TEST_SUBSETS}

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's numbers are read from `falign.papers.msrrn.published`; ours are counted from the crops this run
# built.

# %%
n = paper.number
pd.DataFrame({
    "item": ["training faces", "validation faces (held out of the training split)", "common test faces", "challenging test faces", "full test faces",
             "face sides per stage (px)", "landmarks"],
    "paper": [int(n("text_numbers/train-images")), 0,
              int(n("text_numbers/lfpw-test") + n("text_numbers/helen-test")), int(n("text_numbers/ibug")),
              int(n("text_numbers/lfpw-test") + n("text_numbers/helen-test") + n("text_numbers/ibug")),
              paper.training_protocol()["face_sizes"][::-1], int(n("text_numbers/landmarks"))],
    f"ours ({SCALE})": [len(crops["train"]), len(crops["validation"]), len(tests["common"]), len(tests["challenging"]),
                       len(tests["common"]) + len(tests["challenging"]),
                       list(msrrn.stage_sides(cfg.size, cfg.stages)), crops["train"].landmarks.shape[1]],
}).astype(str)

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
# counts the misses per split.

# %%
detection = experiments.detection_table(cfg, data=DATA, root=DATA_ROOT, seed=SEED)
run.table(detection, "detection", caption="dlib's frontal face detector per split: found and missed faces")

# %%
faces = experiments.load(cfg, "challenging", data=DATA, root=DATA_ROOT, seed=SEED)
found_boxes, found = experiments.detect_boxes(faces, cfg.upsample)
train_faces = experiments.load(cfg, "train", data=DATA, root=DATA_ROOT, seed=SEED)
calibration = experiments.calibration_of(train_faces, cfg.upsample)
given = experiments.given_boxes(faces)
used, _ = experiments.face_boxes(faces, calibration, cfg.upsample)
order = list(np.flatnonzero(found)[:3]) + list(np.flatnonzero(~found)[:3])
fig, axes = plt.subplots(1, max(1, len(order)), figsize=(2.2 * max(1, len(order)), 2.4), squeeze=False)
for ax, i in zip(axes[0], order):
    image = faces[i].image if DATA != "synthetic" else faces["images"][i]
    ax.imshow(image)
    for box, colour in ((given[i], "yellow"), (used[i], "cyan" if found[i] else "magenta")):
        ax.add_patch(plt.Rectangle(box[:2], *(box[2:] - box[:2]), fill=False, ec=colour, lw=1))
    ax.set_title("dlib found it" if found[i] else "missed: calibrated box", fontsize=8)
for ax in axes[0]:
    ax.axis("off")
fig.tight_layout()
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
shown = 6
fig, axes = plt.subplots(3, shown, figsize=(1.9 * shown, 6))
for row, split in enumerate(("train", "common", "challenging")):
    c = crops[split]
    for col, i in enumerate(np.linspace(0, len(c) - 1, shown).astype(int)):
        plots.landmarks(axes[row, col], c.images[i], c.landmarks[i], size=3)
    axes[row, 0].set_title(split, fontsize=9, loc="left")
fig.tight_layout()
run.figure(fig, "samples_per_subset")

# %% [markdown]
# ## The three scales
#
# Stage t reads the face at its own size, coarse to fine: 50, 100 and 200 pixels in the paper (a
# quarter of each side at `small`). The same [0, 1] shape lands on the same place of the face at every
# size; the patch each stage cuts around a landmark keeps its size in pixels, so it covers a larger
# part of the face at the coarse scale ({doc}`02_model`).

# %%
face = crops["common"].float_images(slice(0, 1))
sides = msrrn.stage_sides(cfg.size, cfg.stages)
levels = msrrn.pyramid(face, sides)
shape = experiments.targets(crops["common"])[0]
fig, axes = plt.subplots(1, len(sides), figsize=(2.6 * len(sides), 2.6))
for t, (ax, s) in enumerate(zip(np.atleast_1d(axes), sides)):
    plots.landmarks(ax, levels[s][0, 0], msrrn.to_pixels(shape, s), size=4, title=f"stage {t + 1}: {s} x {s} px")
fig.tight_layout()
run.figure(fig, "scales")

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
train = crops["train"]
k = min(5, len(train))
torch.manual_seed(SEED)
x, moved = experiments.augment(train.images[:1].repeat(k, 1, 1, 1), experiments.targets(train)[:1].repeat(k, 1, 1), cfg)
eye = get_scheme(experiments.SCHEME).outer_eye_corners[0]
fig, axes = plt.subplots(1, k + 2, figsize=(1.9 * (k + 2), 2.2))
plots.landmarks(axes[0], train.images[0], train.landmarks[0], size=3, title="crop")
axes[0].scatter(*train.landmarks[0, eye], s=14, c="red")
for j in range(k):
    pts = msrrn.to_pixels(moved[j], train.size)
    plots.landmarks(axes[j + 1], x[j, 0], pts, size=3, title=f"augmented {j + 1}")
    axes[j + 1].scatter(*pts[eye], s=14, c="red")
noisy = (train.float_images(slice(0, 1))[0, 0] + 0.5 * torch.randn(train.size, train.size)).clamp(0, 1)
plots.landmarks(axes[-1], noisy, train.landmarks[0, :0], title="σ = 0.5 on [0, 1]")
fig.tight_layout()
run.figure(fig, "augmentation")

# %% [markdown]
# ## Where the regression starts: the mean shape
#
# The error of the training mean shape placed in each test crop, with the paper's normaliser (the
# inter-pupil distance; 300-W annotates no pupils, so each pupil is the mean of its eye's six points)
# and the 300-W challenge's (the outer eye corners), in % per face, averaged; computed in original image
# coordinates by `falign.measure.protocol300w`. This is the first row of Table 2 ({doc}`04_analysis`).

# %%
mean = experiments.mean_shape(train)
start = {s: c.to_image(msrrn.to_pixels(mean, c.size).expand(len(c), -1, -1)) for s, c in tests.items()}
initial = pd.concat([protocol300w.evaluate(start, experiments.ground_truth(tests), experiments.SCHEME, norm=norm,
                                           method=f"mean shape ({norm})") for norm in experiments.NORMS],
                    ignore_index=True)
run.table(initial, "initial_error", caption="Error of the training mean shape in the crop")

# %%
# NBVAL_CHECK_OUTPUT
print(list(detection.columns))
print(f"mean-shape NME, common, inter-pupil: {initial['NME (%, inter-pupil)'].iloc[0]:.3f}%")

# %%
run.log(train_crops=len(train), validation_crops=len(crops["validation"]), common=len(tests["common"]), challenging=len(tests["challenging"]),
        missed={r["split"]: r["missed (calibrated dataset box)"] for r in detection.to_dict("records")})
run.finish();
