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
# `SCALE` only changes the number of toy faces.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w | aflw-pifa | afw | lfpw5 | helen | cofw | menpo
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.integrate
import torch

from falign.measure import landmarks, metrics
from falign.synthface import morphable, render
from falign.kit import report

run = report.start("landmarks", "01_landmarks_and_metrics", SCALE=SCALE, DATA=DATA,
                   DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
N_FACES = {"smoke": 200, "small": 2000, "gpu": 10000, "full": 10000}[SCALE]

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
ibug68 = landmarks.get_scheme("ibug68")
five = landmarks.get_scheme("five")
pd.DataFrame({
    "field": ["point_names[36], [45]", "flip_perm[36], [45]", "outer_eye_corners",
              "eye_centre_groups", "five: point_names", "five: sources (iBUG 68 points averaged)",
              "five: flip_perm", "five: eye_centre_groups"],
    "value": [(ibug68.point_names[36], ibug68.point_names[45]),
              (int(ibug68.flip_perm[36]), int(ibug68.flip_perm[45])),
              ibug68.outer_eye_corners, ibug68.eye_centre_groups,
              five.point_names, five.sources, five.flip_perm.tolist(), five.eye_centre_groups],
})

# %% [markdown]
# `landmarks.convert(points, src, dst)` turns `(..., N, 2)` arrays (numpy or torch) from one scheme
# into another of the same root, as a fixed matrix of averages. The roots (iBUG 68, COFW 29, AFLW 21,
# Helen 194, Menpo 39) are independent annotations: there is no exact correspondence between them, so
# falign converts only within a root. The table lists every scheme.

# %%
def normalisers_available(scheme):
    ocular = [name for name, ok in (("inter-ocular", scheme.outer_eye_corners is not None),
                                    ("inter-pupil", scheme.eye_centre_groups is not None)) if ok]
    return ", ".join([*ocular, "box-based"])


scheme_table = pd.DataFrame([
    {"scheme": s.name, "points": s.n_points, "root": s.root,
     "flip symmetric": s.flip_perm is not None,
     "normalisers available": normalisers_available(s), "description": s.description}
    for s in map(landmarks.get_scheme, landmarks.SCHEME_NAMES)
])
run.table(scheme_table, "schemes",
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
SIZE = 256
model = morphable.builtin_model()
top, bottom = model.mean[:, 1].max().item(), model.mean[:, 1].min().item()
scale = 0.85 * SIZE / (top - bottom)
centre = (SIZE - 1) / 2
# frontal weak-perspective camera, the face's vertical middle at the image centre
M = morphable.pose_to_M(scale, 0.0, 0.0, 0.0, centre, centre + scale * (top + bottom) / 2)

shape = model.mean[None]
xy = morphable.project(M, shape)
depth = shape @ morphable.depth_axis(M)[0]
colour_of_label = {"skin": (0.88, 0.71, 0.59), "brow": (0.33, 0.22, 0.15), "lip": (0.72, 0.36, 0.36),
                   "eye": (0.96, 0.96, 0.96), "iris": (0.22, 0.27, 0.38), "mouth": (0.35, 0.12, 0.12),
                   "nostril": (0.45, 0.30, 0.25)}
palette = torch.tensor([colour_of_label[name] for name in morphable.VERTEX_LABELS])
rgb, _ = render.render_mesh(
    torch.cat([xy, depth[..., None]], -1), model.triangles, palette[model.vertex_labels][None],
    morphable.vertex_normals(shape, model.triangles), light_dir=torch.tensor([[-0.3, 0.4, 1.0]]),
    ambient=0.45, diffuse=0.65, H=SIZE, W=SIZE, background=torch.full((1, SIZE, SIZE, 3), 0.96))
face_image = rgb[0].numpy()
face68 = xy[0, model.landmark_vertices["ibug68"]].numpy()


# %% [markdown]
# The 68 iBUG points, numbered from 0 as everywhere in falign (300-W's `.pts` files count from 1).
# The mean face's mouth is closed, so the inner-lip points of the upper and lower lip (61-63 and
# 65-67) nearly coincide on the line where the lips meet; the zoom on the right separates the labels.

# %%
def number_points(ax, points, fontsize):
    for i, (x, y) in enumerate(points):
        ax.annotate(str(i), (x, y), xytext=(1.5, 1.5), textcoords="offset points", fontsize=fontsize)


def show_face(ax, title, xlim=(20, SIZE - 20), ylim=(SIZE - 5, 10)):
    ax.imshow(face_image)
    ax.set(xlim=xlim, ylim=ylim, title=title)
    ax.axis("off")


fig, (ax_face, ax_zoom) = plt.subplots(1, 2, figsize=(13, 6.5), width_ratios=(1, 1.1))
show_face(ax_face, "ibug68, numbered from 0")
ax_face.scatter(*face68.T, s=12, c="tab:green")
number_points(ax_face, face68, fontsize=7)
lips = face68[48:68]
show_face(ax_zoom, "zoom on the mouth (points 48-67)",
          xlim=(lips[:, 0].min() - 8, lips[:, 0].max() + 8),
          ylim=(lips[:, 1].max() + 8, lips[:, 1].min() - 8))
ax_zoom.scatter(*lips.T, s=25, c="tab:green")
for i, (x, y) in enumerate(lips, start=48):
    below = i >= 64 or i == 60 or 55 <= i <= 59
    ax_zoom.annotate(str(i), (x, y), xytext=(0, -11 if below else 5), textcoords="offset points",
                     fontsize=9, ha="center")
run.figure(fig, "ibug68_numbered")

# %% [markdown]
# In the panels below, green dots are points the scheme keeps from iBUG 68, orange stars are points it
# *averages* from several iBUG points, and faint grey dots are the 68 points for context. Red rings
# mark the scheme's outer eye corners (the inter-ocular normaliser) and blue crosses its eye centres
# (the inter-pupil normaliser), where the scheme defines them. The last two panels show the
# normalisers on iBUG 68 (with the landmark box used by the box normalisers) and the flip
# permutation: each point is joined to its mirror partner, and points on the symmetry line are their
# own partners.

# %%
def eye_centres(points, scheme):
    return np.array([points[list(group)].mean(axis=0) for group in scheme.eye_centre_groups])


def draw_scheme(ax, name, numbered=False):
    scheme = landmarks.get_scheme(name)
    points = landmarks.convert(face68, "ibug68", scheme)
    averaged = np.array([len(source) > 1 for source in scheme.sources])
    show_face(ax, f"{name} ({scheme.n_points} points)")
    ax.scatter(*face68.T, s=4, c="0.55")
    ax.scatter(*points[~averaged].T, s=10, c="tab:green")
    ax.scatter(*points[averaged].T, s=70, marker="*", c="tab:orange")
    if scheme.outer_eye_corners is not None:
        ax.scatter(*points[list(scheme.outer_eye_corners)].T, s=110, facecolors="none",
                   edgecolors="tab:red", linewidths=1.5)
    if scheme.eye_centre_groups is not None:
        ax.scatter(*eye_centres(points, scheme).T, s=110, marker="+", c="tab:blue", linewidths=1.5)
    if numbered:
        number_points(ax, points, fontsize=9)


def draw_normalisers(ax):
    show_face(ax, "normalisers on ibug68")
    corners = face68[list(ibug68.outer_eye_corners)]
    pupils = eye_centres(face68, ibug68)
    (x1, y1, x2, y2), = metrics.landmark_boxes(face68)
    ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="tab:purple", ls="--"))
    ax.plot(*corners.T, "-o", c="tab:red", mfc="none", ms=9, label="inter-ocular (outer corners)")
    ax.plot(*pupils.T, "-+", c="tab:blue", ms=12, mew=1.5, label="inter-pupil (eye centres)")
    ax.plot([], [], ls="--", c="tab:purple", label="landmark box (w, h)")
    ax.legend(loc="lower center", fontsize=7)


