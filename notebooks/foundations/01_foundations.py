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
from falign.chapters import foundations as tiny
from falign.kit.chapter import setup
from falign.measure import metrics

run, cfg, _ = setup("foundations", "01_foundations", load_data=False, SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT,
                    DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## The environment
#
# Every run records where it ran. `run.json` beside the tables holds the same facts, plus the git
# commit and whether the working tree had uncommitted changes.

# %%
tiny.environment(run)

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
tiny.scheme_summary()

# %% [markdown]
# ## A tiny end-to-end example
#
# A small convolutional network regresses the five points (eye centres, nose tip, mouth corners) of
# SynthFace faces. At `SCALE=smoke` it trains for a handful of steps, so its error means nothing: the
# point is that data, model, training loop, metrics and report fit together. The configuration for each
# scale, the network and the steps below (train, predict, score against the mean shape) live in
# `falign.chapters.foundations`.

# %%
train_set, test_set = tiny.datasets(cfg, seed=SEED)
run.dataset(train_set.name, train_set.fingerprint)
cfg

# %%
model, history = tiny.train(cfg, train_set, device=run.device, seed=SEED,
                            checkpoint_dir=run.work / f"tiny-{train_set.fingerprint[:12]}")
run.figure(tiny.loss_figure(history), "tiny_loss")

# %%
table, errors = tiny.evaluate(model, train_set, test_set, device=run.device)
run.table(table, "tiny_nme", caption="Tiny 5-point regressor on SynthFace lfpw5-like test")

# %% [markdown]
# The number below is the seeded mean error of the tiny model. CI re-executes this notebook and checks
# that it is reproduced exactly (nbval's output check), which proves the whole path is deterministic.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(100 * metrics.mean_error(errors)), 3))

# %%
run.finish();
