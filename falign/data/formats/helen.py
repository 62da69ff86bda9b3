"""Helen (Le et al., ECCV 2012): 2,330 images with 194 landmarks (2,000 train, 330 test).

``annotation/<k>.txt`` files: the first line is the image name (without extension), then 194 lines
``x , y``. ``trainnames.txt`` and ``testnames.txt`` list the image names of each split. Images may
sit in any sub-folder (the release unpacks to several). Coordinates are taken as 0-based pixels, as
written. The box is the tight box around the landmarks (Helen ships none).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from falign.data.formats.ibug import IMAGE_SUFFIXES
from falign.data.sample import DataError, Sample, check_image, make_sample

N_POINTS = 194
SIZES = {"train": 2000, "test": 330}
NAMES = {"train": "trainnames.txt", "test": "testnames.txt"}
LAYOUT = """\
  annotation/<k>.txt          first line image name, then 194 lines 'x , y'
  trainnames.txt testnames.txt  image names of each split, one per line
  <any folder>/<name>.jpg     the images (e.g. helen_1/ ... helen_5/ as unpacked)
splits: train 2000, test 330"""


def load_helen(root: Path, split: str) -> Iterator[Callable[[], Sample]]:
    """Helen faces of ``split``, matched to their annotation file by the name on its first line."""
    names_file = root / NAMES[split]
    folder = root / "annotation"
    if not folder.is_dir():
        raise DataError("Helen annotation folder missing", folder)
    try:
        names = names_file.read_text().splitlines()
    except OSError as err:
        raise DataError(f"cannot read the split's name list ({err.strerror})", names_file) from None
    annotations = {}
    for txt in sorted(folder.glob("*.txt")):
        with open(txt, encoding="utf-8", errors="replace") as f:
            annotations[f.readline().strip()] = txt
    images = {p.stem: p for p in sorted(root.rglob("*")) if p.suffix in IMAGE_SUFFIXES}
    for number, name in enumerate(names, 1):
        if name.strip():
            yield partial(_face, name.strip(), annotations, images, names_file, number)


def _face(name: str, annotations: dict, images: dict, names_file: Path, number: int) -> Sample:
    if name not in annotations:
        raise DataError(f"no annotation/*.txt file names image {name!r}", names_file, number)
    if name not in images:
        raise DataError(f"image {name!r} not found under {names_file.parent}", names_file, number)
    txt = annotations[name]
    rows = txt.read_text(encoding="utf-8", errors="replace").splitlines()[1:]
    while rows and not rows[-1].strip():
        rows.pop()
    if len(rows) != N_POINTS:
        raise DataError(f"expected {N_POINTS} points, found {len(rows)}", txt)
    points = []
    for line_no, row in enumerate(rows, 2):
        x, _, y = row.partition(",")
        try:
            points.append((float(x), float(y)))
        except ValueError:
            raise DataError(f"expected 'x , y', found {row.strip()!r}", txt, line_no) from None
    return make_sample(np.array(points), scheme="helen194", source=images[name], where=txt,
                       point_lines=range(2, 2 + len(points)), size=check_image(images[name]),
                       extra={"annotation": str(txt)})
