"""Sun et al.'s 5-point lists (CVPR 2013 cascade CNN): the LFPW/LFW 5-point train and test sets.

``trainImageList.txt`` and ``testImageList.txt``, one face per line::

    lfw_5590\\Aaron_Eckhart_0001.jpg 84 161 92 169 106.25 107.75 ... (10 numbers)

the image path relative to the list (``\\`` separators), the box as **left right top bottom**, then
x y of left eye, right eye, nose, left mouth corner, right mouth corner. Coordinates are taken as
0-based pixels, as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.sample import DataError, Sample, check_image, make_sample

LISTS = {"train": "trainImageList.txt", "test": "testImageList.txt"}
LAYOUT = """\
  trainImageList.txt  testImageList.txt   lines 'path left right top bottom x1 y1 ... x5 y5'
  lfw_5590/ net_7876/ ...                 the images, at the paths the lists give
splits: train, test"""


def load_sun5(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """Faces of Sun et al.'s ``trainImageList.txt`` or ``testImageList.txt``."""
    path = root / LISTS[split]
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        raise DataError(f"cannot read the image list ({err.strerror})", path) from None
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield partial(_face, root, path, number, line)


def _face(root: Path, path: Path, number: int, line: str) -> Sample:
    fields = line.split()
    if len(fields) != 15:
        raise DataError(f"expected 15 fields (path, 4 box values, 10 coordinates), found {len(fields)}",
                        path, number)
    try:
        values = np.array(fields[1:], dtype=np.float64)
    except ValueError:
        raise DataError(f"non-numeric field in {line.strip()!r}", path, number) from None
    left, right, top, bottom = values[:4]
    image = root / fields[0].replace("\\", "/")
    if not image.is_file():
        raise DataError(f"image {fields[0]!r} not found under {root}", path, number)
    return make_sample(values[4:].reshape(5, 2), box=[left, top, right, bottom], scheme="five",
                       source=image, where=path, line=number, size=check_image(image),
                       extra={"annotation": f"{path}:{number}"})
