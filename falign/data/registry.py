"""One name per benchmark and one function to get a split of it: ``get_dataset("300w", "common")``.

Real datasets live under a data root (``DATA_ROOT`` or ``FALIGN_DATA``, or the ``root`` argument),
each in its own folder named after the dataset; :data:`DATASETS` says which files each expects.
Other modules add datasets with :func:`register` (SynthFace registers ``"synthetic"``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from falign.data.formats import aflw_pifa, afw, cofw, helen, ibug, sun5
from falign.data.sample import DataError, FaceDataset, Sample
from falign.base.paths import data_root

log = logging.getLogger("falign.data")

Builder = Callable[[], "Sample | None"]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find and read one dataset.

    ``loader(folder, split, **options)`` returns either an iterable of builders (zero-argument
    functions returning a :class:`Sample`, None for "not in this split", or raising
    :class:`DataError`; see :mod:`falign.data.formats`) or a finished :class:`FaceDataset`.
    ``folder`` is the dataset's sub-folder of the data root, None for generated data (the loader
    then gets None). ``layout`` describes the files expected there; ``sizes`` the standard number
    of faces per split, reported against what was found.
    """

    loader: Callable[..., Iterable[Builder] | FaceDataset]
    splits: tuple[str, ...]
    scheme: str | Mapping[str, str]
    title: str
    layout: str = ""
    folder: str | None = None
    sizes: Mapping[str, int] = field(default_factory=dict)

    def scheme_for(self, split: str) -> str:
        return self.scheme if isinstance(self.scheme, str) else self.scheme[split]


DATASETS: dict[str, DatasetSpec] = {}
# Generated datasets register when their module is imported; :func:`get_dataset` imports them on demand.
GENERATORS = ("falign.synthface.dataset",)


def _load_generators() -> None:
    import importlib

    for module in GENERATORS:
        importlib.import_module(module)


def names() -> tuple[str, ...]:
    """Every dataset name DATA accepts: the real loaders and the generated sets."""
    _load_generators()
    return tuple(DATASETS)


def register(name: str, spec: DatasetSpec) -> None:
    """Make ``name`` available to :func:`get_dataset` (re-registering replaces, so reloads work)."""
    DATASETS[name] = spec


register("300w", DatasetSpec(
    ibug.load_300w, tuple(ibug.SPLITS_300W), "ibug68", "300-W (iBUG), 68 points",
    ibug.LAYOUT_300W, "300w", ibug.SIZES_300W))
register("aflw-pifa", DatasetSpec(
    aflw_pifa.load_aflw_pifa, ("train", "test"), "aflw-pifa34", "AFLW-PIFA, 34 points",
    aflw_pifa.LAYOUT, "aflw-pifa", aflw_pifa.SIZES))
register("afw", DatasetSpec(
    afw.load_afw, ("test",), "afw6", "AFW, 6 points", afw.LAYOUT, "afw", afw.SIZES))
register("lfpw5", DatasetSpec(
    sun5.load_sun5, ("train", "test"), "five", "Sun et al. 5-point LFPW/LFW lists",
    sun5.LAYOUT, "lfpw5"))
register("helen", DatasetSpec(
    helen.load_helen, ("train", "test"), "helen194", "Helen, 194 points", helen.LAYOUT, "helen",
    helen.SIZES))
register("cofw", DatasetSpec(
    cofw.load_cofw, ("train", "test"), "cofw29", "COFW, 29 points", cofw.LAYOUT, "cofw", cofw.SIZES))
register("menpo", DatasetSpec(
    ibug.load_menpo, tuple(ibug.MENPO_SCHEMES), ibug.MENPO_SCHEMES, "Menpo 2017, 68 / 39 points",
    ibug.LAYOUT_MENPO, "menpo"))


