"""What every chapter's experiment module is built from: the scale configuration's base, the seeds,
the arm x seed grid of cached trainings, per-seed values and their mean ± sd, and the one call that
opens every notebook (:func:`setup`).

A chapter's ``Scale`` is a frozen dataclass with the fields of :class:`Scale`; fields that do not
change a training (test sizes, evaluation batches, timing repeats) are declared with
:func:`not_recipe`, once, so :func:`recipe` (part of every training's cache key) never lists them by
hand."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from falign.kit import registry, report, train


def not_recipe(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A scale field that does not change a training, so it is no part of a training's cache key."""
    return dataclasses.field(default=default, metadata={"recipe": False}, **kwargs)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Scale:
    """Fields every chapter's scale has: the training ``seeds`` (offset by the notebook's SEED), the
    ``second_look`` seeds planned for the arms of claims the first look leaves undecided (declared with
    the scale, before any result: :mod:`falign.kit.effects`), and the ``precision`` request
    (:func:`falign.kit.precision.choose`: "auto", "fp32" or "bf16")."""

    seeds: tuple[int, ...] = not_recipe((0,))
    second_look: tuple[int, ...] = not_recipe(())
    precision: str = "auto"


def recipe(cfg: Any) -> dict:
    """The fields of a scale that change a training: all but those declared :func:`not_recipe`."""
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.metadata.get("recipe", True)}


def seeds(cfg: Any, base: int = 0, look: int = 1) -> list[int]:
    """The training seeds of an arm at ``look`` 1 (the scale's seeds) or 2 (those and the planned second
    stage, ``second_look``), offset by the notebook's SEED."""
    if look not in (1, 2):
        raise ValueError(f"look must be 1 or 2, got {look}")
    planned = tuple(cfg.seeds) + (tuple(getattr(cfg, "second_look", ())) if look == 2 else ())
    return [base + s for s in planned]


def grid(train_one: Callable[[str, int], Any], arms: Iterable[str], seed_list: Iterable[int]) -> dict:
    """(arm, seed) -> ``train_one(arm, seed)`` for every arm and seed, arm by arm; each training is
    cached by :func:`falign.kit.train.fit`, so any notebook reloads what another trained."""
    seed_list = list(seed_list)
    return {(arm, s): train_one(arm, s) for arm in arms for s in seed_list}


def converged(models: dict, arm: str) -> bool:
    """Whether every seed of ``arm`` in a :func:`grid` converged (:meth:`falign.kit.train.History.converged`);
    an entry may hold one History or a list of them (a cascade's stages), all of which must."""
    histories = []
    for (name, _), (_, h) in models.items():
        if name == arm:
            histories += list(h) if isinstance(h, (list, tuple)) else [h]
    return bool(histories) and all(h.converged() for h in histories)


def half_grid(arms: Iterable[str], seed_list: Iterable[int], folder: Callable[[str, int], Any],
              build: Callable[[str], Any], precision: str = "fp32") -> dict | None:
    """(arm, seed) -> (model, None) for every arm and seed, each with the weights its training had after
    half of its optimiser steps (:func:`falign.kit.train.half_weights` in ``folder(arm, seed)``, the
    training's checkpoint folder; ``build(arm)`` makes the network): evaluated like the full grid, they
    judge the claims at half the budget. Evaluation only; None when any training kept no such weights
    (it ran elsewhere, or before they were kept)."""
    out = {}
    seed_list = list(seed_list)
    for arm in arms:
        for s in seed_list:
            state = train.half_weights(folder(arm, s), precision)
            if state is None:
                return None
            model = build(arm)
            model.load_state_dict(state)
            out[(arm, s)] = (model.eval(), None)
    return out


