"""Face data: the :class:`Sample` record, real-format loaders behind one registry, transforms.

``get_dataset(name, split)`` reads a benchmark from the data root (``DATA_ROOT``); the loaders
convert every format to 0-based pixel coordinates. :mod:`falign.data.transforms` crops and augments
samples with one affine per sample, keeping pixels and landmarks consistent.
"""

from falign.data.formats.ibug import read_pts, write_pts
from falign.data.registry import DATASETS, DatasetSpec, get_dataset, register
from falign.data.sample import DataError, FaceDataset, Sample, read_image

__all__ = [
    "DATASETS", "DataError", "DatasetSpec", "FaceDataset", "Sample", "get_dataset", "read_image",
    "read_pts", "register", "write_pts",
]

