# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # PIFA 4: ablations, deviations and discussion
#
# Sec. 4.3 of the paper studies the visualization layer and the architecture with networks trained from
# scratch: without any visualization layer (7.18% instead of 4.45%), with different block inputs (Table 6
# and the filter weights of Fig. 7), with different masks (Table 7) and with 12 conv layers split into
# different numbers of blocks (Table 8). This notebook trains each variant, puts the paper's numbers
# beside ours, lists every place where we departed from or had to interpret the paper, and discusses the
# differences.
#
# Every variant (the reference network included) trains for the same, shorter budget than the main
# network of {doc}`03_train` (`ablation_epochs` and `ablation_variations` in `experiments.SCALES`), so
# the rows of a table compare with each other, not with Table 3. At `SCALE=smoke` **the numbers mean
# nothing**; on SynthFace they are **not** the paper's data.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | full
DATA = "synthetic"   # synthetic | aflw-pifa
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from falign import deviations, report
from falign.ledger import Arm, Claim, ClaimsLedger, summary
from falign.experiments import pifa as experiments
from falign.experiments import setup
from falign.papers import pifa as paper

run, cfg, crops = setup("pifa", "04_ablations", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
budget = len(experiments.ablation_train_crops(cfg, crops["train"]))
print(f"every ablation network: {cfg.ablation_epochs} epochs on {budget} training crops "
      f"(main network: {cfg.epochs} epochs on {len(crops['train'])})")

# %%
tables = experiments.ablations(cfg, crops, device=run.device, seed=SEED, work=run.work)
reference = float(tables["table6"]["NME"][0])  # the paper's network at the ablation budget

# %% [markdown]
# ## Without visualization layers (Sec. 4.3)
#
# The same blocks with the visualization channel removed: the estimate of `P` then reaches later blocks
# only through the sum `P^i = P^{i−1} + ΔP^i`, and no block sees where the current 3D face lies in the
# image.

# %%
novis = pd.DataFrame({
    "network": ["with visualization layers (Table 6 a)", "without visualization layers"],
    "NME (paper)": [paper.table6()["NME"][0], paper.number("text_numbers/no-visualization-nme")],
    "NME (ours)": [reference, float(tables["no_visualization"]["NME"][0])],
})
run.table(novis, "no_visualization", caption=f"Sec. 4.3: {paper.NME_BOX} with and without visualization layers")

# %% [markdown]
# ## Block inputs (Table 6)
#
# Architecture a feeds each block the image `I`, the previous block's features `F` and the visualization
# `V`; b drops the image, c drops the features (Fig. 6).

# %%
ours6 = tables["table6"].assign(architecture=lambda d: d["variant"].str[0])
table6 = report.paper_vs_ours(paper.table6(), ours6, on="architecture", values="NME", tolerance=0.5)
run.table(table6, "table6", caption=f"Table 6: {paper.NME_BOX} of three architectures with different block inputs")

# %% [markdown]
# ## Filter weights per input type (Fig. 7)
#
# At the first conv layer of every block, the paper averages the filter weights over the kernel and the
# filters for each type of input channel. We average their magnitudes (signed weights average to about
# zero; a Decision). The paper finds the weights decreasing across blocks, the visualization's above the
# image's, and the features' *total* influence (average × number of channels) the largest. Left to
# right: architectures a, b and c of Table 6, each the ablation network above.

# %%
weights = []
for name, variant in experiments.VARIANTS["table6"].items():
    net = experiments.ablation_network(cfg, crops, variant, device=run.device, seed=SEED, work=run.work)
    weights.append(experiments.input_weights(net).assign(architecture=name))
weights = pd.concat(weights, ignore_index=True)
weights["mean |w| x channels"] = weights["mean |w|"] * weights["channels"]
fig, axes = plt.subplots(1, 3, figsize=(13, 3.4), sharey=True)
colours = {"image": "tab:blue", "features": "tab:green", "visualization": "tab:red"}
for ax, (name, part) in zip(axes, weights.groupby("architecture", sort=False)):
    for kind, curve in part.groupby("input"):
        ax.plot(curve["block"], curve["mean |w|"], marker="o", color=colours[kind], label=kind)
    ax.set(title=f"architecture {name}", xlabel="block", xticks=sorted(part["block"].unique()))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("mean |w| of the first conv layer")
axes[0].legend(fontsize=8)
fig.tight_layout()
run.figure(fig, "fig7_input_weights")

# %%
fig7 = weights.pivot_table(index=["architecture", "block"], columns="input", values="mean |w|").reset_index()
run.table(fig7, "fig7_input_weights", caption="Fig. 7: mean |w| of each block's first conv layer per input type",
          precision=4)

# %% [markdown]
# ## Masks (Table 7)
#
# Mask 1 is Eq. 11's nose-centred mask, mask 2 the five-area mask of Fig. 8, "no mask" sets `a = 1`
# (the masks are drawn in {doc}`02_model`).

# %%
table7 = report.paper_vs_ours(paper.table7(), tables["table7"].rename(columns={"variant": "mask"}), on="mask",
                        values="NME", tolerance=0.5)
run.table(table7, "table7", caption=f"Table 7: {paper.NME_BOX} with different masks")

# %% [markdown]
# ## Numbers of blocks and layers (Table 8)
#
# Table 1's 12 conv layers split into `N_v` blocks of `N_c` layers: 6×2 (the paper's network), 4×3 and
# 3×4. With fewer blocks the parameters are updated fewer times but each update is computed by a deeper
# block. The paper does not list the filters of the 4×3 and 3×4 networks; ours take Table 1's layers in
# order (a Decision). Parameter counts are for this scale's networks.

# %%
ours8 = tables["table8"].assign(N_v=[v["n_blocks"] for v in experiments.VARIANTS["table8"].values()])
ours8["N_c"] = 12 // ours8["N_v"]
ours8["parameters (ours)"] = [int(experiments.architecture(cfg, **v)["total"].sum())
                              for v in experiments.VARIANTS["table8"].values()]
table8 = report.paper_vs_ours(paper.table8(), ours8, on=["N_v", "N_c"], values="NME", tolerance=0.5)
table8 = table8.merge(ours8[["N_v", "parameters (ours)"]], on="N_v")
run.table(table8, "table8", caption=f"Table 8: {paper.NME_BOX} for N_v blocks of N_c conv layers")

# %%
# NBVAL_CHECK_OUTPUT
print("parameters of the 6x2, 4x3, 3x4 networks at this scale:", table8["parameters (ours)"].tolist())

# %% [markdown]
# ## Does our run reproduce the paper's orderings?
#
# The ablation tables are about *orderings* (which variant is better), and the paper's differences are
# sometimes small (4.45 vs 4.48 in Table 6, 4.45 vs 4.49 in Table 7). The table below checks each of
# the paper's claims against this run. A claim whose margin in our run is within run-to-run noise
# (training another seed moves every row) is not evidence either way: at the CPU scales each variant
# trains once, for a few epochs, so read single small margins with care.

# %%
def nme_of(table, key, name):
    return float(table.loc[table[key] == name, "NME (ours)"].iloc[0])


ledger = ClaimsLedger()
for claim, ours, alternative in [
    (Claim("vis", "visualization layers help", "Sec. 4.3"), novis["NME (ours)"][0], novis["NME (ours)"][1]),
    (Claim("t6-ifv-fv", "I,F,V better than F,V", "Table 6"), nme_of(table6, "architecture", "a"),
     nme_of(table6, "architecture", "b")),
    (Claim("t6-ifv-iv", "I,F,V better than I,V: deeper features matter", "Table 6"),
     nme_of(table6, "architecture", "a"), nme_of(table6, "architecture", "c")),
    (Claim("t7-mask1-none", "mask 1 better than no mask", "Table 7"), nme_of(table7, "mask", "Mask 1"),
     nme_of(table7, "mask", "No Mask")),
    (Claim("t7-mask1-mask2", "mask 1 at least as good as mask 2", "Table 7"), nme_of(table7, "mask", "Mask 1"),
     nme_of(table7, "mask", "Mask 2")),
    (Claim("t8-6x2-4x3", "6x2 blocks better than 4x3", "Table 8"), table8["NME (ours)"][0], table8["NME (ours)"][1]),
    (Claim("t8-6x2-3x4", "6x2 blocks better than 3x4", "Table 8"), table8["NME (ours)"][0], table8["NME (ours)"][2]),
]:
    ledger.add(claim, Arm("paper's choice", [ours]), Arm("alternative", [alternative]))
if SCALE == "smoke":
    print("SCALE=smoke: networks trained for one epoch on a handful of faces; the verdicts mean nothing.")
claims = ledger.to_frame()
run.log(ablation_claims_paper_order=int((claims["margin"] > 0).sum()), ablation_claims=len(claims))
print(summary(claims))
ledger.write(run, caption="The paper's ablation claims, checked on this run (NME, %)")

# %% [markdown]
# ## Deviations
#
# Every place where we departed from the paper or had to interpret it. Each matches a `Decision [pifa.…]`
# comment in `falign/models/pifa.py` or `falign/experiments/pifa.py` (the table after this list).
#
# **Data**
#
# * *Data set.* SynthFace `aflw-pifa-like` (34 points, yaw ±90°) and `afw-like` (6 points) replace AFLW
#   and AFW unless `DATA` names the real sets. Its detector-like box plays the role of the given box
#   (the crop and the NME normaliser). Ground-truth `M, p` are exact for SynthFace; for real data they
#   come from fitting falign's own 3DMM (`falign.morphable.fit`), not the Basel model with the
#   expression bases the paper uses.
# * *Box noise.* The paper gives no magnitude for the 20 variations; centre, width and height each move
#   uniformly by up to `box_noise` (5%) of the box size.
# * *Scales.* The CPU scales use fewer and smaller crops (64×64 at `small`), fewer variations and epochs,
#   average-pool the feature maps to a small grid before the FC layers and use fewer FC units.
#   The ablation networks train on one box variation and for fewer epochs than the main network, with
#   the learning-rate milestones placed at the same fractions of their shorter run.
#
# **Model**
#
# * *Parameters.* The network regresses the 8 entries of `M` directly (Eq. 4); the rows of `M` need not
#   stay orthogonal. The last FC layer's output is scaled into raw parameters (shape coefficients in
#   units of their standard deviation, rotation entries in units of the box-fitted scale, translations in
#   units of the crop size) — a fixed rescaling, so Eq. 6-7 still act on raw `P`.
# * *Initialisation.* `P^0` is the frontal mean face fitted into the box, with the scale and offset
#   calibrated on the training ground truth.
# * *Visualization layer.* The Gaussian width σ of Eq. 10 is not given: 1 pixel, 5×5 neighbourhood. Mask
#   1's width is not given: a quarter of the face width. Mask 2 (Fig. 8) is drawn as the strongest of five
#   Gaussians on the eyes, nose tip and mouth corners.
# * *Visibility.* A landmark is visible when its mean-face normal faces the camera (Eq. 8 > 0).
# * *Blocks.* "Same" padding keeps 57×57 maps in blocks 2-6; conv layers have no bias (batch
#   normalisation follows); dropout 0.5. For Table 8's 4×3 and 3×4 networks the 12 conv layers of Table
#   1 are taken in order.
# * *Losses.* Caffe's Euclidean-loss convention (½, summed); Eq. 7 on all landmarks; gradients flow through
#   `P^{i−1}` into earlier blocks.
#
# **Training and evaluation**
#
# * *Optimiser.* The paper's learning-rate sentence contradicts itself (it "decreases" from 1e-6 to 5e-6);
#   read as 5e-7. With our parametrisation SGD at momentum 0.99 diverged at the printed rates, so every
#   scale uses Adam without weight decay (the paper's epochs and milestones at full scale).
# * *Noise study.* "5% noise" is read as multiplicative Gaussian noise on every FC weight and bias.
# * *Fig. 7.* "Average of the filter weights" is read as the average magnitude.
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
# Why our numbers differ from the paper's, with this run's values computed below:
#
# * **Data.** SynthFace faces are rendered from the same 3DMM family the network estimates, with exact
#   landmarks and no annotation noise, but a much smaller training set at the CPU scales and a different
#   pose and occlusion mix from AFLW. Absolute NMEs therefore measure our run, not the paper's claim.
# * **Budget.** The paper trains 33 epochs over 78,020 crops (3,901 faces × 20 variations). The CPU scales
#   see a small fraction of that, with a narrower network, so later blocks have had little time to learn
#   the fine updates the paper's blocks 4-6 make.
# * **Optimiser.** Adam instead of SGD changes how quickly each block converges; the block-by-block
#   profile (Table 3) and the noise sensitivity depend on it.
# * **Ablations.** Each variant is trained once, at a short budget and with the FC input pooled to a small
#   grid, so by the book's verdict rule (a margin must exceed twice the spread over seeds) every claim
#   here is "inconclusive (1 seed)"; the margins, of either sign, are in the claims table above and are
#   often larger than the paper's own differences.

# %%
sentences = [
    f"Claims: {summary(claims)}",
    f"Scale and data: {run.label()}.",
    f"The reference network at the ablation budget reaches {reference:.2f}% (paper: 4.45%; the main "
    f"network's number is in 03_train's Table 3).",
    f"Removing the visualization layers changes our NME by {novis['NME (ours)'][1] - reference:+.2f} points "
    f"(paper: {novis['NME (paper)'][1] - novis['NME (paper)'][0]:+.2f}).",
    f"{int((claims['margin'] > 0).sum())} of the paper's {len(claims)} ablation orderings come out in the paper's "
    f"direction in this run; the margins range from {claims['margin'].min():+.2f} to {claims['margin'].max():+.2f} "
    f"points (positive: as the paper says).",
]
if SCALE == "smoke":
    sentences.append("SCALE=smoke: all of this is a code check, not a result.")
print("\n".join(f"- {s}" for s in sentences))

# %%
run.finish();
