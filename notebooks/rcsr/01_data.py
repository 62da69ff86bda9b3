# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # RCSR 1: the data
#
# Wang, Tulyakov and Sebe's *Recurrent Convolutional Shape Regression* (RCSR, TPAMI 2018) is trained and
# tested on 300-W (Sec. 4): 3,148 training faces (the LFPW and Helen training sets and AFW) and three
# test sets, *common* (the LFPW and Helen test sets, 554 faces), *challenging* (iBUG, 135 faces) and
# *full* (both, 689 faces), with 68 landmarks; Tables 2 and 3 also score 49 points (the 68 without the
# jaw and the two inner mouth corners). The model reads grey face crops. Sec. 4.1 doubles the training
# set with mirrored copies and replicates it three times with noise on the face boxes; every training
# face starts from the training mean shape placed in its box, jittered (Sec. 3.1.1).
#
# 300-W needs registration, so by default this chapter runs on **SynthFace's 300-W-like preset**
# ({doc}`../synthface/01_synthface`): a near-frontal *common* split, a hard *challenging* split (large
# yaw, strong expressions, occluders) and a training split covering both. It is not the paper's data:
# the numbers of this chapter measure the method on synthetic faces. With `DATA="300w"` (and
# `DATA_ROOT`) the same notebooks read the real 300-W through falign's loaders.
#
# This notebook shows what the model is given: the crops of every subset, the pose distributions,
# the mirrored copies and box noise of Sec. 4.1, and the mean shape placed in the box.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np

from falign.kit import plots
from falign.kit.chapter import setup
from falign.measure.landmarks import convert, get_scheme
from falign.papers.rcsr import experiment as experiments, model as rcsr

run, cfg, crops = setup("rcsr", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
n_train = experiments.fitted_faces(cfg, crops)   # faces read (a partial copy of a real set has fewer)

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's numbers come from `falign.papers.rcsr.published.training_protocol()` and the 300-W test-set sizes;
# ours are counted from the crops this run built. `train crops` counts every mirrored copy and
# box-noise replicate. A part of the training split is held out (one box-noise replicate with its
# mirrors): it never trains a model, and serves as the validation set that tells whether a training
# converged and sets the stopping rule's threshold ({doc}`03_train`), so the test sets serve only the
# tables. The test sets keep 300-W's share of challenging faces in the full set.

# %%
experiments.data_table(cfg, crops, f"ours ({SCALE})")

# %% [markdown]
# ## Crops of every subset
#
# Grey crops around the (detector-like) face box with a small margin, landmarks in crop coordinates.
# The challenging faces turn further, pull stronger expressions and are more often occluded.

# %%
shown = 6
fig, axes = plt.subplots(3, shown, figsize=(1.9 * shown, 6))
for row, subset in enumerate(("train", "common", "challenging")):
    c = crops[subset]
    for col, i in enumerate(np.linspace(0, (len(c) if subset != "train" else n_train) - 1, shown).astype(int)):
        plots.landmarks(axes[row, col], c.images[i], c.landmarks[i], size=3)
    axes[row, 0].set_title(subset, fontsize=9, loc="left")
fig.tight_layout()
run.figure(fig, "samples_per_subset")

# %% [markdown]
# ## Pose per subset
#
# SynthFace records each face's head pose, so the split between the subsets can be read off directly
# (300-W itself has no pose labels; with real data this plot is skipped).

# %%
if DATA == "synthetic":
    poses = experiments.poses(cfg, SEED)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3))
    for s, pose in poses.items():
        for k, angle in enumerate(("yaw", "pitch", "roll")):
            axes[k].hist(pose[:, k], bins=np.arange(-90, 91, 10), histtype="step", density=True, label=s)
    for ax, angle in zip(axes, ("yaw", "pitch", "roll")):
        ax.set(xlabel=f"{angle} (°)", yticks=[])
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    run.figure(fig, "pose_histograms")
    display(experiments.pose_table(poses))
else:
    print(f"{DATA}: no pose ground truth, histogram skipped")

