"""falign: the thin library behind the face-alignment reproducibility book.

The notebooks under ``notebooks/`` import it; everything reused by two notebooks, or worth a unit
test, lives here. The layout is in README.md ("Layout") and the book's Foundations chapter.
"""

__version__ = "0.1.0"


def load(path_or_name, device="cpu"):
    """A ready aligner: ``falign.load(name).predict(photo, boxes)`` -> (B, N, 2) landmarks, or
    ``falign.load(name).detect_and_align(photo)`` -> one dict per face dlib's detector finds.

    A thin wrapper so ``import falign`` stays cheap (torch loads only here); see :mod:`falign.kit.aligner`.
    """
    from falign.kit.aligner import load as _load

    return _load(path_or_name, device=device)