def draw_flip(ax):
    show_face(ax, "flip permutation of ibug68")
    perm = ibug68.flip_perm
    paired = perm != np.arange(ibug68.n_points)
    for i in np.flatnonzero(paired & (perm > np.arange(ibug68.n_points))):
        ax.plot(*face68[[i, perm[i]]].T, c="tab:cyan", lw=0.7)
    ax.scatter(*face68[paired].T, s=10, c="tab:cyan", label="mirror pair")
    ax.scatter(*face68[~paired].T, s=30, marker="D", c="tab:pink", label="own partner")
    ax.legend(loc="lower center", fontsize=7)


fig, axes = plt.subplots(2, 4, figsize=(18, 9.5))
for ax, name in zip(axes.flat, ["ibug68", "ibug51", "ibug49", "five", "afw6", "aflw-pifa34"]):
    draw_scheme(ax, name, numbered=name in ("five", "afw6"))
draw_normalisers(axes[1, 2])
draw_flip(axes[1, 3])
fig.tight_layout()
run.figure(fig, "schemes_on_face")

# %% [markdown]
# The mean face is left-right symmetric and the camera is centred, so mirroring its landmarks with
# `landmarks.flip_points` (x → width − 1 − x, then rows permuted by `flip_perm`) must give the same
# points back. That checks the flip permutation against the model's geometry:

