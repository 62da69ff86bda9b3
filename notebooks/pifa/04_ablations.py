# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # PIFA 4: ablations, noise, a baseline, and what held
#
# Sec. 4.3 of the paper supports its design with networks trained from scratch: one without any
# visualization layer, three with different block inputs (Table 6, with the filter weights of Fig. 7),
# three masks (Table 7), three splits of the 12 conv layers into blocks (Table 8), and a study that adds
# noise to one block's fully connected layers at a time. This notebook trains every one of those
# networks once per seed of the scale, at one training budget shared with the main network of
# {doc}`03_train` (which it reloads), runs the noise study on the paper's network, adds a baseline on
# the same protocol (SDM on the 34 points), judges each of the paper's claims in the claims ledger,
# lists every place where we departed from the paper, and discusses what the ledger found.
#
# At `SCALE=smoke` **the numbers and classes mean nothing** (two epochs on a few dozen faces); on
# SynthFace they are **not** the paper's data.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | aflw-pifa
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
from falign.kit import chapter, decisions, effects, ledger, report
from falign.papers.pifa import experiment as experiments, published as paper

run, cfg, crops = chapter.setup("pifa", "04_ablations", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                                SEED=SEED)
seeds = chapter.seeds(cfg, SEED)
if cfg.caveat:
    print(cfg.caveat)

# %% [markdown]
# ## The arms and their budget
#
# Every network below is an *arm*: the paper's network ("reference", the network of {doc}`03_train`)
# or one change to it. Every arm trains for the same epochs on the same training crops, with the same
# batch, optimiser and learning-rate schedule, once per seed, so the rows of each table differ only in
# the architecture the paper varies. The validation faces (held out from the training split) give each
# training's convergence label. Every training also keeps its weights at half its optimiser steps: the
# same networks evaluated at half the budget tell whether a claim's class depends on the budget.

# %%
experiments.arms_table(cfg, crops, seeds)

# %%
models = chapter.grid(lambda arm, seed: experiments.train(cfg, crops, arm, seed, work=run.work, device=run.device,
                                                         progress=False), experiments.ARMS, seeds)
results = experiments.evaluate(models, crops["test"], run.device, cfg.eval_batch)
arms = experiments.arm_summary(results)
run.table(results, "nme_per_seed", caption=f"{paper.NME_BOX} per arm, seed and block (0 = P^0), test set")
run.table(arms, "arms", caption=f"Final-block {paper.NME_BOX}: mean and std over seeds, and convergence")

# %%
half = experiments.evaluate_half(cfg, crops, models, run.work, run.device)
if half is None:
    print("No half-budget weights were kept for these trainings: no budget check.")
else:
    run.table(half, "nme_per_seed_half", caption=f"{paper.NME_BOX} per arm, seed and block at half the training "
              "budget (the budget check), test set")

# %% [markdown]
# ## Convergence
#
# The validation NME after every epoch, per arm (one line per seed). A training has converged when the
# trend of its validation NME over the last quarter of the budget (at least its last 3 epochs) falls by
# at most 2% of its level (`falign.kit.train.History.converged`); fewer epochs than that is no evidence.
# An arm is converged when every seed is. The claims ledger still judges a claim whose arms have not
# converged, and says so beside it: its class may change with more training. The curves are written to
# `validation_curves.csv`, so a later re-judging recomputes convergence from them.

# %%
curves = experiments.validation_curves(models)
converged = {arm: chapter.converged(models, arm) for arm in experiments.ARMS}
run.figure(experiments.convergence_figure(curves, arms), "convergence")
run.table(curves, "validation_curves", caption="Validation NME (%) and training loss per arm, seed and epoch")

# %% [markdown]
# ## Without visualization layers (Sec. 4.3)
#
# The same blocks with the visualization channel removed: the estimate of `P` then reaches later blocks
# only through the sum `P^i = P^{i−1} + ΔP^i`, and no block sees where the current 3D face lies in the
# image.

# %%
run.table(experiments.ablation_table("no_visualization", arms, cfg), "no_visualization", caption=f"Sec. 4.3: {paper.NME_BOX} with and without visualization layers")

# %% [markdown]
# ## Block inputs (Table 6)
#
# Architecture a feeds each block the image `I`, the previous block's features `F` and the visualization
# `V`; b drops the image, c drops the features (Fig. 6).

# %%
run.table(experiments.ablation_table("table6", arms, cfg), "table6", caption=f"Table 6: {paper.NME_BOX} of three architectures with different block inputs")

# %% [markdown]
# ## Masks (Table 7)
#
# Mask 1 is Eq. 11's nose-centred mask, mask 2 the five-area mask of Fig. 8, "no mask" sets `a = 1`
# (the masks are drawn in {doc}`02_model`).

