# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Landmarks and metrics
#
# Every paper in this book predicts a set of facial landmarks and reports an error. The five papers
# use different landmark layouts (68, 49, 34, 6 or 5 points) and different errors (NME with three
# normalisers, a pixel error, CED curves, AUC and failure rates). This chapter explains the two small
# modules that all chapters share:
#
# * `falign.measure.landmarks`: named landmark *schemes*, how they are derived from one another, and the flip
#   permutation and normaliser points each carries;
# * `falign.measure.metrics`: the per-image errors and the statistics over images, with the exact formula
#   behind every number in the book, and where other toolkits make other choices.
#
# The faces here are the mean face of falign's built-in 3D morphable model, and the errors come from a
# seeded toy example: ground truth plus Gaussian noise. They describe the metrics, not a method.
# `SCALE` only changes the number of toy faces. The code is in `falign.chapters.landmarks` (the
# chapter's functions) and `falign.kit.plots` (the drawing pieces every chapter shares).

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w | aflw-pifa | afw | lfpw5 | helen | cofw | menpo
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import numpy as np

from falign.chapters import landmarks as chapter
from falign.kit.chapter import setup
from falign.measure import metrics

run, cfg, _ = setup("landmarks", "01_landmarks_and_metrics", load_data=False, SCALE=SCALE, DATA=DATA,
                    DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## What a landmark scheme is
#
# A landmark array of shape `(N, 2)` means nothing by itself: row 36 is the outer corner of the
# image-left eye in the iBUG 68-point markup, but the left eye *centre* in another layout. In falign a
# row's meaning is carried by a named `Scheme`:
#
# * **point names**, one per row. "left" and "right" are the *image* left and right of a frontal face
#   (the viewer's side), so iBUG's `left_eye_outer` (36) is the subject's right eye;
# * a **flip permutation**: after mirroring an image, point `i` of the mirrored face is point
#   `flip_perm[i]` of the original (the image-left eye becomes the image-right eye), which every
#   horizontal-flip augmentation needs;
# * the **normaliser points**: `outer_eye_corners` for the inter-ocular distance and
#   `eye_centre_groups` (points averaged into the pupils) for the inter-pupil distance;
# * a **root** annotation and **sources**: point `i` is the mean of root points `sources[i]`. The
#   5-point layout's eye centres, for example, are the means of iBUG points 36-41 and 42-47.
#
# Derived schemes get their flip permutation and normaliser points from their root, so a 49-point
# subset cannot disagree with the 68 points about which eye is which. That is also why notebooks never
# write bare index lists such as `[36, 45]`: a list of numbers silently means something else when the
# scheme changes, while `scheme.outer_eye_corners` is right for every scheme or says that the scheme
# has no eye corners.

# %%
chapter.scheme_fields()

# %% [markdown]
# `landmarks.convert(points, src, dst)` turns `(..., N, 2)` arrays (numpy or torch) from one scheme
# into another of the same root, as a fixed matrix of averages. The roots (iBUG 68, COFW 29, AFLW 21,
# Helen 194, Menpo 39) are independent annotations: there is no exact correspondence between them, so
# falign converts only within a root. The table lists every scheme.

# %%
run.table(chapter.scheme_table(), "schemes",
          caption="Landmark schemes in falign.measure.landmarks (box-based normalisers — box sqrt(wh), box "
                  "width, box diagonal — need a face box and work with every scheme)")

# %% [markdown]
# ## The schemes on a face
#
# To see where the points lie we render the mean face of the built-in morphable model
# (`morphable.builtin_model()`) frontally with `render.render_mesh`, colouring vertices by their label
# (skin, brows, lips, eyes, iris), and project the model's 68 landmark vertices with the same camera.
# Every other scheme is derived from those 68 projected points with `landmarks.convert`, exactly as
# SynthFace derives its ground truth.

# %%
face = chapter.mean_face(chapter.SIZE)

# %% [markdown]
# The 68 iBUG points, numbered from 0 as everywhere in falign (300-W's `.pts` files count from 1).
# The mean face's mouth is closed, so the inner-lip points of the upper and lower lip (61-63 and
# 65-67) nearly coincide on the line where the lips meet; the zoom on the right separates the labels.

# %%
run.figure(chapter.numbered_figure(face), "ibug68_numbered")

# %% [markdown]
# In the panels below, green dots are points the scheme keeps from iBUG 68, orange stars are points it
# *averages* from several iBUG points, and faint grey dots are the 68 points for context. Red rings
# mark the scheme's outer eye corners (the inter-ocular normaliser) and blue crosses its eye centres
# (the inter-pupil normaliser), where the scheme defines them. The last two panels show the
# normalisers on iBUG 68 (with the landmark box used by the box normalisers) and the flip
# permutation: each point is joined to its mirror partner, and points on the symmetry line are their
# own partners.

# %%
run.figure(chapter.schemes_figure(face), "schemes_on_face")

# %% [markdown]
# The mean face is left-right symmetric and the camera is centred, so mirroring its landmarks with
# `landmarks.flip_points` (x → width − 1 − x, then rows permuted by `flip_perm`) must give the same
# points back. That checks the flip permutation against the model's geometry:

# %%
print(f"largest distance between the landmarks and their mirror image: {chapter.mirror_gap(face):.2e} px")

# %% [markdown]
# ## The metrics
#
# For image $i$ with ground-truth points $\mathbf{p}_{ij}$ and predictions $\hat{\mathbf{p}}_{ij}$,
# $j = 1, \dots, N$, and a set $V_i$ of scored points (all $N$, or the visible ones only where a paper
# says so):
#
# **Per-image normalised mean error** (`metrics.nme`):
#
# $$\mathrm{NME}_i = \frac{1}{|V_i|}\sum_{j \in V_i} \frac{\lVert \hat{\mathbf{p}}_{ij} -
# \mathbf{p}_{ij} \rVert_2}{d_i}$$
#
# with the normaliser $d_i$ computed from the ground truth (`metrics.normaliser`), whether or not its
# eye points are visible:
#
# | `norm` | $d_i$ | used by |
# |---|---|---|
# | `"inter-ocular"` | $\lVert \mathbf{p}_{i,a} - \mathbf{p}_{i,b} \rVert$, $a, b$ = the scheme's outer eye corners (iBUG 36, 45) | 300-W |
# | `"inter-pupil"` | $\lVert \bar{\mathbf{p}}_{i,L} - \bar{\mathbf{p}}_{i,R} \rVert$, $\bar{\mathbf{p}}_{i,L} = \frac{1}{\lvert L \rvert}\sum_{j \in L} \mathbf{p}_{ij}$ over each eye's points (iBUG 36-41, 42-47) | older 300-W / LFPW numbers |
# | `"box"` | $\sqrt{w_i h_i}$ of the face box | AFLW (PIFA) |
# | `"box-width"` | $w_i$ | Sun et al.'s five points |
# | `"box-diagonal"` | $\sqrt{w_i^2 + h_i^2}$ (Menpo: box of the ground-truth landmarks) | Menpo |
# | `"none"` | $1$ (pixels) | PIFA's MAPE |
#
# **MAPE** (`metrics.mape`) is the `"none"` case over the visible points: the mean pixel error
# $\frac{1}{|V_i|}\sum_{j \in V_i} \lVert \hat{\mathbf{p}}_{ij} - \mathbf{p}_{ij} \rVert_2$, per image.
#
# **Per-landmark errors** (`metrics.per_landmark_errors`) keep the points apart:
# $e_{ij} = \lVert \hat{\mathbf{p}}_{ij} - \mathbf{p}_{ij} \rVert_2 / d_i$, an $(n, N)$ array.
#
# A face with no scored point ($V_i = \emptyset$) has no error: its entry is NaN. The statistics run
# over the set $I$ of faces that have an error, and report how many they left out. Writing
# $e_i = \mathrm{NME}_i$ and $n = |I|$:
#
# * **mean error** (`metrics.mean_error`): $\overline{e} = \frac{1}{n}\sum_{i \in I} e_i$, per image
#   first, then over images;
# * **cumulative error distribution** (`metrics.ced`): $\mathrm{CED}(t) = \frac{1}{n}\,
#   \#\{ i \in I : e_i \le t \}$, a right-continuous step function, sampled on a fine grid for plots;
# * **AUC@α** (`metrics.auc`): the area under the CED up to $\alpha$, divided by $\alpha$, computed
#   exactly. Because $\int_0^\alpha \mathbf{1}[e_i \le t]\,dt = \max(0, \alpha - e_i)$,
#
#   $$\mathrm{AUC}_\alpha = \frac{1}{\alpha}\int_0^\alpha \mathrm{CED}(t)\,dt
#   = \frac{1}{n}\sum_{i \in I} \max\!\left(0,\; 1 - \frac{e_i}{\alpha}\right);$$
#
# * **failure rate@α** (`metrics.failure_rate`): $\mathrm{FR}_\alpha = \frac{1}{n}\,
#   \#\{ i \in I : e_i \ge \alpha \}$ (an error of exactly $\alpha$ is a failure).
#
# `metrics.summary` puts the mean, median, AUC@α and failure rate@α of several error arrays in one
# table, with the counts `n` and `excluded`.

# %% [markdown]
# ### A toy example
#
# The toy faces are the model's 68 landmarks for random identities (coefficients drawn from the
# model's prior) under random poses and sizes (`morphable.pose_to_M`: yaw within ±45°, pitch ±15°,
# roll ±20°, faces about 70 to 250 pixels wide). A point counts as visible when its surface normal
# on the mean face points toward the camera, a rough stand-in for self-occlusion (it ignores, for
# example, the nose hiding the far eye corner). Predictions are the ground truth plus Gaussian noise whose size is a
# per-face "difficulty" times the face size, with 5% of faces four times harder and hidden points twice
# as noisy as visible ones, so that the CED has a long tail like a real method's.

# %%
gt, pred, visible = chapter.toy_faces(cfg.faces, SEED)
run.log(toy_faces=cfg.faces)
print(f"{cfg.faces} faces, {visible.mean():.1%} of points visible, "
      f"{(~visible).any(axis=1).mean():.1%} of faces with a hidden point")

# %% [markdown]
# The same predictions, scored with each normaliser. The box normalisers use the tight box of the
# ground-truth landmarks here; a face detector's box is larger, which lowers box-normalised errors.

# %%
errors = chapter.toy_errors(pred, gt, visible)
run.table(chapter.toy_summary(errors, alphas=(0.08, 0.10)), "toy_summary",
          caption="Toy example: NME per image with each normaliser (rows), then mean, median, "
                  "AUC@α and failure rate@α over images, in % (box normalisers on the "
                  "ground-truth landmark box)")

# %%
pixel_error = metrics.mape(pred, gt, visible=visible)
print(f"MAPE (pixels, visible points): {metrics.mean_error(pixel_error):.2f} px "
      f"(median {np.median(pixel_error):.2f} px)")

# %% [markdown]
# Per-landmark errors show where the error sits. In the toy example the jaw, which turns away from the
# camera first, carries the hidden points' doubled noise; scored on visible points only, every landmark
# has about the same error, as the noise model says.

# %%
run.figure(chapter.per_landmark_figure(pred, gt, visible), "toy_per_landmark")

# %% [markdown]
# The CED of the inter-ocular errors. The shaded area up to α = 0.08, divided by α, is AUC@0.08; the
# CED's shortfall from 1 at α is the failure rate.

# %%
ALPHA = 0.08
e_io = errors["inter-ocular"]
run.figure(chapter.ced_figure(e_io, ALPHA), "toy_ced")

# %% [markdown]
# ## How ours relate to other toolkits
#
# Papers and evaluation scripts agree on the idea of these metrics and differ in details that move
# numbers by amounts comparable to the gaps papers report. The table names our choice in each, and what
# one meets elsewhere; the cells below measure the effect on the toy errors.
#
# | choice | falign | what other toolkits may do | effect |
# |---|---|---|---|
# | averaging | per image (mean over its scored points), then over images | some pool all scored points of all images into one mean | identical when every image scores all $N$ points; with visibility masks, pooling weights faces with more visible points more |
# | AUC@α | exact integral of the step CED, $\frac{1}{n}\sum_i \max(0, 1 - e_i/\alpha)$ | many integrate a CED sampled on a grid (trapezoid, Simpson, or a rectangle sum) | grid methods converge to the exact value as the step shrinks; a coarse grid moves the third decimal |
# | failure@α | $e_i \ge \alpha$ | some count $e_i > \alpha$ | nil for continuous errors; differs only for errors exactly at α (quantised errors) |
# | ocular normaliser | inter-ocular = outer eye corners; inter-pupil = eye centres (means of each eye's points), named in every table | "inter-ocular" sometimes means the pupil distance | the pupil distance is shorter, so the same predictions give larger errors; convert roughly with the ratio below |
# | faces with no scored point | NaN, left out of every statistic and counted (`excluded`) | some drop them silently, some score them as failures, and a plain mean returns NaN | changes $n$; we report it |

# %% [markdown]
# **Per-image vs pooled means.** Without a visibility mask every face scores all 68 points, so the two
# means agree to rounding; scoring only visible points, pooling gives more weight to the faces with more
# visible points (here, the frontal ones, which are also the easier ones).

# %%
chapter.pooling_table(pred, gt, visible)

# %% [markdown]
# **AUC by numerical integration.** Sampling the CED on a grid of step $h$ and integrating the samples
# approximates our exact value. For the trapezoid and Simpson rules the error shrinks with $h$ (not
# monotonically: with a few hundred faces it depends on where the grid points fall among the errors),
# while a rectangle (left Riemann) sum is biased low by about $h / (2\alpha)$ times the share of faces
# below $\alpha$.

# %%
auc_table, exact = chapter.auc_integration(e_io, ALPHA)
run.table(auc_table, "auc_integration", precision=5,
          caption=f"AUC@{ALPHA:g} of the toy NME (inter-ocular) by integrating a sampled CED, "
                  f"against the exact value {exact:.5f}")

# %% [markdown]
# **≥ or > for failures.** For continuous errors no face lands exactly on α, and the two rules agree.
# They differ only when errors are quantised; below, the same errors rounded to whole percents (as if
# stored with two decimals) put a few faces exactly on 0.08. Our CED uses ≤, so with ≥ the failure rate
# is $1 - \mathrm{CED}(\alpha^-)$, and with > it is $1 - \mathrm{CED}(\alpha)$.

# %%
chapter.failure_rules(e_io, ALPHA)

# %% [markdown]
# **Which eye points.** The eye centres lie inside the outer corners, so the inter-pupil distance is
# the shorter one and the same predictions score higher. On the built-in mean face the ratio is
# below; the second table gives the median ratio of every normaliser to the inter-ocular distance over
# the toy faces, so that a number normalised one way can be converted roughly:
# $\mathrm{NME}_B \approx \mathrm{NME}_A \cdot d_A / d_B$. Real annotations differ from our procedural
# face (eye shapes, and where annotators put the corners), so treat these ratios as a guide to the size
# of the difference, not as a conversion to quote.

# %%
frontal_io, frontal_ip = chapter.mean_face_normalisers(face)
print(f"mean face, frontal: inter-ocular {frontal_io:.1f} px, inter-pupil {frontal_ip:.1f} px, "
      f"ratio inter-pupil / inter-ocular = {frontal_ip / frontal_io:.3f}")

# %%
chapter.normaliser_ratios(gt, errors)

# %% [markdown]
# The conversion is only approximate: the ratio varies from face to face (pose changes the eye
# distances and the box differently), and the mean of a ratio is not the ratio of means.
#
# **Faces with no scored point.** Suppose an occluder hid every point of three faces. Their
# visible-only NME is NaN; a plain `np.mean` returns NaN, while falign's statistics leave them out,
# warn, and `summary` counts them in its `excluded` column.

# %%
e_occluded = chapter.fully_hidden(pred, gt, visible, n=3)
print("first five errors:", np.round(e_occluded[:5], 4))
print("np.mean:", np.mean(e_occluded))
mean, warning = chapter.mean_error_and_warning(e_occluded)
print(f"metrics.mean_error: {mean:.4f}")
print("warning:", warning)
metrics.summary({"visible only, 3 faces fully hidden": e_occluded}, alphas=(ALPHA,))

# %% [markdown]
# The number below is the seeded mean inter-ocular NME of the toy example. CI re-executes this
# notebook and checks that it is reproduced exactly.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(metrics.mean_error(errors["inter-ocular"])), 4))

# %%
run.finish();
