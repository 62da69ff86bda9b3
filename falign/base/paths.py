"""Where things live, derived from the package location, never from the current directory.

Papermill, nbval and JupyterLab start kernels in different working directories, so every path the
library uses is anchored at the repository root found from this file.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = ROOT / "notebooks"
BOOK_DIR = ROOT / "book"
RESULTS_DIR = ROOT / "results"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name, "")
    return Path(value).expanduser().resolve() if value else default


def cache_dir() -> Path:
    """Generated data (SynthFace) lives here; ``FALIGN_CACHE`` overrides."""
    return _env_path("FALIGN_CACHE", ROOT / ".cache")


def work_dir() -> Path:
    """Checkpoints and cached predictions shared by a chapter's notebooks; ``FALIGN_WORK`` overrides."""
    return _env_path("FALIGN_WORK", ROOT / "build" / "work")


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    """Root of the real datasets: the argument, else ``DATA_ROOT``, else ``FALIGN_DATA``, else None."""
    for value in (explicit, os.environ.get("DATA_ROOT"), os.environ.get("FALIGN_DATA")):
        if value:
            return Path(value).expanduser().resolve()
    return None
