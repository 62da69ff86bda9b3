# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # PIFA 3: training and the main results
#
# This notebook trains the network of {doc}`02_model` on the data of {doc}`01_data` and regenerates the
# paper's results on alignment accuracy: Table 2 (NME on AFLW), Table 3 (NME after each block), Table 4
# (MAPE on AFW), Table 5 (300-W), the CED curves, Fig. 9 (alignments with visibility and the dense 3D
# shape), Fig. 10 (the visualization images of each block), and the training time and test speed of
# Sec. 4.4. The network trained here is the paper's network at the chapter's one training budget, with
# the notebook's seed; {doc}`04_ablations` trains it again with more seeds, beside every ablation of
# Sec. 4.3 (Tables 6-8, Fig. 7, the noise study) and a baseline, and checks the paper's claims.
#
# Every table puts the paper's number beside ours. Ours come from the scale and data printed under each
# table. At `SCALE=smoke` the network trains for seconds and **the numbers mean nothing**; at any
# scale, on SynthFace they measure the method on synthetic faces, **not on the paper's data**.

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
import torch

from falign.kit import aligner, plots, report
from falign.measure import metrics
from falign.papers.pifa import experiment as experiments
from falign.kit.chapter import setup
from falign.papers.pifa import published as paper

run, cfg, crops = setup("pifa", "03_train", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)

# %% [markdown]
# ## Training (Sec. 4)
#
# The network is trained jointly, end to end, from scratch on the training crops and their box-noise
# copies, with the block-weighted sum of Eq. 6 and Eq. 7 ({doc}`02_model`). The paper uses SGD with a
# learning-rate schedule that cannot be right as printed (the table below quotes it: the rate
# "decreases" to a larger number). With our parametrisation of `P` those rates diverged or crawled, so
# every scale trains with Adam (the configuration below; a `Decision`, see the Deviations in
# {doc}`04_ablations`). The precision is chosen per machine (`falign.kit.precision`, also a `Decision`):
# float32, or bfloat16 autocast where this CPU computes bf16 natively and a probe measures it faster;
# `run.json` records what each training used.
#
# The paper trains for a fixed schedule. The book also wants to know whether a training has
# *converged*, so a part of the training split (the validation faces, never the test set) is held out
# and the network's NME on it is recorded after every epoch: a training whose last epoch no longer
# improves the validation NME by 5% is on a plateau; otherwise the book labels it "not converged" and
# draws no verdict from it. A checkpoint is written after every epoch under `run.work`; a finished run
# is reloaded instantly and an interrupted one resumes.

# %%
pd.DataFrame([{"": "paper", **{k: paper.training_protocol()[k] for k in ("epochs", "momentum", "weight_decay")},
               "optimizer": "SGD", "learning rate": paper.training_protocol()["lr_as_printed"]},
              {"": f"ours ({SCALE})", "epochs": cfg.epochs, "momentum": np.nan, "weight_decay": cfg.weight_decay,
               "optimizer": "Adam",
               "learning rate": f"{cfg.lr:g}, x{cfg.lr_factors} after epochs {cfg.milestones}"}])

# %%
net, history = experiments.main_network(cfg, crops, run.work, device=run.device, seed=SEED)
epochs = pd.DataFrame(history.epochs)
train_seconds = float(epochs["seconds"].sum())
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
plots.loss_curve(axes[0], history.losses, ylabel="training loss (Σ_i i·E^i)", title="training loss")
plots.loss_curve(axes[1], history.validation, label="validation", ylabel="NME (%)", log=False,
                 title=f"validation NME ({len(crops['val'])} held-out training faces)")
fig.tight_layout()
run.figure(fig, "loss_curve")
print(f"{len(crops['train'])} training crops, {len(epochs)} epochs, {train_seconds / 60:.1f} min of training "
      f"on {run.device.type}; validation NME {history.validation[0]:.2f}% after epoch 1, "
      f"{history.validation[-1]:.2f}% after epoch {len(epochs)}: "
      f"{'on a plateau' if history.plateaued() else 'NOT converged (still improving by more than 5% per epoch)'}")