# %%
mirrored = landmarks.flip_points(face68, SIZE, "ibug68")
print(f"largest distance between the landmarks and their mirror image: "
      f"{np.abs(mirrored - face68).max():.2e} px")

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
def toy_faces(n, seed):
    """Ground truth, noisy predictions and visibility for n random faces (68 iBUG points)."""
    rng = np.random.default_rng(seed)
    p = np.zeros((n, model.n_params), np.float32)
    p[:, :model.n_id] = rng.normal(size=(n, model.n_id)) * model.id_sigma.numpy()
    cameras = morphable.pose_to_M(
        torch.tensor(rng.uniform(0.45, 1.65, n)), torch.tensor(rng.uniform(-45, 45, n)),
        torch.tensor(rng.uniform(-15, 15, n)), torch.tensor(rng.uniform(-20, 20, n)),
        torch.tensor(rng.uniform(100, 155, n)), torch.tensor(rng.uniform(100, 155, n))).float()
    gt = morphable.project(cameras, model.landmarks(torch.from_numpy(p))).numpy()

    lm_vertices = model.landmark_vertices["ibug68"]
    normals = morphable.vertex_normals(model.mean, model.triangles)[lm_vertices]
    visible = (morphable.depth_axis(cameras) @ normals.T > 0).numpy()

    x1, y1, x2, y2 = metrics.landmark_boxes(gt).T
    difficulty = rng.lognormal(np.log(0.016), 0.35, n) * np.where(rng.random(n) < 0.05, 4.0, 1.0)
    sigma = difficulty * np.sqrt((x2 - x1) * (y2 - y1))
    noise = rng.normal(size=gt.shape) * np.where(visible, 1.0, 2.0)[..., None]
    pred = (gt + sigma[:, None, None] * noise).astype(np.float32)
    return gt, pred, visible


gt, pred, visible = toy_faces(N_FACES, SEED)
boxes = metrics.landmark_boxes(gt)   # the ground-truth landmark boxes stand in for face boxes
run.log(toy_faces=N_FACES)
print(f"{N_FACES} faces, {visible.mean():.1%} of points visible, "
      f"{(~visible).any(axis=1).mean():.1%} of faces with a hidden point")

# %% [markdown]
# The same predictions, scored with each normaliser. The box normalisers use the tight box of the
# ground-truth landmarks here; a face detector's box is larger, which lowers box-normalised errors.

