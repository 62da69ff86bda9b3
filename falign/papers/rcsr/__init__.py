"""Recurrent convolutional shape regression with a ConvGRU (RCSR): the paper's published numbers (``published``), its model as the method
section reads (``model``), the experiment that reproduces its tables and claims (``experiment``), its
aligner adapter (``aligner``) and its benchmarks (``bench``)."""

from falign.kit.registry import register

# The default of ``falign align`` (as it has been since the command existed): 68 points, the iBUG scheme
# most users expect.
register(__name__, title="RCSR: recurrent convolutional shape regression",
         shared_decisions=("precision.per-machine", "protocol300w.full-set", "hog.cells"), default_aligner=True)
