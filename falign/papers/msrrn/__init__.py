"""Multiscale recurrent regression (MSRRN): the paper's published numbers (``published``), its model as the method
section reads (``model``), the experiment that reproduces its tables and claims (``experiment``), its
aligner adapter (``aligner``) and its benchmarks (``bench``)."""

from falign.kit.registry import register

register(__name__, title="MSRRN: multiscale recurrent regression",
         shared_decisions=("precision.per-machine", "protocol300w.full-set", "hog.cells"))
