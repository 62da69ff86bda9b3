"""Published numbers of CCNN: "Improved Face Alignment Algorithm Based on Cascaded Convolutional Neural
Network and the Shake Mechanism", Advances in Multimedia 2022,
transcribed once, exactly as printed.

Every table or figure is a small function returning a :class:`pandas.DataFrame`; :data:`TABLES` maps
the id used in the book (``"fig4"``) to it and :data:`META` says what each number means. Tables 2-3 are
legible. Figures 4-7 are line charts whose data labels the text extraction scrambled: the averages
are quoted in the running text (Sec. 4.2) and are transcribed from there; per-point values that
cannot be assigned to a point and a line are NaN, never guessed, and the labels that *are* legible
are kept, unassigned, in :func:`legible_labels`. Inconsistencies are listed in :func:`notes`.

Metric: the paper's "test error" (%) is not defined in the text. Its baseline lineage (Sun et al.
2013, ref. [22]; Chen Rui, ref. [13]) measures the distance between predicted and true point divided
by the width of the face box, in %; that is the convention :data:`META` names and the chapter uses.
Dataset (Sec. 4.1), called "LFPW" in the paper: 13,466 faces, 10,000 train / 3,466 test, five points
with face boxes (size and split of Sun et al. 2013's LFW + web training set, not of LFPW itself).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

PAPER = "ccnn"
CITATION = ("Improved Face Alignment Algorithm Based on Cascaded Convolutional Neural Network and the "
            "Shake Mechanism (CCNN). Advances in Multimedia, 2022.")

TEST_ERROR = ("test error (%, undefined in the paper; read as point-to-truth distance / face-box width, "
              "Sun et al. 2013's convention)")
DATASET = "'LFPW' as the paper names it: 13,466 faces, 10,000 train / 3,466 test, 5 points"
POINTS = ["LE", "RE", "N", "LM", "RM"]
NA = np.nan


def _per_point(rows: list[tuple[str, list[float], float]]) -> pd.DataFrame:
    return pd.DataFrame([(name, *values, avg) for name, values, avg in rows],
                        columns=["arm", *POINTS, "Average"])


def fig4() -> pd.DataFrame:
    """Fig. 4 (Experiment 1): test error of each point after each stage. The averages 2.21, 1.37,
    1.03 are quoted in Sec. 4.2 and printed on the chart; the 15 per-point labels are legible but
    their assignment to points and stages is lost in the extraction (NaN; see
    :func:`legible_labels`)."""
    return _per_point([
        ("first stage", [NA] * 5, 2.21),
        ("second stage", [NA] * 5, 1.37),
        ("third stage", [NA] * 5, 1.03),
    ])


def fig5() -> pd.DataFrame:
    """Fig. 5 (Experiment 2): first stage without windows (absolute positioning, "windows-") and with
    them (relative positioning, "windows+"). Averages from Sec. 4.2: 3.38 -> 2.35."""
    return _per_point([("windows-", [NA] * 5, 3.38), ("windows+", [NA] * 5, 2.35)])


def fig6() -> pd.DataFrame:
    """Fig. 6 (Experiment 3): first stage without and with shake. Averages from Sec. 4.2:
    2.35 -> 1.90."""
    return _per_point([("shake-", [NA] * 5, 2.35), ("shake+", [NA] * 5, 1.90)])


def fig7() -> pd.DataFrame:
    """Fig. 7 (Experiment 4): per-point test error of Sun et al. [22], Chen Rui [13] and CCNN. No data
    label of this chart survives the extraction; only CCNN's average (1.03, Sec. 4.2 and Sec. 5) is
    quoted. The text's qualitative claims are in :func:`notes`."""
    return _per_point([
        ("Sun et al. [22]", [NA] * 5, NA),
        ("Chen Rui [13]", [NA] * 5, NA),
        ("CCNN (this paper)", [NA] * 5, 1.03),
    ])


