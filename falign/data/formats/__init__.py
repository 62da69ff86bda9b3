"""Readers for the on-disk formats of the real benchmarks, one module per dataset family.

Each ``load_*`` function takes the dataset's folder and a split name and yields one builder per
face: a zero-argument function that parses and validates that face and returns its
:class:`~falign.data.sample.Sample` (pixels not yet decoded), or raises
:class:`~falign.data.sample.DataError`. Problems with a whole file (a missing folder, a corrupt
MAT-file, arrays of mismatched lengths) raise while iterating. This split is what lets
``get_dataset(..., skip_invalid=True)`` drop bad faces one by one and still fail loudly on
structural damage; see :mod:`falign.data.registry`.
"""