# %%
errors = {
    "inter-ocular": metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68"),
    "inter-ocular, visible only": metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68",
                                              visible=visible),
    "inter-pupil": metrics.nme(pred, gt, norm="inter-pupil", scheme="ibug68"),
    "box sqrt(wh)": metrics.nme(pred, gt, norm="box", boxes=boxes),
    "box width": metrics.nme(pred, gt, norm="box-width", boxes=boxes),
    "box diagonal": metrics.nme(pred, gt, norm="box-diagonal", boxes=boxes),
}
ALPHAS = (0.08, 0.10)
toy_summary = metrics.summary(errors, alphas=ALPHAS, label="normaliser")
percent = [c for c in toy_summary.columns if c not in ("normaliser", "n", "excluded")]
toy_summary[percent] *= 100
toy_summary = toy_summary.rename(columns={c: f"{c} (%)" for c in percent})
run.table(toy_summary, "toy_summary",
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
per_landmark = metrics.per_landmark_errors(pred, gt, norm="inter-ocular", scheme="ibug68")
visible_only = np.where(visible, per_landmark, np.nan)
fig, ax = plt.subplots(figsize=(11, 3.2))
ax.bar(np.arange(68), 100 * per_landmark.mean(axis=0), color="0.7", label="all points")
ax.plot(np.arange(68), 100 * np.nanmean(visible_only, axis=0), "o", ms=3, c="tab:blue",
        label="visible points only")
top = 1.15 * ax.get_ylim()[1]
for start, region in [(0, "jaw"), (17, "brows"), (27, "nose"), (36, "eyes"), (48, "mouth")]:
    ax.axvline(start - 0.5, c="0.4", lw=0.6)
    ax.text(start, 0.97 * top, region, va="top", fontsize=8)
ax.set(xlabel="iBUG 68 point", ylabel="mean error (inter-ocular, %)", xlim=(-1, 68), ylim=(0, top),
       title="Toy example: per-landmark error (normalised by inter-ocular distance)")
ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
run.figure(fig, "toy_per_landmark")

# %% [markdown]
# The CED of the inter-ocular errors. The shaded area up to α = 0.08, divided by α, is AUC@0.08; the
# CED's shortfall from 1 at α is the failure rate.

# %%
ALPHA = 0.08
e_io = errors["inter-ocular"]
thresholds, fraction = metrics.ced(e_io, max_error=0.15, step=0.0005)
area = metrics.auc(e_io, ALPHA)
failures = metrics.failure_rate(e_io, ALPHA)
fig, ax = plt.subplots(figsize=(6, 4))
ax.step(thresholds, fraction, where="post", c="tab:blue", label="CED")
inside = thresholds <= ALPHA + 1e-12
ax.fill_between(thresholds[inside], fraction[inside], step="post", alpha=0.25, color="tab:blue",
                label=f"AUC@{ALPHA:g} = {area:.3f}")
ax.axvline(ALPHA, c="tab:red", ls="--", lw=1, label=f"failure rate@{ALPHA:g} = {failures:.1%}")
ax.set(xlabel="NME (inter-ocular)", ylabel="share of images", xlim=(0, 0.15), ylim=(0, 1.01),
       title="Toy example: CED, NME normalised by inter-ocular distance")
ax.legend(loc="lower right")
run.figure(fig, "toy_ced")

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
e_vis = errors["inter-ocular, visible only"]
pd.DataFrame({
    "points scored": ["all 68", "visible only"],
    "per image, then over images (ours, %)": [100 * metrics.mean_error(e_io),
                                              100 * metrics.mean_error(e_vis)],
    "pooled over all points (%)": [100 * per_landmark.mean(),
                                   100 * per_landmark[visible].mean()],
})

# %% [markdown]
# **AUC by numerical integration.** Sampling the CED on a grid of step $h$ and integrating the samples
# approximates our exact value. For the trapezoid and Simpson rules the error shrinks with $h$ (not
# monotonically: with a few hundred faces it depends on where the grid points fall among the errors),
# while a rectangle (left Riemann) sum is biased low by about $h / (2\alpha)$ times the share of faces
# below $\alpha$.

# %%
rows = []
for step in (0.01, 0.005, 0.001, 0.0001):
    t, c = metrics.ced(e_io, max_error=ALPHA, step=step)
    rows.append({"grid step": step, "points": len(t),
                 "trapezoid": np.trapezoid(c, t) / ALPHA,
                 "Simpson": scipy.integrate.simpson(c, x=t) / ALPHA,
                 "rectangle (left)": np.sum(c[:-1] * np.diff(t)) / ALPHA})
auc_table = pd.DataFrame(rows)
exact = metrics.auc(e_io, ALPHA)
for method in ("trapezoid", "Simpson", "rectangle (left)"):
    auc_table[f"{method} − exact"] = auc_table[method] - exact
run.table(auc_table, "auc_integration", precision=5,
          caption=f"AUC@{ALPHA:g} of the toy NME (inter-ocular) by integrating a sampled CED, "
                  f"against the exact value {exact:.5f}")

# %% [markdown]
# **≥ or > for failures.** For continuous errors no face lands exactly on α, and the two rules agree.
# They differ only when errors are quantised; below, the same errors rounded to whole percents (as if
# stored with two decimals) put a few faces exactly on 0.08. Our CED uses ≤, so with ≥ the failure rate
# is $1 - \mathrm{CED}(\alpha^-)$, and with > it is $1 - \mathrm{CED}(\alpha)$.

# %%
rounded = np.round(e_io, 2)
pd.DataFrame({
    "errors": ["continuous", "rounded to 0.01"],
    "faces exactly at α": [int(np.sum(e_io == ALPHA)), int(np.sum(rounded == ALPHA))],
    "failure rate, e ≥ α (ours, %)": [100 * metrics.failure_rate(e_io, ALPHA),
                                      100 * metrics.failure_rate(rounded, ALPHA)],
    "failure rate, e > α (%)": [100 * np.mean(e_io > ALPHA), 100 * np.mean(rounded > ALPHA)],
})

# %% [markdown]
# **Which eye points.** The eye centres lie inside the outer corners, so the inter-pupil distance is
# the shorter one and the same predictions score higher. On the built-in mean face the ratio is
# below; the second table gives the median ratio of every normaliser to the inter-ocular distance over
# the toy faces, so that a number normalised one way can be converted roughly:
# $\mathrm{NME}_B \approx \mathrm{NME}_A \cdot d_A / d_B$. Real annotations differ from our procedural
# face (eye shapes, and where annotators put the corners), so treat these ratios as a guide to the size
# of the difference, not as a conversion to quote.

# %%
frontal_io = metrics.normaliser(face68, "inter-ocular", "ibug68")[0]
frontal_ip = metrics.normaliser(face68, "inter-pupil", "ibug68")[0]
print(f"mean face, frontal: inter-ocular {frontal_io:.1f} px, inter-pupil {frontal_ip:.1f} px, "
      f"ratio inter-pupil / inter-ocular = {frontal_ip / frontal_io:.3f}")

# %%
d_io = metrics.normaliser(gt, "inter-ocular", "ibug68")
ratios = {"inter-pupil": metrics.normaliser(gt, "inter-pupil", "ibug68"),
          "box sqrt(wh)": metrics.normaliser(gt, "box", boxes=boxes),
          "box width": metrics.normaliser(gt, "box-width", boxes=boxes),
          "box diagonal": metrics.normaliser(gt, "box-diagonal", boxes=boxes)}
pd.DataFrame([
    {"normaliser d": name, "median d / d_inter-ocular": np.median(d / d_io),
     "mean NME converted from inter-ocular (%)": 100 * metrics.mean_error(e_io) * np.median(d_io / d),
     "mean NME measured (%)": 100 * metrics.mean_error(errors[name])}
    for name, d in ratios.items()
])

# %% [markdown]
# The conversion is only approximate: the ratio varies from face to face (pose changes the eye
# distances and the box differently), and the mean of a ratio is not the ratio of means.
#
# **Faces with no scored point.** Suppose an occluder hid every point of three faces. Their
# visible-only NME is NaN; a plain `np.mean` returns NaN, while falign's statistics leave them out,
# warn, and `summary` counts them in its `excluded` column.

# %%
occluded = visible.copy()
occluded[:3] = False
e_occluded = metrics.nme(pred, gt, norm="inter-ocular", scheme="ibug68", visible=occluded)
print("first five errors:", np.round(e_occluded[:5], 4))
print("np.mean:", np.mean(e_occluded))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    print(f"metrics.mean_error: {metrics.mean_error(e_occluded):.4f}")
print("warning:", caught[0].message)
metrics.summary({"visible only, 3 faces fully hidden": e_occluded}, alphas=(ALPHA,))

# %% [markdown]
# The number below is the seeded mean inter-ocular NME of the toy example. CI re-executes this
# notebook and checks that it is reproduced exactly.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(metrics.mean_error(errors["inter-ocular"])), 4))

# %%
run.finish();