# %% [markdown]
# ## Mirrored copies and box noise (Sec. 4.1)
#
# Every training crop has a mirrored copy: the image flipped left to right, and the landmarks renumbered
# with the scheme's flip permutation, so that point 37 stays the subject's right eye corner (in red
# below) on both sides of the flip; without the renumbering a mirrored face would teach the model to
# swap the eyes. The box-noise replicates shift and scale the face box before cropping (uniformly by up
# to `box_noise` of the box; the paper gives no magnitude); the replicates here are drawn for one face.

# %%
eye = get_scheme(experiments.SCHEME).outer_eye_corners[0]
train = crops["train"]
fig, axes = plt.subplots(2, 4, figsize=(8, 4.2))
for col, i in enumerate(range(0, min(4, n_train))):
    for row, j in enumerate((i, i + n_train)):            # crop i and its mirrored copy
        plots.landmarks(axes[row, col], train.images[j], train.landmarks[j], size=3)
        axes[row, col].scatter(*train.landmarks[j, eye], s=18, c="red")
axes[0, 0].set_title("original", fontsize=9, loc="left")
axes[1, 0].set_title("mirrored", fontsize=9, loc="left")
fig.tight_layout()
run.figure(fig, "mirrored_pairs")

# %%
image, boxes = experiments.box_noise_example(cfg, n_train, data=DATA, root=DATA_ROOT, seed=SEED)
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.imshow(image)
for b, colour in zip(boxes, ("yellow", "cyan", "magenta")):
    ax.add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec=colour, lw=1))
ax.set_title("three box-noise replicates", fontsize=9)
ax.axis("off")
run.figure(fig, "box_noise")

# %% [markdown]
# ## The initial shape: the mean shape in the box
#
# RCSR starts every face from the training mean shape S̄ (Sec. 3: ĥ₀ = S̄). We store S̄ in box units, (0, 0)
# the box's top-left corner and (1, 1) its bottom-right, and place it in each test face's box. During
# training the start is jittered several times per face (Sec. 3.1.1; `inits` per crop, a random
# similarity of the placed mean shape). The right panel shows the 49-point subset of Tables 2 and 3:
# the 68 points without the jaw line and the two inner mouth corners.

# %%
mean = experiments.training_mean_shape(train)
starts = rcsr.jittered_initial_shapes(mean, train.crop_boxes()[:1].numpy(), 5, shift=cfg.init_noise,
                                      scale=cfg.init_noise, seed=SEED)[0]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].scatter(*mean.T, s=6)
axes[0].add_patch(plt.Rectangle((0, 0), 1, 1, fill=False, ec="k"))
axes[0].set(title="S̄ in box units", xlim=(-0.1, 1.1), ylim=(1.1, -0.1), aspect="equal")
axes[1].imshow(train.images[0, 0], cmap="gray", vmin=0, vmax=255)
for s in starts:
    axes[1].scatter(*s.T, s=2)
b = train.crop_boxes()[0].numpy()
axes[1].add_patch(plt.Rectangle(b[:2], *(b[2:] - b[:2]), fill=False, ec="yellow"))
axes[1].set_title("jittered initial shapes", fontsize=9)
axes[1].axis("off")
mean49 = convert(mean[None], experiments.SCHEME, "ibug49")[0]
axes[2].scatter(*mean.T, s=6, c="lightgray", label="68 points")
axes[2].scatter(*mean49.T, s=6, c="C3", label="49 points")
axes[2].set(title="68 and 49 points", ylim=(1.0, 0.0), aspect="equal")
axes[2].legend(fontsize=8)
fig.tight_layout()
run.figure(fig, "mean_shape")

# %% [markdown]
# ## Where the regression starts
#
# The error of the placed mean shape itself, with the 300-W metric (mean point-to-point distance over
# the points, divided by the outer-eye-corner distance, per face, in %; computed in original image
# coordinates by `falign.kit.protocol300w`). Every method of the chapter starts here.

# %%
initial = experiments.initial_error(crops)
run.table(initial, "initial_error", caption="Error of the mean shape placed in the box (inter-ocular NME)")

# %%
# NBVAL_CHECK_OUTPUT
print(f"mean-shape NME, common: {initial['NME (%, inter-ocular)'].iloc[0]:.3f}%")

# %%
run.log(train_crops=len(train), validation_crops=len(crops["validation"]), common=len(crops["common"]),
        challenging=len(crops["challenging"]))
run.finish();
