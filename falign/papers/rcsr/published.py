"""Published numbers of RCSR: W. Wang, S. Tulyakov, N. Sebe, "Recurrent Convolutional Shape
Regression", IEEE TPAMI 2018, transcribed once, exactly as printed.

Every table is a small function returning a :class:`pandas.DataFrame`; :data:`TABLES` maps the id used
in the book (``"table1"``) to it and :data:`META` says what each number means; every number has a
stable id for :func:`number` (``"table1/rcsr-adaptive/full"``, scheme in :mod:`falign.papers`). All
four tables are legible in the extracted text ("-" = not reported, NaN here). Figures 5-7 survive only as captions:
the numbers the running text reads off them are in :func:`text_numbers`, each with its section.

Metric (Sec. 4, "Evaluation Metrics"): the mean point-to-point error normalised by the distance
between the outer eye corners, the 300-W convention; the tables print it without a unit, as a
percentage of that distance. 300-W: 3,148 training images (LFPW and Helen train sets and AFW);
tests common (LFPW and Helen test sets), challenging (iBUG, 135 images) and full (both).

Inconsistencies in the text, kept as printed and listed in :func:`notes`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

PAPER = "rcsr"
CITATION = ("W. Wang, S. Tulyakov, N. Sebe. Recurrent Convolutional Shape Regression. "
            "IEEE Trans. Pattern Analysis and Machine Intelligence, 2018.")

NME_IOD = "NME (%, normalised by the outer-eye-corner distance)"
NME_ROWS = "NME (%); each row's normaliser in its 'normaliser' column"
NA = np.nan

# The normaliser behind each published row. RCSR states only its own metric (Sec. 4: outer eye corners);
# its tables copy the other methods' numbers from their papers. LBF [10] and CFSS [5] report inter-pupil
# errors (CFDRNN's Table 5 lists exactly these numbers under "inter-pupil normalization"), and ESR [49]
# and SDM [3] reach the table through them with the same normaliser. RCFA [20], the authors' earlier
# model (ACCV 2016), is "not stated": its rows equal Table 4's third row ("the framework in the earlier
# work [20]"), but the paper does not say whether they were measured under Sec. 4's metric or copied from
# [20], a paper this project does not have (PIFA-CNN's Table 5 copies them as "interocular" beside the
# inter-pupil LBF and CFSS numbers, so it settles nothing). Table 4 keeps one metric (META) because
# Sec. 5.1 compares its rows with one another. For the other copied rows the paper gives no normaliser
# and none is asserted here.
OCULAR, PUPIL, NOT_STATED = "inter-ocular", "inter-pupil", "not stated"
_SOURCE_NORMALISER = {
    "ESR [49]": PUPIL, "SDM [3]": PUPIL, "LBF [10]": PUPIL, "LBF fast [10]": PUPIL, "CFSS [5]": PUPIL,
    "CFSS Practical [5]": PUPIL, "RCFA [20]": NOT_STATED, "RCSR 5 recurrences": OCULAR,
    "RCSR 10 recurrences": OCULAR, "RCSR adaptive": OCULAR,
}


def _with_normaliser(df: pd.DataFrame) -> pd.DataFrame:
    """Label every row with the normaliser its number was computed with (:data:`_SOURCE_NORMALISER`)."""
    return df.assign(normaliser=df["method"].map(_SOURCE_NORMALISER).fillna(NOT_STATED))


def table1() -> pd.DataFrame:
    """Table 1: landmark localization results on the 300-W dataset (68 points). "RCSR adaptive" uses
    the stopping rule of Sec. 4.3; RCFA [20] is the authors' earlier traditional-GRU model. The
    ``normaliser`` column says what each row's error is divided by (not printed in the table)."""
    rows = [
        ("Zhu et al. [43]", 8.22, 18.33, 10.20),
        ("DFMF [48]", 6.65, 19.79, 9.22),
        ("ESR [49]", 5.28, 17.00, 7.58),
        ("RCPR [50]", 6.18, 17.26, 8.35),
        ("SDM [3]", 5.57, 15.40, 7.50),
        ("Smith et al. [51]", NA, 13.30, NA),
        ("Zhao et al. [52]", NA, NA, 6.31),
        ("GN-DPM [53]", 5.78, NA, NA),
        ("CFAN [54]", 5.50, NA, NA),
        ("ERT [9]", NA, NA, 6.40),
        ("LBF [10]", 4.95, 11.98, 6.32),
        ("LBF fast [10]", 5.38, 15.50, 7.37),
        ("CFSS [5]", 4.73, 9.98, 5.76),
        ("CFSS Practical [5]", 4.79, 10.92, 5.99),
        ("RCFA [20]", 4.03, 9.85, 5.32),
        ("RCSR 5 recurrences", 4.05, 9.74, 5.15),
        ("RCSR 10 recurrences", 4.10, 8.79, 5.02),
        ("RCSR adaptive", 4.01, 8.58, 4.90),
    ]
    return _with_normaliser(pd.DataFrame(rows, columns=["method", "common", "challenging", "full"]))


