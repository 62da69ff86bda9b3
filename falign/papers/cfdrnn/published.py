"""Published numbers of CFDRNN: S. Mahpod, R. Das, E. Maiorana, Y. Keller, P. Campisi, "Facial
Landmark Point Localization using Coarse-to-Fine Deep Recurrent Neural Network", arXiv 2018,
transcribed once, exactly as printed.

Every table is a small function returning a :class:`pandas.DataFrame`; :data:`TABLES` maps the id used
in the book (``"table5"``) to it and :data:`META` says what each number means; every number has a
stable id for :func:`number` (``"table5/inter-ocular-cfdrnn/challenging"``, scheme in
:mod:`falign.papers`). All seven tables are legible in the extracted text ("-" = not reported, NaN
here). Figures 5-10 survive only as captions; the CED curves carry no printed numbers.

Metrics (Sec. 6.2): the mean point-to-point error over the 68 points, normalised either by the
inter-ocular distance (outer eye corners) or by the inter-pupil distance (eye centres), printed in %.
Tables 5 and 6 have one block per normaliser, so each row carries a ``normaliser`` column and the
block is part of its id. AUC0.08 is the area under the CED up to 0.08 divided by 0.08 and a failure is
an inter-ocular error of 0.08 "or greater" (>= 0.08); Table 7 prints both in %.

Data (Sec. 5.2, 6.1): 11,007 training images (LFPW and Helen train sets, AFW, XM2VTS, Menpo train),
2,500 of them held out for validation; tests common (LFPW + Helen test, 554), challenging (iBUG, 135),
300-W public (689) and 300-W private (600 = 300 indoor + 300 outdoor).

Inconsistencies in the text, kept as printed and listed in :func:`notes`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

PAPER = "cfdrnn"
CITATION = ("S. Mahpod, R. Das, E. Maiorana, Y. Keller, P. Campisi. Facial Landmark Point Localization "
            "using Coarse-to-Fine Deep Recurrent Neural Network. arXiv:1805.01760, 2018.")

INTER_PUPIL = "inter-pupil"
INTER_OCULAR = "inter-ocular"
NORMALISERS = {INTER_PUPIL: "distance between the eye centres",
               INTER_OCULAR: "distance between the outer eye corners"}
NME = "NME (%, normaliser in the row's 'normaliser' column)"
NME_IOD = "NME (%, normalised by the outer-eye-corner distance)"
AUC_FAIL = "AUC0.08 (%) and failure rate (%, inter-ocular error >= 0.08)"
NA = np.nan

_TRAIN_4 = "LFPW, Helen, AFW, 300-W"


def table1() -> pd.DataFrame:
    """Table 1: overview of the state of the art, NME (%) as each paper published it. The table names
    no normaliser; ``normaliser`` is the block of Table 5 or 6 in which the same number reappears
    ("not stated" where it does not). ``name`` is the method's short name as Tables 5-7 print it
    (Ranjan et al.'s two networks as the text names them)."""
    p, o, n = INTER_PUPIL, INTER_OCULAR, "not stated"
    ibug, common, full = "i-bug", "Helen+LFPW", "i-bug+Helen+LFPW"
    private = "300-W private test set"
    rows = [
        ("Ren et al. [18]", "LBF", _TRAIN_4, ibug, 68,
         "Local binary features and global linear regression", 11.98, p),
        ("Ren et al. [18]", "LBF", _TRAIN_4, common, 68,
         "Local binary features and global linear regression", 4.95, p),
        ("Ren et al. [18]", "LBF", _TRAIN_4, full, 68,
         "Local binary features and global linear regression", 6.32, p),
        ("Ranjan et al. [5]", "HyperFace", "AFLW", ibug, 68, "HyperFace", 10.88, n),
        ("Ranjan et al. [5]", "HF-ResNet", "AFLW", ibug, 68, "HF-ResNet", 8.18, n),
        ("Ranjan et al. [5]", "HyperFace", "AFLW", "AFLW", 21, "HyperFace", 4.26, n),
        ("Ranjan et al. [5]", "HF-ResNet", "AFLW", "AFLW", 21, "HF-ResNet", 2.93, n),
        ("Zhu et al. [17]", "CFSS", _TRAIN_4, ibug, 68, "CFSS", 9.98, p),
        ("Zhu et al. [17]", "CFSS", _TRAIN_4, common, 68, "CFSS", 4.73, p),
        ("Zhu et al. [17]", "CFSS", _TRAIN_4, full, 68, "CFSS", 5.76, p),
        ("Zhu et al. [17]", "CFSS", _TRAIN_4, "LFPW", 68, "CFSS", 4.87, p),
        ("Zhu et al. [17]", "CFSS", _TRAIN_4, "Helen", 68, "CFSS", 4.63, p),
        ("Zhang et al. [6]", "TCDCN", "MAFL, AFLW, COFW, Helen, 300-W", ibug, 68, "TCDCN", 8.60, p),
        ("Zhang et al. [6]", "TCDCN", "MAFL, AFLW, COFW, Helen, 300-W", common, 68, "TCDCN", 4.80, p),
        ("Zhang et al. [6]", "TCDCN", "MAFL, AFLW, COFW, Helen, 300-W", full, 68, "TCDCN", 5.54, p),
        ("Zhang et al. [6]", "TCDCN", "MAFL, AFLW, COFW, Helen, 300-W", "Helen", 68, "TCDCN", 4.60, p),
        ("Xiao et al. [39]", "RAR", _TRAIN_4, ibug, 68, "RAR", 8.35, p),
        ("Xiao et al. [39]", "RAR", _TRAIN_4, common, 68, "RAR", 4.12, p),
        ("Xiao et al. [39]", "RAR", _TRAIN_4, full, 68, "RAR", 4.94, p),
        ("Xiao et al. [39]", "RAR", _TRAIN_4, "LFPW", 68, "RAR", 3.99, o),
        ("Xiao et al. [39]", "RAR", _TRAIN_4, "Helen", 68, "RAR", 4.30, o),
        ("Lai et al. [54]", "DRR", _TRAIN_4, ibug, 68, "Deep recurrent regression network", 8.29, p),
        ("Lai et al. [54]", "DRR", _TRAIN_4, common, 68, "Deep recurrent regression network", 4.07, p),
        ("Lai et al. [54]", "DRR", _TRAIN_4, full, 68, "Deep recurrent regression network", 4.90, p),
        ("Lai et al. [54]", "DRR", _TRAIN_4, "LFPW", 68, "Deep recurrent regression network", 4.49, p),
        ("Lai et al. [54]", "DRR", _TRAIN_4, "Helen", 68, "Deep recurrent regression network", 4.02, p),
        ("Shao et al. [25]", "Shao et al.", "CelebA, 300-W, MENPO", ibug, 68,
         "Landmark heatmap & whole landmark regression", 8.03, p),
        ("Shao et al. [25]", "Shao et al.", "CelebA, 300-W, MENPO", common, 68,
         "Landmark heatmap & whole landmark regression", 4.45, p),
        ("Shao et al. [25]", "Shao et al.", "CelebA, 300-W, MENPO", full, 68,
         "Landmark heatmap & whole landmark regression", 5.15, p),
        ("Chen et al. [56]", "Chen et al.", "Helen, 300-W, MENPO", ibug, 68,
         "4-stage coarse-to-fine framework", 7.12, p),
        ("Chen et al. [56]", "Chen et al.", "Helen, 300-W, MENPO", common, 68,
         "4-stage coarse-to-fine framework", 3.73, p),
        ("Chen et al. [56]", "Chen et al.", "Helen, 300-W, MENPO", full, 68,
         "4-stage coarse-to-fine framework", 4.47, p),
        ("Kowalski et al. [20]", "DAN", _TRAIN_4, ibug, 68, "DAN", 7.57, p),
        ("Kowalski et al. [20]", "DAN", _TRAIN_4, common, 68, "DAN", 4.42, p),
        ("Kowalski et al. [20]", "DAN", _TRAIN_4, full, 68, "DAN", 5.03, p),
        ("Kowalski et al. [20]", "DAN", _TRAIN_4, private, 68, "DAN", 4.30, o),
        ("Kowalski et al. [20]", "DAN-Menpo", _TRAIN_4 + ", MENPO", ibug, 68, "DAN-Menpo", 7.05, p),
        ("Kowalski et al. [20]", "DAN-Menpo", _TRAIN_4 + ", MENPO", common, 68, "DAN-Menpo", 4.29, p),
        ("Kowalski et al. [20]", "DAN-Menpo", _TRAIN_4 + ", MENPO", full, 68, "DAN-Menpo", 4.83, p),
        ("Kowalski et al. [20]", "DAN-Menpo", _TRAIN_4 + ", MENPO", private, 68, "DAN-Menpo", 3.97, o),
        ("He et al. [57]", "Robust FEC-CNN", "LFPW, Helen, AFW, 300-W, MENPO", ibug, 68, "Robust FEC-CNN",
         6.56, p),
        ("Chen et al. [58]", "GAN", "LFPW, Helen, AFW, i-bug", private, 68, "GAN", 3.96, o),
    ]
    return pd.DataFrame(rows, columns=["paper", "name", "training", "test", "landmarks", "method", "NME",
                                       "normaliser"])


def _layers(rows: list[tuple]) -> pd.DataFrame:
    """A layer table: row number, IN, OUT, type, kernel (k for [k x k]), filters, stride."""
    return pd.DataFrame(rows, columns=["row", "in", "out", "type", "kernel", "filters", "stride"])


def table2() -> pd.DataFrame:
    """Table 2: the resizer block. Rows 1-14 reduce I0 by s = 4 to T0; row 15 gives D0 (1x1x68 of T0);
    rows 16-26 give H1. The dropout ratio 0.5 is from Sec. 5.1; "-" cells are NaN."""
    return _layers([
        (1, "I0", "", "conv", 3, 64, 1), (2, "", "", "relu", NA, NA, NA),
        (3, "", "", "conv", 3, 64, 1), (4, "", "", "relu", NA, NA, NA),
        (5, "", "", "m-pool", 2, NA, 2),
        (6, "", "", "conv", 3, 64, 1), (7, "", "", "relu", NA, NA, NA),
        (8, "", "", "conv", 3, 128, 1), (9, "", "", "relu", NA, NA, NA),
        (10, "", "", "m-pool", 2, NA, 2),
        (11, "", "", "conv", 3, 128, 1), (12, "", "", "relu", NA, NA, NA),
        (13, "", "", "conv", 3, 128, 1), (14, "", "T0", "relu", NA, NA, NA),
        (15, "T0", "D0", "conv", 1, 68, 1),
        (16, "T0", "", "conv", 9, 128, 1), (17, "", "", "relu", NA, NA, NA),
        (18, "", "", "conv", 9, 128, 1), (19, "", "", "relu", NA, NA, NA),
        (20, "", "", "conv", 1, 256, 1), (21, "", "", "relu", NA, NA, NA),
        (22, "", "", "conv", 1, 256, 1), (23, "", "", "relu", NA, NA, NA),
        (24, "", "", "dropout", NA, NA, NA),
        (25, "", "", "conv", 1, 68, 1), (26, "", "H1", "relu", NA, NA, NA),
    ])


def table3() -> pd.DataFrame:
    """Table 3: one branch of the recurrent heat-map level, D0 (+) Hj -> Hj+1 (stride 1 throughout)."""
    return _layers([
        (1, "D0 ⊕ Hj", "", "conv", 7, 64, 1), (2, "", "", "relu", NA, NA, NA),
        (3, "", "", "conv", 13, 64, 1), (4, "", "", "relu", NA, NA, NA),
        (5, "", "", "conv", 1, 128, 1), (6, "", "", "relu", NA, NA, NA),
        (7, "", "", "conv", 1, 68, 1), (8, "", "Hj+1", "relu", NA, NA, NA),
    ])


def table4() -> pd.DataFrame:
    """Table 4: one branch of the recurrent landmark level, D0 (+) Hj (+) Dr (+) Hr -> dLj; the
    previous branch's Ej-1 joins at row 7. The table prints no ReLU rows."""
    return _layers([
        (1, "D0 ⊕ Hj ⊕ Dr ⊕ Hr", "", "conv", 7, 64, 2), (2, "", "", "m-pool", 2, NA, 1),
        (3, "", "", "conv", 5, 128, 2), (4, "", "", "m-pool", 2, NA, 1),
        (5, "", "", "conv", 3, 256, 2), (6, "", "Ej", "m-pool", 2, NA, 1),
        (7, "Ej ⊕ Ej-1", "", "conv", 3, 512, 2), (8, "", "", "m-pool", 2, NA, 1),
        (9, "", "", "conv", 3, 1024, 2), (10, "", "", "m-pool", 2, NA, 1),
        (11, "", "ΔLj", "conv", 1, 136, 2),
    ])


def table5() -> pd.DataFrame:
    """Table 5: NME (%) on the 300-W public test set and its subsets (common 554, challenging 135,
    full 689), one block per normaliser."""
    p, o = INTER_PUPIL, INTER_OCULAR
    rows = [
        (p, "LBF [18]", 4.95, 11.98, 6.32),
        (p, "CFSS [17]", 4.73, 9.98, 5.76),
        (p, "TCDCN [6]", 4.80, 8.60, 5.54),
        (p, "RAR [39]", 4.12, 8.35, 4.94),
        (p, "DRR [54]", 4.07, 8.29, 4.90),
        (p, "Shao et al. [25]", 4.45, 8.03, 5.15),
        (p, "Chen et al. [56]", 3.73, 7.12, 4.47),
        (p, "DAN [20]", 4.42, 7.57, 5.03),
        (p, "DAN-Menpo [20]", 4.29, 7.05, 4.83),
        (p, "Robust FEC-CNN [57]", NA, 6.56, NA),
        (p, "CFDRNN", 4.55, 6.05, 4.85),
        (o, "MDM [19]", NA, NA, 4.05),
        (o, "k-cluster [34]", 3.34, 6.56, 3.97),
        (o, "DAN [20]", 3.19, 5.24, 3.59),
        (o, "DAN-Menpo [20]", 3.09, 4.88, 3.44),
        (o, "CFDRNN", 3.23, 4.24, 3.44),
    ]
    return pd.DataFrame(rows, columns=["normaliser", "method", "common", "challenging", "full"])


def table6() -> pd.DataFrame:
    """Table 6: NME (%) on the LFPW and Helen test sets and on the 300-W private set, one block per
    normaliser."""
    p, o = INTER_PUPIL, INTER_OCULAR
    rows = [
        (p, "CFSS [17]", 4.87, 4.63, NA),
        (p, "TCDCN [6]", NA, 4.60, NA),
        (p, "DRR [54]", 4.49, 4.02, NA),
        (p, "CFDRNN", 4.63, 4.51, 4.99),
        (o, "RAR [39]", 3.99, 4.30, NA),
        (o, "MDM [19]", NA, NA, 5.05),
        (o, "DAN [20]", NA, NA, 4.30),
        (o, "DAN-Menpo [20]", NA, NA, 3.97),
        (o, "GAN [58]", NA, NA, 3.96),
        (o, "CFDRNN", 3.30, 3.20, 3.49),
    ]
    return pd.DataFrame(rows, columns=["normaliser", "method", "LFPW", "Helen", "private"])


def table7() -> pd.DataFrame:
    """Table 7: AUC0.08 (%) and failure rate (%) on the 300-W public and private test sets,
    inter-ocular normalisation (failure: error >= 0.08)."""
    pub, pri = "300-W Public", "300-W Private"
    rows = [
        (pub, "ESR [12]", 43.12, 10.45),
        (pub, "SDM [16]", 42.94, 10.89),
        (pub, "CFSS [17]", 49.87, 5.08),
        (pub, "MDM [19]", 52.12, 4.21),
        (pub, "DAN [20]", 55.33, 1.16),
        (pub, "DAN-Menpo [20]", 57.07, 0.58),
        (pub, "CFDRNN", 57.11, 0.73),
        (pri, "ESR [12]", 32.35, 17.00),
        (pri, "CFSS [17]", 39.81, 12.30),
        (pri, "MDM [19]", 45.32, 6.80),
        (pri, "DAN [20]", 47.00, 2.67),
        (pri, "DAN-Menpo [20]", 50.84, 1.83),
        (pri, "GAN [58]", 53.64, 2.50),
        (pri, "CFDRNN", 56.68, 1.00),
    ]
    frame = pd.DataFrame(rows, columns=["test set", "method", "AUC0.08", "failure"])
    frame.insert(0, "normaliser", INTER_OCULAR)
    return frame


def text_numbers() -> pd.DataFrame:
    """Numbers given in running text only, each with its section and the quantity it measures; the
    ``id`` column names each for :func:`number`."""
    rows = [
        ("private-failure-reduction-vs-dan-menpo",
         "abstract/sec6.3", "failure-rate reduction vs DAN-Menpo, 300-W private (Table 7: 1.83 -> 1.00)",
         45, "%", AUC_FAIL),
        ("private-auc-gain-vs-dan-menpo",
         "abstract/sec6.3", "AUC0.08 improvement vs DAN-Menpo, 300-W private (Table 7: 50.84 -> 56.68)",
         11.5, "%", AUC_FAIL),
        ("challenging-nme-gain-vs-dan-menpo",
         "sec6.3/sec7", "mean-error improvement vs DAN-Menpo, challenging subset (Table 5)", 13, "%", NME),
        ("gan-vs-dan-menpo-private", "sec3", "GAN [58] below DAN-Menpo on the private set (3.96 vs 3.97)",
         0.25, "%", NME_IOD),
        ("failure-threshold", "sec6.2", "failure: inter-ocular error of this or greater", 0.08, "", NME_IOD),
        ("auc-threshold", "sec6.2", "AUC integration limit alpha", 0.08, "", NME_IOD),
        ("landmarks", "sec4/sec5.1", "landmarks N", 68, "points", ""),
        ("input-size", "sec4/sec5.1", "input image I0 side", 256, "px", ""),
        ("reduction-factor", "sec4", "reduction factor s (image side / heat-map side)", 4, "", ""),
        ("heatmap-size", "sec5.1", "heat-map side", 64, "px", ""),
        ("sigma", "sec5.1", "heat-map Gaussian width sigma (Eq. 5)", 1.3, "heat-map px", ""),
        ("hml-branches", "sec4.2", "HML branches (H1 -> H2 -> H3 -> H4)", 3, "", ""),
        ("lml-branches", "sec4/sec4.3", "LML branches (j = 1..4)", 4, "", ""),
        ("train-images", "sec5.2", "training images (LFPW, Helen train, AFW, XM2VTS, Menpo train)", 11007,
         "images", ""),
        ("validation-images", "sec5.2", "random validation subset of the training set", 2500, "images", ""),
        ("menpo-train-sec5", "sec5.2", "Menpo challenge training images", 6679, "images", ""),
        ("menpo-train-sec2", "sec2.7", "Menpo training set: semi-frontal / profile", "5658 / 1906", "images",
         ""),
        ("menpo-test-sec2", "sec2.7", "Menpo test set: frontal / profile", "5335 / 1946", "images", ""),
        ("lfpw-images", "sec2.1", "LFPW images", 1035, "images", ""),
        ("helen-images", "sec2.2", "Helen images", 2330, "images", ""),
        ("afw-images", "sec2.3", "AFW images", 337, "images", ""),
        ("xm2vts", "sec2.4", "XM2VTS: subjects, sessions, colour images", "295, 4, 2360", "", ""),
        ("ibug-images", "sec2.5", "i-bug images", 135, "images", ""),
        ("300w-faces", "sec2.6", "300-W faces", 3837, "faces", ""),
        ("private-images", "sec2.6/sec6.1", "300-W private test set: indoor / outdoor", "300 / 300", "images",
         ""),
        ("common-images", "sec6.1", "common subset (LFPW + Helen test)", 554, "images", ""),
        ("challenging-images", "sec6.1", "challenging subset (i-bug)", 135, "images", ""),
        ("public-images", "sec6.1", "300-W public test set", 689, "images", ""),
        ("private-total", "sec6.1", "300-W private test set", 600, "images", ""),
        ("lbf-fps", "sec3", "LBF [18] speed", 3000, "fps", ""),
    ]
    return pd.DataFrame(rows, columns=["id", "section", "quantity", "value", "unit", "metric"])


def training_protocol() -> dict:
    """Sec. 4, 5.1 and 5.2, as printed."""
    return {
        "framework": "MatConvNet 1.0-beta23 (DagNN), MATLAB R2017a, Titan X (Pascal)",
        "input_size": 256, "pixel_range": [-0.5, 0.5], "landmarks": 68, "reduction_factor": 4,
        "heatmap_size": 64, "sigma": 1.3,
        "landmark_range": "network outputs normalised by the image size to [0, 1]",
        "batch_norm": "after every conv layer",
        "dropout": 0.5,
        "batch_size": 2,
        "lr": [1e-5, 5e-6, 1e-6], "lr_change_after_epochs": [30, 35],
        "lr_schedule": "1e-5 for the first 30 epochs, 5e-6 for the next 5, then 1e-6 to the end",
        "epochs": 1000,
        "augmentation": "colour change, rotation at small angles, enlargement, reduction, spatial shifts",
        "train_images": 11007, "validation_images": 2500,
        "losses": "L2 on the heat-maps of the first resizer and of every HML branch; a loss on every "
                  "LML branch's dL (form and weight not stated)",
        "optimiser": "not stated",
        "initialisation": "not stated",
    }


def notes() -> list[str]:
    """Where the printed text disagrees with itself or leaves a number unexplained (the book's
    Deviations section cites these)."""
    return [
        "The headline ratios are relative changes against DAN-Menpo: failure (1.83 - 1.00) / 1.83 = 45.4% "
        "and AUC (56.68 - 50.84) / 50.84 = 11.5% (Table 7, private); challenging NME "
        "(4.88 - 4.24) / 4.88 = 13.1% inter-ocular, (7.05 - 6.05) / 7.05 = 14.2% inter-pupil (Table 5), "
        "so the quoted 13% is the inter-ocular block.",
        "Sec. 6.2 says AUC0.08 lies between 0 and 1; Table 7 prints it in % (57.11).",
        "On the public set CFDRNN does not beat DAN-Menpo: common 4.55 vs 4.29 (inter-pupil) and 3.23 "
        "vs 3.09 (inter-ocular), full 4.85 vs 4.83 and 3.44 vs 3.44, failure 0.73 vs 0.58 (Tables 5, "
        "7); its gains are on the challenging subset and the private set.",
        "Sec. 3 says RAR [39] reaches 3.99% (LFPW) and 4.60% (Helen); Tables 1 and 6 print 3.99 and 4.30.",
        "Table 1 names no normaliser and mixes both: its DAN / DAN-Menpo / GAN private-set numbers "
        "(4.30, 3.97, 3.96) appear in Table 6's inter-ocular block, the public-set numbers in Table 5's "
        "inter-pupil block.",
        "Sec. 5.2 gives 6,679 Menpo training images; Sec. 2.7 gives 5,658 semi-frontal + 1,906 profile "
        "= 7,564. The 11,007 training images equal 811 (LFPW train) + 2,000 (Helen train) + 337 (AFW) "
        "+ 1,180 (XM2VTS) + 6,679 (Menpo), i.e. XM2VTS counted with 1,180 images, not the 2,360 of "
        "Sec. 2.4 (295 subjects x 4 sessions = 1,180).",
        "The 300-W private set is test data, yet Sec. 2.6 counts 3,837 faces in 300-W and Sec. 5.2 "
        "'divides the 300-W competition data into training and testing parts' without saying which "
        "300-W images were trained on.",
        "Table 4 gives every LML conv stride 2, the final 1x1x136 included, and 2x2 pools with stride "
        "1; on a 64x64 input with 'same' padding this ends at exactly 1x1x136 (64-32-31-16-15-8-7-4-3-"
        "2-1-1). Table 4 prints no ReLU rows, unlike Tables 2 and 3.",
        "Table 4's row 7 reads Ej (+) Ej-1, but the first branch has no E0; Sec. 4.3 describes the link "
        "as Ej joining the next branch's product Ej+1.",
        "Sec. 4.1 says the first part of the resizer reduces the image 'by using stride functions'; "
        "Table 2 reduces it with two stride-2 max-pools and stride-1 convs.",
        "Sec. 5.1 says batch normalisation follows every conv, which includes the dL output layer.",
        "Fig. 2 calls D0 and Dr 'reduced image matrices' of 64x64x68; Table 2 makes D0 a 1x1x68 conv "
        "of T0, with no ReLU row after it.",
        "The 'Full Set' column of Table 5 is the 300-W public test set (689 images); the private set "
        "(600) is reported only in Tables 6 and 7.",
    ]


TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "table1": table1, "table2": table2, "table3": table3, "table4": table4, "table5": table5,
    "table6": table6, "table7": table7, "text_numbers": text_numbers,
}

