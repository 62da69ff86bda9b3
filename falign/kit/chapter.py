"""One module per chapter (data preparation, scale configurations, training, evaluation), and the
one call that opens every chapter notebook: :func:`setup`."""

from __future__ import annotations

import importlib
from typing import Any

from falign.kit import report


def setup(paper: str, notebook: str, *, load_data: bool = True, **params: Any) -> tuple[report.Run, Any, dict]:
    """Open a notebook's run (provenance, output folder, seeds), pick the chapter's scale
    configuration and, with ``load_data``, prepare the chapter's datasets; returns (run, cfg, crops)
    with every dataset's fingerprint recorded in the run."""
    run = report.start(paper, notebook, **params)
    chapter = importlib.import_module(f"falign.kit.chapter.{paper}")
    cfg = chapter.SCALES[run.scale]
    crops = chapter.datasets(cfg, data=run.data, root=params.get("DATA_ROOT", ""), seed=run.seed) if load_data else {}
    for c in crops.values():
        run.dataset(c.name, c.fingerprint)
    print(run.label())
    return run, cfg, crops
