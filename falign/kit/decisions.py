"""The deviations ledger: every decision the code makes where a paper is silent, ambiguous or
self-contradictory, with what the paper says, in one registry.

Two halves, joined here:

* **In the code**, where the choice is made, a comment or docstring states it with a stable id::

      # Decision [pifa.optimizer]: Adam at every scale; SGD at the printed rates diverged ...

  The id is ``<chapter>.<name>`` (lowercase, digits and ``-``). The text runs on over the following
  ``#`` lines of the comment, or in a docstring to the end of its paragraph. A decision is made in one
  place: each id appears once in ``falign/``.
* **Here**, :data:`REGISTRY` maps each id to its topic (data, model, training, evaluation) and what the
  paper says about it, or that it is silent.

:func:`deviations` gives a chapter's ledger (both halves, with file:line) for the book's Deviations
section; :func:`problems` lists every mismatch (a tagged comment without an entry, an entry without a
comment, a ``Decision`` without an id, an id made in two places), and the tests require none. A
mention of the marker in prose is written in backticks (````Decision````) and is not a decision.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tokenize
from pathlib import Path

import pandas as pd

from falign.kit import paths

TOPICS = ("data", "model", "training", "evaluation")
PACKAGE = paths.ROOT / "falign"

_ID = re.compile(r"[a-z][a-z0-9]*(?:\.[a-z0-9][a-z0-9-]*)+")
# A marker: the word, not preceded by a backtick or a letter (prose mentions are in backticks).
_TAG = re.compile(r"(?<![`\w])Decision\s*\[(?P<id>[^\]\n]*)\]\s*:?")
_BARE = re.compile(r"(?<![`\w])(?:Decision\b(?!\s*\[)|Decisions\s*(?:\([^)\n]*\))?\s*:)")
_RULE = re.compile(r"^[\s\-=#~*_]*$")  # a separator comment (# -----) ends a decision's text


@dataclasses.dataclass(frozen=True)
class Deviation:
    """A registry entry: ``topic`` (one of :data:`TOPICS`), what ``paper`` says (or that it is silent),
    and ``chapters`` beyond the id's own (a shared module's decision, e.g. the 300-W protocol)."""

    topic: str
    paper: str
    chapters: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Found:
    """A tagged decision in the code: its id, file (relative to the repository), line and text."""

    id: str
    path: str
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


D = Deviation
REGISTRY: dict[str, Deviation] = {
    # ---- PIFA: falign/papers/pifa/model.py ------------------------------------------------------------
    "pifa.camera-entries": D("model", "Eq. 4 writes the camera as eight entries m1..m8 of M; whether the network "
                             "regresses them directly or through pose angles, and whether M's rows stay "
                             "orthogonal, is not said."),
    "pifa.parameter-units": D("model", "The last FC layer has 236 outputs (Table 1); in what units M and p are "
                              "regressed (any normalisation of the update) is not given."),
    "pifa.initial-params": D("model", "The input includes 'an initial estimation of the parameter P^0' (Sec. 3.2) "
                             "from the given box; how the mean face is placed in the box is not given "
                             "(Table 3: initial NME 25.8%)."),
    "pifa.mask1-width": D("model", "Eq. 11: a Gaussian of the distance to the nose tip, standardised; sigma_n is "
                          "not given (Fig. 4 shows positive values in the middle of the face, negative on the "
                          "contour)."),
    "pifa.mask2": D("model", "Fig. 8: mask 2 has 'five positive areas, i.e., the eyes, nose tip and two lip "
                    "corners', standardised; no formula or widths."),
    "pifa.vis-sigma": D("model", "Eq. 9-10: a Gaussian-weighted average over the vertices near each pixel; sigma "
                        "and the neighbourhood D(u, v) are not given."),
    "pifa.table8-split": D("model", "Table 8 tests 4 blocks x 3 conv layers and 3 x 4; Table 1 gives filters only "
                           "for 6 blocks x 2."),
    "pifa.block-padding": D("model", "Blocks 2-6 take 57x57 input (Sec. 4.1); conv padding and biases are not "
                            "given (each conv is followed by BN and ReLU, Sec. 3.2)."),
    "pifa.dropout": D("model", "The first FC layer is followed by ReLU and dropout (Sec. 3.2); the rate is not "
                      "given."),
    "pifa.fc-input": D("model", "No pooling before the FC layers is mentioned: the first FC layer (800 units) "
                       "reads the whole 57x57 feature map of its block."),
    "pifa.visibility": D("model", "Landmark visibility is estimated from the fitted 3D shape and pose (Sec. 3.1); "
                         "the test is not stated."),
    "pifa.loss-convention": D("training", "Eq. 6-7 are 'Euclidean losses' (Caffe); the 1/2 factor, the reduction "
                              "over entries, and whether each block's loss reaches earlier blocks through "
                              "P^{i-1} are not stated ('joint optimization ... through backpropagation')."),
    "pifa.table8-losses": D("training", "Eq. 6 on blocks 1-3, Eq. 7 on blocks 4-6 and block weights 1..6 (Sec. 4) "
                            "are given for six blocks only; Table 8's 4- and 3-block networks get no loss split."),
    "pifa.last-fc-init": D("model", "The network is trained 'from scratch' (Sec. 4); no initialisation is given."),
    # ---- PIFA: falign/papers/pifa/experiment.py (drafted; the comments there still need these tags) -----
    "pifa.optimizer": D("training", "Sec. 4: SGD (Caffe), momentum 0.99, weight decay 0.005, learning rate 1e-6 "
                        "'decreased to 5e-6 and 1e-7 after 20 and 29 epochs' (5e-6 is an increase: "
                        "self-contradictory), 33 epochs."),
    "pifa.box": D("data", "AFLW's and AFW's given boxes initialise the algorithm and are cropped and resized "
                  "to 114x114 (Sec. 4.1); NME divides by sqrt(w h) of that box."),
    "pifa.box-noise": D("data", "20 variations per training image by adding noise to the location, width and "
                        "height of the box (Sec. 4.1); the magnitude is not given."),
    "pifa.budget": D("training", "Every network, the ablations of Tables 6-8 included, trains 33 epochs on the 20 "
                     "box variations of every training image (Sec. 4); one run each, no seeds reported."),
    "pifa.validation": D("training", "No validation set: a fixed schedule of 33 epochs (Sec. 4)."),
    "pifa.sdm-baseline": D("evaluation", "Baselines are quoted from their papers (Tables 2, 4, 5; SDM [41] in "
                           "Table 5 on 300-W); none is run on the paper's protocol."),
    "pifa.fig7-weights": D("evaluation", "Fig. 7 plots 'the average of the filter weights' per input type; "
                           "signed average or magnitude is not said."),
    "pifa.table5-analogue": D("evaluation", "Table 5 trains on 300-W (3,148 images, 68 points) and reports "
                              "inter-ocular NME on common, challenging and full."),
    "pifa.noise-study": D("evaluation", "Sec. 4.3 adds '5% noise' to the FC parameters of one block at a time; "
                          "the kind of noise is not given."),
    # ---- RCSR: falign/papers/rcsr/model.py -------------------------------------------------------------
    "rcsr.initial-noise": D("data", "Sec. 3.1.1: 'the initial shape is sampled several times by adding noise "
                            "to the mean shape'; the noise is not described."),
    "rcsr.patches": D("model", "Shape-indexed patches around the landmarks (Sec. 3.2); their size and sampling "
                      "are not given."),
    "rcsr.cnn-width": D("model", "The CNNs' widths: SRCNN 64/32 (Eq. 9), LeNet 20/50, FAUC 64/128/256 "
                        "(Sec. 5.2)."),
    "rcsr.srcnn-padding": D("model", "Eq. 9 gives SRCNN's W1 9x9x64, W2 1x1x32, W3 5x5 and the extra 3x3 "
                            "layers of Fig. 5; padding is not given."),
    "rcsr.lenet": D("model", "LeNet [56] without its classifier (Fig. 9): two 5x5 convs (20, 50) with 2x2 "
                    "max-pooling; no activations are listed."),
    "rcsr.fauc-padding": D("model", "FAUC [55] (Fig. 9) was designed for 96x96 faces; how it applies to "
                           "landmark patches is not said."),
    "rcsr.stacking": D("model", "'we stack the feature maps of the 68 landmarks' (Sec. 4.2); the axis is not "
                       "stated."),
    "rcsr.hog": D("model", "SDM and 'traditional GRU + HOG' use HOG at the landmarks (Sec. 5.1); cells, "
                  "blocks and orientations are not given."),
    "rcsr.memory": D("model", "The ConvGRU's memory channels and the traditional GRU's units are not given; Table 4 "
                     "compares the two regressors (Sec. 5.1) without saying at what size."),
    "rcsr.head": D("model", "An fc layer maps the memory to the shape increment h_t (Fig. 2; 1-3 layers in "
                   "Fig. 5); its widths, initialisation and output units are not given."),
    "rcsr.input": D("model", "The CNN's input normalisation is not given."),
    "rcsr.dense-features": D("model", "F(I, h) applies the CNN to the patches around the landmarks (Sec. 3.2); how "
                             "it is computed is not said."),
    "rcsr.patch-gradient": D("training", "The CNN and the recurrent module are trained jointly, end to end (Sec. 3); "
                             "gradients through the patch positions are not discussed."),
    "rcsr.loss-scale": D("training", "Eq. 8 sums the squared pixel errors over faces and steps, weighted by w_t."),
    "rcsr.loss-weights": D("training", "Sec. 3.1.1: w_t = 10^(t/T); Sec. 4.4 prints 10^w with w evenly spaced in "
                           "[-2, 2] and then says the weights follow Sec. 3.1.1."),
    "rcsr.stopping": D("evaluation", "Sec. 4.3: 'dividing the l2 norm of the shape increment with the distance "
                       "between the outer corners of the eyes', stop below 0.01, at most 13 steps; whether the "
                       "norm is of the whole 2N-vector or per point, and whose eye corners (no ground truth at "
                       "test time), is not stated."),
    # ---- RCSR: falign/papers/rcsr/experiment.py (drafted; the comments there still need these tags) -----
    "rcsr.optimizer": D("training", "Sec. 4.1: SGD, learning rate 0.01 halved every 10 epochs, batch 204, 200 "
                        "epochs, then 200 more on new noisy replicates."),
    "rcsr.box-noise": D("data", "Training data replicated 3 times with noise on the boxes, plus mirrored copies "
                        "(Sec. 4.1); the magnitude is not given."),
    "rcsr.budget": D("training", "Every model, ablations included, trains with the schedule of Sec. 4.1 (200 + 200 "
                     "epochs); one run each, no seeds reported."),
    "rcsr.validation": D("data", "No validation set: all 3,148 training images are used for training (Sec. 4.1)."),
    "rcsr.gamma": D("evaluation", "Sec. 4.3 sets gamma to 0.01, 'the normalized shape increment when the minimum "
                    "error is achieved', read off the common, challenging and full test sets."),
    "rcsr.baseline-width": D("model", "LeNet and FAUC keep their published widths (Sec. 5.2)."),
    "rcsr.fig7-weights": D("training", "Sec. 4.4 trains RCSR5/10/20/30 with weights 10^w, w evenly spaced in "
                           "[-2, 2], and says they follow Sec. 3.1.1 (10^(t/T))."),
    # ---- CCNN: falign/papers/ccnn/model.py (the paper's side drafted from those comments) -------------------
    "ccnn.frame": D("model", "Targets are relative to the window (Eq. 9); the unit of the coordinates is not "
                    "stated."),
    "ccnn.standardise": D("data", "Sec. 4.1: inputs are standardised by 'minus the mean and dividing the "
                          "variance'; over what (each input or the data set) is not said."),
    "ccnn.en1-nm1-region": D("data", "Sec. 3.1.1: EN1 sees the 'eyes and nose' and NM1 the 'nose and mouth' "
                             "parts of the face box; no bounds are given, and Table 2 gives all three stage-1 "
                             "CNNs a 39x39 input."),
    "ccnn.fc-relu": D("model", "ReLU is named after the conv layers (Sec. 3.3); the fc layers' activations "
                      "are not listed."),
    "ccnn.dropout": D("model", "Sec. 3.3: 'the fully connected layers use dropout', rate 0.25; where exactly "
                      "is not said."),
    "ccnn.absolute": D("model", "Fig. 5 compares 'absolute positioning' (windows-) with relative positioning "
                       "(windows+); absolute positioning is not defined."),
    "ccnn.window-extent": D("model", "Eq. 5: windows_i = a*h, b*w 'expanded to the top, bottom, left and right "
                            "of the anchor points': the whole side or the extent on each side is ambiguous."),
    "ccnn.shake-unit": D("training", "Sec. 3.1.2: shake ~ N(0, 1e-4) for the windows of stage 2 (stage 3 the "
                         "same); no unit, and variance or std is not said."),
    "ccnn.fig6-stage": D("training", "Fig. 6 reports shake-/shake+ 'in the first stage', whose input "
                         "Sec. 3.1.1 does not shake."),
    "ccnn.weight-decay": D("training", "Eq. 6 adds (1/2) eta ||W||^2 to the loss; eta is not given."),
    "ccnn.sampling": D("data", "The windows are resized to 15x15 (Fig. 3); the paper does not say how."),
    "ccnn.order": D("model", "Sec. 3.2.1 lists stage 2's networks point by point (LE21, LE22, RE21, ...) while "
                    "Eq. 5 numbers the windows size by size."),
    "ccnn.loss": D("training", "Eq. 6 sums over 'the points' and 'the samples' without saying whether each "
                   "network is trained on its own output or on the Eq. 4 average."),
    # ---- CCNN: falign/papers/ccnn/experiment.py -------------------------------------------------------------
    "ccnn.augmentation": D("data", "Sec. 4.1: 'the left 15-degree and right 12-degree center rotation' (Eq. 8) and "
                           "a horizontal flip turn 10,000 training faces into 60,000; fixed angles or a range, "
                           "and the centre of what, are not said."),
    "ccnn.crop": D("data", "Stage 1 resizes the face box to 39x39x3 (Table 1); the windows of stages 2-3 are cut "
                   "from the image (Fig. 1); the resolution the images are kept at is not given."),
    "ccnn.budget": D("training", "Batch size and iterations are 'selected according to the actual situation' "
                     "(Sec. 3.3); none is given."),
    "ccnn.lr-schedule": D("training", "Sec. 3.3: initial learning rate 5e-3, 'every 100 iterations, the learning "
                          "rate decays to 90% of the original'."),
    "ccnn.momentum": D("training", "Sec. 3.3, Eq. 7: SGD, W_{t+1} = W_t - lambda dE/dW_t (no momentum term)."),
    "ccnn.eta": D("training", "Eq. 6: (1/2) eta ||W||^2 on 'the weight matrix W'; eta is not given."),
    "ccnn.windows-arm": D("evaluation", "Fig. 5: 'windows-' uses absolute positioning, 'windows+' relative "
                          "positioning, in the first stage; what windows- reads and predicts in is not described."),
    "ccnn.baseline": D("evaluation", "Fig. 7 compares with Sun et al. [22] and Chen Rui [13] as published; their "
                       "per-point values are not legible and neither network is retrained."),
    "ccnn.resnet": D("evaluation", "Table 3 lists ResNet18 (44.59 MB) and ResNet34 (85.15 MB) by size only; no "
                     "input, training or accuracy is given for them."),
    "ccnn.error": D("evaluation", "Figs. 4-7 report a 'test error' in % without defining it."),
    "ccnn.speed-claim": D("evaluation", "Sec. 4.2: 'If we face tasks with very high real-time requirements, then "
                          "only the first 2 layers of cascaded convolutional neural networks are sufficient.'"),
    # ---- MSRRN: falign/papers/msrrn/model.py (Eq. 1-6 and Fig. 2 are lost in the available text) ------------
    "msrrn.scales": D("model", "The face is rescaled to 200, 100 and 50 pixels and T = 3 ('we downscale three "
                      "times'), coarse to fine; which stage reads which scale is in the lost Eq. 5."),
    "msrrn.network": D("model", "Eq. 2 (lost) and Fig. 2 (lost): 'a set of convolutional layer, pooling layer, "
                       "and fully connected layers', conv, max pooling and ReLU; no sizes."),
    "msrrn.patch-combine": D("model", "'shape-index local patches' phi_i feed the network; how the 68 patches are "
                             "combined is not said."),
    "msrrn.patch-size": D("model", "The patch size is not given."),
    "msrrn.init-cnn": D("model", "'we further propose a CNN, which aims to predict a initial shape'; its layers, "
                        "input and training are not described."),
    "msrrn.gradient-average": D("training", "'the network parameters W and b are updated by averaging the "
                                "gradients of different stages' (Eq. 6, lost)."),
    "msrrn.patch-gradient": D("training", "The network is trained 'end-to-end' on the unrolled stages; whether "
                              "gradients flow through the patch positions is not said."),
    "msrrn.input": D("model", "The input's colour and normalisation are not given."),
    "msrrn.loss": D("training", "Eq. 5 (lost): the sum over stages of ||S* - S^t||^2 plus lambda ||W||^2; how the "
                    "initial-shape CNN is trained is not said."),
    # ---- MSRRN: falign/papers/msrrn/experiment.py -------------------------------------------------------------
    "msrrn.budget": D("training", "10,000 iterations of SGD in 10 h on a GTX 1080; batch size not given."),
    "msrrn.validation": D("training", "No validation set: a fixed 10,000 iterations on all 3,148 training "
                          "images."),
    "msrrn.detector": D("data", "'we detected the face bounding box by the DLIB image processing library' for "
                        "each face to be evaluated; which detector and what is done when it misses are not said."),
    "msrrn.missed-faces": D("data", "Not addressed: dlib's frontal detector misses faces in 300-W (profiles, "
                            "occlusions)."),
    "msrrn.train-boxes": D("data", "Only the faces 'to be evaluated' are said to be detected with dlib."),
    "msrrn.crop": D("data", "'Having obtained the cropped face images, we rescaled them' to 200, 100 and 50 "
                    "pixels; the crop's margin is not given, and the coordinates are normalised to [0, 1]."),
    "msrrn.augmentation": D("data", "'we augmented the training samples by adding per-pixel Gaussian noise of "
                            "sigma = 0.5, flipping and finally with random in-plane rotations +-15 degrees from a "
                            "uniform distribution'; online or offline, and how many copies, is not said."),
    "msrrn.noise-unit": D("data", "sigma = 0.5 without a unit."),
    "msrrn.optimizer": D("training", "Stochastic gradient descent (Eq. 6, lost); learning rate and batch size not "
                         "given."),
    "msrrn.lambda": D("training", "lambda of Eq. 5 is 'the hyper-parameter to balance' the two terms; its value "
                      "is not given."),
    "msrrn.schedule": D("training", "No learning-rate schedule is given."),
    "msrrn.sdm": D("evaluation", "The paper compares with SDM's published numbers (Table 1) and says the learned "
                   "features beat handcrafted ones (Fig. 3); it does not run SDM itself."),
    # ---- CFDRNN: falign/papers/cfdrnn/model.py -----------------------------------------------------------------
    "cfdrnn.heatmap-grid": D("model", "Eq. 1: L^ = s x the index of the heat-map's maximum; which image point a "
                             "heat-map pixel stands for (its corner or its centre) is not said."),
    "cfdrnn.argmax-ties": D("model", "Eq. 1 takes 'the maximum point in each one of the heat-map images'; ties "
                            "(e.g. an all-zero map) are not discussed."),
    "cfdrnn.padding": D("model", "Tables 2-4 give kernels and strides, not padding; Sec. 4.1 says the resizer's "
                        "wide part keeps the product sizes and Sec. 4.2 that the HML has 'no reduction'."),
    "cfdrnn.width": D("model", "Tables 2-4 fix every layer's channels (64 ... 1024); the paper has one network."),
    "cfdrnn.bn-order": D("model", "Sec. 5.1: 'In all of the network's linear layers (conv layers), we use the batch "
                         "normalization method'; where it sits relative to the ReLU, and conv biases, are not said."),
    "cfdrnn.small-maps": D("model", "Table 4 is written for 64x64 heat-maps (a 256x256 input); smaller inputs are "
                           "not considered."),
    "cfdrnn.lml-relu": D("model", "Table 4 lists convs and pools only, no ReLU rows (Tables 2 and 3 list a ReLU "
                         "after every conv)."),
    "cfdrnn.delta-head": D("model", "Sec. 5.1 puts batch normalisation after every conv layer, which includes "
                           "Table 4's 1x1x136 output layer."),
    "cfdrnn.e0": D("model", "Table 4 row 7 reads Ej (+) Ej-1; the first branch has no E0 and the text does not "
                   "say what it reads instead."),
    "cfdrnn.second-instance": D("model", "'a double instance of the resizer block' (Sec. 4.1); whether the two "
                                "instances share weights is not said; the second has no loss of its own."),
    "cfdrnn.init": D("model", "Weight initialisation is not given (MatConvNet 1.0-beta23)."),
    "cfdrnn.loss-scale": D("training", "'the L2 loss' for the heat-maps (Sec. 4.2); its reduction (sum or mean, "
                           "over pixels and the batch) is not given."),
    "cfdrnn.delta-weight": D("training", "Each LML branch has a loss on dLj (Fig. 3, Eq. 2-3); its form and its "
                             "weight against the heat-map losses are not given."),
    # ---- CFDRNN: falign/papers/cfdrnn/experiment.py ------------------------------------------------------------
    "cfdrnn.crop": D("data", "'RGB images with size of 256 x 256' (Sec. 5.1); how the face is cut out (box, "
                     "margin) is not said."),
    "cfdrnn.augmentation": D("data", "'color change of the image, rotation at small angles, enlargement, "
                             "reduction, and spatial displacements' (Sec. 5.1); no magnitudes, and whether online "
                             "or offline is not said."),
    "cfdrnn.budget": D("training", "256x256 input, batch 2, 1,000 epochs on 11,007 images (8,507 trained, 2,500 "
                       "validation) on a Titan X (Sec. 5.1-5.2)."),
    "cfdrnn.optimizer": D("training", "Learning rate 1e-5 for 30 epochs, 5e-6 for 5, then 1e-6 to epoch 1,000 "
                          "(Sec. 5.1); the optimiser is not named (MatConvNet's cnn_train defaults to SGD with "
                          "momentum 0.9)."),
    "cfdrnn.comparator": D("evaluation", "The abstract's ratios (-45% failure, +11.5% AUC0.08 on the private set, "
                           "13% lower challenging NME) are against DAN-Menpo [20], a different published method."),
    "cfdrnn.claim-subset": D("evaluation", "The paper reports no ablation of its design."),
    # ---- shared: falign/kit/precision.py ----------------------------------------------------------------
    "precision.per-machine": D("training", "Every paper trains on GPUs (Caffe, MatConvNet or PyTorch); PIFA "
                               "says float32 (Sec. 4), the others do not state the precision.",
                               chapters=("pifa", "rcsr", "ccnn", "msrrn", "cfdrnn")),
    # ---- shared: falign/measure/protocol300w.py -------------------------------------------------------------
    "protocol300w.full-set": D("evaluation", "300-W's full set is common + challenging (689 images); the papers "
                               "report its mean without saying whether faces are pooled or subset means "
                               "averaged.", chapters=("rcsr", "cfdrnn", "msrrn")),
    # ---- compare: falign/chapters/compare.py (issue 15: one protocol for every method) --------------
    "compare.cpu": D("evaluation", "The issue asks for CPU latency at batch 1 and throughput; it names no device "
                     "for the accuracy runs."),
    "compare.boxes": D("data", "Every method on 'the same faces with the same boxes'; which boxes is not said, and "
                       "dlib's ERT was trained on dlib's own HOG detector boxes."),
    "compare.shared-points": D("evaluation", "Methods with other point sets are 'compared on the points they "
                               "share'; the normaliser for a 5-point row is not said (CCNN's paper uses the "
                               "eye-centre distance of its own 5 points)."),
    "compare.pifa-projection": D("model", "PIFA (Sec. 3) regresses a 3DMM's camera and shape and reads off 34 "
                                 "points; the issue asks for 'PIFA's 68-point projection'."),
    "compare.sdm-fit": D("training", "SDM + HOG is 'already in the code' (RCSR's Table 4 row 1); no chapter ships "
                         "its weights."),
    "compare.mean-shape": D("model", "A mean-shape row is asked for; which mean (training set, scheme, placement) "
                            "is not said."),
    "compare.found": D("evaluation", "Report how many faces dlib's HOG detector finds per subset; what counts as "
                       "finding the face (versus a false detection) is not said."),
    "compare.sweep-neutral": D("data", "Sweep one factor 'with the others held at a neutral setting'; the "
                               "neutral values are not given."),
    "compare.coverage": D("data", "Sweep 'occluder coverage'; SynthFace's occluders have a random size, set "
                          "by no field."),
    "compare.sweep-norm": D("evaluation", "The sweeps' error measure is not given; yaw runs to 90 degrees, where "
                            "the outer eye corners nearly coincide in the image."),
}
"""Every decision's registry entry: id -> :class:`Deviation`. The ids under "drafted" are the lead's
to tag in ``falign/kit/chapter/``; until then :func:`problems` lists them."""


# --------------------------------------------------------------------------------------------------
# The scanner
# --------------------------------------------------------------------------------------------------
def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(paths.ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def _clean(text: str) -> str:
    return " ".join(text.split()).rstrip("\"'").strip()


def _comment_body(token: str) -> str:
    return token.lstrip("#").strip()


def scan_source(source: str, path: str = "<string>") -> tuple[list[Found], list[str]]:
    """Tagged decisions and problems (bare or malformed markers) in one file's comments and strings.

    A comment's decision runs on over the following comment lines that start in the same column
    (until a blank or separator comment, code, or another marker); a docstring's to the end of its
    paragraph (a blank line), the next marker or the end of the string."""
    found, problems = [], []
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    comments = {t.start[0]: t for t in tokens if t.type == tokenize.COMMENT}
    code_lines = {t.start[0] for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE,
                                                               tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)}
    for t in tokens:
        if t.type not in (tokenize.COMMENT, tokenize.STRING):
            continue
        text, first = t.string, t.start[0]
        markers = sorted([(m.start(), "tag", m) for m in _TAG.finditer(text)]
                         + [(m.start(), "bare", m) for m in _BARE.finditer(text)], key=lambda x: x[0])
        for k, (start, kind, m) in enumerate(markers):
            line = first + text.count("\n", 0, start)
            where = f"{path}:{line}"
            if kind == "bare":
                problems.append(f"{where}: Decision without an id (tag it 'Decision [<chapter>.<name>]:')")
                continue
            id_ = m.group("id").strip()
            if not _ID.fullmatch(id_):
                problems.append(f"{where}: malformed decision id [{id_}]; use '<chapter>.<name>' "
                                "(lowercase letters, digits, '-')")
                continue
            end = markers[k + 1][0] if k + 1 < len(markers) else len(text)
            body = text[m.end():end]
            if t.type == tokenize.COMMENT:
                body = _comment_body("#" + body) + "\n" + _continuation(comments, code_lines, t)
            if text[:start].rstrip().endswith("("):  # "(Decision [x]: ...)" ends at its parenthesis
                body = _until_close(body)
            elif t.type == tokenize.STRING:
                body = re.split(r"\n\s*\n", body)[0]
            found.append(Found(id_, path, line, _clean(body)))
    return found, problems


def _until_close(text: str) -> str:
    """The text up to the parenthesis that closes an already open one."""
    depth = 1
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth == 0:
            return text[:i]
    return text


def _continuation(comments: dict, code_lines: set, token) -> str:
    """The text of the comment lines that continue ``token``'s comment."""
    parts, line, column = [], token.start[0] + 1, token.start[1]
    while line in comments and line not in code_lines and comments[line].start[1] == column:
        body = _comment_body(comments[line].string)
        if not body or _RULE.match(body) or _TAG.search(body) or _BARE.search(body):
            break
        parts.append(body)
        line += 1
    return " ".join(parts)


