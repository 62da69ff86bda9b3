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
# * **AUC**: exact (this book), or the CED sampled on the grid `np.arange(0, a + 1e-4, 1e-4)` with
#   `error <= x` and integrated with the scipy `simps` of their day (DAN, STAR), and at which threshold
#   (0.08 for 300-W here and in DAN; 0.05 in STAR's 300-W code). The grid is taken as numpy builds it:
#   at 0.05 it runs one step long and ends at 0.0501, and their code integrates up to there;
# * **failure**: `error >= a` (this book, following 300-W), `error > a` (HRNet, at 0.08 and 0.10), or
#   `1 - CED` at the grid's last point (DAN, STAR): STAR's "failure at 0.05" counts errors above 0.0501.
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
# where the threshold, the comparison, the grid's end or the integration differ.
#
# **The NME gap is SynthFace's, not 300-W's.** mmpose pools the *visible* points; on real 300-W every one
# of the 68 points is labelled, so it pools every point of every face, which is the per-image NME
# exactly. The half to one point by which mmpose's NME differs here comes only from SynthFace's
# self-occlusion flags (points hidden by the turned head are left out), and says nothing about gaps
# between 300-W papers.

# %%
run.table(compare.convention_spread(scored), "conventions_nme", "NME (%) of each method under each preset",
          precision=3)

# %% [markdown]
# **What to take from it.** On 300-W the five presets print the same NME for the same predictions
# (mmpose included, above), so an NME gap between 300-W papers is not bookkeeping of these kinds. What
# moves there is the AUC and the failure rate: an AUC at 0.05 and one at 0.08 are different numbers
# altogether; Simpson's rule on a 1e-4 grid differs from the exact AUC by about the grid step; and the
# failure rate depends on the comparison and on where the grid ends: `>` against `>=` matters only for
# an error exactly on the threshold, but STAR's grid ending at 0.0501 passes every error between 0.05
# and 0.0501, which on a method with many errors near 0.05 moves its failure rate by tenths of a point.

# %%
run.finish();
