"""The book's chapters, found at run time: each paper's package registers itself, so adding a paper
touches its own folder (``falign/papers/<paper>/``, ``notebooks/<paper>/``) and nothing shared.

A paper package's ``__init__.py`` calls :func:`register` with its title; the kit finds its
experiment (scales, data, claims), aligner adapter and benchmarks by the modules the package holds::

    # falign/papers/mypaper/__init__.py
    from falign.kit.registry import register

    register(__name__, title="MyPaper: what it does")

The book's own chapters (foundations, SynthFace, the comparison, ...) register in
:mod:`falign.chapters`. ``FALIGN_PAPERS`` (directories, ``os.pathsep``-separated) adds paper packages
kept outside the repository, e.g. a toy paper in a test's temporary tree.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import pkgutil
from pathlib import Path
from types import ModuleType

from falign.base import paths

PAPER_ORDER = 50  # papers sit between the book's foundations (< 50) and its comparison chapters (> 50)
# Where chapters register: the book's own chapters (their package's __init__ registers them) and every
# package below falign.papers (each registers itself); FALIGN_PAPERS adds folders to the latter.
BOOK_CHAPTERS, PAPERS = "falign.chapters", "falign.papers"


@dataclasses.dataclass(frozen=True)
class Chapter:
    """One chapter of the book: ``name`` (its folder under ``notebooks/``, ``results/`` and ``book/``),
    the part ``title`` in the table of contents, its place (``order``, then name), and the dotted
    modules that hold its ``experiment`` (``SCALES``, ``DATASETS``, ``datasets()``), its ``aligner``
    adapters and its ``bench`` entries (``BENCHMARKS``), each None where it has none. ``shared_decisions``
    are the kit's decisions (:mod:`falign.kit.decisions`) its Deviations section shows beside its own."""

    name: str
    title: str
    order: int = PAPER_ORDER
    experiment: str | None = None
    aligner: str | None = None
    bench: str | None = None
    notebooks: Path | None = None
    shared_decisions: tuple[str, ...] = ()
    paper: bool = True
    default_aligner: bool = False  # the model ``falign align`` uses when none is named

    @property
    def notebooks_dir(self) -> Path:
        return self.notebooks if self.notebooks is not None else paths.NOTEBOOKS_DIR / self.name

    def module(self, part: str = "experiment") -> ModuleType | None:
        """The imported ``experiment``, ``aligner`` or ``bench`` module (None if the chapter has none)."""
        name = getattr(self, part)
        return importlib.import_module(name) if name else None

    @property
    def datasets(self) -> tuple[str, ...]:
        """The DATA values the chapter honours: its experiment's ``DATASETS``, else SynthFace only."""
        module = self.module()
        return tuple(getattr(module, "DATASETS", ("synthetic",))) if module else ("synthetic",)


_CHAPTERS: dict[str, Chapter] = {}


def register(package: str, *, title: str, order: int = PAPER_ORDER, notebooks: Path | None = None,
             shared_decisions: tuple[str, ...] = (), paper: bool = True, default_aligner: bool = False,
             **modules: str | None) -> Chapter:
    """Register the chapter of ``package`` (a paper package's ``__name__``): its name is the package's
    last part, and its ``experiment``, ``aligner`` and ``bench`` modules are found in it by those names
    unless ``modules`` names them (None: it has none)."""
    name = package.rpartition(".")[2]
    found = {part: modules.get(part, f"{package}.{part}") for part in ("experiment", "aligner", "bench")}
    found = {part: mod if _exists(mod) else None for part, mod in found.items()}
    chapter = Chapter(name, title, order, notebooks=notebooks, shared_decisions=tuple(shared_decisions),
                      paper=paper, default_aligner=default_aligner, **found)
    _CHAPTERS[name] = chapter
    return chapter


def _exists(module: str | None) -> bool:
    try:
        return bool(module) and importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent is a module, not a package
        return False


def _discover() -> None:
    importlib.import_module(BOOK_CHAPTERS)
    papers = importlib.import_module(PAPERS)
    for extra in os.environ.get("FALIGN_PAPERS", "").split(os.pathsep):
        if extra and extra not in papers.__path__:
            papers.__path__.append(extra)
    for info in pkgutil.iter_modules(papers.__path__):
        if info.ispkg:
            importlib.import_module(f"{PAPERS}.{info.name}")


def chapters() -> list[Chapter]:
    """Every registered chapter in book order."""
    _discover()
    return sorted(_CHAPTERS.values(), key=lambda c: (c.order, c.name))


def papers() -> list[Chapter]:
    """The chapters that reproduce a paper."""
    return [c for c in chapters() if c.paper]


def get(name: str) -> Chapter:
    """The chapter called ``name``; an unknown name is a one-line error listing the known ones."""
    known = {c.name: c for c in chapters()}
    if name not in known:
        raise KeyError(f"unknown chapter {name!r}; known: {', '.join(known)}")
    return known[name]


def experiment(name: str) -> ModuleType:
    """The experiment module of chapter ``name`` (its scales, data and claims)."""
    module = get(name).module()
    if module is None:
        raise KeyError(f"chapter {name!r} has no experiment module")
    return module


REAL_PHOTOS = ("compare", "real_photos.csv")   # the table whose "default model" row names the default


def default_aligner() -> str | None:
    """The aligner ``falign align`` uses when none is named: the one the comparison chapter's real-photo
    table marks ``default model`` (the most accurate shipped aligner on real photos,
    :mod:`falign.chapters.real_photos`); before that table exists, the chapter registered with
    ``default_aligner=True``; None if neither."""
    import csv

    table = paths.RESULTS_DIR.joinpath(*REAL_PHOTOS)
    if table.is_file():
        with open(table, newline="") as fh:
            chosen = [r["method"].lower() for r in csv.DictReader(fh) if r.get("default model") == "True"]
        if chosen:
            return chosen[0]
    return next((c.name for c in chapters() if c.default_aligner), None)
