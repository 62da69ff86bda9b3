"""Where the field is now: state-of-the-art 300-W results as their authors published them.

The comparison chapter (:mod:`falign.chapters.compare`) shows these rows *as reported*, in a block
of their own, never beside our measured rows as if measured alike: they are real-photo numbers from
models trained on the real 300-W training set (3,148 images), with each paper's own protocol code.
Every number is the mean per-image NME in percent on the 300-W test sets (common 554 images,
challenging 135, full 689), normalised by the distance between the outer eye corners (the 300-W
"inter-ocular" convention), as each paper's table states. Ids for :func:`falign.papers.number`:
``"300w/star/full"``.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

PAPER = "sota"
CITATION = "State-of-the-art 300-W rows, as reported by their authors (sources per row)."

NME_IOD = "NME (%, normalised by the outer-eye-corner distance), mean over images"


def table_300w() -> pd.DataFrame:
    """Four recent methods on 300-W (68 points), each from its own paper."""
    rows = [
        ("STAR", "CVPR 2023", 2.52, 4.32, 2.87, "inter-ocular",
         "Zhou et al., STAR Loss: Reducing Semantic Ambiguity in Facial Landmark Detection, CVPR 2023"),
        ("ADNet", "ICCV 2021", 2.53, 4.58, 2.93, "inter-ocular",
         "Huang et al., ADNet: Leveraging Error-Bias Towards Normal Direction in Face Alignment, ICCV 2021"),
        ("SPIGA", "BMVC 2022", 2.59, 4.66, 2.99, "inter-ocular",
         "Prados-Torreblanca et al., Shape Preserving Facial Landmarks with Graph Attention Networks, BMVC 2022"),
        ("HRNetV2-W18", "TPAMI 2020", 2.87, 5.15, 3.32, "inter-ocular",
         "Wang et al., Deep High-Resolution Representation Learning for Visual Recognition, TPAMI 2020, "
         "300-W table"),
    ]
    return pd.DataFrame(rows, columns=["method", "venue", "common", "challenging", "full", "normaliser", "source"])


TABLES: dict[str, Callable[[], pd.DataFrame]] = {"300w": table_300w}

META: dict[str, dict[str, str]] = {
    "300w": {"caption": "State of the art on 300-W, as reported", "metric": NME_IOD,
             "dataset": "300-W (68 points): common / challenging / full",
             "values": ["common", "challenging", "full"]},
}


def table(name: str) -> pd.DataFrame:
    """One table by id (``"300w"``)."""
    if name not in TABLES:
        raise KeyError(f"falign/papers/sota.py: no table {name!r}; known: {', '.join(TABLES)}")
    return TABLES[name]()


def number(id: str) -> float:
    """One published number by its stable id, e.g. ``number("300w/star/full")`` -> 2.87."""
    from falign import papers

    return papers.number(PAPER, id)


def ids() -> list[str]:
    from falign import papers

    return papers.ids(PAPER)
