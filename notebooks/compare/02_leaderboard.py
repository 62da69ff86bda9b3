# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # The leaderboard: every method, one protocol
#
# Each paper reports on its own protocol (its data, its boxes, its points, its normaliser), so no reader
# can put the book's methods side by side from their chapters. Here every method runs on the **same
# SynthFace faces** (300-W-like common, challenging and full), each from **the kind of face box it was
# trained with**, scored by the **same metrics**:
#
# * every aligner of the book with shipped weights (each chapter's committed run), found by
#   `falign.kit.aligner.available()`, so a chapter that lands joins this table without an edit here;
# * the peer, dlib's ERT (previous page), with its 68- and its 5-point model;
# * two baselines: **SDM + HOG** (Xiong and De la Torre 2013, RCSR's Table 4 row 1), fit here in closed
#   form in seconds with the RCSR chapter's recipe, and the **mean shape** placed in the box, the error a
#   method has before it looks at any pixel.
#
# **Boxes.** A landmarker starts from a face box, and a box unlike its training boxes costs it accuracy
# that says nothing about the method. So each method starts from its own **box convention**. Most
# chapters and both baselines trained on SynthFace's detector-like box (the box of the 68 landmarks with
# its centre and size jittered), and get it as it is. dlib's ERT (both models) and MSRRN trained on the
# boxes of dlib's HOG face detector, which sit higher on the face; they get SynthFace's box moved and
# scaled by a four-number adapter (centre offset, size ratio) fitted on SynthFace 300-W-like *training*
# faces that dlib's detector finds, never on the test faces. Two blocks further down show the same
# methods on the same SynthFace box for all (raw boxes), and on the faces dlib's detector finds, with
# its real detections for the dlib-convention methods.
#
# **Differences.** The faces are shared, so each row's difference to the peer (dlib's ERT, 68 points) is
# the mean over faces of the per-face difference of their full-set errors, in points of %, with a paired
# bootstrap 95% interval (faces resampled once for both methods). Rows on other points are compared with
# the peer's own prediction reduced to those points.
#
# **Metrics** (`falign.measure.metrics`): per face, the mean point-to-point distance divided by the outer-eye-corner
# distance (*inter-ocular*) or by the distance between the eye centres (*inter-pupil*), in %; then the mean
# over faces; AUC@0.08 is the exact area under the CED up to 0.08, divided by 0.08; failure@0.08 is the
# share of faces with an error of 0.08 or more. The normalisers always come from the 68-point ground truth.
#
# **Points.** Methods that predict other point sets are compared on the points they share, and the table
# says which: PIFA on the 68 iBUG points its 3D model projects to; CCNN's five points (eye centres, nose
# tip, mouth corners) beside the same five points derived from every 68-point method; the peer's 5-point
# model (eye corners and the bottom of the nose, which are iBUG points 45, 42, 36, 39 and 33) beside
# those points of every 68-point method.
#
# **Cost.** Parameters (learned numbers), weight size, CPU latency at batch 1 and throughput, each method
# timed end to end (crop, model, mapping back) on the same photo and box in this run. Absolute times
# depend on the machine; compare them as ratios (the column "latency / the peer's" is one).

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # the comparison runs on SynthFace only
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # the chapter runs on the CPU (dlib has no GPU path)
SEED = 0

# %%
from falign.chapters import compare
from falign.kit import decisions
from falign.kit.chapter import setup

run, cfg, tests = setup("compare", "02_leaderboard", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                        SEED=SEED)
methods = compare.methods_for(run, cfg)

# %%
# NBVAL_CHECK_OUTPUT
compare.method_table(methods)

# %% [markdown]
# The adapter of each box convention and the faces it was fitted on:

# %%
compare.convention_table(methods)

# %%
scores = compare.scoreboard(methods, tests, cfg, cache=run.work, seed=SEED)
run.table(scores.main, "leaderboard",
          "Every method on the 68 iBUG points of SynthFace 300-W-like, each from its own box convention; NME in % "
          "(inter-ocular), full-set NME minus dlib ERT's with its paired bootstrap 95% interval over faces, AUC@0.08 "
          "and failure@0.08 (leaderboard.csv adds the inter-pupil NME and the costs)",
          precision=2, show=compare.shown(scores.main))

# %% [markdown]
# Every pair of 68-point rows, compared face by face on the full set: the mean of the per-face differences
# (first minus second) with its paired bootstrap 95% interval, and which row is better where the
# interval excludes 0. A gap between two means that this table calls "neither" is one the faces here do
# not decide.