def table2() -> pd.DataFrame:
    """Table 2: landmark localization results on the HELEN dataset (330 test images), 68 and 49
    points; ``normaliser`` as in :func:`table1`."""
    rows = [
        ("Zhu et al. [43]", 8.16, 7.43),
        ("DFMF [48]", 6.70, NA),
        ("RCPR [50]", 5.93, 4.64),
        ("SDM [3]", 5.50, 4.25),
        ("GN-DPM [53]", 5.69, 4.06),
        ("CFAN [54]", 5.53, NA),
        ("CFSS [5]", 4.63, 3.47),
        ("CFSS Practical [5]", 4.72, 3.50),
        ("RCFA [20]", 4.65, 3.45),
        ("RCSR adaptive", 4.16, 3.13),
    ]
    return _with_normaliser(pd.DataFrame(rows, columns=["method", "68 landmarks", "49 landmarks"]))


def table3() -> pd.DataFrame:
    """Table 3: landmark localization results on the LFPW dataset (224 test images available in
    300-W, Sec. 4 says 244), 68 and 49 points; ``normaliser`` as in :func:`table1`."""
    rows = [
        ("Zhu et al. [43]", 8.29, 7.78),
        ("DFMF [48]", 6.57, NA),
        ("RCPR [50]", 6.56, 5.48),
        ("SDM [3]", 5.67, 4.47),
        ("GN-DPM [53]", 5.92, 4.43),
        ("CFAN [54]", 5.44, NA),
        ("CFSS [5]", 4.87, 3.78),
        ("CFSS Practical [5]", 4.90, 3.80),
        ("RCFA [20]", 4.74, 3.69),
        ("RCSR adaptive", 3.93, 3.57),
    ]
    return _with_normaliser(pd.DataFrame(rows, columns=["method", "68 landmarks", "49 landmarks"]))


def table4() -> pd.DataFrame:
    """Table 4: the effect of the recurrent-convolutional architecture on 300-W. Row 3 is the earlier
    work [20] (RCFA), the last row the paper's model (= "RCSR adaptive" of Table 1). ``kind`` is the
    matching :func:`falign.papers.rcsr.table4.build_model` kind."""
    rows = [
        ("sdm", "Linear Regressor + HOG (SDM [3])", 5.70, 15.77, 7.68),
        ("gru-hog", "Traditional GRU + HOG", 4.61, 9.94, 5.63),
        ("gru-srcnn", "Traditional GRU + SRCNN [20]", 4.03, 9.85, 5.32),
        ("convgru-lenet", "Convolutional GRU + LeNet", 4.63, 9.48, 5.59),
        ("convgru-fauc", "Convolutional GRU + FAUC", 4.32, 8.96, 5.24),
        ("convgru-srcnn", "Convolutional GRU + SRCNN", 4.01, 8.58, 4.90),
    ]
    return pd.DataFrame(rows, columns=["kind", "method", "common", "challenging", "full"])


