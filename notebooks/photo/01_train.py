# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # The photo aligner
#
# The chapters train each paper's network the way the paper did, on SynthFace's plain presets, and crop
# around SynthFace's detector-like box. A photograph is different twice over: it *looks* like a
# photograph (real backgrounds, skin texture, beards, glasses, hands, coloured and multiple lights, JPEG,
# blur, grey-scale, low resolution), and its face box comes from a real detector, dlib's HOG detector,
# which `falign align` runs and whose boxes sit higher on the face than a landmark box.
#
# This page trains one network for that use and ships it as `results/photo/aligner.pt`:
#
# * **the network**: RCSR's ConvGRU + SRCNN, the RCSR paper's model, trained by the RCSR chapter's own code
#   (its loss, Adam, clipping); grey crops, which cannot learn SynthFace's colours;
# * **the data**: SynthFace's realism preset `photo-like` (the SynthFace chapter shows it), which
#   randomises what real photos vary in and the plain presets hold fixed or simple;
# * **the boxes**: dlib's HOG convention, measured by the comparison chapter on SynthFace training faces
#   that dlib's detector finds, so at use time the detector's box goes in as it is.
#
# Its error on real annotated photographs, beside every other aligner's, is on the comparison chapter's
# page {doc}`../compare/05_real_photos`; nothing here is tuned on those photos. At `SCALE=smoke` the
# network trains for seconds and **the numbers mean nothing**.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small
DATA = "synthetic"   # the realism preset is SynthFace's
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from falign.chapters import photo
from falign.kit import aligner, chapter, plots

run, cfg, _ = chapter.setup("photo", "01_train", load_data=False, SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT,
                            DEVICE=DEVICE, SEED=SEED)
convention = photo.hog_convention(run.scale, seed=run.seed)
crops = photo.datasets(cfg, convention, seed=run.seed)
for c in crops.values():
    run.dataset(c.name, c.fingerprint)

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(crops['train'])} training crops, {len(crops[photo.TEST])} test faces; boxes: {convention.name}")

# %%
run.table(photo.data_table(cfg, crops, convention), "data", caption="The training data and its boxes")

# %% [markdown]
# ## What the network sees
#
# Training crops: grey, cut around the face's box in dlib's convention (higher and tighter than the
# landmarks' box), jittered, half of them mirrored.

# %%
fig, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for ax, i in zip(axes.flat, np.linspace(0, len(crops["train"]) // 2 - 1, axes.size).astype(int)):
    plots.landmarks(ax, crops["train"].images[i, 0].numpy(), crops["train"].landmarks[i], size=3)
fig.tight_layout()
run.figure(fig, "training_crops")

# %% [markdown]
# ## Training
#
# The shipped weights' seed, RCSR's Eq. 8 loss and Adam; the held-out training faces give the
# validation curve. A training is *converged* when the trend of its held-out error over the last quarter of
# the budget falls by at most 2 % of its level (the book's rule, never the learning-rate schedule).

# %%
model, history = photo.train(cfg, crops, run.work, seed=run.seed, device=run.device)
fig, ax = plt.subplots(figsize=(6, 3.5))
plots.loss_curve(ax, history, validation=[e["validation"] for e in history.epochs], ylabel="loss / NME (%)")
run.figure(fig, "loss_curve")
print(f"{len(history.epochs)} epochs in {history.precision['precision']}; converged by the book's rule: "
      f"{history.converged()}")

# %% [markdown]
# ## Its error on SynthFace
#
# On 300 photo-like test faces (the `test` split: near-frontal poses, every realism knob on), from the
# detector-convention box without jitter, as `falign align` hands it over. The real-photo error of the
# same weights is on {doc}`../compare/05_real_photos`.

# %%
errors = photo.test_errors(model, crops[photo.TEST], device=run.device)
run.table(photo.error_table(errors), "synthface_error", caption="NME (%, inter-ocular, 68 points), photo-like test faces")

# %% [markdown]
# The weights ship as an aligner with the box convention they were trained on, which `falign align` reports
# and the comparison chapter honours.

# %%
photo.save(run.out / aligner.FILENAME, model, cfg, run, convention, run.seed)
# %% [markdown]
# ## Retraining
#
# The same recipe on the same crops, trained again from other seeds (other initial weights, another batch
# order): how far training alone moves the error. The shipped seed was fixed beforehand. These weights ship
# in `replicates/`, and the comparison chapter puts their spread on the real photos too.
# %%
rows = [photo.retraining_row(run.seed, history, errors, shipped=True)]
for seed in photo.replicate_seeds(run.scale, run.seed):
    other, other_history = photo.train(cfg, crops, run.work, seed=seed, device=run.device)
    rows.append(photo.retraining_row(seed, other_history, photo.test_errors(other, crops[photo.TEST], run.device),
                                     shipped=False))
    photo.save(run.out / photo.REPLICATES / f"seed{seed}.pt", other, cfg, run, convention, seed)
retraining = pd.DataFrame(rows)
run.table(retraining, "retraining", caption="Trainings of the one recipe (NME %, photo-like test faces)")

# %%
print(photo.retraining_reading(retraining))

# %%
run.finish();