def timing_record(history: train.History) -> dict[str, Any]:
    """How one training's time was measured, for a chapter's timing table: its epochs, how many of them
    this run trained (the rest were read from the cache, timed when they ran), the precision it ran in,
    and its measured minutes and samples per second (wall time of the epochs only: no validation, no
    cache reads). Times from different runs or machines are not comparable; the columns say which."""
    seconds = history.seconds
    samples = sum(e.get("samples_per_s", 0.0) * e.get("seconds", 0.0) for e in history.epochs)
    return {"epochs": len(history.epochs), "epochs trained in this run": len(history.epochs) - history.reloaded,
            "precision": history.precision.get("precision", "float32"), "minutes": seconds / 60,
            "samples per s": samples / seconds if seconds else np.nan}


def curves(models: dict, value: str = "validation", scale: float = 1.0) -> pd.DataFrame:
    """Every training's curves in a :func:`grid` of (model, History), one row per arm, seed and epoch: the
    training loss and the held-out value (times ``scale``, named ``value``) that
    :meth:`falign.kit.train.History.converged` reads. A chapter commits the table, so its convergence can
    be judged again (:func:`converged_from_curves`) without its models."""
    rows = [{"arm": arm, "seed": s, "epoch": e.get("epoch", k + 1), "loss": e["loss"],
             value: np.nan if e.get("validation") is None else scale * e["validation"]}
            for (arm, s), (_, h) in models.items() for k, e in enumerate(h.epochs)]
    return pd.DataFrame(rows, columns=["arm", "seed", "epoch", "loss", value])


def converged_from_curves(curves: pd.DataFrame, value: str = "validation", arms: Iterable[str] | None = None
                          ) -> dict[str, bool]:
    """arm -> whether every seed's curve in ``curves`` (one row per arm, seed and epoch, with ``loss`` and
    the held-out ``value``, as a chapter commits it) converged by the kit's rule
    (:meth:`falign.kit.train.History.converged`): how a committed run's convergence is judged again
    without its models. With ``arms``, exactly those, an arm without rows being no evidence (False)."""
    out = {}
    for arm, rows in curves.groupby("arm", sort=False):
        out[arm] = all(train.History(epochs=[{"loss": float(r["loss"]),
                                              "validation": None if pd.isna(r[value]) else float(r[value])}
                                             for _, r in part.sort_values("epoch").iterrows()]).converged()
                       for _, part in rows.groupby("seed"))
    return out if arms is None else {arm: out.get(arm, False) for arm in arms}


def per_seed(results: pd.DataFrame, column: str, where: dict | None = None, **match: Any) -> list[float]:
    """``column`` of the rows matching ``where`` and ``match`` (column=value; ``where`` for column names that
    are not identifiers), in seed order: a ledger arm."""
    rows, where = results, {**(where or {}), **match}
    for key, value in where.items():
        rows = rows[rows[key] == value]
    if rows.empty:
        raise KeyError(f"no rows with {where}")
    return rows.sort_values("seed")[column].tolist()


def mean_sd(results: pd.DataFrame, by: list[str], values: list[str]) -> pd.DataFrame:
    """Mean and sample standard deviation (ddof=1) over seeds of ``values``, one row per ``by``, with
    the number of seeds: the form every multi-seed table takes."""
    g = results.groupby(list(by), sort=False)
    out = g[list(values)].mean()
    for v in values:
        out[f"{v} sd"] = g[v].std(ddof=1)
    out["seeds"] = g.size()
    return out.reset_index()


def setup(paper: str, notebook: str, *, load_data: bool = True, **params: Any) -> tuple[report.Run, Any, dict]:
    """Open a notebook's run (provenance, output folder, seeds), pick the chapter's scale
    configuration and, with ``load_data``, prepare the chapter's datasets; returns (run, cfg, crops)
    with every dataset's fingerprint recorded in the run."""
    run = report.start(paper, notebook, **params)
    chapter = registry.experiment(paper)
    cfg = chapter.SCALES[run.scale]
    crops = chapter.datasets(cfg, data=run.data, root=params.get("DATA_ROOT", ""), seed=run.seed) if load_data else {}
    for c in crops.values():
        run.dataset(c.name, c.fingerprint)
    print(run.label())
    return run, cfg, crops