def text_numbers() -> pd.DataFrame:
    """Numbers given in running text only (many read off Figs. 5-7, whose plots are not in the
    extracted text), each with its section and the quantity it measures; the ``id`` column names
    each for :func:`number`. A value printed as several numbers ("10 / 19", "5-9") has one id per
    part: ``number("text_numbers/cfss-reduction-68-helen-lfpw/2")`` is LFPW's 19."""
    rows = [
        ("time-depth0-fc1",
         "sec4.2/fig5", "running time, depth-0-fc-1 (SRCNN + 0 extra layers, 1 fc)", 0.44, "s", ""),
        ("time-depth10-fc1", "sec4.2/fig5", "running time, depth-10-fc-1 (lowest error of Fig. 5)", 5.22, "s", ""),
        ("fig5-depths", "sec4.2/fig5", "extra SRCNN depths n tested", "0, 5, 10, 15, 20", "layers", ""),
        ("fig5-fc-layers", "sec4.2/fig5", "fully connected layers tested", "1, 2, 3", "layers", ""),
        ("train-steps", "sec4.2", "recurrent steps T in training", 5, "steps", ""),
        ("common-stable-steps",
         "sec4.3/fig6", "common set: error stable between recurrences", "5-9", "steps", NME_IOD),
        ("challenging-decreasing-beyond",
         "sec4.3/fig6", "challenging set: error still decreasing beyond", 13, "steps", NME_IOD),
        ("gamma",
         "sec4.3/fig6", "normalised shape increment at the minimum error (threshold gamma)", 0.01, "", ""),
        ("max-steps", "sec4.3", "maximum recurrences of the stopping rule", 13, "steps", ""),
        ("stop-gain-common",
         "sec4.3", "error decrease by the stopping rule, common (4.10 -> 4.01)", 3.10, "%", NME_IOD),
        ("stop-gain-challenging",
         "sec4.3", "error decrease by the stopping rule, challenging (8.79 -> 8.58)", 2.39, "%", NME_IOD),
        ("stop-gain-full",
         "sec4.3", "error decrease by the stopping rule, full (5.02 -> 4.90)", 2.40, "%", NME_IOD),
        ("fig7-steps-trained",
         "sec4.4/fig7", "recurrent steps trained (RCSR5, 10, 20, 30)", "5, 10, 20, 30", "steps", ""),
        ("rcsr5-best-step", "sec4.4/fig7", "RCSR5 best error at about", 9, "steps", NME_IOD),
        ("rcsr10-30-best-after", "sec4.4/fig7", "RCSR10/20/30 best error after more than", 17, "steps", NME_IOD),
        ("cfss-reduction-full", "sec4.5", "error reduction vs CFSS [5], 300-W full", 15, "%", NME_IOD),
        ("cfss-reduction-68-helen-lfpw",
         "sec4.5", "reduction vs CFSS, 68 points, HELEN / LFPW", "10 / 19", "%", NME_IOD),
        ("cfss-reduction-49-helen-lfpw",
         "sec4.5", "reduction vs CFSS, 49 points, HELEN / LFPW", "10 / 6", "%", NME_IOD),
        ("forward-ms", "sec4.5", "forward pass per face, Tesla K40", 10, "ms", ""),
        ("fps", "sec4.5", "frame rate", 100, "fps", ""),
        ("convgru-gain-common",
         "sec5.1", "error decrease ConvGRU vs traditional GRU, common (4.03 -> 4.01)", 0.50, "%", NME_IOD),
        ("convgru-gain-challenging",
         "sec5.1", "error decrease ConvGRU vs traditional GRU, challenging (9.85 -> 8.58)", 12.89, "%", NME_IOD),
        ("convgru-gain-full",
         "sec5.1", "error decrease ConvGRU vs traditional GRU, full (5.32 -> 4.9)", 7.89, "%", NME_IOD),
        ("time-gru", "sec5.1", "inference time, traditional GRU", 0.44, "s", ""),
        ("time-convgru", "sec5.1", "inference time, convolutional GRU", 0.50, "s", ""),
    ]
    return pd.DataFrame(rows, columns=["id", "section", "quantity", "value", "unit", "metric"])


def training_protocol() -> dict:
    """Sec. 4.1, 4.2 and 3.1.1, as printed."""
    return {
        "train_images": 3148, "replicates": 3, "finetune_epochs": 200,
        "augmentation": "mirrored copies; training data replicated 3 times with noise on the boxes",
        "initial_shape": "mean training shape, sampled several times with noise (Sec. 3.1.1)",
        "batch_size": 204, "lr": 0.01, "lr_decay": 0.5, "lr_decay_every_epochs": 10, "epochs": 200,
        "fine_tune": "3 new noisy replicates, another 200 epochs",
        "recurrent_steps": 5,
        "loss_weights": "w_t = 10^(t/T) (Sec. 3.1.1); Sec. 4.4: 10^w, w evenly spaced in [-2, 2]",
        "srcnn": "W1 1x9x9x64, W2 64x1x1x32, W3 32x5x5x1; extra 3x3x64 layers before W2 (n = 0..20)",
        "stopping_rule": "normalised shape increment < 0.01, at most 13 recurrences",
    }


