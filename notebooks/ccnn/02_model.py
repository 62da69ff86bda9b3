# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # CCNN 2: the model
#
# CCNN is a cascade of 23 small CNNs in three stages (Sec. 3.1, Table 1), each stage refining the
# previous one's five points:
#
# * **Stage 1** (Sec. 3.1.1, Table 2): three CNNs read the face box resized to 39 × 39 × 3: F1 the whole
#   face (all five points), EN1 its upper part (eyes and nose), NM1 its lower part (nose and mouth).
#   Every point is the mean of all predictions of it (Eq. 4).
# * **Stages 2 and 3** (Sec. 3.1.2-3.1.3, Eq. 5, Fig. 3): ten CNNs each, two per point. Each reads a
#   15 × 15 × 3 window centred on the previous stage's estimate of its point, of half-size a·h × b·w
#   (h, w: the face box; a = b = 0.16 and 0.18 in stage 2, 0.08 and 0.09 in stage 3); the two
#   predictions of a point are averaged (Eq. 4).
# * **Relative positioning** (Eq. 9): every CNN predicts its points in its own window's frame, (0, 0)
#   the window's top-left and (1, 1) its bottom-right corner.
# * **Shake** (Sec. 3.1.2, 3.2.3): in training, every window is translated by N(0, 1e-4) at random.
#
# All CNNs of a stage are evaluated in one call: their convolutions are one grouped convolution and
# their fully connected layers one batched product, which computes exactly what each CNN would alone
# (`falign/papers/ccnn/model.py`, tested in `tests/test_ccnn.py`). This notebook builds the model, counts its
# parameters against Table 2, Fig. 3 and Sec. 3.2.4, shows the windows and the shake, and the two
# ResNets of Table 3. It trains nothing.

# %% tags=["parameters"]
SCALE = "smoke"      # smoke | small | gpu | full
DATA = "synthetic"   # synthetic | lfpw5
DATA_ROOT = ""       # real datasets root ("" -> env DATA_ROOT / FALIGN_DATA)
DEVICE = "cpu"       # cpu | cuda
SEED = 0

# %%
import pandas as pd
import torch

from falign.kit import decisions
from falign.kit.chapter import setup
from falign.papers.ccnn import experiment as experiments, model as ccnn

run, cfg, crops = setup("ccnn", "02_model", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
test = crops["test"]
model = ccnn.CCNN()
model

# %% [markdown]
# ## Table 1 and Table 2: the networks and their parameters
#
# `ccnn.count_parameters` lists every layer of every network. Table 2 counts weights without biases
# (conv1 = 4 × 4 × 3 × 20 = 960); its four printed counts are F1's, and EN1 and NM1 share the layers up
# to their 6-output fc2. Stages 2 and 3 are ten copies each of Fig. 3's network (15 × 15 input, two
# conv-pool pairs, fc 60, fc 2). The sum is Sec. 3.2.4's 643,920 exactly, with no reading needed beyond
# Table 2 and Fig. 3; with the biases the model holds 647,102 numbers.

# %%
counts = ccnn.count_parameters(model)
run.table(experiments.table2(counts), "table2",
          caption="Table 2: the first stage, layer by layer; parameters are weights without biases")

# %%
run.table(experiments.parameter_totals(counts), "parameters",
          caption="Parameters per stage; Sec. 3.2.4: 643,920, 'approximately 2.46 MB'")

# %%
experiments.weights_per_network(counts)

# %% [markdown]
# Fig. 3 draws the network of every stage-2 and stage-3 CNN (LE21). Its labels, as printed, beside the
# output of each layer of our first stage-2 network, measured by running it on one 15 × 15 window:

# %%
experiments.fig3_table(model)

# %% [markdown]
# ## Stage 1's three inputs
#
# F1 reads the whole face box; EN1 and NM1 read its top and bottom 31/39 (Sun et al. 2013's split; the
# paper gives no bounds), each stretched to 39 × 39 so that Table 2's layer sizes and the 643,920 total
# hold. Below, the three inputs of one test face as the networks see them (each standardised to zero
# mean and unit standard deviation, Sec. 4.1).

# %%
run.figure(experiments.stage1_inputs_figure(model, test), "stage1_inputs")

# %% [markdown]
# ## Eq. 5: the windows of stages 2 and 3, and the shake
#
# Around each anchor point (here the true points, to show the geometry) stage 2 places a window of
# ±0.16 and one of ±0.18 of the box, stage 3 ±0.08 and ±0.09 (we read Eq. 5's a·h as the extent on each
# side, as in Sun et al.'s ±0.16 / ±0.18 patches; a `Decision`). In training each window is shaken:
# translated by N(0, σ²) in box units with σ² = 1e-4 (σ = 0.01 of the box; the paper gives the
# variance without a unit). Cyan: the a1 windows (±0.16, ±0.08), magenta: the a2 windows (±0.18, ±0.09);
# the faint white rectangles are ten shaken draws of the a1 windows.

# %%
run.figure(experiments.windows_figure(model, test), "windows")

# %%
run.figure(experiments.stage2_inputs_figure(model, test), "stage2_inputs")

# %% [markdown]
# ## One forward pass
#
# `model(images, boxes)` returns every stage's five points in box units, shape `(stages, B, 5, 2)`;
# `model.predict` returns the last stage's in image pixels. Stage k + 1 is anchored on stage k's
# *detached* estimate: the stages are trained one after another (Sec. 3.3), each on the anchors the
# stages before it produce on the training faces ({doc}`03_train`).

# %%
with torch.no_grad():
    out = model.eval()(test.images[:4].float(), experiments.face_boxes(test)[:4])
print(f"images {tuple(test.images[:4].shape)} and boxes (4, 4) -> points {tuple(out.shape)} (box units)")

# %% [markdown]
# ## The deep networks of Table 3: ResNet18 and ResNet34
#
# Table 3 compares CCNN's size and speed with ResNet18 and ResNet34 (He et al. 2016), whose 44.59 and
# 85.15 MB are the ImageNet classifiers' (11.7 and 21.8 million float32 numbers; 85.15 looks like a slip
# for 83.15). The paper gives them no accuracy, input or training. We build them as landmark regressors
# (`falign/papers/ccnn/resnet.py`: the ImageNet stem, four stages of basic blocks, global pooling, a linear
# layer to the 10 coordinates) on the same input as CCNN's F1, the face box resized to 39 × 39, to count
# and time them ({doc}`04_ablations`). We do not train them: an accuracy claim against them would be the
# book's own, not the paper's, and a network built for 224-pixel images (its stem alone divides a 39-pixel
# input by four) would be an unfair baseline without its own design and recipe (a `Decision`).

# %%
run.table(experiments.parameters_table(), "table3_parameters",
          caption="Parameters and MB (float32, 2^20 bytes) of CCNN and the ResNets")

# %% [markdown]
# ## Choices the paper leaves open
#
# Each entry is a `Decision` in `falign/papers/ccnn/model.py`, read from the code
# (`falign.kit.decisions.decisions_in`); {doc}`04_ablations` collects every deviation of the chapter,
# with what the paper says.

# %%
pd.DataFrame(list(decisions.decisions_in(ccnn.__file__).items()), columns=["id", "decision"])

# %%
# NBVAL_CHECK_OUTPUT
print(f"CCNN weights without biases: {int(counts['weights'].sum()):,}; with biases: {int(counts['with_biases'].sum()):,}")

# %%
run.log(weights=int(counts["weights"].sum()), with_biases=int(counts["with_biases"].sum()))
run.finish();
