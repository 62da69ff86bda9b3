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
# the same protocol (SDM on the 34 points), checks each of the paper's claims in the claims ledger,
# lists every place where we departed from the paper, and discusses what held.
#
# At `SCALE=smoke` **the numbers and verdicts mean nothing** (two epochs on a few dozen faces); on
# SynthFace they are **not** the paper's data.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | aflw-pifa
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from falign.kit import decisions as deviations, report
from falign.measure import metrics
from falign.papers.pifa import experiment as experiments
from falign.kit.chapter import setup
from falign.kit.ledger import Arm, Claim, ClaimsLedger, summary
from falign.papers.pifa import published as paper

run, cfg, crops = setup("pifa", "04_ablations", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
train, test = crops["train"], crops["test"]
seeds = experiments.seeds(cfg, SEED)
if SCALE == "smoke":
    print("SCALE=smoke: two epochs on a few dozen faces; every number and verdict below is meaningless.")

# %% [markdown]
# ## The arms and their budget
#
# Every network below is an *arm*: the paper's network ("reference", the network of {doc}`03_train`)
# or one change to it. Every arm trains for the same epochs on the same training crops, with the same
# batch, optimiser and learning-rate schedule, once per seed, so the rows of each table differ only in
# the architecture the paper varies. The validation faces (held out from the training split) give each
# training's convergence label.

# %%
what = {
    "reference": "the paper's network: inputs I, F, V; mask 1; 6 blocks x 2 conv layers",
    "no-visualization": "the same blocks without the visualization channel (Sec. 4.3)",
    "FV": "blocks 2-6 without the image (Table 6 b)",
    "IV": "blocks 2-6 without the previous block's features (Table 6 c)",
    "mask2": "the five-area mask of Fig. 8 (Table 7)",
    "no-mask": "no mask, a = 1 (Table 7)",
    "4x3": "4 blocks of 3 conv layers (Table 8)",
    "3x4": "3 blocks of 4 conv layers (Table 8)",
}
pd.DataFrame([{"arm": a, "what": what[a], "epochs": cfg.epochs, "training crops": len(train),
               "iterations": cfg.epochs * (len(train) // cfg.batch), "seeds": len(seeds)} for a in experiments.ARMS])

# %%
models = experiments.trained(cfg, crops, experiments.ARMS, run.work, base_seed=SEED, device=run.device)
results = experiments.evaluate(models, test, run.device, cfg.eval_batch)
arms = experiments.arm_summary(results, models)
run.table(results, "nme_per_seed", caption=f"{paper.NME_BOX} per arm, seed and block (0 = P^0), test set")
run.table(arms, "arms", caption=f"Final-block {paper.NME_BOX}: mean and std over seeds, and convergence")

# %% [markdown]
# ## Convergence
#
# The validation NME after every epoch, per arm (one line per seed). A training is on a plateau when its
# last epoch improved the validation NME by less than 5% (`falign.kit.train.History.plateaued`); an arm is
# converged when every seed is. The claims ledger draws no verdict from an arm that is not.

# %%
curves = experiments.validation_curves(models)
fig, axes = plt.subplots(2, 4, figsize=(14, 5.4), sharex=True, sharey=True)
for ax, (arm, part) in zip(axes.ravel(), curves.groupby("arm", sort=False)):
    for s, one in part.groupby("seed"):
        ax.plot(one["epoch"], one["validation NME"], marker="o", ms=3, label=f"seed {s}")
    ok = bool(arms.set_index("arm").loc[arm, "converged"])
    ax.set_title(f"{arm} ({'plateau' if ok else 'NOT converged'})", fontsize=9)
    ax.grid(alpha=0.3)
for ax in axes[1]:
    ax.set_xlabel("epoch")
for ax in axes[:, 0]:
    ax.set_ylabel("validation NME (%)")
axes[0, 0].legend(fontsize=7)
fig.tight_layout()
run.figure(fig, "convergence")


# %%
def with_spread(table, ours, on):
    """A paper table beside our means, with our std, seeds and convergence."""
    df = report.paper_vs_ours(table, ours, on=on, values="NME", tolerance=0.5)
    keys = [on] if isinstance(on, str) else on
    return df.merge(ours[[*keys, "std", "seeds", "converged"]].rename(columns={"std": "std (ours)"}), on=keys)


# %% [markdown]
# ## Without visualization layers (Sec. 4.3)
#
# The same blocks with the visualization channel removed: the estimate of `P` then reaches later blocks
# only through the sum `P^i = P^{i−1} + ΔP^i`, and no block sees where the current 3D face lies in the
# image.

# %%
paper_novis = pd.DataFrame({"network": list(experiments.TABLE_ARMS["no_visualization"]),
                            "NME": [paper.number("table6/a"), paper.number("text_numbers/no-visualization-nme")]})
novis = with_spread(paper_novis, experiments.table_rows(arms, "no_visualization", "network"), "network")
run.table(novis, "no_visualization", caption=f"Sec. 4.3: {paper.NME_BOX} with and without visualization layers")

# %% [markdown]
# ## Block inputs (Table 6)
#
# Architecture a feeds each block the image `I`, the previous block's features `F` and the visualization
# `V`; b drops the image, c drops the features (Fig. 6).

# %%
table6 = with_spread(paper.table6(), experiments.table_rows(arms, "table6", "architecture"), "architecture")
run.table(table6, "table6", caption=f"Table 6: {paper.NME_BOX} of three architectures with different block inputs")

# %% [markdown]
# ## Masks (Table 7)
#
# Mask 1 is Eq. 11's nose-centred mask, mask 2 the five-area mask of Fig. 8, "no mask" sets `a = 1`
# (the masks are drawn in {doc}`02_model`).

# %%
table7 = with_spread(paper.table7(), experiments.table_rows(arms, "table7", "mask"), "mask")
run.table(table7, "table7", caption=f"Table 7: {paper.NME_BOX} with different masks")

# %% [markdown]
# ## Numbers of blocks and layers (Table 8)
#
# Table 1's 12 conv layers split into `N_v` blocks of `N_c` layers: 6×2 (the paper's network), 4×3 and
# 3×4. With fewer blocks the parameters are updated fewer times but each update is computed by a deeper
# block. The paper lists neither the filters nor the loss split of the 4×3 and 3×4 networks; ours take
# Table 1's layers in order, Eq. 6 on the first half of the blocks and Eq. 7 on the rest (`Decision`s).
# Parameter counts are for this scale's networks.

# %%
ours8 = experiments.table_rows(arms, "table8", ["N_v", "N_c"])
table8 = with_spread(paper.table8(), ours8, ["N_v", "N_c"])
table8["parameters (ours)"] = [int(experiments.architecture(cfg, **experiments.ARMS[a])["total"].sum())
                               for a in ours8["arm"]]
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
weights = pd.concat([
    experiments.input_weights(models[(arm, s)][0], experiments.initial_network(cfg, experiments.ARMS[arm], s))
    .assign(architecture=label, seed=s)
    for label, arm in experiments.TABLE_ARMS["table6"].items() for s in seeds], ignore_index=True)
fig7 = weights.groupby(["architecture", "block", "input"], sort=False)[
    ["channels", "mean |w|", "init level", "mean |dw|", "relative change"]].mean().reset_index()
fig, axes = plt.subplots(2, 3, figsize=(13, 6), sharex=True)
colours = {"image": "tab:blue", "features": "tab:green", "visualization": "tab:red"}
for col, (name, part) in enumerate(fig7.groupby("architecture", sort=False)):
    for kind, curve in part.groupby("input"):
        axes[0, col].plot(curve["block"], curve["mean |w|"], marker="o", color=colours[kind], label=kind)
        axes[1, col].plot(curve["block"], curve["relative change"], marker="o", color=colours[kind], label=kind)
    axes[0, col].set_title(f"architecture {name}")
    axes[1, col].set(xlabel="block", xticks=sorted(part["block"].unique()))
for ax in axes.ravel():
    ax.grid(alpha=0.3)
axes[0, 0].set_ylabel("mean |w| (what the paper plots)")
axes[1, 0].set_ylabel("mean |w - w_init| / mean |w_init|")
axes[0, 0].legend(fontsize=8)
fig.tight_layout()
run.figure(fig, "fig7_input_weights")
run.table(fig7, "fig7_input_weights", caption="Fig. 7: first conv layer of each block per input type, mean over "
          "seeds (init level: mean |w| / (0.5/sqrt(fan_in)); relative change: mean |w - w_init| / mean |w_init|)",
          precision=4)

# %%
ref7 = fig7[fig7["architecture"] == "a"]
later = ref7[ref7["block"] > 1].groupby("input")["relative change"].mean()
print(f"Architecture a: mean |w| stays at {ref7['init level'].min():.2f}-{ref7['init level'].max():.2f} times "
      "the init level, so the raw average shows mostly the initialisation. In blocks 2+, training changed the "
      + ", ".join(f"{k} filters by {v:.2f}" for k, v in later.items()) + " of their initial size.")

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
# and at a level large enough to move the landmarks measurably (`noise_levels` of the scale), and test
# the paper's ordering at the larger one; the sentence after the tables gives this run's figures.

# %%
noise = pd.concat([experiments.noise_effect(models[("reference", s)][0], test, cfg.noise_levels, faces=cfg.noise_faces,
                                            seed=s, device=run.device, batch=cfg.eval_batch).assign(seed=s)
                   for s in seeds], ignore_index=True)
diagnosis = noise.groupby(["level", "noisy block"])[
    ["update (px)", "noise on the update (px)", "noise at the end (px)", "increase"]].mean().reset_index()
diagnosis["noise / update"] = diagnosis["noise on the update (px)"] / diagnosis["update (px)"]
run.table(diagnosis, "noise_diagnosis", caption="The noise study's diagnosis, mean over seeds: landmark movement "
          "(crop pixels) by each block's own update, by the noise on that block's output and at the end, and "
          "the final NME increase (points)", precision=3)

# %%
paper_increase = paper.noise_study().assign(increase=lambda d: d["NME"] - paper.number("table3/block6"))
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(paper_increase["noisy block"], paper_increase["increase"], "k*--", label="paper (5%)")
for level, part in noise.groupby("level"):
    g = part.groupby("noisy block")["increase"]
    ax.errorbar(g.mean().index, g.mean(), yerr=g.std(), marker="o", capsize=3, label=f"ours, {level:.0%}")
ax.set(xlabel="noisy block", ylabel="final NME increase (points)", title="Noise on one block's FC layers")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
run.figure(fig, "noise_study")
noise_table = noise.groupby(["level", "noisy block"])["increase"].agg(["mean", "std"]).reset_index()
noise_table = noise_table.merge(paper_increase[["noisy block", "increase"]].rename(
    columns={"increase": "increase (paper, 5%)"}), on="noisy block")
run.table(noise_table, "noise_study", caption="Sec. 4.3: final NME increase (points) with noise on one block's "
          "FC layers, mean and std over seeds", precision=3)

# %%
low, high = min(cfg.noise_levels), max(cfg.noise_levels)
d_low = diagnosis[diagnosis["level"] == low].set_index("noisy block")
last = int(d_low.index.max())
ref_sd = float(arms.set_index("arm").loc["reference", "std"])
print(f"At {low:.0%}, the noise moves block {last}'s output by {d_low.loc[last, 'noise on the update (px)']:.3f} px, "
      f"{d_low.loc[last, 'noise / update']:.1%} of that block's own update ({d_low.loc[last, 'update (px)']:.3f} px), "
      f"and block 1's by {d_low.loc[1, 'noise on the update (px)']:.3f} px; the final NME moves by "
      f"{d_low['increase'].min():+.3f} to {d_low['increase'].max():+.3f} points, against a spread of {ref_sd:.3f} "
      "between the seeds of the network itself.")

# %% [markdown]
# ## A baseline on the same protocol: SDM on the 34 points
#
# The paper quotes its baselines' numbers from their papers (Tables 2, 4, 5). To compare with a method
# on *our* protocol, we fit the Supervised Descent Method (`falign.baselines.sdm`, the cascaded regression
# that Table 5 lists on 300-W) on the same grey training crops, starting from the same initial landmarks
# as PIFA (the mean face in the box, `P^0`), and measure it with the same NME. SDM is fit in closed form;
# its seeds draw its Monte Carlo training shapes (a `Decision`).

# %%
sdm_models = {s: experiments.train_sdm(cfg, train, seed=s) for s in seeds}
sdm_nme = {s: experiments.sdm_nme(m, cfg, train, test) for s, m in sdm_models.items()}
sdm_stages = pd.DataFrame([{"stage": k, "seed": s, "NME": metrics.mean_error(e)} for s, nme in sdm_nme.items()
                           for k, e in enumerate(nme)])
sdm_final = [metrics.mean_error(nme[-1]) for nme in sdm_nme.values()]
pifa_final = experiments.per_seed(results, "reference")
baseline = pd.DataFrame([
    {"method": "PIFA (the paper's network, this run)", "NME": np.mean(pifa_final),
     "std": np.std(pifa_final, ddof=1) if len(pifa_final) > 1 else np.nan, "seeds": len(pifa_final)},
    {"method": f"SDM, {cfg.sdm_stages} stages (this run)", "NME": np.mean(sdm_final),
     "std": np.std(sdm_final, ddof=1) if len(sdm_final) > 1 else np.nan, "seeds": len(sdm_final)},
])
run.table(baseline, "baseline_sdm", caption=f"{paper.NME_BOX}: PIFA and SDM on the same protocol (test set)")

# %%
t5 = paper.table5().set_index("method")
print(f"SDM after each stage (mean over seeds): "
      + ", ".join(f"{v:.2f}" for v in sdm_stages.groupby("stage")["NME"].mean()) + "%. "
      f"For scale, the paper's Table 5 (300-W, inter-ocular NME, not this metric): SDM {t5.loc['SDM [41]', 'Full']}, "
      f"proposed {t5.loc['Proposed method', 'Full']}.")

# %% [markdown]
# ## Does our run reproduce the paper's claims?
#
# The claims ledger: each claim, the arms that test it (one value per seed), mean ± standard deviation
# over seeds, and a verdict computed by one rule (`falign.kit.ledger`): a claim *holds* when its margin in
# the paper's direction exceeds twice the pooled standard deviation over seeds, *fails* when the margin
# is that clearly the other way, and is *inconclusive* otherwise or with a single seed. No verdict is
# drawn from an arm that did not reach a validation plateau ("not converged").

# %%
def final(arm):
    return Arm(arm, experiments.per_seed(results, arm), converged=experiments.converged(models, arm))


ref = final("reference")
n_blocks = int(results.loc[results["arm"] == "reference", "block"].max())
increase = {b: noise[(noise["level"] == high) & (noise["noisy block"] == b)].sort_values("seed")["increase"].tolist()
            for b in (1, n_blocks)}
ledger = ClaimsLedger()
ledger.add(Claim("t3-blocks", "each block lowers the NME of the one before (Table 3)", "Sec. 4.2, Table 3"),
           *[Arm(f"block {b}", experiments.per_seed(results, "reference", b), converged=ref.converged)
             for b in range(n_blocks, 0, -1)])
ledger.add(Claim("vis", "visualization layers lower the NME", "Sec. 4.3"), ref, final("no-visualization"))
ledger.add(Claim("t6-ifv-fv", "I,F,V beats F,V (the image helps later blocks)", "Sec. 4.3, Table 6"), ref, final("FV"))
ledger.add(Claim("t6-ifv-iv", "I,F,V beats I,V (the features help later blocks)", "Sec. 4.3, Table 6"), ref,
           final("IV"))
ledger.add(Claim("t7-mask1-mask2", "mask 1 beats mask 2", "Sec. 4.3, Table 7"), ref, final("mask2"))
ledger.add(Claim("t7-mask1-none", "mask 1 beats no mask", "Sec. 4.3, Table 7"), ref, final("no-mask"))
ledger.add(Claim("t8-6x2-4x3", "6 blocks x 2 conv layers beat 4 x 3", "Sec. 4.3, Table 8"), ref, final("4x3"))
ledger.add(Claim("t8-6x2-3x4", "6 blocks x 2 conv layers beat 3 x 4", "Sec. 4.3, Table 8"), ref, final("3x4"))
ledger.add(Claim("noise-late", f"noise on the last block's FC layers raises the NME more than on the first's "
                 f"({high:.0%} multiplicative noise)", "Sec. 4.3", better="higher"),
           Arm(f"block {n_blocks} noisy", increase[n_blocks], converged=ref.converged),
           Arm("block 1 noisy", increase[1], converged=ref.converged))
ledger.add(Claim("sdm", "PIFA is more accurate than SDM on the same protocol", "Sec. 4.2, Table 5 (SDM [41])"),
           ref, Arm("SDM", sdm_final))
claims = ledger.to_frame()
ledger.write(run, caption=f"PIFA's claims, checked on this run ({paper.NME_BOX}; noise: NME increase)")

# %% [markdown]
# ## Training time
#
# Measured training time of every arm (all seeds), and per training sample: the visualization layer is
# the main cost beside the convolutions, so the arm without it and the arms with fewer blocks train
# faster per sample.

# %%
times = experiments.training_seconds(models)
times["x reference"] = times["ms per sample"] / times.set_index("arm").loc["reference", "ms per sample"]
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
deviations.write(run, "pifa")

# %% [markdown]
# ## Discussion
#
# The claims first, as the ledger computed them (every verdict and number below comes from this run),
# then, for each claim that did not hold, the most likely reason with the measurement in this chapter
# that supports it.

# %%
print(summary(claims))
print(run.label())


def paper_margin(a, b):
    return b - a  # lower is better: the paper's arm a against b


t3 = paper.table3()["NME"].to_numpy()
paper_margins = {
    "t3-blocks": float(np.min(-np.diff(t3[1:]))),
    "vis": paper_margin(paper.number("table6/a"), paper.number("text_numbers/no-visualization-nme")),
    "t6-ifv-fv": paper_margin(paper.number("table6/a"), paper.number("table6/b")),
    "t6-ifv-iv": paper_margin(paper.number("table6/a"), paper.number("table6/c")),
    "t7-mask1-mask2": paper_margin(paper.number("table7/mask-1"), paper.number("table7/mask-2")),
    "t7-mask1-none": paper_margin(paper.number("table7/mask-1"), paper.number("table7/no-mask")),
    "t8-6x2-4x3": paper_margin(paper.number("table8/6x2"), paper.number("table8/4x3")),
    "t8-6x2-3x4": paper_margin(paper.number("table8/6x2"), paper.number("table8/3x4")),
    "noise-late": float(paper_increase["increase"].iloc[-1] - paper_increase["increase"].iloc[0]),
}  # SDM's margin in the paper is on 300-W with another metric (Table 5): not comparable, left out
v_change = later.get("visualization", np.nan)
i_change = later.get("image", np.nan)
d_high = diagnosis[diagnosis["level"] == high].set_index("noisy block")
used = "did learn from V" if v_change >= i_change else "learned less from V than from the image"
updates = ", ".join(f"{d_low.loc[b, 'update (px)']:.2f}" for b in range(2, last + 1))
ref_curves = curves[curves["arm"] == "reference"].pivot(index="epoch", columns="seed", values="validation NME")
last_drop = float((1 - ref_curves.iloc[-1] / ref_curves.iloc[-2]).mean())
evidence = {
    "t3-blocks": f"Most likely: the later blocks have little left to correct; their own updates move the "
                 f"landmarks by {updates} px (blocks 2-{last}, noise diagnosis), so their gains are within the "
                 "spread between seeds.",
    "vis": f"Most likely the scale: the blocks {used} (first-layer filters changed by {v_change:.2f} of their "
           f"initial size on V against {i_change:.2f} on the image, Fig. 7), so V was not ignored, yet without it "
           f"the network did better; at {cfg.size}px crops (V at {cfg.size // 2}px, FC input pooled to "
           f"{cfg.fc_grid}x{cfg.fc_grid}) the estimate of P passed on through P^i = P^(i-1) + dP^i carries what V "
           "shows.",
    "t7-mask1-none": f"Most likely the same as for V itself: masks change only V's values, and V did not help at "
                     f"this scale (claim 'vis'; V's filters changed by {v_change:.2f}, Fig. 7).",
    "t7-mask1-mask2": "Most likely the same as for V itself: the masks differ only in which face areas V paints "
                      "bright, and V did not help at this scale (claim 'vis').",
    "t6-ifv-fv": f"Most likely: without the image, blocks 2+ still see the previous block's features, which "
                 f"already encode it (image filters in blocks 2+ of the paper's network changed by {i_change:.2f}, "
                 "Fig. 7).",
    "t6-ifv-iv": "Most likely: at this small crop size two conv layers on the image give blocks 2+ features "
                 "as useful as the previous block's.",
    "t8-6x2-4x3": f"Most likely: fewer, deeper blocks ({table8['parameters (ours)'][1]:,} parameters against "
                  f"{table8['parameters (ours)'][0]:,}) fit this small training set as well or better.",
    "t8-6x2-3x4": f"Most likely: fewer, deeper blocks ({table8['parameters (ours)'][2]:,} parameters against "
                  f"{table8['parameters (ours)'][0]:,}) fit this small training set as well or better.",
    "noise-late": f"Most likely the kind of noise: at {high:.0%} it moves block 1's output by "
                  f"{d_high.loc[1, 'noise on the update (px)']:.2f} px and block {last}'s by "
                  f"{d_high.loc[last, 'noise on the update (px)']:.2f} px (multiplicative noise scales with each "
                  "block's own update, large in block 1 and small in the last), and after the later blocks "
                  "block 1's noise still moves the final landmarks by "
                  f"{d_high.loc[1, 'noise at the end (px)']:.2f} px.",
    "sdm": f"SDM reached {np.mean(sdm_final):.2f}% against PIFA's {np.mean(pifa_final):.2f}% on the same crops. "
           f"Most likely PIFA is undertrained at this budget: its validation NME still fell by {last_drop:.1%} in "
           "its last epoch (mean over seeds), while SDM is fit in closed form.",
}
for sentence in experiments.reasons(claims, paper_margins, evidence):
    print(f"- {sentence}")
if SCALE == "smoke":
    print("- SCALE=smoke: all of this is a code check, not a result.")

# %% [markdown]
# Why our absolute numbers differ from the paper's: SynthFace faces are rendered from the same 3DMM family
# the network estimates, with exact landmarks and no annotation noise, but a much smaller training set
# at the CPU scales and a different pose and occlusion mix from AFLW; the CPU scales also train a
# narrower network for fewer epochs, with Adam instead of SGD. The verdicts above compare arms trained
# on the same data at the same budget, which is what the paper's claims are about.

# %%
run.log(claims_held=int((claims["verdict"] == "holds").sum()), claims_failed=int((claims["verdict"] == "fails").sum()),
        claims=len(claims), nme_reference=float(np.mean(pifa_final)), nme_sdm=float(np.mean(sdm_final)),
        training_seconds=float(times["seconds"].sum()))
run.finish();
