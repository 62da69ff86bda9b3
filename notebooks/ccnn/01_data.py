# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # CCNN 1: the data
#
# *Improved face alignment algorithm based on cascaded CNN and the shake mechanism* (CCNN, Advances in
# Multimedia 2022) finds five points (left eye, right eye, nose tip, left and right mouth corner) from a
# face image and its face box. Sec. 4.1 trains on 10,000 faces and tests on 3,466, each with its five
# points and its "initial face frame" (a face box). It calls the data LFPW, but 13,466 faces split
# 10,000 / 3,466 is the training set of Sun et al. 2013 (LFW and web images; LFPW itself has about 1,400
# faces; `falign.papers.ccnn.published.notes()`). Every training face is rotated "left 15 degrees and right 12
# degrees" about its centre and flipped horizontally, which turns 10,000 faces into 60,000 samples.
#
# Those lists need registration, so by default this chapter runs on **SynthFace's `lfpw5-like`
# preset** ({doc}`../synthface/01_synthface`): near-frontal rendered faces with the five points and a
# detector-like face box. It is not the paper's data: the chapter's numbers measure the method on
# synthetic faces. With `DATA="lfpw5"` (and `DATA_ROOT`) the same notebooks read Sun et al.'s real
# five-point lists through falign's loaders.
#
# This notebook shows what the networks are given: the crops, the face box inside each crop, the six
# augmented versions of a face, and what the error means.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | lfpw5
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
from falign.kit.chapter import setup
from falign.papers.ccnn import experiment as experiments

run, cfg, crops = setup("ccnn", "01_data", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
train, test = crops["train"], crops["test"]
print(cfg.about)

# %% [markdown]
# ## The data at this scale and in the paper
#
# The paper's sizes come from `falign.papers.ccnn.published.dataset()`; ours are counted from the crops this run
# built (`experiments.sizes_table`). `full` uses the paper's data size; `small` and `smoke` fewer faces,
# with the same augmentation. A few more faces of the training split are held out, never augmented or
# trained on: after every epoch each stage's error on them is the validation curve that labels a
# training converged or not ({doc}`03_train`). The paper describes no validation set.

# %%
experiments.sizes_table(cfg, crops, SCALE)

# %% [markdown]
# ## What the networks read
#
# Every face is kept in memory as a uint8 crop of `size` × `size` pixels centred on its face box, with
# half the box added on each side (`margin`), so the box spans the central half of the crop. The model
# reads the crop *and the face box in the crop's pixels* (yellow): stage 1 cuts the box out and resizes
# it to 39 × 39 (Table 1), stages 2 and 3 cut their small windows out of the crop around the previous
# estimate (Eq. 5), and Fig. 5's "windows−" arm reads the whole crop. The green points are the five
# landmarks; the image-left eye (the subject's right eye) is point 0, `LE`. The face box in the crop's
# pixels is `experiments.face_boxes(crops)`.

# %%
run.figure(experiments.crops_figure(test), "test_crops")

# %% [markdown]
# ## Sec. 4.1's augmentation: three rotations, each as is and mirrored
#
# Each training face appears six times: rotated by 0°, +15° and −12° about the centre of its box
# (counter-clockwise positive, as seen on screen), each as is and mirrored. We read the paper's "left
# 15-degree and right 12-degree" as two fixed angles, since that gives exactly 6 × 10,000 = 60,000
# samples (a `Decision`, listed in {doc}`04_ablations`). Rotation, mirror and crop are one affine map per
# sample: the pixels are resampled once and the landmarks go through the same matrix. A mirror swaps
# which eye is which, so the points are renumbered with the `five` scheme's flip permutation and `LE`
# stays the image-left eye (the red point). The face box is kept as it is. Below, two training faces in
# each of their versions (`experiments.versions(cfg)`, in the order `experiments.augment` stacks them).

# %%
run.figure(experiments.augmentation_figure(train, cfg), "augmentation")

# %% [markdown]
# The augmented crops are not new data: mapped back through their affines (`Crops.to_image`), the six
# versions of a face give back its original landmarks.

# %%
print(f"largest difference between the versions mapped back: {experiments.augmentation_roundtrip(train, cfg):.2e} px")

# %% [markdown]
# ## Where the points lie in the box
#
# Every target is given in units of a frame: stage 1 in the face box ((0, 0) its top-left and (1, 1) its
# bottom-right corner; Eq. 9), stages 2 and 3 in their windows. The spread of the points in box units
# shows how much the box alone tells about them: the mean shape placed in each box is the error a
# network starts from.

# %%
run.figure(experiments.points_in_box_figure(train), "points_in_box")

# %% [markdown]
# ## The error
#
# The paper reports a "test error" in % without defining it. Its baselines (Sun et al. 2013, ref. [22],
# and Chen Rui, ref. [13]) divide the distance between the predicted and the true point by the width of
# the face box, so that is our test error, per point and averaged over the five, in %, in the original
# image's coordinates. We also give the inter-ocular NME (the distance divided by the distance between
# the eye centres, the points `LE` and `RE`), the normaliser of most later work; the box is about two and
# a half times wider than the eyes are apart (the ratio is computed below), so the NME is that much
# larger. Below: both errors of the training mean shape (in box units) placed in each test box, the
# floor every network starts from.

# %%
initial = experiments.mean_shape_error(train, test)
run.table(initial, "mean_shape_error", caption="Error of the mean shape placed in the face box: "
          "per point and average in % of the box width, and NME in % of the eye-centre distance")

# %%
print(f"box width / eye-centre distance on the test faces: {experiments.box_to_eye_ratio(test):.2f} (mean)")

# %%
# NBVAL_CHECK_OUTPUT
print(f"mean-shape test error: {initial['Average'][0]:.2f}% of the box width")

# %%
run.log(train_samples=len(train), test_faces=len(test), mean_shape_error=float(initial["Average"][0]))
run.finish();
