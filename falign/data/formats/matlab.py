"""Read MATLAB .mat files of either generation into one plain-Python representation.

Face datasets ship annotations as MAT-files saved by different MATLAB versions: v7 files are read
with ``scipy.io.loadmat``; v7.3 files are HDF5 and read with ``h5py``. HDF5 stores MATLAB's
column-major arrays with their axes reversed (a MATLAB (n, 4) matrix is an HDF5 (4, n) dataset),
strings as uint16 character codes and cell arrays as object references into ``#refs#``. Both readers
return the same thing, so loaders never care which version they got:

* numeric and logical arrays: ``np.ndarray`` in MATLAB's shape (at least 2-D, as MATLAB has it);
* char arrays: ``str``;
* cell arrays and struct arrays: object ``np.ndarray`` in MATLAB's shape;
* a struct: ``dict`` of field name to value.

MAT-files keep MATLAB's 1-based pixel coordinates; loaders subtract 1.
"""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np
import scipy.io
from scipy.io.matlab import mat_struct

from falign.data.sample import DataError


def load_mat(path: str | os.PathLike) -> dict[str, Any]:
    """All variables of a MAT-file (v7 or v7.3), converted as described in the module docstring."""
    if not os.path.isfile(path):
        raise DataError("MATLAB file not found", path)
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                return {name: _from_h5(f, f[name]) for name in f if not name.startswith("#")}
        raw = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=False, chars_as_strings=True)
    except Exception as err:  # scipy's and h5py's parsers fail on damaged bytes in many ways (IndexError, ...)
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"cannot read MATLAB file: not a MAT-file, or a truncated or corrupt one ({why})",
                        path) from None
    return {name: _from_scipy(v) for name, v in raw.items() if not name.startswith("__")}


def variable(mat: dict[str, Any], path: str | os.PathLike, *names: str) -> Any:
    """The first of ``names`` present in ``mat``; a DataError listing what the file holds otherwise."""
    for name in names:
        if name in mat:
            return mat[name]
    wanted = " or ".join(repr(n) for n in names)
    raise DataError(f"MATLAB variable {wanted} not found; the file holds {sorted(mat)}", path)


def cell_items(value: Any) -> list[Any]:
    """Elements of a cell or struct array in MATLAB's linear (column-major) order.

    One-element wrappers are removed, so a cell of 1x1 structs and a struct array both give dicts.
    """
    if not (isinstance(value, np.ndarray) and value.dtype == object):
        return [value]
    return [unwrap(v) for v in value.ravel(order="F")]


def unwrap(value: Any) -> Any:
    """Strip 1x1 cell wrappers (scipy returns a struct inside a cell as a 1x1 object array)."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.flat[0]
    return value


def _from_scipy(value: Any) -> Any:
    if isinstance(value, mat_struct):
        return {f: _from_scipy(getattr(value, f)) for f in value._fieldnames}
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind == "U":
        return "".join(value.ravel().tolist())
    if value.dtype == object:
        out = np.empty(value.shape, dtype=object)
        for index in np.ndindex(value.shape):
            out[index] = _from_scipy(value[index])
        return out
    return value


def _from_h5(f: h5py.File, obj: h5py.Dataset | h5py.Group) -> Any:
    if isinstance(obj, h5py.Group):
        return {name: _from_h5(f, obj[name]) for name in obj}
    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else np.zeros((0, 0))
    data = obj[()]
    if h5py.check_dtype(ref=obj.dtype) is not None:
        refs = np.asarray(data).T
        out = np.empty(refs.shape, dtype=object)
        for index in np.ndindex(refs.shape):
            out[index] = _from_h5(f, f[refs[index]])
        return out
    data = np.asarray(data).T
    if cls == "char":
        return data.astype("<u2").tobytes().decode("utf-16-le")
    if cls == "logical":
        return data.astype(bool)
    return data