# %% [markdown]
# The trained network ships with the results as an *aligner* (`results/pifa/aligner.pt`): its weights,
# the preprocessing (crop size, margin) and this run's provenance. `falign.load("pifa")` and
# `falign align --model pifa photo.jpg` use it; see {doc}`../aligner/01_your_own_photo`.

# %%
# (the trailing ';' keeps the returned staging path out of the book)
aligner.save(run.out / aligner.FILENAME, net.cpu(), "pifa", provenance=aligner.run_provenance(run, epochs=cfg.epochs));

# %% [markdown]
# ## Accuracy after each block (Table 3) and on AFLW (Table 2)
#
# NME as the paper defines it: the mean error over the *visible* landmarks divided by the square root of
# the given box's area (`sqrt(w h)`), per face, then averaged, in %. Block 0 is the initialisation
# `P^0`, the mean face placed in the box (the paper's caption gives its NME too). The network returns every
# intermediate `P^i`, so one forward pass gives the whole table.

# %%
test = crops["test"]
params = experiments.block_params(net, test, run.device)
nme = experiments.nme_per_block(net, test, params)
table3 = report.paper_vs_ours(paper.table3(), experiments.block_table(nme), on="block", values="NME", tolerance=1.0)
run.log(**{f"nme_block{b}": float(v) for b, v in zip(table3["block"], table3["NME (ours)"])})
run.table(table3, "table3", caption=f"Table 3: {paper.NME_BOX} after each visualization block (0 = P^0)")

# %%
final = metrics.mean_error(nme[-1])
ours2 = pd.DataFrame({"method": ["Proposed method"], "NME": [final]})
table2 = report.paper_vs_ours(paper.table2(), ours2, on="method", values="NME", tolerance=1.0)
table2["ours"] = np.where(table2["NME (ours)"].notna(), "this run", "not run (reported baseline)")
run.table(table2, "table2", caption=f"Table 2: {paper.NME_BOX}; baselines as reported in the paper")

# %%
# The trained result checked against the committed smoke reference (only at SCALE=smoke, DATA=synthetic)
report.check_smoke_reference(run, "final-block NME on the test set (%, box)", final)

# %% [markdown]
# The paper's point about pose invariance is that the error should not explode at large yaw. SynthFace
# knows each test face's yaw, so we can look (this breakdown is not in the paper).

# %%
if test.pose is not None:
    yaw_bin = pd.cut(test.pose[:, 0].abs().numpy(), [0, 30, 60, 90], include_lowest=True)
    by_yaw = pd.DataFrame({"|yaw| (°)": yaw_bin.astype(str), "NME P^0": nme[0], "NME final": nme[-1]})
    by_yaw = by_yaw.groupby("|yaw| (°)", observed=True).agg(faces=("NME final", "size"), **{
        "NME P^0": ("NME P^0", "mean"), "NME final": ("NME final", "mean")}).reset_index()
    display_yaw = run.table(by_yaw, "nme_by_yaw", caption=f"{paper.NME_BOX} by |yaw| (not in the paper)")
else:
    display_yaw = "The real test set has no pose angles."
display_yaw

# %% [markdown]
# ## AFW (Table 4)
#
# AFW is used for testing only. Its 6 points (eye centres, nose tip, mouth corners) are not among the 34
# training points, but they are points of the 3DMM: the network's `P` projects them (Eq. 3) for any
# scheme the model defines. MAPE is the mean pixel error over the visible points, **in pixels of the
# original image**, so it depends on the image resolution: the paper's AFW photos are far larger than
# SynthFace's renders (size printed below), and the pixel numbers are not comparable even in scale.

