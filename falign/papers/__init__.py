"""Each paper's published numbers, transcribed once with their table and figure ids.

A paper's ``published`` module (:mod:`falign.papers.pifa.published`, ...), or a plain module of numbers
such as :mod:`falign.papers.sota`, holds its tables as functions
returning DataFrames, listed in ``TABLES`` and described in ``META``, and the numbers of its running
text in ``text_numbers()``. This package adds one id per published number, so a notebook or a claim
never looks a number up by free text::

    from falign import papers
    papers.number("pifa", "table3/block6")                 # 4.45, Table 3's final block
    papers.number("pifa", "table5/proposed-method/full")   # 6.30
    papers.number("rcsr", "text_numbers/gamma")            # 0.01, Sec. 4.3
    papers.ids("pifa")                                     # every id of the paper

An id is ``<table id>/<row key>[/<column>][/<k>]``:

* ``<table id>`` is the key in ``TABLES`` (``table3``, ``noise_study``, ``text_numbers``), or
  ``training_protocol`` for the numbers of the module's ``training_protocol()`` dict.
* ``<row key>`` is the row's key column, slugified (lowercase, runs of other characters -> ``-``,
  digits kept): ``Proposed method`` -> ``proposed-method``, ``LPFA [18]`` -> ``lpfa-18``. A numeric key
  column prefixes its name: Table 3's block 6 is ``block6``. The key column is the table's first
  unless ``META[table]["key"]`` gives a format over the row (``"{N_v}x{N_c}"`` -> ``6x2``; ``{#}``
  is the row's position, for tables whose rows have no name). ``text_numbers()`` carries an explicit
  ``id`` column, keyed with ``"{id}"``.
* ``<column>`` (slugified) is present only when the table has more than one value column. Value
  columns are the numeric columns outside the key, or ``META[table]["values"]``.
* ``<k>`` (1-based) numbers the parts of a value printed as several numbers (``"10 / 19"``,
  ``"5-9"``, ``"0, 5, 10, 15, 20"``).

Cells the paper leaves empty ("-", NaN here) have no id. Ids are checked unique when built.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import math
import pkgutil
import re
import string
from types import ModuleType

import pandas as pd

PAPERS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")))
"""Every paper module of this package (``pifa``, ``rcsr``, ...)."""
PROTOCOL = "training_protocol"
_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE]-?\d+)?")


class UnknownNumber(KeyError):
    """An id that names no published number; the message lists the closest ids."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


@dataclasses.dataclass(frozen=True)
class Number:
    id: str
    value: float
    table: str
    row: str
    column: str
    metric: str


def slug(text: object) -> str:
    """Lowercase, '+' -> 'plus', runs of anything but letters and digits -> '-', no '-' at either end
    (``"3DDFA+SDM"`` -> ``"3ddfa-plus-sdm"``); a number prints without a trailing '.0' (6.0 -> '6',
    0.5 -> '0-5')."""
    if _is_number(text):
        return _number_slug(text)
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower().replace("+", "-plus-")).strip("-")


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _number_slug(x: float) -> str:
    """6 -> '6', 6.0 -> '6', 0.5 -> '0-5'."""
    return (f"{x:g}" if not float(x).is_integer() else str(int(x))).replace(".", "-").replace("+", "")


def _module(paper: str | ModuleType) -> ModuleType:
    if isinstance(paper, ModuleType):
        return paper
    if paper not in PAPERS:
        raise UnknownNumber(f"no published numbers for paper {paper!r}; known: {', '.join(PAPERS)}")
    module = importlib.import_module(f"{__name__}.{paper}")
    # a paper's package keeps its numbers in ``published``; a plain module (``sota``) is its numbers
    return importlib.import_module(f"{module.__name__}.published") if hasattr(module, "__path__") else module