def table2() -> pd.DataFrame:
    """Table 2: network structure of the first stage (F1, EN1, NM1 share it; their last layers are
    10d-fc2, 6d-fc2 and 6d-fc2). "Parameters" counts weights without biases; "-" (pooling) and the
    unprinted fc2 counts are NaN."""
    rows = [
        ("conv1", "4x4x20/1", "39x39x3", "36x36x20", 960),
        ("pool1", "2x2/2", "36x36x20", "18x18x20", NA),
        ("conv2", "3x3x40/1", "18x18x20", "16x16x40", 7200),
        ("pool2", "2x2/2", "16x16x40", "8x8x40", NA),
        ("conv3", "3x3x60/1", "8x8x40", "6x6x60", 21600),
        ("pool3", "2x2/2", "6x6x60", "3x3x60", NA),
        ("120d-fc1", "", "3x3x60", "120", 64800),
        ("10d-fc2 (F1) / 6d-fc2 (EN1, NM1)", "", "120", "10 / 6 / 6", NA),
    ]
    return pd.DataFrame(rows, columns=["name", "kernels/steps", "input", "output", "parameters"])


def fig3() -> pd.DataFrame:
    """Fig. 3: the level-2 network (LE21; every stage-2 and stage-3 CNN, Sec. 3.2.4), read from the
    figure's labels: 15x15x3 input, two conv-pool pairs, fc 60, fc 2. No parameter counts printed."""
    rows = [
        ("conv1", "4x4x20", "15x15x3", "12x12x20"),
        ("pool1", "2x2", "12x12x20", "6x6x20"),
        ("conv2", "3x3x40", "6x6x20", "4x4x40"),
        ("pool2", "2x2", "4x4x40", "2x2x40"),
        ("fc1", "", "2x2x40", "60"),
        ("fc2", "", "60", "2"),
    ]
    return pd.DataFrame(rows, columns=["name", "kernel", "input", "output"])


def table3() -> pd.DataFrame:
    """Table 3: parameters (MB) and speed (ms per face on the GPU, 2x RTX 2080 Ti server) of each
    algorithm. Only two speeds are printed; Sec. 4.2 and 5 attribute 14.7 ms to CCNN and say it is
    1.2 ms faster than Chen Rui's (so 15.9). The ResNet rows have no speed (NaN)."""
    return pd.DataFrame({
        "method": ["Algorithm of this paper", "ResNet18", "ResNet34", "Chen Rui [13]"],
        "parameters_MB": [2.46, 44.59, 85.15, 4.24],
        "speed_ms": [14.7, NA, NA, 15.9],
    })


def text_numbers() -> pd.DataFrame:
    """Numbers given in the running text, each with its section."""
    rows = [
        ("networks", "sec3", "CNNs in the cascade (3 + 10 + 10)", 23, "networks"),
        ("max-layers-stage1", "sec3", "layers per CNN, at most (stage 1)", 8, "layers"),
        ("min-layers-stages23", "sec3", "layers per CNN, at least (stages 2-3)", 6, "layers"),
        ("stage2-a1", "sec3.1.2", "stage-2 window a1 = b1", 0.16, "face-box h, w"),
        ("stage2-a2", "sec3.1.2", "stage-2 window a2 = b2", 0.18, "face-box h, w"),
        ("stage3-a1", "sec3.1.3", "stage-3 window a1 = b1", 0.08, "face-box h, w"),
        ("stage3-a2", "sec3.1.3", "stage-3 window a2 = b2", 0.09, "face-box h, w"),
        ("shake-variance", "sec3.1.2", "shake ~ N(0, 1e-4): second parameter", 1e-4, "unit not given"),
        ("window-input-side", "sec3.2.2", "stage-2/3 input side", 15, "pixels"),
        ("parameters", "sec3.2.4", "learnable parameters", 643920, "weights"),
        ("model-mb", "sec3.2.4", "model size", 2.46, "MB"),
        ("dropout", "sec3.3", "dropout", 0.25, ""),
        ("initial-lr", "sec3.3", "initial learning rate", 5e-3, ""),
        ("lr-decay", "sec3.3", "learning-rate decay factor", 0.9, "every 100 iterations"),
        ("params-vs-chenrui", "sec4.2", "parameters relative to Chen Rui [13]", 58, "%"),
        ("params-vs-resnet18", "sec4.2", "parameters relative to ResNet18", 5.6, "%"),
        ("gpu-ms", "sec4.2", "time per face on the GPU", 14.7, "ms"),
        ("error-below-peers", "sec5", "average test error below 'the same type of algorithms'", 1.16, "% (points)"),
        ("faster-than-chenrui-ms", "sec5", "faster than Chen Rui [13]", 1.2, "ms"),
    ]
    return pd.DataFrame(rows, columns=["id", "section", "quantity", "value", "unit"])