def get_dataset(
    name: str,
    split: str,
    root: str | os.PathLike | None = None,
    skip_invalid: bool = False,
    limit: int | None = None,
    **options: Any,
) -> FaceDataset:
    """Load ``split`` of dataset ``name`` as a :class:`FaceDataset` (images decoded on access).

    ``root`` is the data root (default: ``DATA_ROOT``, else ``FALIGN_DATA``). Bad items raise
    :class:`DataError`; with ``skip_invalid=True`` they are dropped, listed in ``dataset.skipped``
    and summarised in a warning. ``limit`` keeps the first ``limit`` valid faces (smoke runs).
    Extra ``options`` go to the loader (generated datasets take sizes and seeds).
    """
    if name not in DATASETS:
        _load_generators()
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    if split not in spec.splits:
        raise ValueError(f"dataset {name!r} has no split {split!r}; splits: {', '.join(spec.splits)}")
    folder = None if spec.folder is None else _dataset_folder(name, spec, root)
    made = spec.loader(folder, split, **options)
    if isinstance(made, FaceDataset):
        return made if limit is None else made[:limit]
    samples, skipped = _collect(made, skip_invalid, limit)
    counts = dict(Counter(s.extra.get("subset", split) for s in samples))
    dataset = FaceDataset(samples, name=name, split=split, scheme=spec.scheme_for(split),
                          skipped=skipped, counts=counts)
    log.info("%s/%s: %d faces from %s (%s)", name, split, len(dataset), folder,
             ", ".join(f"{k} {v}" for k, v in counts.items()))
    # A partial copy runs, but says so where the user sees it (a warning reaches the terminal, a log line
    # stays in the notebook): fewer faces than asked for, or a full split of non-standard size.
    standard = spec.sizes.get(split)
    wanted = standard if limit is None else limit if standard is None else min(limit, standard)
    if wanted is not None and (len(dataset) < wanted or (limit is None and len(dataset) != standard)):
        short = f"the standard split has {standard}" if limit is None else \
            f"fewer than the {wanted} expected" + (f" (the standard split has {standard})" if standard else "")
        warnings.warn(f"{folder}: {len(dataset)} faces in {name}/{split}, {short}; numbers will not be comparable "
                      "with published ones", stacklevel=2)
    if skipped:
        warnings.warn(f"{name}/{split}: skipped {len(skipped)} invalid item(s), kept {len(samples)} "
                      f"(first: {skipped[0][1]}); the list is in dataset.skipped", stacklevel=2)
    return dataset


def _dataset_folder(name: str, spec: DatasetSpec, root: str | os.PathLike | None) -> Path:
    """``<data root>/<folder>``, or a DataError that says how to set the root and what goes there."""
    expected = f"Expected under <DATA_ROOT>/{spec.folder}/ ({spec.title}):\n{spec.layout}"
    base = data_root(root)
    if base is None:
        raise DataError(
            f"no data root for dataset {name!r}: set DATA_ROOT=/path/to/data (environment variable, "
            f"or `make reproduce DATA_ROOT=/path/to/data`; FALIGN_DATA also works) or pass root=. "
            f"{expected}")
    if base.exists() and not base.is_dir():
        raise DataError(f"the data root is a file, not a folder (DATA_ROOT / FALIGN_DATA must name the folder "
                        f"that holds the datasets). {expected}", base)
    if not base.exists():
        raise DataError(f"the data root does not exist (DATA_ROOT / FALIGN_DATA). {expected}", base)
    folder = base / spec.folder
    if not folder.is_dir():
        raise DataError(f"dataset folder not found (data root {base}). {expected}", folder)
    return folder


def _collect(builders: Iterable[Builder], skip_invalid: bool, limit: int | None):
    """Run the builders: faces they reject are raised, or kept aside with ``skip_invalid``."""
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    for build in builders:
        if limit is not None and len(samples) >= limit:
            break
        try:
            sample = build()
        except DataError as err:
            if not skip_invalid:
                raise
            skipped.append((err.source or "", str(err)))
            continue
        if sample is not None:
            samples.append(sample)
    return samples, skipped