# %%
if "afw" in crops:
    afw = crops["afw"]
    mape = experiments.afw_mape(experiments.block_params(net, afw, run.device)[-1], afw)
    ours4 = pd.DataFrame({"method": ["Proposed method"], "MAPE": [metrics.mean_error(mape)]})
    table4 = report.paper_vs_ours(paper.table4(), ours4, on="method", values="MAPE", tolerance=1.0)
    table4["ours"] = np.where(table4["MAPE (ours)"].notna(), "this run", "not run (reported baseline)")
    box_size = ((afw.boxes[:, 2:] - afw.boxes[:, :2]).prod(1).sqrt()).mean().item()
    print(f"AFW-like: {len(afw)} faces rendered at {cfg.image}x{cfg.image} px, mean box size "
          f"sqrt(wh) = {box_size:.1f} px; MAPE / box size = {100 * ours4['MAPE'][0] / box_size:.2f}%")
    display4 = run.table(table4, "table4", caption=f"Table 4: {paper.MAPE}, AFW-like test set")
else:
    mape, display4 = None, f"DATA={DATA}: no AFW set loaded with it, Table 4 not run."
display4

# %% [markdown]
# ## 300-W (Table 5): an analogue
#
# The paper also trains and tests on 300-W (68 points, NME normalised by the inter-ocular distance). We
# do not train a 68-point network. What we can do honestly is an **analogue**: our 34-point network
# estimates a full 3DMM `P`, so it can project the 68 iBUG points too, and SynthFace renders their
# ground truth. We measure the inter-ocular NME (outer eye corners, all 68 points) of that projection on
# the AFLW-like test faces with |yaw| ≤ 60° (beyond that the outer eye corners nearly coincide in the
# image and the normaliser degenerates), split like 300-W: "Common" |yaw| ≤ 30°, "Challenging"
# 30-60°, "Full" both. This is not 300-W: different faces, different pose mix, a network trained on
# other landmarks, and 3D-consistent jaw points instead of 300-W's silhouette contour. The paper's rows
# are shown as reported. The last column is the failure rate at 8% inter-ocular NME that Sec. 4.2
# quotes for the paper's network on 300-W.

# %%
if test.landmarks68 is not None:
    err68 = experiments.ibug68_nme(params[-1], test)
    row = {"method": "Proposed method, ours (analogue: 68-point projection, AFLW-like |yaw| ≤ 60°)"}
    for subset in ("Common", "Challenging"):
        values = err68.loc[err68["subset"] == subset, "NME"]
        row[subset] = values.mean() if len(values) else np.nan
    row["Full"] = err68["NME"].mean()
    row["failure rate @0.08 (%, Full)"] = 100 * metrics.failure_rate(err68["NME"].to_numpy(), 8.0)
    table5 = pd.concat([paper.table5().assign(source="paper (300-W, as reported)"),
                        pd.DataFrame([row]).assign(source=f"this run ({len(err68)} faces)")], ignore_index=True)
    table5.loc[table5["method"] == "Proposed method", "failure rate @0.08 (%, Full)"] = \
        paper.number("text_numbers/failure68-proposed")
    display5 = run.table(table5, "table5", caption=f"Table 5: {paper.NME_IOD}; our row is a synthetic analogue")
else:
    display5 = f"DATA={DATA} has no 68-point ground truth: Table 5 not run (paper rows in papers.pifa.table5)."
display5

# %% [markdown]
# ## CED curves
#
# The cumulative error distribution of the per-face NME (box-normalised, %) on the AFLW-like test set
# after blocks 0, 3 and the last, and of the per-face MAPE on the AFW-like set. The legend gives the
# area under each curve up to the plot's limit, divided by it (AUC).

