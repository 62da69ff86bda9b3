"""What the available text of MSRRN gives: C. Wang, H. Sun, J. Lu, J. Feng, J. Zhou, "Multiscale
recurrent regression networks for face alignment", Applied Informatics 4:13, 2017, transcribed once,
exactly as printed.

The extracted text lost the paper's equations 1-6, Table 1 (300-W errors of MSRRN and 12 methods),
Table 2 (errors by number of stages) and the figures (Fig. 2: the network; Figs. 3-4: CED curves). No
number of MSRRN's own accuracy survives, so this module holds only what the prose states: data sizes,
scales, augmentation, the methods compared and the speed (:func:`text_numbers`,
:func:`training_protocol`), the list of what is absent (:func:`absent`) and Table 1's rows for other
methods rebuilt from the two papers the book already transcribes (:func:`rebuilt_table1`): the text says
those rows were "directly cropped from the original papers", and RCSR (Table 1) and CFDRNN (Table 5)
print the same methods' published 300-W numbers. The paper has no numbered sections; a number's
``section`` names the heading it stands under.

Metric (Experimental results, "Implementational details"): the point-to-point error averaged over the
68 points and normalised by the distance between the pupils ("NRMSE"), and CED curves of it.
"""

from __future__ import annotations

import re
from typing import Callable

import pandas as pd

PAPER = "msrrn"
CITATION = ("C. Wang, H. Sun, J. Lu, J. Feng, J. Zhou. Multiscale recurrent regression networks for face "
            "alignment. Applied Informatics 4:13, 2017. doi:10.1186/s40535-017-0042-5")

NME_IPD = "NME (%, normalised by the inter-pupil distance)"
SUBSETS = ("common", "challenging", "full")


def methods() -> pd.DataFrame:
    """The 12 methods Table 1 compares with ("Comparisons with state-of-the-art methods"), in the
    text's order, with the reference it gives; ``fig3`` marks the five the authors re-implemented for
    the CED curves of Fig. 3; ``name`` is the short name the book matches rows by."""
    rows = [
        ("FPLL", "Zhu and Ramanan 2012", False), ("DRMF", "Asthana et al. 2013", True),
        ("RCPR", "Burgos-Artizzu et al. 2013", True), ("SDM", "Xiong and De la Torre 2013", False),
        ("GN-DPM", "Tzimiropoulos and Pantic 2014", False), ("ESR", "Cao et al. 2012", False),
        ("LBF", "Ren et al. 2014", False), ("ERT", "Kazemi and Sullivan 2014", False),
        ("CFSS", "Zhu et al. 2015", True), ("CFAN", "Zhang et al. 2014", True),
        ("BPCPR", "Sun et al. 2015", False), ("TCDCN", "Zhang et al. 2016", True),
    ]
    return pd.DataFrame(rows, columns=["name", "reference", "fig3"])


def text_numbers() -> pd.DataFrame:
    """Numbers given in running text, each with the heading it stands under and the quantity it
    measures; the ``id`` column names each for :func:`number`."""
    rows = [
        ("landmarks", "proposed-method", "landmarks L", 68, "points", ""),
        ("stages", "proposed-method", "stages T (the face is downscaled three times)", 3, "stages", ""),
        ("lfpw-train", "datasets", "LFPW training images", 811, "images", ""),
        ("lfpw-test", "datasets", "LFPW testing images", 224, "images", ""),
        ("helen-train", "datasets", "HELEN training images", 2000, "images", ""),
        ("helen-test", "datasets", "HELEN testing images", 330, "images", ""),
        ("ibug", "datasets", "IBUG images (the challenging set)", 135, "images", ""),
        ("face-sizes", "implementation", "cropped faces rescaled to (side)", "200, 100, 50", "px", ""),
        ("train-images", "implementation", "training images of LFPW and HELEN", 3148, "images", ""),
        ("noise-sigma", "implementation", "per-pixel Gaussian noise sigma (unit not stated)", 0.5, "", ""),
        ("rotation", "implementation", "in-plane rotations, uniform in +-", 15, "degrees", ""),
        ("methods-compared", "comparisons", "state-of-the-art methods compared in Table 1", 12, "methods", ""),
        ("methods-reimplemented", "comparisons", "methods re-implemented for the CED curves of Fig. 3", 5,
         "methods", ""),
        ("stages-tested", "stages", "stage counts of Table 2 (after the mean shape)", "1, 2, 3", "stages", ""),
        ("train-hours", "computational-time", "training time for 10,000 iterations, GTX 1080", 10, "h", ""),
        ("train-iterations", "computational-time", "training iterations", 10000, "iterations", ""),
        ("gpu-fps", "computational-time", "inference speed, NVIDIA GTX 1080", 100, "frames/s", ""),
        ("cpu-fps", "computational-time", "inference speed, Core i7 CPU", 10, "images/s", ""),
        ("cpu-ghz", "computational-time", "CPU clock (Core i7)", 3.6, "GHz", ""),
    ]
    return pd.DataFrame(rows, columns=["id", "section", "quantity", "value", "unit", "metric"])


