# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # RCSR 4: architectures, depth and recurrences
#
# The paper's studies of its design: Table 4 (which regressor and which features: SDM on HOG, a
# traditional GRU on HOG or SRCNN, the ConvGRU on LeNet, FAUC or SRCNN), Fig. 5 (deeper CNN modules and
# more fully connected layers: running time against error) and Fig. 7 (models trained with more
# recurrences). The chapter ends with every deviation from the paper and a discussion of where our
# numbers differ from the paper's.
#
# Ours come from the run named under each table. At `SCALE=smoke` **the numbers mean nothing**; at
# any scale, on SynthFace they measure the methods on synthetic faces, **not on 300-W**. The main model
# is the one trained in {doc}`03_train` (reloaded from its checkpoint); every other model here trains
# for the scale's `ablation_epochs` (fewer than the main model's at the CPU scales), so Table 4 also
# shows ConvGRU + SRCNN at that budget.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | full
DATA = "synthetic"   # synthetic | 300w
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from falign import deviations, protocol300w, report
from falign.ledger import Arm, Claim, ClaimsLedger, summary
from falign.experiments import rcsr as experiments
from falign.experiments import setup
from falign.models import rcsr, rcsr_table4
from falign.papers import rcsr as paper

run, cfg, crops = setup("rcsr", "04_ablations", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
tests = {s: crops[s] for s in experiments.TEST_SUBSETS}
truth = experiments.ground_truth(tests)
NME = "NME (%, inter-ocular)"


def fit(name, kind="convgru-srcnn", variant=None, epochs=None):
    """Every model of this notebook: checkpointed under run.work, so a rerun reloads it."""
    return experiments.trained(cfg, crops["train"], run.work, name, kind=kind, variant=variant,
                               epochs=epochs or cfg.ablation_epochs, device=run.device, seed=SEED,
                               progress=False)[0]


# %% [markdown]
# ## Table 4: the regressor and the features
#
# The six architectures share the data, the initial shapes, the loss (Eq. 8, T = 5) and the optimiser;
# SDM is fit stage by stage in closed form (ridge regression on the HOG of the patches; its HOG is the
# one "traditional GRU + HOG" reads, so those two rows differ only in the regressor). Table 4's last row
# equals Table 1's "RCSR adaptive", so the recurrent models are scored with the stopping rule; the
# second table gives them after exactly T recurrences too. "epochs" says how long each trained.

# %%
table4_models = experiments.table4_models(cfg, crops["train"], run.work, device=run.device, seed=SEED)
models = {label: model for label, (_, _, model) in table4_models.items()}
results, at_T, errors = experiments.table4_results(table4_models, tests, device=run.device)
budget = experiments.ABLATION_BUDGET

table4 = protocol300w.paper_vs_ours(paper.table("table4").drop(columns="kind"), results)
table4.insert(1, "epochs (ours)", table4["method"].map({label: e for label, (_, e, _) in table4_models.items()}))
run.table(table4, "table4", caption="Table 4: architectures on 300-W, NME (%, inter-ocular); ours with the "
          "stopping rule (SDM: its stages)" + ("; ours on SynthFace 300-W-like" if DATA == "synthetic" else ""))

# %%
run.table(at_T.pivot_table(index="method", columns="subset", values=NME, sort=False).reset_index(), "table4_at_T",
          caption=f"Table 4 models after exactly T = {cfg.steps} recurrences (SDM: its stages), "
                  "NME (%, inter-ocular)")

# %% [markdown]
# Is the paper's headline of Table 4 reproduced at this scale: does ConvGRU + SRCNN (the main model)
# beat SDM + HOG, and the earlier RCFA (traditional GRU + SRCNN)? The comparison is computed here, on
# each subset.

# %%
ours4 = results.pivot_table(index="method", columns="subset", values=NME, sort=False)
main_label, sdm_label, rcfa_label = (rcsr_table4.TABLE4[k][0] for k in ("convgru-srcnn", "sdm", "gru-srcnn"))
ten = experiments.evaluate(models[main_label], tests, steps=10, device=run.device).set_index("subset")[NME]
ledger = ClaimsLedger()
for subset in protocol300w.SUBSETS:
    ledger.add(Claim(f"t4-rcsr-sdm-{subset}", f"ConvGRU + SRCNN beats SDM + HOG ({subset})", "Table 4"),
               Arm("ConvGRU + SRCNN", [ours4.loc[main_label, subset]]), Arm("SDM + HOG", [ours4.loc[sdm_label, subset]]))
ledger.add(Claim("t4-convgru-gru", "the ConvGRU beats the traditional GRU (RCFA) at the same budget (full)",
                 "Sec. 5.1, Table 4"),
           Arm("ConvGRU + SRCNN", [ours4.loc[budget, "full"]]), Arm("GRU + SRCNN", [ours4.loc[rcfa_label, "full"]]))
ledger.add(Claim("t1-stop-10", "the stopping rule beats 10 recurrences (full)", "Sec. 4.3, Table 1"),
           Arm("stopping rule", [ours4.loc[main_label, "full"]]), Arm("10 recurrences", [ten["full"]]))
claims = ledger.to_frame()
print(summary(claims))
ledger.write(run, caption="The paper's comparative claims, checked on this run (NME, %, inter-ocular)")

# %%
for subset in protocol300w.SUBSETS:
    run.figure(protocol300w.ced_figure(errors, subset, max_error=0.08 if SCALE == "full" else 0.2),
               f"ced_table4_{subset}")

# %% [markdown]
# ## Fig. 5: depth of the CNN module and fully connected layers
#
# The paper adds n = 0, 5, 10, 15, 20 extra 3×3×64 layers to SRCNN and uses 1, 2 or 3 fully connected
# layers, and plots running time against error on 300-W: the lowest error is depth-10-fc-1, but it costs
# 5.22 s against 0.44 s for depth-0-fc-1 at almost the same error, so the paper keeps depth-0-fc-1
# (Sec. 4.2; the unit of work behind those seconds is not stated). We train the scale's grid at the
# ablation budget and time one face at batch 1.

# %%
fig5 = []
for name, variant in experiments.fig5_variants(cfg).items():
    plain = variant == {"depth": 0, "fc_layers": 1}           # the Table 4 model at the same budget
    m = models[budget] if plain else fit(f"fig5-{name}", variant=variant)
    seconds = experiments.inference_seconds(m, cfg, device=run.device)
    nme = experiments.evaluate(m, tests, device=run.device).set_index("subset")[NME]
    fig5.append({"variant": name, **variant, "ms per face (ours)": 1000 * seconds, "full NME (ours)": nme["full"]})
fig5 = pd.DataFrame(fig5)
fig5["time (paper, s)"] = fig5["variant"].map({"depth-0-fc-1": paper.number("text_numbers/time-depth0-fc1"),
                                                "depth-10-fc-1": paper.number("text_numbers/time-depth10-fc1")})
fig5["time / depth-0-fc-1 (ours)"] = fig5["ms per face (ours)"] / fig5["ms per face (ours)"].iloc[0]
run.table(fig5, "fig5", caption=f"Fig. 5: time against error after T = {cfg.steps} recurrences; the paper "
          "gives times for two points only (depth-10-fc-1: 5.22 / 0.44 = 11.9 times depth-0-fc-1)")

# %%
fig, ax = plt.subplots(figsize=(5, 3.6))
ax.scatter(fig5["ms per face (ours)"], fig5["full NME (ours)"])
for _, r in fig5.iterrows():
    ax.annotate(r["variant"], (r["ms per face (ours)"], r["full NME (ours)"]), fontsize=8)
ax.set(xlabel="ms per face (batch 1)", ylabel="NME full (%)", title=f"Fig. 5 at {SCALE} scale")
ax.grid(alpha=0.3)
fig.tight_layout()
run.figure(fig, "fig5_time_vs_error")

# %% [markdown]
# ## Fig. 7: training with more recurrences
#
# RCSR5, RCSR10, RCSR20 and RCSR30 are trained with 5, 10, 20 and 30 recurrences (with Sec. 4.4's
# printed loss weights, 10^w for w evenly spaced in [−2, 2]) and run for many more steps on the full
# set. The paper: RCSR5 is best around step 9 and gets worse after; the others are best after more than
# 17 steps and are more stable. The scale's subset of these models is trained at the ablation budget.

# %%
fig7 = {name: experiments.convergence(fit(f"fig7-{name}", variant=variant), tests, cfg.eval_steps,
                                      device=run.device).query("subset == 'full'")
        for name, variant in experiments.fig7_variants(cfg).items()}
fig, ax = plt.subplots(figsize=(5, 3.6))
for name, curve in fig7.items():
    ax.plot(curve["step"], curve[NME], marker="o", ms=3, label=name)
ax.set(xlabel="recurrent step", ylabel="NME full (%)", title="Fig. 7: trained recurrences")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
run.figure(fig, "fig7_recurrences")
paper_best = {"RCSR5": "about 9", "RCSR10": "more than 17", "RCSR20": "more than 17", "RCSR30": "more than 17"}
run.table(pd.DataFrame([{"model": name, "best step (paper)": paper_best.get(name, "not in the paper"),
                         "best step (ours)": int(c.loc[c[NME].idxmin(), "step"]), "lowest NME (ours)": c[NME].min(),
                         f"NME at step {cfg.eval_steps} (ours)": c[NME].iloc[-1]} for name, c in fig7.items()]),
          "fig7", caption=f"Fig. 7: best step on the full set (ours up to {cfg.eval_steps} steps)")

# %% [markdown]
# ## Deviations
#
# Where we depart from the paper or had to read it one way; each is a `Decision:` in the code.
#
# **Data and scale** (`falign/experiments/rcsr.py`)
# * SynthFace's 300-W-like preset stands in for 300-W unless `DATA` names a real dataset. Tables 2 and 3
#   (HELEN, LFPW) get the analogous *common* subset, labelled as such.
# * The CPU scales use far fewer faces, smaller crops and patches, and far fewer epochs than the paper
#   (the scale table in {doc}`03_train`); `small` trains the main model longer than the ablation models
#   (`epochs` against `ablation_epochs`), so Table 4 adds ConvGRU + SRCNN at the ablation budget. No
#   fine-tuning round below `full`, and one box-noise replicate instead of three.
# * The box noise (Sec. 4.1) is a uniform shift and scaling of the box by up to `box_noise`; the initial
#   shapes are jittered by a random similarity (translation and scale noise `init_noise`, `inits` starts
#   per crop). The paper gives neither magnitude.
# * Optimiser: Adam with global-norm gradient clipping instead of SGD at 0.01 (which diverged under our
#   loss scaling); the halving of the learning rate every `decay_every` epochs is kept.
# * SRCNN is thinned (`cnn_width`) and LeNet and FAUC more (`baseline_width`) at the CPU scales.
#
# **Model** (`falign/models/rcsr.py`, `DECISIONS` below)
# * Patch size, ConvGRU kernel (3×3) and memory, the traditional GRU's 512 units, and stacking the
#   landmarks' maps along channels are ours; SRCNN's 9×9 and 5×5 layers are unpadded as in SRCNN.
# * The CNN extractors read each image standardised (zero mean, unit variance). At the CPU scales no
#   gradient flows through the patch positions (`patch_gradient=False`: patches are cut where the
#   previous step put them, as in a cascade); `full` keeps the paper's end-to-end path through the
#   differentiable sampler. In CPU-scale probes either change alone left the model near the mean shape.
# * The increment h_t is predicted in image sides, the last fc layer starts at zero; Eq. 8 is computed
#   in image sides and averaged over the batch (a rescaling of J).
# * Loss weights: Eq. 8's 10^(t/T) for the main and Table 4 models, Sec. 4.4's 10^linspace(−2, 2, T) for
#   Fig. 7.
# * The stopping rule uses the l2 norm of the whole increment over the outer-eye-corner distance of the
#   current estimate.
# * LeNet has no ReLU (as in Caffe's LeNet); FAUC pads its convolutions and its quadrant pooling is the
#   mean of each quadrant. HOG is SIFT-like (4×4 cells, 8 orientations, 128 numbers per point), shared by
#   SDM and "traditional GRU + HOG"; SDM's stages are ridge regressions.
#
# **Evaluation** (`falign/protocol300w.py`)
# * *full* pools the faces of common and challenging; failure means NME ≥ 0.08.
# * Table 4's recurrent rows use the stopping rule (its last row equals "RCSR adaptive"); Fig. 5's
#   points are after T recurrences, timed per face at batch 1; the paper's grid (5 depths × 3 fc) and
#   Fig. 7's four models are reduced to the scale's subsets.

# %%
deviations.write(run, "rcsr")

# %% [markdown]
# The paper also disagrees with itself in places (`falign.papers.rcsr.notes()`):

# %%
pd.DataFrame({"inconsistency in the paper": paper.notes()})

# %% [markdown]
# ## Discussion: our numbers against the paper's
#
# First, plainly, the claims ledger of this run (computed above; each arm is one training, so by the
# book's verdict rule no claim can be more than "inconclusive (1 seed)" until several seeds are run):

# %%
print(summary(claims))

# %% [markdown]
# The numbers differ for three reasons, whose weight depends on the scale that ran (printed below):
# the data (SynthFace is not 300-W: its common and challenging splits are defined by pose, expression
# and occluders rather than by source, and its inter-ocular normaliser shrinks with yaw), the scale
# (at the CPU scales the CNN models see a few thousand updates, the paper's hundreds of thousands), and
# the deviations above. What can be compared is the *shape* of the results: the ratio of our error to
# the paper's per row, whether the rows come in the same order, and the relative gains the paper
# quotes in its text. All of it is computed from this run.

# %%
print(run.label())
ratio = pd.DataFrame({s: table4[f"{s} (ours)"] / table4[f"{s} (paper)"] for s in protocol300w.SUBSETS})
ratio.insert(0, "method", table4["method"])
display(ratio.round(2).rename(columns={s: f"{s}: ours / paper" for s in protocol300w.SUBSETS}))
paper_rows = table4.dropna(subset=["full (paper)", "full (ours)"])
rank = paper_rows["full (paper)"].rank().corr(paper_rows["full (ours)"].rank())
print(f"Spearman rank correlation of the six Table 4 rows on the full set, ours against the paper: {rank:.2f}")


def gain(before, after):
    return 100 * (before - after) / before


t1 = paper.table("table1").set_index("method")
five = at_T.set_index(["method", "subset"]).loc[(main_label, "full"), NME]
gains = pd.DataFrame({
    "paper (text)": [paper.number("text_numbers/convgru-gain-full"), paper.number("text_numbers/stop-gain-full"), np.nan],
    "paper (tables)": [gain(*paper.table("table4").set_index("kind").loc[["gru-srcnn", "convgru-srcnn"], "full"]),
                       gain(*t1.loc[["RCSR 10 recurrences", "RCSR adaptive"], "full"]),
                       gain(*t1.loc[["RCSR 5 recurrences", "RCSR adaptive"], "full"])],
    "ours": [gain(ours4.loc[rcfa_label, "full"], ours4.loc[budget, "full"]),
             gain(ten["full"], ours4.loc[main_label, "full"]), gain(five, ours4.loc[main_label, "full"])],
}, index=["ConvGRU vs traditional GRU (ours: same budget), full", "stopping rule vs 10 recurrences, full",
          "stopping rule vs 5 recurrences, full"])
gains

# %% [markdown]
# Reading the tables: a ratio near 1 would mean our synthetic task is about as hard for a model as 300-W;
# the ratios of the two SRCNN models against SDM say more than the absolute numbers, since every row
# shares the data and the scale. The paper compares its stopping rule with 10 recurrences (Table 1); the
# table gives the gain (in % of the error before) against 10 and against the T = 5 trained steps. At the
# CPU scales the recurrent models are not converged, so their order can differ from the paper's where
# two rows are close, and models that train fastest per update (HOG features need no learning) are
# favoured.

# %%
# NBVAL_CHECK_OUTPUT
sdm = models[sdm_label]
print(f"SDM + HOG, full-set NME after {sdm.steps} stages: {ours4.loc[sdm_label, 'full']:.3f}%")

# %%
run.log(**{f"table4_full_{kind}": float(ours4.loc[label, "full"]) for kind, (label, _) in rcsr_table4.TABLE4.items()},
        rank_correlation_table4=float(rank))
run.finish();