def _files(root: Path | None) -> list[Path]:
    root = PACKAGE if root is None else Path(root)
    me = Path(__file__).resolve()
    return sorted(p for p in root.rglob("*.py") if p.resolve() != me)


def scan(root: str | Path | None = None) -> tuple[list[Found], list[str]]:
    """Every tagged decision under ``root`` (default: the ``falign`` package, this file excepted) and
    every problem with a marker, plus an id made in more than one place."""
    found, problems = [], []
    for path in _files(root):
        f, p = scan_source(path.read_text(encoding="utf-8"), _relative(path))
        found += f
        problems += p
    first: dict[str, Found] = {}
    for f in found:
        if f.id in first:
            problems.append(f"{f.where}: decision [{f.id}] is also made at {first[f.id].where}; make it in one "
                            "place")
        first.setdefault(f.id, f)
    return found, problems


def problems(root: str | Path | None = None, registry: dict[str, Deviation] | None = None) -> list[str]:
    """Everything that keeps the ledger from being complete, one line each (file:line first where
    there is one): marker problems (:func:`scan`), tagged comments without a registry entry, entries
    without a comment, and entries with an unknown topic."""
    registry = REGISTRY if registry is None else registry
    found, out = scan(root)
    tagged = {f.id for f in found}
    out += [f"{f.where}: decision [{f.id}] has no entry in falign/kit/decisions.py REGISTRY"
            for f in found if f.id not in registry]
    out += [f"falign/kit/decisions.py: REGISTRY entry [{i}] has no 'Decision [{i}]' comment in the code"
            for i in registry if i not in tagged]
    out += [f"falign/kit/decisions.py: REGISTRY entry [{i}] has topic {d.topic!r}, not one of {TOPICS}"
            for i, d in registry.items() if d.topic not in TOPICS]
    return out