def training_protocol() -> dict:
    """The training and evaluation protocol as the prose states it; what it leaves out is named."""
    return {
        "train_images": 3148, "face_sizes": [200, 100, 50], "stages": 3, "landmarks": 68,
        "noise_sigma": 0.5, "rotation_degrees": 15, "iterations": 10000, "train_hours": 10,
        "landmark_range": "ground-truth coordinates normalised to [0, 1]",
        "augmentation": "per-pixel Gaussian noise (sigma 0.5), flipping, in-plane rotations uniform in +-15 degrees",
        "detector": "face boxes from the dlib library",
        "loss": "sum over stages of ||S* - S^t||^2 plus lambda ||W||^2 (Eq. 5, lost in extraction)",
        "optimiser": "stochastic gradient descent; the shared parameters updated with the gradients averaged "
                     "over the stages (Eq. 6, lost)",
        "initial_shape": "a separate CNN predicts S^0; the mean shape is the baseline of Table 2",
        "framework": "TensorFlow, NVIDIA GTX 1080",
        "error": "NRMSE normalised by the inter-pupil distance; CED curves",
        "not_given": "the network (Fig. 2), patch size, lambda, learning rate, batch size, noise unit, "
                     "input colour, crop margin",
    }


def absent() -> pd.DataFrame:
    """What the text refers to but the extraction lost: the book says so where each would stand."""
    rows = [
        ("Eq. 1-6", "the cascade, the regression network, the patches, the objective (with and without "
                    "sharing) and the update rule", "reconstructed from the prose (falign.papers.msrrn.model)"),
        ("Table 1", "average errors of MSRRN and 12 methods on 300-W (other methods 'directly cropped from "
                    "the original papers')", "other methods rebuilt from RCSR Table 1 and CFDRNN Table 5; "
                                             "MSRRN's own row absent"),
        ("Table 2", "average errors of the mean shape and of 1, 2 and 3 stages",
         "the paper's numbers absent; our analogue: the mean shape, S0 and models trained with T = 1, 2, 3"),
        ("Fig. 1", "the framework: the face pyramid, the shared regression network and the stages",
         "absent; the model section describes it from the prose"),
        ("Fig. 2", "specification of the network (conv, pooling and fully connected layers)",
         "reconstructed; every choice in the deviations ledger"),
        ("Fig. 3", "CED curves of MSRRN and of DRMF, RCPR, CFAN, TCDCN and CFSS (re-implemented)",
         "the paper's curves absent; our analogue: MSRRN, SDM + HOG and the mean shape on this run's faces"),
        ("Fig. 4", "CED curves per number of stages",
         "the paper's curves absent; our analogue: the initial shape and every stage of our MSRRN"),
        ("Fig. 5", "example alignments", "the paper's absent; our analogue: faces at three error percentiles"),
        ("Algorithm 1", "the optimisation procedure", "absent; the prose describes it"),
    ]
    return pd.DataFrame(rows, columns=["item", "what the text says it shows", "in this book"])


