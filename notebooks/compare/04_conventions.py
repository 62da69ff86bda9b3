# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Metric conventions: how much of a difference is bookkeeping
#
# Two papers that both print "NME on 300-W" may not have computed the same thing. The Landmarks chapter
# lists the choices a metric makes; this page makes them executable. `falign.measure.conventions` holds one named
# preset per well-known code base, each a handful of explicit choices:
#
# * **pooling**: average each face's points and then the faces (300-W and most face-alignment code), or
#   pool every counted point of every face into one mean (mmpose), which weighs faces by how many of
#   their points count;
# * **visible points only** or all of them;
# * **AUC**: exact (this book), or the CED sampled on a 1e-4 grid with `error <= x` and integrated with
#   Simpson's rule (DAN, STAR), and at which threshold (0.08 for 300-W here and in DAN; 0.05 in STAR's
#   300-W code);
# * **failure**: `error >= a` (this book, following 300-W) or `error > a` (`1 - CED(a)`: DAN, HRNet,
#   STAR), and at which thresholds (HRNet reports 0.08 and 0.10).
#
# The normaliser is the outer-eye-corner distance throughout (all five use it on 300-W), so the table
# isolates the bookkeeping. The same predictions, those of the leaderboard's 68-point methods on the full
# set, are scored under every preset.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # the comparison runs on SynthFace only
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # the chapter runs on the CPU (dlib has no GPU path)
SEED = 0

# %%
from falign.chapters import compare
from falign.kit.chapter import setup

run, cfg, tests = setup("compare", "04_conventions", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                        SEED=SEED)

# %%
# NBVAL_CHECK_OUTPUT
compare.convention_presets()

# %% [markdown]
# Each preset names the code it follows:

# %%
run.table(compare.convention_sources(), "convention_sources", "The code each preset follows")

# %% [markdown]
# ## The same predictions, five ways
#
# The leaderboard's predictions (cached from the previous page when it ran first; otherwise predicted
# again, the same numbers), 68 points, full set. An empty cell is a number that convention does not report.

# %%
methods = compare.methods_for(run, cfg)
preds = compare.predict(methods, tests, cache=run.work)
scored = compare.convention_scores(methods, preds, tests)
run.table(scored, "conventions", "The same predictions (68 points, SynthFace 300-W-like full) scored under each "
          "toolkit's conventions; normaliser: outer eye corners", precision=3)

# %% [markdown]
# ## How much moves
#
# For each method, the NME under every preset side by side, and the largest difference between presets.
# The presets differ in NME only where the pooling or the visible points differ; AUC and failure differ
# where the threshold, the comparison or the integration differ.

# %%
run.table(compare.convention_spread(scored), "conventions_nme", "NME (%) of each method under each preset",
          precision=3)

# %% [markdown]
# **What to take from it.** When two papers' numbers differ by less than the spread a change of convention
# makes for the same predictions, the difference may be bookkeeping, not method. Read the table column by
# column: the NME moves only with what is counted (visible points, pooled); an AUC at 0.05 and one at 0.08
# are different numbers altogether; Simpson's rule on a 1e-4 grid can differ from the exact AUC only by
# about the grid step, and `>` against `>=` only for a face whose error sits exactly on the threshold.

# %%
run.finish();
