"""falign: the thin library behind the face-alignment reproducibility book.

The notebooks under ``notebooks/`` import it; everything reused by two notebooks, or worth a unit
test, lives here. See ``../shared/DESIGN.md`` (or the book's Foundations chapter) for the layout.
"""

__version__ = "0.1.0"