def _row_key(row: pd.Series, key: str | None, first: str, position: int) -> str:
    if key is not None:  # a format over the row's columns; {#} is the row's 1-based position
        return slug(key.format_map({**{c: _plain(v) for c, v in row.items()}, "#": position}))
    value = _plain(row[first])
    return f"{slug(first)}{_number_slug(value)}" if _is_number(value) else slug(value)


def _plain(v: object) -> object:
    """numpy scalars -> Python, integral floats -> int (so '{N_v}' prints 6, not 6.0)."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _parts(value: object) -> list[float]:
    """A cell's numbers: one for a number, several for a string such as '10 / 19'; none for NaN."""
    if isinstance(value, str):
        return [float(m) for m in _NUMBER.findall(value)]
    value = _plain(value)
    if _is_number(value):
        return [] if math.isnan(value) else [float(value)]
    return []


def _key_fields(key: str | None) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(key or "") if f and f != "#"}


def _table_numbers(table: str, df: pd.DataFrame, meta: dict) -> list[Number]:
    key = meta.get("key")
    first = df.columns[0]
    used = _key_fields(key) if key else {first}
    values = meta.get("values") or [c for c in df.columns
                                    if c not in used and pd.api.types.is_numeric_dtype(df[c])
                                    and not pd.api.types.is_bool_dtype(df[c])]
    out = []
    for position, (_, row) in enumerate(df.iterrows(), 1):
        row_key = _row_key(row, key, first, position)
        for col in values:
            parts = _parts(row[col])
            stem = f"{table}/{row_key}" + (f"/{slug(col)}" if len(values) > 1 else "")
            # text_numbers say per row what a number measures (metric, else its unit)
            metric = (row["metric"] or row.get("unit", "")) if "metric" in row else meta.get("metric", "")
            for k, v in enumerate(parts, 1):
                out.append(Number(stem if len(parts) == 1 else f"{stem}/{k}", v, table, row_key, str(col),
                                  str(metric)))
    return out


def _protocol_numbers(protocol: dict) -> list[Number]:
    out = []
    for name, value in protocol.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if not items or not all(_is_number(v) for v in items):
            continue  # prose: quoted in the book whole, not a number
        stem = f"{PROTOCOL}/{slug(name)}"
        for k, v in enumerate(items, 1):
            out.append(Number(stem if len(items) == 1 else f"{stem}/{k}", float(v), PROTOCOL, slug(name),
                              str(name), ""))
    return out


@functools.lru_cache(maxsize=None)
def _index(paper: str) -> dict[str, Number]:
    mod = _module(paper)
    found = []
    for table, fn in mod.TABLES.items():
        found += _table_numbers(table, fn(), mod.META.get(table, {}))
    if hasattr(mod, PROTOCOL):
        found += _protocol_numbers(getattr(mod, PROTOCOL)())
    index: dict[str, Number] = {}
    for n in found:
        if n.id in index:
            raise ValueError(f"{mod.__name__}: two numbers share the id {n.id!r} ({index[n.id].value} and "
                             f"{n.value}); give table {n.table!r} a META 'key' (or text_numbers an id column)")
        index[n.id] = n
    return index


def ids(paper: str) -> list[str]:
    """Every published number's id, in table order."""
    return list(_index(paper))


def number(paper: str, id: str) -> float:
    """The published number with this id (module docstring), e.g. ``number("pifa", "table3/block6")``."""
    index = _index(paper)
    if id in index:
        return index[id].value
    table = id.split("/")[0]
    close = difflib.get_close_matches(id, index, n=6, cutoff=0.6)
    if not close:
        close = [i for i in index if i.startswith(table + "/")][:12]
    tables = sorted({n.table for n in index.values()})
    hint = f"closest: {', '.join(close)}" if close else f"tables: {', '.join(tables)}"
    raise UnknownNumber(f"falign/papers/{paper}.py has no number {id!r}; {hint}")


def numbers(paper: str) -> pd.DataFrame:
    """All published numbers of a paper with their ids: id, value, table, row, column, metric."""
    return pd.DataFrame([dataclasses.asdict(n) for n in _index(paper).values()])