def notes() -> list[str]:
    """What is absent from the text and where it disagrees with itself or with its sources."""
    return [
        "Equations 1-6, Tables 1-2, Algorithm 1 and every figure are lost in the available text: MSRRN's own "
        "errors, its network specification (Fig. 2), lambda, the learning rate and the batch size are unknown.",
        "The 3,148 training images are said to be 'of the LFPW and HELEN datasets', but LFPW (811) and HELEN "
        "(2,000) training sets hold 2,811; 3,148 is 300-W's usual training set, which adds AFW's 337.",
        "The abstract calls the method 'MSRNN' once; everywhere else it is MSRRN.",
        "Table 1's other rows were 'directly cropped from the original papers'. The book rebuilds nine of them "
        "(ESR, RCPR, SDM, LBF, CFSS, ERT, GN-DPM, CFAN, TCDCN) from RCSR's Table 1 and CFDRNN's Table 5; "
        "FPLL, DRMF and BPCPR have no row there under those names (RCSR prints 'Zhu et al. [43]' and "
        "'DFMF [48]', which may be FPLL and DRMF; not assumed).",
        "Each rebuilt row keeps the normaliser its source module gives (its 'normaliser' column). RCSR's Table 1 "
        "prints none: the RCSR transcription labels inter-pupil the rows copied from inter-pupil sources (ESR, "
        "SDM, LBF, CFSS; LBF's and CFSS's numbers are those of CFDRNN's Table 5 inter-pupil block) and the "
        "others 'not stated'; none is labelled inter-ocular.",
        "The error is 'normalised by the Euclidean distance of pupils of eyes' (inter-pupil); 300-W annotates "
        "no pupils, so the pupil is taken as the mean of each eye's six points (falign.measure.metrics).",
        "Speed: 100 frames/s on a GTX 1080 and 10 images/s on a Core i7 at 3.6 GHz; the batch size and what "
        "a frame includes (detection, cropping) are not stated.",
        "The noise sigma of 0.5 has no unit: on 0-255 intensities it is below one grey level, on [0, 1] "
        "intensities half the range.",
    ]


# --------------------------------------------------------------------------------------------------
# Table 1's other rows, rebuilt from the RCSR and CFDRNN transcriptions
# --------------------------------------------------------------------------------------------------
_VARIANT = re.compile(r"\s*\[\d+\]\s*$")


def _short(method: str) -> str:
    """'ESR [49]' -> 'ESR'; a method name without its reference number."""
    return _VARIANT.sub("", method).strip()


def rebuilt_table1(names: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Table 1's rows for other methods, as RCSR's Table 1 and CFDRNN's Table 5 print them: one row per
    method and source, with the source paper, table and the normaliser that source states.

    ``names`` (default: the methods of :func:`methods` that either source prints, by short name) are
    matched to a source row whose name is exactly the short name plus its reference number, so
    variants ("LBF fast", "CFSS Practical") are not taken. The numbers and each row's normaliser are read
    from the two modules, never retyped or restated, so a label fixed there is fixed here; NaN where a
    source leaves a cell empty."""
    from falign.papers.cfdrnn import published as cfdrnn
    from falign.papers.rcsr import published as rcsr

    wanted = set(names or methods()["name"])
    sources = [("RCSR (Wang et al. 2018)", "Table 1", rcsr.table1()),
               ("CFDRNN (Mahpod et al. 2018)", "Table 5", cfdrnn.table5())]
    rows = []
    for paper, table, df in sources:
        for _, r in df.iterrows():
            name = _short(r["method"])
            if name in wanted:
                rows.append({"method": name, **{s: r[s] for s in SUBSETS}, "source": paper, "table": table,
                             "as printed": r["method"], "normaliser": r["normaliser"]})
    out = pd.DataFrame(rows, columns=["method", *SUBSETS, "source", "table", "as printed", "normaliser"])
    order = {n: i for i, n in enumerate(methods()["name"])}
    return out.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)


TABLES: dict[str, Callable[[], pd.DataFrame]] = {"methods": methods, "text_numbers": text_numbers}

META: dict[str, dict] = {
    "methods": {"caption": "Methods compared in Table 1 (their numbers are lost with the table)",
                "metric": NME_IPD, "dataset": "300-W: common / challenging / full", "values": []},
    "text_numbers": {"caption": "Numbers quoted in the text", "metric": "see column", "dataset": "various",
                     "key": "{id}", "values": ["value"]},
}
"""What each table's numbers mean (``key`` and ``values`` as in :mod:`falign.papers`)."""


def table(name: str) -> pd.DataFrame:
    """One table by id (``"methods"``, ``"text_numbers"``)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/msrrn/published.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def number(id: str) -> float:
    """One number by its stable id, e.g. ``number("text_numbers/gpu-fps")`` -> 100."""
    from falign import papers

    return papers.number(PAPER, id)


def ids() -> list[str]:
    """The id of every number of this paper (:mod:`falign.papers` gives the scheme)."""
    from falign import papers

    return papers.ids(PAPER)