def notes() -> list[str]:
    """Where the printed text disagrees with itself (the book's Deviations section cites these)."""
    return [
        "Sec. 4.3 says the stopping rule lowers the common-set error 'by 3.10% from 4.10 to 4.01'; "
        "(4.10 - 4.01) / 4.10 = 2.20%. The other two percentages (2.39%, 2.40%) match their numbers.",
        "Table 4's SDM row (5.70 / 15.77 / 7.68, the authors' HOG re-implementation) differs from "
        "Table 1's SDM [3] row (5.57 / 15.40 / 7.50, published numbers).",
        "Table 4 row 3 equals Table 1's RCFA [20] row and Table 4's last row equals 'RCSR adaptive'.",
        "Timings: 10 ms per face on a K40 (Sec. 4.5) against 0.44 s / 0.50 s / 5.22 s (Sec. 4.2, 5.1) "
        "with no stated unit of work (per batch or per test set); both are kept as printed.",
        "Loss weights: Sec. 3.1.1 gives w_t = 10^(t/T); Sec. 4.4 gives 10^w with w evenly spaced in "
        "[-2, 2] and, in the next sentence, says the weights follow Sec. 3.1.1.",
        "Sec. 4 gives 811 train / 244 test LFPW images available in 300-W (300-W's LFPW test set has "
        "224); the 300-W common set is 554 = 224 + 330 images.",
        "The patch size, the ConvGRU kernel and memory size, and how the per-landmark maps are stacked "
        "are not given; see the decisions rcsr.patches, rcsr.memory and rcsr.stacking "
        "(falign.kit.decisions.deviations('rcsr')).",
        "0.44 s is given twice: for depth-0-fc-1 (Sec. 4.2, Fig. 5, against 5.22 s for depth-10-fc-1) and for "
        "the traditional GRU (Sec. 5.1, against 0.50 s for the convolutional GRU). The paper's model is "
        "depth-0-fc-1 with a convolutional GRU, so the two 0.44 s cannot both be its time.",
        "The update gate's prose (Sec. 3.1) assigns forgetting the previous memory to the term z_t and "
        "accepting the new features to 1 - z_t; Eq. 7, H_t = (1 - z_t) . H_{t-1} + z_t . c_t, multiplies the "
        "memory by 1 - z_t and the new candidate by z_t. The paragraph's limiting cases (z_t near 0 keeps "
        "the memory) agree with Eq. 7, which the code follows.",
        "Tables 1-3 mix normalisers: RCSR's rows are divided by the outer-eye-corner distance (Sec. 4), "
        "while the LBF, CFSS, ESR and SDM rows are copied from sources that divide by the inter-pupil "
        "distance (CFDRNN's Table 5 lists the LBF and CFSS numbers under inter-pupil); see each table's "
        "'normaliser' column.",
    ]


TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "table1": table1, "table2": table2, "table3": table3, "table4": table4,
    "text_numbers": text_numbers,
}

META: dict[str, dict[str, str]] = {
    "table1": {"caption": "Landmark localization results on the 300-W dataset", "metric": NME_ROWS,
               "dataset": "300-W (68 points): common / challenging / full"},
    "table2": {"caption": "Landmark localization results on the HELEN dataset", "metric": NME_ROWS,
               "dataset": "HELEN test (330 images), 68 and 49 points"},
    "table3": {"caption": "Landmark localization results on the LFPW dataset", "metric": NME_ROWS,
               "dataset": "LFPW test, 68 and 49 points"},
    "table4": {"caption": "Effect of various recurrent-convolutional architectures", "metric": NME_IOD,
               "dataset": "300-W (68 points): common / challenging / full"},
    "text_numbers": {"caption": "Numbers quoted in the text", "metric": "see column", "dataset": "various",
                     "key": "{id}", "values": ["value"]},
}
"""What each table's numbers mean. ``key`` (optional) formats a row's id from its columns (default:
the first column) and ``values`` names the value columns (default: the numeric ones), see
:mod:`falign.papers`."""


def table(name: str) -> pd.DataFrame:
    """One published table by id (``"table1"`` ... ``"table4"``, ``"text_numbers"``)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/rcsr/published.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def number(id: str) -> float:
    """One published number by its stable id, e.g. ``number("table1/rcsr-adaptive/full")`` -> 4.90,
    ``number("text_numbers/gamma")`` -> 0.01; :func:`ids` lists them all."""
    from falign import papers

    return papers.number(PAPER, id)


def ids() -> list[str]:
    """The id of every published number of this paper (:mod:`falign.papers` gives the scheme)."""
    from falign import papers

    return papers.ids(PAPER)