# %%
fig, axes = plt.subplots(1, 2 if mape is not None else 1, figsize=(10, 3.8), squeeze=False)
plots.ced(axes[0, 0], {f"block {b}": nme[b] for b in sorted({0, len(nme) // 2, len(nme) - 1})}, "box", 30.0,
          unit="%", title="AFLW-like test")
if mape is not None:
    plots.ced(axes[0, 1], {"final block": mape}, "none", float(np.nanpercentile(mape, 95)) * 1.5,
              title="AFW-like test (MAPE)")
fig.tight_layout()
run.figure(fig, "ced")

# %% [markdown]
# ## Alignments with visibility and the dense shape (Fig. 9)
#
# Test faces across poses. Top: the estimated landmarks, green where the network's `P` says the
# landmark faces the camera (visible), red where it says hidden; the paper draws the two classes in two
# colours as well. Bottom: the dense 3D shape `S_p` projected by `M`, drawn as the cloud of vertices
# that face the camera. The last columns are AFW-like faces, with the 6 AFW points projected from `P`
# and coloured by AFW's visibility labels.

# %%
def show_alignment(ax_top, ax_bottom, c, i, P):
    image = c.images[i].permute(1, 2, 0).numpy()
    lm = experiments.scheme_landmarks(P[None], c.scheme)[0].numpy() if c.scheme != net.scheme else \
        net.landmarks(P[None])[0].numpy()
    vis = (net.visibility(P[None])[0].numpy() if c.scheme == net.scheme else c.visible[i].numpy())
    plots.landmarks(ax_top, image, lm, vis, size=7, legend=False)
    verts, facing = experiments.dense_vertices(P[None])
    v = verts[0][facing[0]].numpy()
    ax_bottom.imshow(image)
    ax_bottom.scatter(*v.T, s=0.5, c="cyan", alpha=0.25, linewidths=0)
    for ax in (ax_top, ax_bottom):
        ax.set(xlim=(0, c.size - 1), ylim=(c.size - 1, 0))
        ax.axis("off")


yaw = test.pose[:, 0].numpy() if test.pose is not None else np.zeros(len(test))
picks = [("test", i) for i in np.argsort(yaw)[np.linspace(0, len(test) - 1, 6).astype(int)]]
if "afw" in crops:
    afw_params = experiments.block_params(net, crops["afw"].subset([0, 1]), run.device)[-1]
    picks += [("afw", 0), ("afw", 1)]
fig, axes = plt.subplots(2, len(picks), figsize=(2 * len(picks), 4.3))
for col, (which, i) in enumerate(picks):
    P = params[-1][i] if which == "test" else afw_params[i]
    show_alignment(axes[0, col], axes[1, col], crops[which], i, P)
    axes[0, col].set_title(f"{'AFLW' if which == 'test' else 'AFW'}-like" +
                           (f", yaw {yaw[i]:.0f}°" if which == "test" else ""), fontsize=8)
fig.tight_layout()
run.figure(fig, "fig9_alignments")

# %% [markdown]
# How often is the visibility derived from `P` right? Our ground truth also hides points behind
# occluders (glasses, hands), which a 3D pose cannot know, so the agreement has a ceiling below 100%.

# %%
pred_vis = net.visibility(params[-1].to(net.p_sigma.device)).cpu()
print(f"visibility from P agrees with the ground truth for {100 * (pred_vis == test.visible).float().mean():.1f}% "
      f"of the test landmarks (all points visible would give {100 * test.visible.float().mean():.1f}%)")

# %% [markdown]
# ## The visualization images per block (Fig. 10)
#
# The input image and the visualization `V` of `P^{i−1}` that block `i` sees. Block 1 sees the mean
# face in the box; later blocks see the current estimate, which turns and deforms towards the face.

# %%
shown = [int(i) for i in np.argsort(np.abs(yaw))[[-1, len(test) // 2, 0]]]
with torch.no_grad():
    _, vis = net.to(run.device)(test.float_images(shown).to(run.device), return_visualizations=True)
fig, axes = plt.subplots(len(shown), len(vis) + 1, figsize=(1.8 * (len(vis) + 1), 1.9 * len(shown)), squeeze=False)
for row, i in enumerate(shown):
    axes[row, 0].imshow(test.images[i].permute(1, 2, 0).numpy())
    axes[row, 0].set_title("input", fontsize=8)
    for b, V in enumerate(vis):
        axes[row, b + 1].imshow(V[row, 0].cpu().numpy(), cmap="gray")
        axes[row, b + 1].set_title(f"block {b + 1}", fontsize=8)
for ax in axes.ravel():
    ax.axis("off")
fig.tight_layout()
run.figure(fig, "fig10_visualizations")

# %% [markdown]
# ## Training time and test speed (Sec. 4.4)
#
# The paper gives its training time (Caffe, GPU) and its test speed on a Titan X (the table below).
# We time our training and the forward pass of one face (batch 1) on this run's device, for the network
# this run trained and, at `small` and `full`, for the paper's Table 1 network at 114×114 (untrained
# weights time the same as trained ones; `make bench` measures it too). Hardware, network width (at the
# CPU scales) and data size differ, so these are this run's facts, not a reproduction of the paper's
# speed.

# %%
fps = experiments.inference_fps(net, run.device)
paper_fps = paper.number("text_numbers/fps-proposed")
timing = pd.DataFrame([
    {"quantity": "training epochs", "paper": paper.number("text_numbers/epochs-proposed"), "ours": len(epochs)},
    {"quantity": "training time (hours)", "paper": 24 * paper.number("text_numbers/train-days-proposed"), "ours": train_seconds / 3600},
    {"quantity": "training crops per epoch", "paper": paper.number("training_protocol/train-faces") * paper.number("training_protocol/variations"), "ours": len(crops["train"])},
    {"quantity": f"test speed (faces/s, batch 1), this run's network ({cfg.size}x{cfg.size})",
     "paper": paper_fps, "ours": fps},
])
if SCALE != "smoke":  # the 500M-parameter network takes seconds to build: not in CI
    full_fps = experiments.inference_fps(experiments.build_network(), run.device)
    timing.loc[len(timing)] = {"quantity": "test speed (faces/s, batch 1), the paper's Table 1 network "
                               "(114x114)", "paper": paper_fps, "ours": full_fps}
    run.log(fps_table1_network=full_fps)
run.log(train_seconds=train_seconds, fps=fps, nme_final=final)
run.table(timing, "timing", caption=f"Sec. 4.4: training time and test speed (ours on {report.describe_device(run.device)})")

# %% [markdown]
# ## Where our numbers differ from the paper's
#
# The sentences below are computed from this run. Differences are expected: SynthFace is not AFLW (its
# faces, boxes and landmark definitions differ, and its ground truth has no annotation noise), the CPU
# scales use far fewer faces, epochs and a narrower network, and the optimiser differs. What should
# carry over are the *trends*, and whether they do is decided over several seeds in {doc}`04_ablations`'s
# claims ledger, not from this one network.

# %%
ours3, theirs3 = table3["NME (ours)"].to_numpy(), table3["NME (paper)"].to_numpy()
falls = np.all(np.diff(ours3) < 0)
gain_first = ours3[0] - ours3[1]
print(f"This run ({run.label()}):")
print(f"- NME goes from {ours3[0]:.2f}% (P^0) to {ours3[-1]:.2f}% after block {len(ours3) - 1}; it "
      f"{'falls after every block' if falls else 'does not fall after every block'} "
      f"(paper: {theirs3[0]:.1f}% -> {theirs3[-1]:.2f}%, falling throughout).")
print(f"- Block 1 removes {100 * gain_first / max(ours3[0] - ours3[-1], 1e-9):.0f}% of the total reduction "
      f"(paper: {100 * (theirs3[0] - theirs3[1]) / (theirs3[0] - theirs3[-1]):.0f}%); the last block removes "
      f"{100 * (ours3[-2] - ours3[-1]) / max(ours3[0] - ours3[-1], 1e-9):.1f}% (paper: "
      f"{100 * (theirs3[-2] - theirs3[-1]) / (theirs3[0] - theirs3[-1]):.1f}%).")
print(f"- Our final NME is {ours3[-1] - theirs3[-1]:+.2f} points from the paper's, on other data at another scale.")
if SCALE == "smoke":
    print("- SCALE=smoke: the network trained for seconds; none of these numbers mean anything.")

# %%
# NBVAL_CHECK_OUTPUT
print(f"initial NME (P^0 in the box): {metrics.mean_error(nme[0]):.3f}%")

# %%
run.finish();
