# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Foundations
#
# This chapter shows the ground every paper chapter stands on: the environment a run records, the
# conventions shared by all chapters (coordinates, landmark schemes, metrics), and a tiny end-to-end
# example that goes through the same path as every paper: SynthFace data, a model, the one training
# loop `falign.kit.train.fit`, evaluation with `falign.measure.metrics`, and a table and a figure written through
# `falign.kit.report`.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w | aflw-pifa | afw | lfpw5 | helen | cofw | menpo
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import platform

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from falign.measure import landmarks, metrics
from falign.kit import report
from falign.chapters import foundations as tiny

run = report.start("foundations", "01_foundations", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT,
                   DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## The environment
#
# Every run records where it ran. `run.json` beside the tables holds the same facts, plus the git
# commit and whether the working tree had uncommitted changes.

# %%
pd.DataFrame({
    "item": ["python", "torch", "device", "threads", "scale", "seed"],
    "value": [platform.python_version(), torch.__version__, report.describe_device(run.device),
              torch.get_num_threads(), SCALE, SEED],
})

# %% [markdown]
# ## Conventions
#
# * **Coordinates** are 0-based pixel coordinates, x to the right, y down, with pixel centres at
#   integers. Loaders convert on read (300-W `.pts` files are 1-based, MATLAB style).
# * **Landmarks** are `(N, 2)` float32 arrays with a `(N,)` boolean visibility. A named *scheme* gives
#   the point names, the left-right flip permutation and the points each normaliser uses; notebooks
#   never use bare index lists.
# * **Metrics** are computed per image first (mean point-to-point distance over the scheme's points,
#   divided by a named normaliser), then summarised over images: mean, CED, AUC@α and failure rate@α.
#   The {doc}`../landmarks/01_landmarks_and_metrics` chapter defines each one.

# %%
schemes = pd.DataFrame([
    {"scheme": s.name, "points": s.n_points,
     "outer eye corners": s.outer_eye_corners if s.outer_eye_corners is not None else "—"}
    for s in map(landmarks.get_scheme, ["ibug68", "ibug51", "ibug49", "five", "afw6", "aflw-pifa34"])
])
schemes

# %% [markdown]
# ## A tiny end-to-end example
#
# A small convolutional network regresses the five points (eye centres, nose tip, mouth corners) of
# SynthFace faces. At `SCALE=smoke` it trains for a handful of steps, so its error means nothing: the
# point is that data, model, training loop, metrics and report fit together. The configuration for each
# scale lives in `falign.chapters.foundations`.

# %%
cfg = tiny.SCALES[SCALE]
train_set, test_set = tiny.datasets(cfg, seed=SEED)
run.dataset(train_set.name, train_set.fingerprint)
cfg

# %%
model, history = tiny.train(cfg, train_set, device=run.device, seed=SEED,
                            checkpoint_dir=run.work / f"tiny-{train_set.fingerprint[:12]}")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([e["epoch"] for e in history.epochs], history.losses, marker="o")
ax.set(xlabel="epoch", ylabel="training loss (MSE, crop units)", title="Tiny 5-point regressor")
run.figure(fig, "tiny_loss")

# %%
pred, gt = tiny.predict(model, test_set, device=run.device)
errors = metrics.nme(pred, gt, norm="inter-pupil", scheme="five")
mean_shape_errors = metrics.nme(tiny.mean_shape_baseline(train_set, test_set), gt,
                                norm="inter-pupil", scheme="five")
table = pd.DataFrame({
    "method": ["mean shape in the box", "tiny CNN"],
    "NME (inter-pupil, %)": [100 * metrics.mean_error(mean_shape_errors), 100 * metrics.mean_error(errors)],
    "failure@0.10 (%)": [100 * metrics.failure_rate(mean_shape_errors, 0.10),
                         100 * metrics.failure_rate(errors, 0.10)],
})
run.table(table, "tiny_nme", caption="Tiny 5-point regressor on SynthFace lfpw5-like test")

# %% [markdown]
# The number below is the seeded mean error of the tiny model. CI re-executes this notebook and checks
# that it is reproduced exactly (nbval's output check), which proves the whole path is deterministic.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(100 * metrics.mean_error(errors)), 3))

# %%
run.finish();