# --------------------------------------------------------------------------------------------------
# The ledger
# --------------------------------------------------------------------------------------------------
def _belongs(id_: str, chapter: str, entry: Deviation | None) -> bool:
    return id_.split(".")[0] == chapter or (entry is not None and chapter in entry.chapters)


COLUMNS = ("id", "topic", "the paper", "our decision", "where")


def deviations(chapter: str, root: str | Path | None = None) -> pd.DataFrame:
    """A chapter's deviations ledger: one row per decision (its registry entry joined with its comment),
    ordered by topic (data, model, training, evaluation) then by where the code makes it. An entry
    without a comment, or a comment without an entry, still gets a row that says so."""
    found, _ = scan(root)
    by_id = {f.id: f for f in found}
    ids = [i for i in REGISTRY if _belongs(i, chapter, REGISTRY[i])]
    ids += [f.id for f in found if f.id not in REGISTRY and _belongs(f.id, chapter, None)]
    rows = []
    for i in ids:
        entry, f = REGISTRY.get(i), by_id.get(i)
        rows.append({"id": i, "topic": entry.topic if entry else "?",
                     "the paper": entry.paper if entry else "(no registry entry)",
                     "our decision": f.text if f else "(no Decision comment in the code yet)",
                     "where": f.where if f else "", "_order": (TOPICS.index(entry.topic) if entry and entry.topic
                                                               in TOPICS else len(TOPICS),
                                                               f.path if f else "~", f.line if f else 0)})
    df = pd.DataFrame(rows, columns=[*COLUMNS, "_order"])
    return df.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def decisions_in(path: str | Path) -> dict[str, str]:
    """id -> decision text of the decisions made in one source file, in file order."""
    path = Path(path)
    found, _ = scan_source(path.read_text(encoding="utf-8"), _relative(path))
    return {f.id: f.text for f in found}


def write(run, chapter: str, caption: str = ""):
    """``deviations.csv`` through ``run.table`` (:class:`falign.kit.report.Run`); returns the styled table."""
    caption = caption or (f"Deviations of the {chapter} chapter: each decision where the paper is silent, "
                          "ambiguous or self-contradictory, and where the code makes it")
    return run.table(deviations(chapter), "deviations", caption=caption)
