"""Tables, figures and provenance for the book: every number the book shows passes through here.

A notebook opens a :class:`Run` with :func:`start`, writes its tables and figures through it and
calls :meth:`Run.finish`. Outputs go to ``$FALIGN_RESULTS/<paper>/`` when the pipeline runs the
notebook (it stages them and promotes them only if every notebook of the chapter succeeds), and to a
scratch folder when a person runs the notebook by hand, so an interactive smoke run can never
overwrite committed results.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import platform
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from falign.data.registry import names as dataset_names
from falign.base import atomic_files as atomic, paths

# Smallest to largest. smoke: CI, seconds; small: 2 CPU cores, minutes; gpu: one GPU, minutes per
# chapter; full: the paper's protocol.
SCALES = ("smoke", "small", "gpu", "full")
DEVICES = ("cpu", "cuda")


def git_state() -> dict[str, Any]:
    """Commit hash and dirty flag of the repository, or 'unknown' outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=paths.ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        # The pipeline's own outputs (results/, book/) do not make the code dirty.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results", ":!book"))
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": dirty}


def seed_everything(seed: int) -> None:
    """Same seed, same CPU, same numbers: seed every generator a notebook may touch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe_device(device: "torch.device") -> str:  # noqa: F821 - torch imported lazily
    import torch

    from falign.kit import precision

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    m = precision.machine()
    return (f"cpu ({m['cpu']}, {m['cpu_capability']}, {'native bf16' if m['native_bf16'] else 'no native bf16'}, "
            f"{m['threads']} threads)")


def resolve_device(name: str) -> "torch.device":  # noqa: F821
    import torch

    if name not in DEVICES:
        raise ValueError(f"DEVICE={name!r} is not one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda was asked for but torch sees no CUDA device; use DEVICE=cpu")
    return torch.device(name)


class Run:
    """One notebook's run: where its outputs go, its device, and the provenance it records."""

    def __init__(self, paper: str, notebook: str, params: dict[str, Any]):
        import torch

        from falign.kit import train

        scale, data, seed = params["SCALE"], params["DATA"], int(params["SEED"])
        if scale not in SCALES:
            raise ValueError(f"SCALE={scale!r} is not one of {', '.join(SCALES)}")
        known = dataset_names()
        if data not in known:
            raise ValueError(f"DATA={data!r} is not one of {', '.join(known)}")
        self.paper, self.notebook, self.params = paper, notebook, dict(params)
        self.scale, self.data, self.seed = scale, data, seed
        self.device = resolve_device(params.get("DEVICE", "cpu"))
        staged = os.environ.get("FALIGN_RESULTS")
        base = Path(staged) if staged else paths.ROOT / "build" / "scratch" / "results"
        self.out = base / paper
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = paths.work_dir() / paper / f"{data}-{scale}-seed{seed}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.datasets: dict[str, str] = {}
        self.values: dict[str, Any] = {}
        self._start = time.time()
        self._started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self._torch_version = torch.__version__
        self._first_training = len(train.TRAININGS)
        seed_everything(seed)
        if not staged:
            print(f"Run by hand: outputs go to {self.out} (the pipeline writes results/{paper}/).")

    def label(self) -> str:
        """One line naming what produced a number: dataset, scale, device, seed and commit."""
        state = git_state()
        commit = state["commit"][:8] + ("+dirty" if state["dirty"] else "")
        data = ", ".join(f"{k} {v[:8]}" for k, v in self.datasets.items()) or self.data
        return f"data {data} · scale {self.scale} · {self.device.type} · seed {self.seed} · commit {commit}"

    def dataset(self, name: str, fingerprint: str) -> None:
        self.datasets[name] = fingerprint

    def log(self, **values: Any) -> None:
        self.values.update({k: _jsonable(v) for k, v in values.items()})

    def table(self, df: pd.DataFrame, name: str, caption: str = "", precision: int = 2, show=None):
        """Write ``<name>.csv`` and return a styled HTML table carrying the caption and provenance; with
        ``show`` (column names), the page shows only those, so a wide table fits, and the CSV keeps all."""
        with atomic.atomic_path(self.out / f"{name}.csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        full_caption = f"{caption} — {self.label()}" if caption else self.label()
        shown = df if show is None else df[list(show)]
        return shown.style.set_caption(full_caption).format(precision=precision, na_rep="—").hide(axis="index")

    def figure(self, fig, name: str) -> None:
        """Write ``<name>.png``; the notebook's inline backend shows the figure itself."""
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        atomic.write_bytes(self.out / f"{name}.png", buf.getvalue())

    def trainings(self) -> list[dict[str, Any]]:
        """The trainings this notebook has run or reloaded so far, each with its precision and memory
        format (:func:`falign.kit.train.fit`); the machine is said once, in ``machine``."""
        from falign.kit import precision, train

        machine = precision.machine()
        return [{k: v for k, v in t.items() if k not in machine} for t in train.TRAININGS[self._first_training:]]

    def finish(self) -> dict[str, Any]:
        """Merge this notebook's provenance into ``run.json`` beside the tables."""
        from falign.kit import precision

        path = self.out / "run.json"
        record = json.loads(path.read_text()) if path.exists() else {}
        machine = precision.machine()
        trainings = self.trainings()
        record.update(
            paper=self.paper,
            **git_state(),
            parameters={k: _jsonable(v) for k, v in self.params.items()},
            scale=self.scale,
            seed=self.seed,
            device=describe_device(self.device),
            machine=machine,
            torch=self._torch_version,
            python=platform.python_version(),
        )
        record.setdefault("datasets", {}).update(self.datasets)
        record.setdefault("notebooks", {})[self.notebook] = {
            "started": self._started_at,
            "wall_s": round(time.time() - self._start, 2),
            **({"values": self.values} if self.values else {}),
            **({"trainings": trainings} if trainings else {}),
        }
        atomic.write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        return record


def start(paper: str, notebook: str, **params: Any) -> Run:
    """Open a run for one notebook; ``params`` are the notebook's parameters cell (SCALE, DATA, ...)."""
    params.setdefault("DEVICE", "cpu")
    params.setdefault("DATA", "synthetic")
    params.setdefault("SEED", 0)
    return Run(paper, notebook, params)


def paper_vs_ours(paper: pd.DataFrame, ours: pd.DataFrame, on: str | list[str], values: str | list[str], *,
                  tolerance: float | None = None, spread: bool = False) -> pd.DataFrame:
    """The book's one paper-versus-ours table: the paper's rows in the paper's order, each value as
    ``"<value> (paper)"`` beside ``"<value> (ours)"``; rows only we have come last, methods we did
    not run keep an empty "ours". Other columns of ``paper`` (not keys, not values) come after the keys.

    With ``spread``, ``ours`` holds means over seeds (:func:`falign.kit.chapter.mean_sd`: ``"<value> sd"``
    and ``seeds`` columns), and each ``"<value> (ours)"`` is followed by ``"<value> (ours sd)"``, then
    ``seeds``: a multi-seed headline table shows its spread, not one seed's number.

    With one value and a ``tolerance``, ``difference`` (ours - paper) and ``within tolerance`` are
    added: a prompt for the chapter's discussion, not a pass/fail (synthetic data and smaller scales
    are expected to differ, and the chapter says why).
    """
    keys, values = _as_list(on), _as_list(values)
    other = [c for c in paper.columns if c not in keys + values]
    sds = [f"{v} sd" for v in values] + ["seeds"] if spread else []
    merged = paper.merge(ours.reindex(columns=keys + values + sds), on=keys, how="outer",
                         suffixes=(" (paper)", " (ours)"), sort=False)
    merged = merged.rename(columns={f"{v} sd": f"{v} (ours sd)" for v in values})
    rank = {k: i for i, k in enumerate(paper[keys].itertuples(index=False, name=None))}
    extra = {k: len(rank) + i for i, k in enumerate(ours[keys].itertuples(index=False, name=None))}
    order = [rank.get(k, extra.get(k)) for k in merged[keys].itertuples(index=False, name=None)]
    merged = merged.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)
    out = merged[keys + other + [f"{v} ({w})" for v in values for w in ("paper", "ours") + (("ours sd",) if spread else ())]
                 + (["seeds"] if spread else [])]
    if tolerance is not None and len(values) == 1:
        diff = out[f"{values[0]} (ours)"] - out[f"{values[0]} (paper)"]
        out = out.assign(difference=diff, **{"within tolerance": diff.abs().le(tolerance).where(diff.notna())})
    return out