# %%
run.table(experiments.ablation_table("table7", arms, cfg), "table7", caption=f"Table 7: {paper.NME_BOX} with different masks")

# %% [markdown]
# ## Numbers of blocks and layers (Table 8)
#
# Table 1's 12 conv layers split into `N_v` blocks of `N_c` layers: 6×2 (the paper's network), 4×3 and
# 3×4. With fewer blocks the parameters are updated fewer times but each update is computed by a deeper
# block. The paper lists neither the filters nor the loss split of the 4×3 and 3×4 networks; ours take
# Table 1's layers in order, Eq. 6 on the first half of the blocks and Eq. 7 on the rest (`Decision`s).
# Parameter counts are for this scale's networks.

# %%
table8 = experiments.ablation_table("table8", arms, cfg)
run.table(table8, "table8", caption=f"Table 8: {paper.NME_BOX} for N_v blocks of N_c conv layers")

# %%
# NBVAL_CHECK_OUTPUT
print("parameters of the 6x2, 4x3, 3x4 networks at this scale:", table8["parameters (ours)"].tolist())

# %% [markdown]
# ## Filter weights per input type (Fig. 7)
#
# At the first conv layer of every block, the paper averages the filter weights for each type of input
# channel, and reads the result as how much each input is used: the weights decrease across blocks, the
# visualization's exceed the image's, and the features' *total* (average × number of channels) is the
# largest. We average their magnitudes (signed weights average to about zero; a `Decision`).
#
# **What this can and cannot show.** Training starts from random weights whose expected magnitude is
# the same for every input channel of a layer and shrinks with the layer's fan-in (PyTorch's default
# init: mean |w| = 0.5/√fan_in); a deeper block has more input channels, hence smaller weights, before
# it has learned anything. So the raw average (top row, divided by the init level in the table) mostly
# shows the initialisation. What training *did* is the change of the weights: mean |w − w_init| divided
# by the initial mean |w_init| (bottom row), averaged over seeds. Even that shows only where the
# gradient moved the filters, not how much an input contributes to the output: that depends on the
# input's own scale (images in [0, 1], features after batch norm, V standardised by the mask) and on
# everything after the first layer.

# %%
fig7 = experiments.fig7_weights(cfg, models)
run.figure(experiments.fig7_figure(fig7), "fig7_input_weights")
run.table(fig7, "fig7_input_weights", caption="Fig. 7: first conv layer of each block per input type, mean over "
          "seeds (init level: mean |w| / (0.5/sqrt(fan_in)); relative change: mean |w - w_init| / mean |w_init|)",
          precision=4)

# %%
print(experiments.fig7_sentence(fig7))

# %% [markdown]
# ## The noise study (Sec. 4.3)
#
# The paper adds "5% noise" to the fully connected parameters of one block at a time and reports the
# final NME: the later the block, the larger the damage, "since imprecise parameters of early blocks
# could be compensated by later blocks". We read the noise as multiplicative (every FC weight and bias
# times `1 + level·ε`, `ε ~ N(0, 1)`; a `Decision`) and run it on every seed of the paper's network.
#
# **The scale of the noise.** Multiplicative noise scales with each weight, so it perturbs a block's
# update `ΔP^i` by a fraction of the update's own size, and the last blocks' updates are small: 5% of
# them can move the final NME by less than the spread between seeds, too little to order the blocks
# (the committed run before this study's redo saw exactly that). The diagnosis below measures, for
# each block, how far its own update moves the landmarks, how far the noise moves that block's output,
# and how far it moves the final landmarks after the later blocks. We run the study at the paper's 5%
# and judge the paper's own prediction there: noise on block 6's FC layers raises the final NME from
# 4.45% to 5.16% (claim `noise-raises`), and more than noise on block 1's (claim `noise-late`). The
# larger level (`noise_levels` of the scale, 100%) is **the book's own probe, chosen after the 5% result
# moved nothing**: it asks whether the ordering shows once the noise is large enough to move the
# landmarks, and has no published number to be judged against. The sentence after the tables gives
# this run's figures.

# %%
noise = experiments.noise_study(models, crops["test"], cfg, run.device)
run.table(noise, "noise_per_seed", caption="The noise study per level, noisy block and seed (the claims' values)")
diagnosis = experiments.noise_diagnosis(noise)
run.table(diagnosis, "noise_diagnosis", caption="The noise study's diagnosis, mean over seeds: landmark movement "
          "(crop pixels) by each block's own update, by the noise on that block's output and at the end, and "
          "the final NME increase (points)", precision=3)

# %%
run.figure(experiments.noise_figure(noise), "noise_study")
run.table(experiments.noise_table(noise), "noise_study", caption="Sec. 4.3: final NME increase (points) with noise on one block's "
          "FC layers, mean and std over seeds", precision=3)