def dataset() -> pd.DataFrame:
    """Sec. 4.1: the data and its augmentation. Rotations of 15 degrees "left" and 12 degrees "right"
    about the centre (Eq. 8) and horizontal flips give 60,000 training faces: 10,000 x 3 (original,
    two rotations) x 2 (flip), which reads the rotations as two fixed angles, not a range."""
    rows = [
        ("faces", 13466), ("train", 10000), ("test", 3466),
        ("rotation left (degrees)", 15), ("rotation right (degrees)", 12),
        ("train after rotation and flip", 60000),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])


def legible_labels() -> pd.DataFrame:
    """Data labels that the extracted text shows but does not tie to a point or a line.

    Fig. 4: besides the axis ticks (0.75 ... 2.75) and the three averages, exactly 15 labels remain,
    one per point and stage; their sum, 23.06, matches 5 x (2.21 + 1.37 + 1.03) = 23.05, so they are
    the per-point values, but which is which cannot be read. Figs. 5-6: five labels besides the
    averages (3.38, 2.35) and a tick (3.5); the text does not say which of the two charts they
    belong to."""
    fig4_labels = [2.72, 2.54, 1.88, 1.48, 1.58, 2.31, 1.98, 1.44, 1.25, 1.07, 1.13, 0.78, 0.84, 1.33, 0.73]
    fig56_labels = [3.94, 3.73, 2.44, 1.88, 2.03]
    return pd.DataFrame(
        [("fig4", v, "per-point value, point and stage unknown") for v in fig4_labels]
        + [("fig5/fig6", v, "per-point value, figure, point and line unknown") for v in fig56_labels],
        columns=["figure", "value", "assignment"])


def training_protocol() -> dict:
    """Sec. 3.3 and 4.1, as printed."""
    return {
        "framework": "PyTorch", "hardware": "CentOS 7, 2x RTX 2080 Ti, 32 GB",
        "optimiser": "SGD", "initial_lr": 5e-3, "lr_decay": "x0.9 every 100 iterations",
        "batch_size": "not given ('selected according to the actual situation')",
        "iterations": "not given",
        "loss": "Eq. 6: per-sample MSE 1/(2N) sum ||y - d||^2, batch mean, + (1/2) eta ||W||^2 (eta not given)",
        "init": "Xavier", "activation": "ReLU after conv layers", "pooling": "max", "dropout_fc": 0.25,
        "order": "networks of a stage in parallel, stages in series",
        "input": "face box resized to 39x39x3 (stage 1), 15x15x3 windows (stages 2-3), standardised",
        "targets": "relative to the window (Eq. 9)",
        "augmentation": "rotation 15 deg left, 12 deg right (Eq. 8), horizontal flip: 10,000 -> 60,000",
    }


