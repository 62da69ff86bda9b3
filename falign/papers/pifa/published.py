"""Published numbers of PIFA: Jourabloo, Ye, Liu, Ren, "Pose-Invariant Face Alignment with a Single
CNN", ICCV 2017, transcribed once, exactly as printed.

Every table is a small function returning a :class:`pandas.DataFrame`; :data:`TABLES` maps the id
used in the book (``"table2"``) to that function, and :data:`META` says what each number means:
metric, unit, normaliser and dataset. Every number has a stable id for :func:`number`
(``"table3/block6"``, ``"table5/proposed-method/full"``; the scheme is in :mod:`falign.papers`). The
extracted text of all eight tables is legible; numbers that the paper gives in running text only
(CALE's 2.96, the 5% noise study, the no-visualization 7.18, the 300-W failure rates, timings) are
transcribed from the quoted sentence and carry the section id.

Metrics as the paper defines them (Sec. 4.1): NME = mean over *visible* landmarks of the point error
divided by sqrt(w*h) of the face bounding box, in %; MAPE = mean pixel error of the visible
landmarks (no normaliser). Table 5 (300-W) is the exception: NME normalised by the inter-ocular
distance (the paper does not say outer corners or pupils), in %.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

PAPER = "pifa"
CITATION = ("A. Jourabloo, M. Ye, X. Liu, L. Ren. Pose-Invariant Face Alignment with a Single CNN. "
            "ICCV 2017.")

NME_BOX = "NME (%, normalised by sqrt(w*h) of the box, visible landmarks)"
MAPE = "MAPE (pixels, visible landmarks)"
NME_IOD = "NME (%, normalised by the inter-ocular distance)"


def table1() -> pd.DataFrame:
    """Table 1: number and size of the conv filters of each visualization block (two conv layers per
    block; blocks 5 and 6 share one column). The caption adds: both fully connected layers of every
    block have length 800 and 236."""
    rows = [
        (1, 1, 12, 5), (1, 2, 16, 5),
        (2, 1, 20, 3), (2, 2, 24, 3),
        (3, 1, 28, 3), (3, 2, 32, 3),
        (4, 1, 36, 3), (4, 2, 40, 3),
        (5, 1, 40, 3), (5, 2, 40, 3),
        (6, 1, 40, 3), (6, 2, 40, 3),
    ]
    df = pd.DataFrame(rows, columns=["block", "conv layer", "filters", "kernel"])
    df["fc1"], df["fc2"] = 800, 236
    return df


def table2() -> pd.DataFrame:
    """Table 2: NME (%) of four methods on AFLW (PIFA-AFLW subset of [18]: 3,901 train / 1,299 test,
    34 landmarks). "PIFA" here is the 2015 method [17], "Proposed method" is this paper."""
    return pd.DataFrame({
        "method": ["Proposed method", "LPFA [18]", "PIFA [17]", "RCPR [5]"],
        "NME": [4.45, 4.72, 8.04, 6.26],
    })


def table3() -> pd.DataFrame:
    """Table 3: NME (%) on AFLW after each visualization block; the caption gives the initial NME
    (mean shape placed in the given box) as 25.8%, listed here as block 0."""
    return pd.DataFrame({"block": [0, 1, 2, 3, 4, 5, 6],
                         "NME": [25.8, 9.26, 6.77, 5.51, 4.98, 4.60, 4.45]})


def table4() -> pd.DataFrame:
    """Table 4: MAPE of five methods on AFW (468 faces, at most 6 landmarks, test only)."""
    return pd.DataFrame({
        "method": ["Proposed method", "LPFA [18]", "PIFA [17]", "CDM [44]", "TSPM [51]"],
        "MAPE": [6.27, 7.43, 8.61, 9.13, 11.09],
    })


def table5() -> pd.DataFrame:
    """Table 5: NME (%) on 300-W (3,148 train; test common 554, challenging 135, full 689), normalised
    by the inter-ocular distance. Printed as in the paper, including its attribution of CFSS to [50]."""
    rows = [
        ("ESR [8]", 5.28, 17.00, 7.58),
        ("RCPR [5]", 6.18, 17.26, 8.35),
        ("SDM [41]", 5.57, 15.40, 7.50),
        ("LBF [29]", 4.95, 11.98, 6.32),
        ("CFSS [50]", 4.73, 9.98, 5.76),
        ("RCFA [37]", 4.03, 9.85, 5.32),
        ("RAR [40]", 4.12, 8.35, 4.94),
        ("3DDFA [50]", 6.15, 10.59, 7.01),
        ("3DDFA+SDM", 5.53, 9.56, 6.31),
        ("Proposed method", 5.43, 9.88, 6.30),
    ]
    return pd.DataFrame(rows, columns=["method", "Common", "Challenging", "Full"])


def table6() -> pd.DataFrame:
    """Table 6: NME (%) on AFLW of three architectures whose blocks take different inputs
    (I: input image, F: feature maps of the previous block, V: visualization)."""
    return pd.DataFrame({"architecture": ["a", "b", "c"], "inputs": ["I,F,V", "F,V", "I,V"],
                         "NME": [4.45, 4.48, 5.06]})


def table7() -> pd.DataFrame:
    """Table 7: NME (%) on AFLW with different masks in the visualization layer (mask 1: Eq. 11,
    nose-centred, Fig. 4; mask 2: five positive areas, Fig. 8)."""
    return pd.DataFrame({"mask": ["Mask 1", "Mask 2", "No Mask"], "NME": [4.45, 4.49, 5.31]})


def table8() -> pd.DataFrame:
    """Table 8: NME (%) on AFLW for different numbers of visualization blocks N_v and convolutional
    layers per block N_c (12 conv layers in total)."""
    return pd.DataFrame({"N_v": [6, 4, 3], "N_c": [2, 3, 4], "NME": [4.45, 4.61, 4.83]})


def noise_study() -> pd.DataFrame:
    """Sec. 4.3, "Influence of visualization layers": NME (%) on AFLW when 5% noise is added to the
    fully connected layer parameters of one block at a time (text, no table id)."""
    return pd.DataFrame({"noisy block": [1, 2, 3, 4, 5, 6],
                         "NME": [4.46, 4.53, 4.60, 4.66, 4.80, 5.16]})


def text_numbers() -> pd.DataFrame:
    """Numbers given in running text only, each with its section and the quantity it measures; the
    ``id`` column names each one for :func:`number` (``number("text_numbers/no-visualization-nme")``)."""
    rows = [
        ("cale-nme", "sec4.1", "CALE [4] (heatmap method) NME on AFLW", 2.96, "%", NME_BOX),
        ("failure68-proposed", "sec4.2", "failure rate @0.08, 68 landmarks, 300-W: proposed", 16.83, "%", NME_IOD),
        ("failure68-mdm", "sec4.2", "failure rate @0.08, 68 landmarks, 300-W: MDM [34]", 6.80, "%", NME_IOD),
        ("failure51-proposed", "sec4.2", "failure rate @0.08, 51 landmarks, 300-W: proposed", 8.99, "%", NME_IOD),
        ("failure51-mdm", "sec4.2", "failure rate @0.08, 51 landmarks, 300-W: MDM [34]", 4.20, "%", NME_IOD),
        ("no-visualization-nme", "sec4.3", "NME on AFLW trained without any visualization layer", 7.18, "%",
         NME_BOX),
        ("epochs-proposed", "sec4.4", "training epochs, proposed", 33, "epochs", ""),
        ("train-days-proposed", "sec4.4", "training time, proposed", 2.5, "days", ""),
        ("epochs-lpfa", "sec4.4", "training epochs per CNN, LPFA [18] (six CNNs)", 70, "epochs", ""),
        ("train-days-lpfa", "sec4.4", "training time, LPFA [18]", 7, "days", ""),
        ("train-days-3ddfa", "sec4.4", "training time, 3DDFA [50] (three CNNs x 20 epochs)", 12, "days", ""),
        ("fps-proposed", "sec4.4", "test speed, proposed, Titan X GPU", 4.3, "FPS", ""),
        ("fps-lpfa", "sec4.4", "test speed, LPFA [18]", 0.6, "FPS", ""),
        ("fps-rar", "sec4.4", "test speed, RAR [40]", 4, "FPS", ""),
    ]
    return pd.DataFrame(rows, columns=["id", "section", "quantity", "value", "unit", "metric"])


def training_protocol() -> dict:
    """Sec. 4 "Implementation details" and Sec. 4.1, as printed. The learning-rate sentence is
    self-contradictory (the rate "decreases" from 1e-6 to 5e-6); falign.papers.pifa.experiment decides."""
    return {
        "framework": "Caffe",
        "blocks": 6, "conv_per_block": 2,
        "input": "box crop resized to 114x114; pooling after block 1's first conv -> 57x57",
        "augmentation": "20 variations per training image: noise on box location, width and height",
        "train_faces": 3901, "test_faces": 1299, "variations": 20,
        "epochs": 33, "momentum": 0.99, "weight_decay": 0.005,
        "lr_as_printed": "initial 1e-6; decreased to 5e-6 and 1e-7 after 20 and 29 epochs",
        "block_loss_weights": [1, 2, 3, 4, 5, 6],
        "losses": "Eq. 6 (weighted parameter loss) in blocks 1-3, Eq. 7 (landmark loss) in blocks 4-6",
        "train_from": "scratch, joint end-to-end (no sequential pre-training)",
    }


TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "table1": table1, "table2": table2, "table3": table3, "table4": table4, "table5": table5,
    "table6": table6, "table7": table7, "table8": table8,
    "noise_study": noise_study, "text_numbers": text_numbers,
}

META: dict[str, dict[str, str]] = {
    "table1": {"caption": "Conv filters per visualization block (count and kernel size)",
               "metric": "", "dataset": "", "key": "block{block}-conv{conv layer}"},
    "table2": {"caption": "NME of four methods on AFLW", "metric": NME_BOX, "dataset": "AFLW (PIFA subset)"},
    "table3": {"caption": "NME after each visualization block (block 0 = initialisation)",
               "metric": NME_BOX, "dataset": "AFLW (PIFA subset)"},
    "table4": {"caption": "MAPE of five methods on AFW", "metric": MAPE, "dataset": "AFW"},
    "table5": {"caption": "NME of different methods on 300-W", "metric": NME_IOD, "dataset": "300-W"},
    "table6": {"caption": "NME of three architectures with different block inputs",
               "metric": NME_BOX, "dataset": "AFLW (PIFA subset)"},
    "table7": {"caption": "NME with different visualization masks", "metric": NME_BOX,
               "dataset": "AFLW (PIFA subset)"},
    "table8": {"caption": "NME with N_v blocks of N_c conv layers", "metric": NME_BOX,
               "dataset": "AFLW (PIFA subset)", "key": "{N_v}x{N_c}"},
    "noise_study": {"caption": "Sec. 4.3: NME with 5% noise on one block's FC parameters",
                    "metric": NME_BOX, "dataset": "AFLW (PIFA subset)", "key": "block{noisy block}"},
    "text_numbers": {"caption": "Numbers quoted in the text", "metric": "see column", "dataset": "various",
                     "key": "{id}"},
}
"""What each table's numbers mean. ``key`` (optional) formats a row's id from its columns (default:
the first column), see :mod:`falign.papers`."""


def table(name: str) -> pd.DataFrame:
    """One published table by id (``"table1"`` ... ``"table8"``, ``"noise_study"``, ``"text_numbers"``)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/pifa/published.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def number(id: str) -> float:
    """One published number by its stable id, e.g. ``number("table3/block6")`` -> 4.45 (Table 3, final
    block), ``number("text_numbers/no-visualization-nme")`` -> 7.18; :func:`ids` lists them all."""
    from falign import papers

    return papers.number(PAPER, id)


def ids() -> list[str]:
    """The id of every published number of this paper (:mod:`falign.papers` gives the scheme)."""
    from falign import papers

    return papers.ids(PAPER)