# %%
print(experiments.noise_sentence(diagnosis, arms))

# %% [markdown]
# ## A baseline on the same protocol: SDM on the 34 points
#
# The paper quotes its baselines' numbers from their papers (Tables 2, 4, 5). To compare with a method
# on *our* protocol, we fit the Supervised Descent Method (`falign.baselines.sdm`, the cascaded regression
# that Table 5 lists on 300-W) on the same grey training crops, starting from the same initial landmarks
# as PIFA (the mean face in the box, `P^0`), and measure it with the same NME. SDM is fit in closed form;
# its seeds draw its Monte Carlo training shapes (a `Decision`).

# %%
sdm_stages = experiments.sdm_study(cfg, crops, seeds)
run.table(sdm_stages, "sdm_per_seed", caption=f"SDM's {paper.NME_BOX} after every stage, per seed, test set")
baseline = experiments.baseline_table(results, sdm_stages, cfg)
run.table(baseline, "baseline_sdm", caption=f"{paper.NME_BOX}: PIFA and SDM on the same protocol (test set)")

# %%
print(experiments.sdm_sentence(sdm_stages))

# %% [markdown]
# ## Does our run reproduce the paper's claims?
#
# The claims ledger (`falign.kit.ledger`; the claims are declared once, in
# `falign.papers.pifa.experiment.claims`). For each claim: the arms that test it, one value per seed;
# the **effect**, how much lower the paper's better arm's NME is than the arm it beats, as a fraction of
# that arm's (so our SynthFace errors and the paper's AFLW errors share a unit); its interval over the
# seeds, paired by seed (every arm trains on the same seeds); and, beside them, **the paper's own
# effect**, computed the same way from its published numbers. A chain (Table 3's blocks) is as strong as
# its weakest link, and the row shows that link. The class follows from the interval:
#
# * **reproduced**: the interval excludes 0 on the paper's side ("smaller" when it also lies wholly
#   below the paper's effect);
# * **reversed**: the interval excludes 0 on the other side: the paper's choice lost on this run;
# * **absent at the paper's size**: the interval includes 0 but excludes the paper's effect: an effect as
#   large as the paper's is ruled out here, though a smaller one may exist;
# * **undecided**: the interval includes 0 and the paper's effect: this run cannot tell;
# * **untestable here**: the regime's floor exceeds the paper's effect (no PIFA claim has a floor: the
#   network regresses continuous coordinates).
#
# Each interval is a 97.5 % interval: the scale plans two looks (its seeds, then `second_look`'s extra
# seeds for the arms of undecided claims), declared before any result, so the chance of a false call
# stays under 5 % over both. The "converged" column names the arms that had not converged; "class at
# half budget" judges the same arms from their half-budget weights.

# %%
claims_ledger = experiments.claims(results, converged, noise=noise, sdm_stages=sdm_stages, half=half)
claims = claims_ledger.to_frame()
claims_ledger.write(run, caption=f"PIFA's claims, judged on this run ({paper.NME_BOX}; noise: final NME)")
ledger.table(claims)

# %%
run.figure(ledger.forest(claims, title="PIFA: our effects (•, 97.5 % interval) and the paper's (×)"), "claims_forest")

# %%
for cls in effects.CLASSES:
    print(f"{cls}: {effects.MEANING[cls]}")

# %% [markdown]
# ## Training time
#
# Measured training time of every arm (all seeds), and per training sample: the visualization layer is
# the main cost beside the convolutions, so the arm without it and the arms with fewer blocks train
# faster per sample.

# %%
times = experiments.training_seconds(models)
run.table(times, "training_time", caption=f"Training time per arm, all seeds, on {report.describe_device(run.device)}")

