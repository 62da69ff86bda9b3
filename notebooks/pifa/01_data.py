# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # PIFA 1: data, box noise and the 3DMM ground truth
#
# Jourabloo, Ye, Liu and Ren, *Pose-Invariant Face Alignment with a Single CNN* (ICCV 2017), align faces
# at any yaw in ±90° by estimating the parameters `P = {M, p}` of a 3D morphable model (3DMM): a
# weak-perspective camera `M` (8 numbers) and 228 shape coefficients `p` (199 identity + 29
# expression). The 2D landmarks and their visibility follow from `P`. The chapter has four notebooks:
# this one (data), the model ({doc}`02_model`), training and the main results ({doc}`03_train`) and the
# ablations ({doc}`04_ablations`).
#
# The paper trains and tests on the AFLW subset of Jourabloo and Liu (3,901 training and 1,299 test
# faces, 34 landmarks, yaw up to ±90°) and tests on AFW (468 faces, at most 6 landmarks). Ground-truth
# `M, p` come from fitting the 3DMM to the annotated landmarks. Both datasets need registration, so by
# default the book uses **SynthFace** (see {doc}`../synthface/01_synthface`): the `aflw-pifa-like`
# preset (34 points, yaw uniform in ±90°) stands in for AFLW and `afw-like` (6 points) for AFW. Rendered
# faces come with their exact `M, p`. **SynthFace is not the paper's data**: numbers on it are not
# comparable with the paper's. With `DATA="aflw-pifa"` the notebooks read the real data from
# `DATA_ROOT`, and `M, p` come from fitting falign's 3DMM to the landmarks (`falign.synthface.morphable.fit`).

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | aflw-pifa
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import pandas as pd

from falign.kit import plots
from falign.kit.chapter import setup
from falign.papers.pifa import experiment as experiments

run, cfg, crops = setup("pifa", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
pd.Series(vars(cfg), name=SCALE).to_frame().T

# %% [markdown]
# ## The protocol (Sec. 4.1)
#
# The given face box is cropped and resized to 114×114 pixels in the paper (smaller at the CPU scales,
# see the configuration above). The training set is augmented with **20 variations** of every image,
# made by adding noise to the box's location, width and height; the paper does not say how much. We
# move the centre, width and height each by up to `box_noise` of the box size, uniformly (a
# Decision in `falign/papers/pifa/experiment.py`), and the scale configuration sets the number of
# variations (20 at full scale). Variation 0 is the unperturbed box. Test faces are cropped from the
# given box only. A few faces of the training split are held out as *validation* faces (their given box
# only): the book reads each training's convergence from its NME on them ({doc}`03_train`); the test set
# is never used for that. The ground truth `M` follows every crop: an image affine `A` maps `M` to
# `A[:, :2] M + [0 | A[:, 2]]`, so `M [S_p; 1]` lands on the cropped landmarks.

# %%
run.table(experiments.data_table(crops), "datasets",
          caption="The chapter's data at this scale (train includes the box-noise copies)")

# %% [markdown]
# ## Samples across poses
#
# Test crops ordered by yaw: green landmarks are visible, red ones hidden (self-occlusion or an
# occluder). AFLW marks hidden points as missing; SynthFace knows where they are, and the metrics count
# visible points only, as the paper does.

# %%
train, test = crops["train"], crops["test"]
yaw, order = experiments.yaws(test), experiments.across_yaw(test, 8)
fig, axes = plt.subplots(1, len(order), figsize=(2 * len(order), 2.3))
for ax, i in zip(axes, order):
    plots.landmarks(ax, test.images[i], test.landmarks[i], test.visible[i], size=5, legend=False,
                    title=f"yaw {yaw[i]:.0f}°")
fig.tight_layout()
run.figure(fig, "samples")

# %% [markdown]
# ## Pose and visibility
#
# Yaw, pitch and roll of the training faces and the share of hidden landmarks as a function of yaw:
# beyond about 45° the far side of the face turns away and up to half of the 34 points are hidden. This
# is what makes the task "large-pose" and why the paper estimates visibility from the 3D pose.

# %%
if train.pose is not None:
    run.figure(experiments.pose_figure(train), "pose_visibility")
else:
    print("The real dataset carries no pose angles; see the visibility share in the table above.")

# %% [markdown]
# ## The box-noise variations
#
# The same training face under its box-noise variations (variation 0 is the given box). Every copy is
# a new crop, so the landmarks, and `M`, move with it.

# %%
run.figure(experiments.box_noise_figure(train, cfg.variations), "box_noise")

# %% [markdown]
# ## Checking the ground-truth parameters
#
# The network is supervised with `P = {M, p}` (Eq. 6) and with the 2D landmarks (Eq. 7), so the two must
# agree: projecting `M [S_p(:, b); 1]` (Eq. 3) for the scheme's landmark vertices `b` must land on the
# ground-truth landmarks in every crop, box-noise copies included. For SynthFace the residual is
# floating-point noise; for real data it is the 3DMM fitting error.

# %%
check = experiments.reprojection_check(train)
residual = float(check["mean residual (px)"][0])
run.table(check, "reprojection_check", caption="Ground truth M, p reprojected onto the ground-truth landmarks",
          precision=5)

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(train)} training crops, mean 3DMM reprojection residual {residual:.4f} px")

# %%
run.log(train_crops=len(train), test_crops=len(test), reprojection_mean_px=residual)
run.finish();