# %%
run.table(compare.pairwise(scores.curves, scores.main["method"], cfg.bootstrap, seed=SEED), "leaderboard_pairs",
          "Every pair of 68-point rows on the full set: mean per-face NME difference (first minus second, points of "
          "%, inter-ocular) with its paired bootstrap 95% interval", precision=2)

# %% [markdown]
# Where each row comes from (shipped weights and the scale of the run that trained them, the peer's
# model file, the baselines' fit):

# %%
run.table(scores.cost[["method", "source", "parameters", "weights (MB)"]], "sources", "Where each method comes from",
          precision=1)

# %% [markdown]
# What each method costs, timed in this run on one photo and box, with the threads each ran on; the
# detector columns add dlib's HOG face detector, which a photo needs first and which dominates the time
# from photo to landmarks. Compare the ratios: absolute times belong to this machine.

# %%
print(compare.cost_sentence(scores.cost))
run.table(scores.cost, "costs", "CPU cost per method: latency at batch 1, throughput, and detect + align (costs.csv adds "
          "the detector alone and the threads)", precision=2, show=compare.shown_costs(scores.cost))

# %% [markdown]
# ## Methods with other point sets, on the points they share
#
# A "→ five" or "→ dlib5" row is a 68-point method's own prediction reduced to the block's five points (for
# "five", the eye centres are the means of each eye's six points), scored exactly like the 5-point models
# beside it. Within
# a block the rows are comparable; across blocks they are not (different points are harder or easier).

# %%
run.table(scores.shared, "leaderboard_shared_points",
          "Methods predicting other point sets, on the points they share with every 68-point method; the same "
          "normalisers from the 68-point truth", precision=2, show=compare.shown(scores.shared))

# %% [markdown]
# ## Robustness: every method on the same raw boxes
#
# The same faces with SynthFace's detector-like box for every method, whatever it was trained with: the
# protocol of a comparison that ignores box conventions. Methods on SynthFace's convention score as above;
# the dlib-convention methods show what an unfamiliar box costs them. Each method appears once, on its
# own points.

# %%
run.table(scores.raw, "leaderboard_raw_boxes",
          "Every method from SynthFace's detector-like box (no adapter); NME in %, difference to dlib ERT on the "
          "same boxes with its paired bootstrap 95% interval", precision=2, show=compare.shown(scores.raw))

# %% [markdown]
# ## The faces dlib's detector finds
#
# The test faces dlib's HOG detector finds (a face counts as found when a detection overlaps its
# landmark box by IoU 0.3 or more), where dlib's ERT and MSRRN start from dlib's real detections and the
# other methods from their own convention. These are mostly common faces, so the block's *full* set is
# easier than the whole test set's.

# %%
print("faces found by dlib's HOG detector:", scores.found_counts)
run.table(scores.found, "leaderboard_found_faces",
          "Every method on the test faces dlib's HOG detector finds, the dlib-convention methods from its "
          "detections; NME in %, difference to dlib ERT on the same faces with its paired bootstrap 95% interval",
          precision=2, show=compare.shown(scores.found))

# %% [markdown]
# ## Cumulative error distributions
#
# One panel per subset: the share of faces whose error is at most x, for every 68-point method. A curve
# further up and to the left is better; the legend gives each AUC@0.08.

# %%
run.figure(compare.ced_figure(scores.curves, scores.main["method"]), "ced")
compare.write_ced_data(run, scores.curves, scores.main["method"])

# %% [markdown]
# ## Error against speed
#
# Each 68-point method's error on the full set against its CPU latency at batch 1 (log scale). The red
# points are the Pareto front: no other method is both faster and more accurate than them. A method off
# the front is beaten on both counts by a method on it, *in the mean*: whether an accuracy difference
# is more than the faces' spread is what the leaderboard's paired intervals say, not this plot.

# %%
run.figure(compare.pareto_figure(scores.board, "full NME (%, inter-ocular)"), "pareto")

# %% [markdown]
# ## Where the field is now (as reported)
#
# The rows below are **not** measured here. They are the published real 300-W results of recent methods,
# each trained on the real 300-W training set and scored by its authors' code, with the normaliser each
# paper states; ERT's published row is added for reference (RCSR's Table 1 names no normaliser for it).
# They belong in a block of their own: the measured rows above are SynthFace errors of CPU-sized runs,
# and the calibration page says roughly how far apart the two kinds of number can be.

# %%
run.table(compare.reported_300w(), "sota_as_reported",
          "Real 300-W NME (%), as reported by each method's authors; not measured here", precision=2)

# %% [markdown]
# ## Decisions
#
# Where the comparison had to choose (box conventions, shared points, baselines, calibration), the choice is made
# once in the code and listed here.

# %%
decisions.write(run, "compare", "Decisions of the comparison chapter and where the code makes each")

# %%
run.finish();