META: dict[str, dict] = {
    "table1": {"caption": "Overview of state-of-the-art facial landmark localization (NME %)",
               "metric": NME, "dataset": "various (column 'test')", "key": "{name} {test}",
               "values": ["NME"]},
    "table2": {"caption": "Resizer block", "metric": "", "dataset": "", "key": "row{row}"},
    "table3": {"caption": "Recurrent heat-map level (one branch)", "metric": "", "dataset": "",
               "key": "row{row}"},
    "table4": {"caption": "Recurrent landmark level (one branch)", "metric": "", "dataset": "",
               "key": "row{row}"},
    "table5": {"caption": "NME (%) on the 300-W public test set and its subsets", "metric": NME,
               "dataset": "300-W public: common (554) / challenging (135) / full (689)",
               "key": "{normaliser} {method}"},
    "table6": {"caption": "NME (%) on the LFPW, Helen and 300-W private test sets", "metric": NME,
               "dataset": "LFPW test / Helen test / 300-W private (600)", "key": "{normaliser} {method}"},
    "table7": {"caption": "AUC0.08 and failure rate on the 300-W public and private test sets",
               "metric": AUC_FAIL, "dataset": "300-W public (689) / private (600)",
               "key": "{test set} {method}"},
    "text_numbers": {"caption": "Numbers quoted in the text", "metric": "see column", "dataset": "various",
                     "key": "{id}", "values": ["value"]},
}
"""What each table's numbers mean. ``key`` formats a row's id from its columns and ``values`` names
the value columns (default: the numeric ones), see :mod:`falign.papers`. Ids:
``table5/inter-ocular-cfdrnn/challenging``, ``table6/inter-pupil-cfdrnn/private``,
``table7/300-w-private-dan-menpo-20/auc0-08``, ``table1/dan-menpo-i-bug``, ``table2/row16/kernel``."""


def table(name: str) -> pd.DataFrame:
    """One published table by id (``"table1"`` ... ``"table7"``, ``"text_numbers"``)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/cfdrnn/published.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def number(id: str) -> float:
    """One published number by its stable id, e.g. ``number("table5/inter-ocular-cfdrnn/challenging")``
    -> 4.24; :func:`ids` lists them all."""
    from falign import papers

    return papers.number(PAPER, id)


def ids() -> list[str]:
    """The id of every published number of this paper (:mod:`falign.papers` gives the scheme)."""
    from falign import papers

    return papers.ids(PAPER)