def notes() -> list[str]:
    """Inconsistencies and gaps in the text, kept as printed."""
    return [
        "The metric 'test error (%)' is never defined; Sun et al. 2013 [22] normalise by the face-box width.",
        "Figs. 5 and 6 report the first stage: windows+ averages 2.35 and shake+ 1.90, but Fig. 4's first "
        "stage averages 2.21. Shake is described for the windows of stages 2-3 only (Sec. 3.1.2-3.1.3).",
        "Fig. 6's shake- arm (2.35) equals Fig. 5's windows+ arm (2.35): the two ablations appear chained.",
        "Fig. 7: the text says CCNN is below both baselines in LE, RE, N, LM and the average, and slightly "
        "above Chen Rui [13] at RM; no value of either baseline is legible.",
        "Sec. 5: the average 1.03 is 'approximately 1.16% lower than that of the same type of algorithms' "
        "(which baseline is not said; 1.03 + 1.16 = 2.19).",
        "Table 3: 2.46 MB is 643,920 float32 weights in MiB (2.456); ResNet18's 44.59 MB is its 11.69 M "
        "weights likewise, but ResNet34's 21.8 M weights would be 83.2, not the printed 85.15.",
        "Sec. 4.2: 2.46 / 44.59 = 5.5%, printed as 5.6% of ResNet18; 2.46 / 4.24 = 58% of Chen Rui [13].",
        "Table 2 counts weights without biases (conv1 4x4x3x20 = 960); the architecture then gives exactly "
        "643,920: stage 1 95,760 + 2 x 95,280, stages 2-3 20 x 17,880 (falign.papers.ccnn.model.count_parameters).",
        "The dataset is called LFPW, but 13,466 faces with a 10,000 / 3,466 split is Sun et al. 2013's "
        "training set (LFW + web images); LFPW has about 1,400 faces.",
    ]


TABLES: dict[str, Callable[[], pd.DataFrame]] = {
    "fig4": fig4, "fig5": fig5, "fig6": fig6, "fig7": fig7,
    "table2": table2, "fig3": fig3, "table3": table3,
    "text_numbers": text_numbers, "dataset": dataset, "legible_labels": legible_labels,
}

META: dict[str, dict[str, str]] = {
    "fig4": {"caption": "Test error of each point after each stage", "metric": TEST_ERROR, "unit": "%",
             "normaliser": "face-box width (assumed)", "dataset": DATASET},
    "fig5": {"caption": "First stage with absolute (windows-) and relative (windows+) positioning",
             "metric": TEST_ERROR, "unit": "%", "normaliser": "face-box width (assumed)", "dataset": DATASET},
    "fig6": {"caption": "First stage without (shake-) and with (shake+) shake", "metric": TEST_ERROR,
             "unit": "%", "normaliser": "face-box width (assumed)", "dataset": DATASET},
    "fig7": {"caption": "Test error of each point: Sun et al., Chen Rui and CCNN", "metric": TEST_ERROR,
             "unit": "%", "normaliser": "face-box width (assumed)", "dataset": DATASET},
    "table2": {"caption": "Network structure of the first stage", "metric": "weights without biases",
               "unit": "parameters", "normaliser": "", "dataset": ""},
    "fig3": {"caption": "Network structure of level-2 LE21 (stages 2 and 3)", "metric": "", "unit": "",
             "normaliser": "", "dataset": ""},
    "table3": {"caption": "Parameters and speed of each algorithm", "metric": "model size; time per face",
               "unit": "MB (MiB of float32); ms on an RTX 2080 Ti", "normaliser": "", "dataset": DATASET},
    "text_numbers": {"caption": "Numbers quoted in the text", "metric": "see column", "unit": "see column",
                     "normaliser": "", "dataset": DATASET, "key": "{id}"},
    "dataset": {"caption": "Dataset sizes and augmentation (Sec. 4.1)", "metric": "", "unit": "faces / degrees",
                "normaliser": "", "dataset": DATASET},
    "legible_labels": {"caption": "Chart labels legible in the text but not assignable", "metric": TEST_ERROR,
                       "unit": "%", "normaliser": "face-box width (assumed)", "dataset": DATASET, "key": "{figure}-{#}"},
}


def table(name: str) -> pd.DataFrame:
    """One published table or figure by id (see :data:`TABLES`)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/ccnn/published.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()