SMOKE_REFERENCE = paths.ROOT / "tests" / "smoke_reference.json"


def check_smoke_reference(run: Run, name: str, value: float) -> None:
    """Compare one trained number of a chapter with the reference committed in ``tests/smoke_reference.json``,
    at the setting CI runs every notebook in (SCALE=smoke, DATA=synthetic, SEED=0, on the CPU); elsewhere
    nothing. nbval compares a notebook only with a second run of itself, so this is what catches a change
    that moves every trained result. Raises AssertionError (one line) beyond the file's relative tolerance."""
    if (run.scale, run.data, run.seed, run.device.type) != ("smoke", "synthetic", 0, "cpu"):
        return
    reference = json.loads(SMOKE_REFERENCE.read_text())
    entry = reference["chapters"].get(run.paper, {})
    if entry.get("name") != name:
        raise AssertionError(f"{SMOKE_REFERENCE}: no smoke reference for {run.paper} {name!r} (this run: {value!r}; "
                             f"the file holds {entry.get('name')!r}); record one as its 'about' says")
    expected, tolerance = entry["value"], reference["tolerance"]
    change = (value - expected) / abs(expected)
    if not abs(change) <= tolerance:
        raise AssertionError(f"{run.paper}/{run.notebook}: {name} at SCALE=smoke is {value:.6g}, {change:+.1%} from "
                             f"the reference {expected:.6g} in {SMOKE_REFERENCE} (commit {entry['commit']}), beyond "
                             f"±{tolerance:.0%}: a change moved the trained result; if it is meant to, rerun "
                             f"`{entry['command']}` and update the reference")
    print(f"smoke reference: {name} {value:.6g}, {change:+.2%} from {expected:.6g} (within ±{tolerance:.0%})")


def _as_list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    return v
