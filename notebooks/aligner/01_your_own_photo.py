# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Use it on your own photo
#
# Every chapter ships the network its committed run trained, as an *aligner*: the weights, the
# preprocessing it was trained with (crop size, margin, grey or colour) and the provenance of that run
# (commit, scale, data fingerprints, seed). One call loads it, and one call aligns faces in any photo:
#
# ```python
# import falign
# aligner = falign.load("rcsr")                  # or a path to a checkpoint
# points = aligner.predict(photo, boxes)         # (faces, points, 2), pixels of `photo`
# ```
#
# From the shell, `falign align photo.jpg --model rcsr --out aligned/` finds the faces with dlib's
# HOG face detector (or takes `--box x1,y1,x2,y2`) and writes, per face, a 300-W `.pts` file, a JSON file
# and an overlay PNG; `falign align --help` shows an example. `--model dlib-ert-68` (or
# `falign.load("dlib-ert-68")`) runs dlib's ERT, a model trained on real faces (iBUG 300-W, research use
# only), through the same interface: the comparison chapter's peer.
#
# **What to expect.** These weights were trained on SynthFace, the book's rendered faces, at the scale
# named in each provenance line below (a CPU-sized run), not on real photographs; the last panel is
# dlib's ERT, trained on real 300-W faces, on the same face and box, for comparison. A real face differs from
# a SynthFace one in skin, hair, lighting and background, so expect landmarks that find the face's
# layout roughly but miss detail. The photo aligner (`photo`, {doc}`../photo/01_train`) is the one model
# trained for photographs: on SynthFace's realism preset and on dlib's HOG boxes, the boxes every panel
# below starts from; the column "trained from" says which boxes each model learned on, and a model given
# another kind of box pays for it. Measured errors on real annotated photos, for every model, are on
# {doc}`../compare/05_real_photos`; `falign align` uses the model that table ranks first. This page shows
# what the shipped weights do on one real photograph, honestly; it is not a benchmark.

# %% tags=["parameters"]
SCALE = "smoke"      # unused: the page runs the shipped weights, it trains nothing
DATA = "synthetic"   # unused
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import skimage.data

from falign.chapters import aligner as chapter
from falign.data import detect
from falign.kit import report

run = report.start("aligner", "01_your_own_photo", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                   SEED=SEED)
models = chapter.shipped(run.device)
chapter.provenance(models)

# %% [markdown]
# ## A real photograph
#
# The astronaut Eileen Collins, as shipped inside scikit-image (`skimage.data.astronaut()`, public domain).
# dlib's frontal HOG detector, installed from the `dlib-bin` wheel with its model inside, finds the face
# (a detection score of at least 0.5 drops a weak false detection on the suit).

# %%
# NBVAL_CHECK_OUTPUT
photo = skimage.data.astronaut()
boxes = detect.detect_faces(photo, min_score=0.5)
print(f"{len(boxes)} face(s) found; box {boxes[0].round(1).tolist()} (x1, y1, x2, y2, pixels)")

# %%
run.figure(chapter.photo_figure(models, photo, boxes[0]), "astronaut")

# %% [markdown]
# Landmarks are in the photo's own pixel coordinates (0-based, pixel centres at integers); PIFA also
# estimates which points are hidden (drawn in the second colour). Each chapter explains what its network
# learned and how far its SynthFace numbers are from the paper's.

# %%
run.finish();