# %% [markdown]
# ## Deviations
#
# Every place where we departed from the paper or had to interpret it. Each matches a `Decision [pifa.…]`
# comment in `falign/papers/pifa/model.py` or `falign/papers/pifa/experiment.py` (the table after this list).
#
# **Data**
#
# * *Data set.* SynthFace `aflw-pifa-like` (34 points, yaw ±90°) and `afw-like` (6 points) replace AFLW
#   and AFW unless `DATA` names the real sets. Its detector-like box plays the role of the given box
#   (the crop and the NME normaliser). Ground-truth `M, p` are exact for SynthFace; for real data they
#   come from fitting falign's own 3DMM (`falign.synthface.morphable.fit`), not the Basel model with the
#   expression bases the paper uses.
# * *Box noise.* The paper gives no magnitude for the 20 variations; centre, width and height each move
#   uniformly by up to `box_noise` (5%) of the box size.
# * *Validation.* A part of the training split is held out for the convergence label (the paper
#   validates on nothing).
# * *Scales.* The CPU scales use fewer and smaller crops (64×64 at `small`), fewer variations and epochs,
#   average-pool the feature maps to a small grid before the FC layers and use fewer FC units.
#
# **Model**
#
# * *Parameters.* The network regresses the 8 entries of `M` directly (Eq. 4); the rows of `M` need not
#   stay orthogonal. The last FC layer's output is scaled into raw parameters (shape coefficients in
#   units of their standard deviation, rotation entries in units of the box-fitted scale, translations in
#   units of the crop size) — a fixed rescaling, so Eq. 6-7 still act on raw `P`.
# * *Initialisation.* `P^0` is the frontal mean face fitted into the box, with the scale and offset
#   calibrated on the training ground truth; every block's last FC layer starts near zero, so each block
#   starts by passing `P` on unchanged.
# * *Visualization layer.* The Gaussian width σ of Eq. 10 is not given: 1 pixel, 5×5 neighbourhood. Mask
#   1's width is not given: a quarter of the face width. Mask 2 (Fig. 8) is drawn as the strongest of five
#   Gaussians on the eyes, nose tip and mouth corners.
# * *Visibility.* A landmark is visible when its mean-face normal faces the camera (Eq. 8 > 0).
# * *Blocks.* "Same" padding keeps 57×57 maps in blocks 2-6; conv layers have no bias (batch
#   normalisation follows); dropout 0.5. For Table 8's 4×3 and 3×4 networks the 12 conv layers of Table
#   1 are taken in order, and the first half of the blocks use Eq. 6, the rest Eq. 7.
# * *Losses.* Caffe's Euclidean-loss convention (½, summed); Eq. 7 on all landmarks; gradients flow through
#   `P^{i−1}` into earlier blocks.
#
# **Training and evaluation**
#
# * *Optimiser.* The paper's learning-rate sentence contradicts itself; read with a typo. With our
#   parametrisation SGD at the printed rates diverged, so every scale uses Adam without weight decay (the
#   paper's epochs and milestones at full scale). At the CPU scales the forward pass runs in float32, or
#   in bfloat16 where this CPU computes it natively and it measured faster (`falign.kit.precision`).
# * *Budget.* Every arm trains at one budget, the main network's, for every seed of the scale.
# * *Noise study.* "5% noise" is read as multiplicative Gaussian noise on every FC weight and bias; the
#   study also runs at a larger level, where its effect is measurable.
# * *Fig. 7.* "Average of the filter weights" is read as the average magnitude; the learned change is shown
#   beside it.
# * *Baseline.* SDM on the 34 points, on our protocol (the paper runs none).
# * *Table 5.* No 68-point network is trained; the row is an analogue: the 34-point network's 68-point
#   3DMM projection on AFLW-like faces with |yaw| ≤ 60°, inter-ocular NME ({doc}`03_train`).
# * *Table 4.* MAPE is in pixels of the original image; SynthFace's images are much smaller than AFW's.
#
# The deviations ledger, gathered from every `Decision [pifa.…]` in the code with what the paper says:

# %%
decisions.write(run, "pifa")

# %% [markdown]
# ## Discussion
#
# The claims first, as the ledger computed them (every class and number below comes from this run),
# then, in plain words, where the paper's network lost to its own alternatives, what became of its core
# contribution (the visualization layer and its mask) and of its own 5% noise prediction, then one
# sentence for each claim that was not plainly reproduced. Where a claim is **reversed**, the paper's
# method lost on this run: the arm the paper argues against did better, by more than the spread between
# seeds allows by chance. Where it is **absent at the paper's size**, the paper's choice did not lose,
# but an advantage as large as the paper's is ruled out here. Where it is **undecided**, the run cannot
# tell. Each sentence gives the most likely reason with the measurement in this chapter
# that supports it.

# %%
print(ledger.summary(claims))
print(run.label())
for sentence in experiments.discussion(claims, cfg, results=results, curves=curves, fig7=fig7, diagnosis=diagnosis,
                                       sdm_stages=sdm_stages):
    print(f"- {sentence}")

# %% [markdown]
# Why our absolute numbers differ from the paper's: SynthFace faces are rendered from the same 3DMM family
# the network estimates, with exact landmarks and no annotation noise, but a much smaller training set
# at the CPU scales and a different pose and occlusion mix from AFLW; the CPU scales also train a
# narrower network for fewer epochs, with Adam instead of SGD. The classes above compare arms trained
# on the same data at the same budget, and relative effects, which is what the paper's claims are about.

# %%
run.log(claims=len(claims), **{f"claims_{cls.split()[0]}": int((claims["class"] == cls).sum()) for cls in effects.CLASSES},
        nme_reference=float(baseline["NME"][0]), nme_sdm=float(baseline["NME"][1]),
        training_seconds=float(times["seconds"].sum()))
run.finish();
