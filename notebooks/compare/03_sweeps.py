# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Robustness sweeps: one factor at a time
#
# A real benchmark mixes everything at once: the faces of 300-W's challenging set are turned, lit badly,
# grimacing and partly hidden together, so a method's error there cannot be split by cause. SynthFace can
# do what no photo collection can: render the **same faces** again with **one factor changed** and every
# other factor held at a neutral setting, and so measure error as a function of that factor alone.
#
# The sweeps go through the generator's own configuration (`synthface_arrays(..., **overrides)`). Its
# random draws (identity, skin, hair, light, background, and each face's pose, expression and occluder)
# do not depend on the values swept, so every point of a curve shows the same identities; only the swept
# factor differs. The neutral setting: frontal, neutral expression, no occluder, no blur or noise, the
# exact landmark box, a face 55% of the photo wide.
#
# **Error.** At 90 degrees of yaw the two outer eye corners nearly meet in the image, and the inter-ocular
# NME would grow from its normaliser alone. The sweeps therefore divide by the size of the face's
# ground-truth landmark box, sqrt(w·h), a normaliser that turns with the head much less. Every method
# predicts from the box the sweep gives; each is scored on its own points (five for the 5-point models).
# The shaded band is a 95% bootstrap interval of the mean (faces resampled); the number of faces per
# point is in each panel's title, or under each point where it varies.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # the comparison runs on SynthFace only
DATA_ROOT = ""       # unused
DEVICE = "cpu"       # the chapter runs on the CPU (dlib has no GPU path)
SEED = 0

# %%
from falign.chapters import compare
from falign.kit.chapter import setup

run, cfg, _ = setup("compare", "03_sweeps", load_data=False, SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT,
                    DEVICE=DEVICE, SEED=SEED)
methods = compare.methods_for(run, cfg)

# %% [markdown]
# ## The sweeps
#
# Each factor, the SynthFace fields it sets (everything else stays at the neutral setting below) and the
# values it takes at this scale. Occluder coverage is measured rather than set: SynthFace draws occluders
# of random size, so every face gets its own occluder and the faces are grouped by the share of their 68
# landmarks it hides.

# %%
# NBVAL_CHECK_OUTPUT
print("neutral:", compare.NEUTRAL)
compare.factor_table(cfg)

# %%
curves = compare.sweeps(methods, cfg, seed=run.seed)
run.table(curves, "sweeps", "Robustness sweeps: per factor value and method, faces, mean NME (%, normalised by "
          "sqrt(w·h) of the 68-point box) and its 95% bootstrap interval", precision=2)

# %%
run.figure(compare.sweep_figure(curves), "sweeps")

# %% [markdown]
# **Reading the curves.** A flat curve is a method that does not care about the factor; a steep one is
# a method that breaks as the factor grows. Two curves that cross change rank along the factor, which a
# single benchmark number hides. Overlapping bands mean the faces rendered here cannot tell the two
# methods apart at that point. Two caveats: each method was trained on its own chapter's SynthFace
# distribution (PIFA on all yaws, CCNN on near-frontal faces), so a steep curve past a method's training
# range shows what it never saw, not a flaw of the paper's idea; and the peer was trained on real photos
# with its own boxes, so its curves mix the factor with the box convention (see the calibration page).

# %%
run.finish();
