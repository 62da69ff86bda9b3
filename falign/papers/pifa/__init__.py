"""Pose-invariant face alignment with a 3DMM and a visualization layer (PIFA): the paper's published numbers (``published``), its model as the method
section reads (``model``), the experiment that reproduces its tables and claims (``experiment``), its
aligner adapter (``aligner``) and its benchmarks (``bench``)."""

from falign.kit.registry import register

register(__name__, title="PIFA: pose-invariant alignment with a single CNN",
         shared_decisions=("precision.per-machine", "hog.cells"))
