"""The claims ledger: each claim of a paper, the arms that test it, our effect with its interval beside
the paper's own, and a computed class.

A chapter states the paper's claims once, in its experiment module (:class:`Claim`: what, where the
paper says it, which side is better, and the paper's published numbers for the same comparison,
:class:`Published`, read from :mod:`falign.papers`, never retyped). It trains the arms that test each
claim over the scale's seeds and records them in a :class:`ClaimsLedger`::

    claim = Claim("t6-ifv-fv", "I,F,V beats F,V", "Sec. 4.3, Table 6", better="lower",
                  paper=Published("mypaper", "table6/i-f-v", "table6/f-v"))
    ledger = ClaimsLedger()
    ledger.add(claim, Arm("I,F,V", nme_ifv), Arm("F,V", nme_fv))     # one value per seed, seed order
    ledger.write(run)                                                 # results/<chapter>/claims.csv

Every row's effect, interval and class come from :mod:`falign.kit.effects` (the one place the rule is
written): reproduced (and whether smaller than the paper's), reversed, absent at the paper's size,
undecided, or untestable here. Beside the class the row says whether the arms it compares converged
(:meth:`falign.kit.train.History.converged`, only those arms), and, when the chapter gives the same
arms evaluated from their half-budget checkpoints, the class at half budget: a claim whose class
changes between half and full budget is *budget-sensitive*.

:func:`summary` opens a chapter's Discussion, :func:`forest` draws its claims, and :func:`scorecard`
gathers every chapter's ledger for the book's scorecard page. The deviations ledger (every
``Decision [id]`` of the code with the paper's side) is :mod:`falign.kit.decisions`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from falign.kit import effects
from falign.kit.effects import CLASSES, LEVEL, MEANING

NONE_PUBLISHED = "none published"

# The columns of claims.csv; the scorecard reads only files that have all of them.
COLUMNS = ("claim id", "claim", "source", "better", "arms", "seeds", "mean ± sd", "interval method",
           "effect", "low", "high", "level", "paper effect", "paper numbers", "floor", "class", "verdict",
           "smaller than the paper's", "not converged", "class at half budget", "budget-sensitive", "look")


@dataclasses.dataclass(frozen=True)
class Published:
    """The paper's own numbers for a claim's comparison: ids in :func:`falign.papers.number` of the
    paper's better arm (``good``) and the one it beats (``bad``); their relative difference is the
    paper's effect, in the units of :mod:`falign.kit.effects`."""

    paper: str
    good: str
    bad: str

    def effect(self, better: str) -> float:
        from falign import papers

        return effects.relative(papers.number(self.paper, self.good), papers.number(self.paper, self.bad), better)

    def describe(self) -> str:
        from falign import papers

        return (f"{self.paper} {self.good} = {papers.number(self.paper, self.good):g} vs "
                f"{self.bad} = {papers.number(self.paper, self.bad):g}")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``id`` (short, stable), ``text`` (in the book's words), ``source`` (where
    the paper states it), ``better``: "lower" for errors, "higher" for AUC and the like, and
    ``paper``: the published comparison (:class:`Published`; one per link of a chain), or None where the
    paper prints no number for it."""

    id: str
    text: str
    source: str
    better: str = "lower"
    paper: Published | tuple[Published, ...] | None = None

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"claim {self.id!r}: better must be 'lower' or 'higher', got {self.better!r}")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a comparison: its per-seed results in seed order (every arm of a chapter's grid
    trains on the scale's seeds, so two arms with as many values are paired seed by seed), and whether
    its training converged. ``Arm.reference(name, value)`` is a fixed number with no seeds."""

    name: str
    values: tuple[float, ...]
    converged: bool = True
    fixed: bool = False

    def __init__(self, name: str, values, converged: bool = True, fixed: bool = False):
        values = np.atleast_1d(np.asarray(values, dtype=float)).ravel()
        if values.size == 0:
            raise ValueError(f"arm {name!r} has no values")
        if fixed and values.size != 1:
            raise ValueError(f"reference arm {name!r} is one number, got {values.size}")
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "values", tuple(float(v) for v in values))
        object.__setattr__(self, "converged", bool(converged))
        object.__setattr__(self, "fixed", bool(fixed))

    @classmethod
    def reference(cls, name: str, value: float) -> "Arm":
        return cls(name, [value], fixed=True)

    @property
    def n(self) -> int:
        return 0 if self.fixed else len(self.values)

    def summary(self) -> str:
        """'mean ± sd' as the ledger prints it."""
        mean = float(np.mean(self.values))
        if self.fixed:
            return f"{mean:.4g} (fixed)"
        return f"{mean:.4g} ± {np.std(self.values, ddof=1):.2g}" if self.n > 1 else f"{mean:.4g} (1 seed)"


def _arm(x, name: str) -> Arm:
    if isinstance(x, Arm):
        return x
    if np.ndim(x) == 0:  # a bare number is a fixed reference (a published value or a threshold)
        return Arm.reference(name, float(x))
    return Arm(name, x)


def effect(good: Arm, bad: Arm, better: str, paired: bool | None = None) -> effects.Effect:
    """The effect of "``good`` beats ``bad``": paired by seed when both have the same number of seeds
    (``paired=None``) or when told, else Welch; against a fixed reference, one-sample."""
    if good.fixed:
        raise ValueError(f"the better arm {good.name!r} cannot be a fixed reference; swap the claim's arms")
    if bad.fixed:
        return effects.against(good.values, bad.values[0], better)
    if paired is None:
        paired = good.n == bad.n
    return (effects.paired if paired else effects.unpaired)(good.values, bad.values, better)


@dataclasses.dataclass(frozen=True)
class Judged:
    """A judged comparison: its effect, the paper's effect (None: none published), floor and class."""

    effect: effects.Effect
    paper: float | None
    floor: float | None
    cls: str

    @property
    def smaller(self) -> bool:
        return self.cls == effects.REPRODUCED and effects.smaller_than_paper(self.effect, self.paper)


def judge(claim: Claim, arms: Sequence[Arm], *, floor: float | None = None, paired: bool | None = None) -> tuple[Judged, int]:
    """Judge "each arm beats the next" (two arms: the first beats the second). A chain is as strong as
    its weakest link: reversed if any link is reversed, reproduced if every link is, else the class of
    the link whose interval reaches lowest. Returns the deciding link's judgement and its index."""
    papers_ = claim.paper if isinstance(claim.paper, tuple) else (claim.paper,) * (len(arms) - 1)
    if len(papers_) != len(arms) - 1:
        raise ValueError(f"claim {claim.id!r}: {len(papers_)} published comparisons for {len(arms) - 1} links")
    links = []
    for a, b, pub in zip(arms, arms[1:], papers_):
        e = effect(a, b, claim.better, paired)
        paper = pub.effect(claim.better) if pub is not None else None
        links.append(Judged(e, paper, floor, effects.classify(e, paper, floor)))
    classes = [j.cls for j in links]
    if effects.REVERSED in classes:
        k = classes.index(effects.REVERSED)
    elif all(c == effects.REPRODUCED for c in classes):
        k = min(range(len(links)), key=lambda i: links[i].effect.low)
    else:
        k = min((i for i in range(len(links)) if links[i].cls != effects.REPRODUCED),
                key=lambda i: links[i].effect.low if links[i].effect.has_interval else -math.inf)
    return links[k], k


def verdict(judged: Judged, row: "_Row") -> str:
    """The class with what qualifies it, in words: smaller than the paper's, budget-sensitive, resting on
    arms that had not converged (e.g. "reproduced, smaller than the paper's; not converged: stage 3")."""
    words = judged.cls + (", smaller than the paper's" if judged.smaller else "")
    if row.half is not None and row.half != judged.cls:
        words += f"; budget-sensitive (at half budget: {row.half})"
    unconverged = [a.name for a in row.arms if not a.converged]
    return words + (f"; not converged: {', '.join(unconverged)}" if unconverged else "")


@dataclasses.dataclass
class _Row:
    claim: Claim
    arms: tuple[Arm, ...]
    judged: Judged
    link: int
    half: str | None
    look: int


RULE = (f"effect: the paper's better arm's relative advantage, {LEVEL:.1%} t-interval (paired by seed where the "
        "arms share seeds); classes: " + "; ".join(f"{c}: {MEANING[c]}" for c in CLASSES))


class ClaimsLedger:
    """The chapter's claims, each with its arms, effect, interval and class, in the order added."""

    def __init__(self):
        self.rows: list[_Row] = []

    def add(self, claim: Claim, *arms, floor: float | None = None, half: Sequence | None = None,
            paired: bool | None = None, look: int = 1) -> Judged:
        """Record a claim: two arms read "the first beats the second"; more arms are a chain (each beats
        the next). Arms are :class:`Arm` objects, per-seed lists in seed order, or plain numbers (fixed
        references). ``floor``: the least relative difference this regime can show, computed in the
        run, where one applies. ``half``: the same arms evaluated from their half-budget checkpoints,
        for the budget check. ``look``: 1 on the scale's seeds, 2 once the claim's arms got the second
        stage of seeds the scale planned (:func:`falign.kit.chapter.seeds`). Returns the judgement."""
        if any(r.claim.id == claim.id for r in self.rows):
            raise ValueError(f"claim {claim.id!r} is already in the ledger")
        named = tuple(_arm(x, chr(ord("a") + i)) for i, x in enumerate(arms))
        if len(named) < 2:
            raise ValueError(f"claim {claim.id!r}: a comparison needs at least two arms")
        judged, link = judge(claim, named, floor=floor, paired=paired)
        half_cls = None
        if half is not None:
            half_arms = tuple(_arm(x, a.name) for x, a in zip(half, named))
            half_cls = judge(claim, half_arms, floor=floor, paired=paired)[0].cls
        self.rows.append(_Row(claim, named, judged, link, half_cls, look))
        return judged

    def to_frame(self) -> pd.DataFrame:
        """One row per claim with the columns of :data:`COLUMNS`; arms, seeds and mean ± sd are joined
        per arm with " | " in the order given (the paper's better one first)."""
        rows = []
        for r in self.rows:
            j, e = r.judged, r.judged.effect
            pub = r.claim.paper[r.link] if isinstance(r.claim.paper, tuple) else r.claim.paper
            rows.append({
                "claim id": r.claim.id, "claim": r.claim.text, "source": r.claim.source,
                "better": r.claim.better, "arms": " | ".join(a.name for a in r.arms),
                "seeds": " | ".join("fixed" if a.fixed else str(a.n) for a in r.arms),
                "mean ± sd": " | ".join(a.summary() for a in r.arms),
                "interval method": e.method + (f" (link {r.link + 1} of {len(r.arms) - 1})" if len(r.arms) > 2 else ""),
                "effect": e.estimate, "low": e.low, "high": e.high, "level": e.level,
                "paper effect": j.paper, "paper numbers": pub.describe() if pub is not None else NONE_PUBLISHED,
                "floor": j.floor, "class": j.cls, "verdict": verdict(j, r),
                "smaller than the paper's": j.smaller,
                "not converged": ", ".join(a.name for a in r.arms if not a.converged),
                "class at half budget": r.half or "not run",
                "budget-sensitive": r.half is not None and r.half != j.cls, "look": r.look,
            })
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def undecided(self) -> list[str]:
        """The claims a planned second look would revisit: undecided on the first."""
        return [r.claim.id for r in self.rows if r.judged.cls == effects.UNDECIDED and r.look == 1]

    def write(self, run, caption: str = "The paper's claims, judged on this run"):
        """``claims.csv`` through ``run.table`` (:class:`falign.kit.report.Run`); returns the styled table."""
        return run.table(self.to_frame(), "claims", caption=f"{caption}. {RULE}", precision=3)


def summary(df: pd.DataFrame) -> str:
    """One plain paragraph for a chapter's Discussion (or the scorecard) from a ledger table: how many
    claims fell in each class, naming them, and which rest on unconverged or budget-sensitive arms."""
    if df.empty:
        return "No claims were judged."
    parts = []
    for cls in CLASSES:
        rows = df[df["class"] == cls]
        if len(rows):
            names = [f"“{t}”" + (" (smaller than the paper's)" if s is True or s == "True" else "")
                     for t, s in zip(rows["claim"], rows["smaller than the paper's"])]
            parts.append(f"{len(rows)} {cls}: {', '.join(names)}")
    n = len(df)
    text = f"Of {n} claim{'s' if n != 1 else ''}, " + "; ".join(parts) + "."
    unconverged = df[_unconverged(df)]
    if len(unconverged):
        text += (f" {len(unconverged)} rest on arms that had not converged (their class may change with more "
                 f"training): {', '.join(f'“{t}”' for t in unconverged['claim'])}.")
    sensitive = df[df["budget-sensitive"].astype(str) == "True"]
    if len(sensitive):
        text += (f" {len(sensitive)} changed class between half and full budget (budget-sensitive): "
                 f"{', '.join(f'“{t}”' for t in sensitive['claim'])}.")
    return text


def _unconverged(df: pd.DataFrame) -> pd.Series:
    """Rows whose compared arms include one that had not converged (a read CSV leaves the column empty)."""
    names = df["not converged"]
    return names.notna() & (names.astype(object).astype(str).str.len() > 0) & (names.astype(str) != "nan")


def chance_note(n: int) -> str:
    """How many of ``n`` judged claims could land outside 'undecided' by chance alone."""
    return (f"The book judges {n} claims, each at {LEVEL:.1%}: were none of the effects real, about "
            f"{n * (1 - LEVEL):.1f} of them would still be expected to show an interval that excludes 0.")


def is_ledger(df: pd.DataFrame) -> bool:
    """Whether a table is in the claims-ledger format (it has every column of :data:`COLUMNS`)."""
    return set(COLUMNS) <= set(df.columns)


def scorecard(results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every chapter's claims in one table: ``results/<chapter>/claims.csv`` files in the ledger format
    (others are skipped and listed in ``df.attrs["skipped"]``), with the chapter's scale and seeds."""
    if results_dir is None:
        from falign.base import paths

        results_dir = paths.RESULTS_DIR
    frames, skipped = [], []
    for path in sorted(Path(results_dir).glob("*/claims.csv")):
        try:
            df = pd.read_csv(path, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            skipped.append(str(path))
            continue
        if not is_ledger(df):
            skipped.append(str(path))
            continue
        frames.append(df.assign(chapter=path.parent.name, scale=_scale(path.parent / "run.json")))
    if not frames:
        out = pd.DataFrame(columns=["chapter", "scale", *COLUMNS])
    else:
        out = pd.concat(frames, ignore_index=True)[["chapter", "scale", *COLUMNS]]
    out.attrs["skipped"] = skipped
    return out


def table(df: pd.DataFrame) -> pd.DataFrame:
    """The ledger as the book shows it: effect and interval in %, the paper's effect beside them."""
    def pct(x) -> str:
        return "—" if pd.isna(x) else f"{100 * float(x):+.1f}%"

    out = pd.DataFrame({
        **({"chapter": df["chapter"]} if "chapter" in df else {}),
        "claim": df["claim"], "effect": df["effect"].map(pct),
        "interval": [f"[{pct(lo)}, {pct(hi)}]" if pd.notna(lo) else "none (1 seed)"
                     for lo, hi in zip(df["low"], df["high"])],
        "paper's effect": [pct(p) if pd.notna(p) else NONE_PUBLISHED for p in df["paper effect"]],
        "class": [c + (", smaller" if str(s) == "True" else "") + (", budget-sensitive" if str(b) == "True" else "")
                  for c, s, b in zip(df["class"], df["smaller than the paper's"], df["budget-sensitive"])],
        "seeds": df["seeds"], "floor": df["floor"].map(pct),
        "converged": ["yes" if not str(x) or str(x) == "nan" else f"no: {x}" for x in df["not converged"]],
        **({"scale": df["scale"]} if "scale" in df else {}),
        "source": df["source"],
    })
    return out


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """Claims per chapter (rows) and class (columns), with the arms' convergence and the budget check: the
    scorecard's overview."""
    by = df["chapter"] if "chapter" in df else pd.Series("all", index=df.index)
    out = pd.crosstab(by, df["class"]).reindex(columns=list(CLASSES), fill_value=0)
    out["claims"] = out.sum(axis=1)
    out["on unconverged arms"] = _unconverged(df).groupby(by).sum()
    out["budget-sensitive"] = (df["budget-sensitive"].astype(str) == "True").groupby(by).sum()
    out["judged at half budget"] = (df["class at half budget"] != "not run").groupby(by).sum()
    out.index.name, out.columns.name = "chapter", None
    return out


FOREST_LIMIT = 100.0  # the forest plot's axis ends (in %); an interval beyond is drawn to the edge, with an arrow


def forest(df: pd.DataFrame, ax=None, title: str = ""):
    """A forest plot: every claim's effect (in %) with its interval, the paper's effect marked (x),
    grouped by chapter when the table has one; effects and intervals beyond +-:data:`FOREST_LIMIT` %
    end at the axis with an arrow. Returns the figure."""
    import matplotlib.pyplot as plt

    colours = {effects.REPRODUCED: "#1b7837", effects.REVERSED: "#b2182b", effects.ABSENT: "#e08214",
               effects.UNDECIDED: "#777777", effects.UNTESTABLE: "#4393c3"}
    rows = df.reset_index(drop=True)
    chapters = rows["chapter"] if "chapter" in rows else pd.Series([""] * len(rows))
    labels = [(f"{c} · " if c else "") + (t if len(t) <= 58 else t[:55] + "…") for c, t in zip(chapters, rows["claim"])]
    if ax is None:
        fig, ax = plt.subplots(figsize=(12, 0.34 * len(rows) + 1.6))
    else:
        fig = ax.figure
    lim = FOREST_LIMIT

    def clip(x: float) -> float:
        return float(np.clip(100 * x, -lim, lim))

    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows()):
        colour = colours.get(r["class"], "black")
        if pd.notna(r["low"]):
            ax.plot([clip(r["low"]), clip(r["high"])], [yi, yi], color=colour, lw=2.2)
            for end in (r["low"], r["high"]):
                if abs(100 * end) > lim:
                    ax.plot(clip(end), yi, ">" if end > 0 else "<", color=colour, ms=6)
        if pd.notna(r["effect"]):
            ax.plot(clip(r["effect"]), yi, "o", color=colour, ms=6)
        if pd.notna(r["paper effect"]):
            ax.plot(clip(r["paper effect"]), yi, "x", color="black", ms=8, mew=1.6)
    for k in range(1, len(rows)):  # a line between chapters
        if chapters.iloc[k] != chapters.iloc[k - 1]:
            ax.axhline(y[k] + 0.5, color="#cccccc", lw=0.8)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlim(-lim * 1.05, lim * 1.05)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("effect in the paper's direction, % of the beaten arm (dot: ours, line: interval, x: the paper's)")
    handles = [plt.Line2D([], [], color=c, marker="o", lw=2, label=k) for k, c in colours.items()]
    handles.append(plt.Line2D([], [], color="black", marker="x", lw=0, label="the paper's effect"))
    ax.legend(handles=handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.6 / max(len(rows), 1) - 0.02),
              ncol=6, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def _scale(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("scale", "unknown"))
    except (OSError, ValueError):
        return "unknown"


def rejudge(chapter: str, results_dir: str | Path | None = None) -> Path:
    """Judge a chapter's committed run again with the current rule, from the per-seed values it wrote
    to ``results/<chapter>/`` (its experiment's ``rejudge(results) -> ClaimsLedger`` rebuilds the
    ledger from them; nothing is retrained). Writes ``claims.csv`` and records in ``run.json`` which
    commit re-judged it; returns the claims path."""
    import datetime

    from falign.base import atomic_files, paths
    from falign.kit import registry, report

    results = Path(results_dir if results_dir is not None else paths.RESULTS_DIR) / chapter
    frame = registry.experiment(chapter).rejudge(results).to_frame()
    target = results / "claims.csv"
    with atomic_files.atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    run_json = results / "run.json"
    record = json.loads(run_json.read_text()) if run_json.is_file() else {}
    state = report.git_state()
    record["claims_rejudged"] = {"commit": state["commit"], "dirty": state["dirty"],
                                 "command": f"python -m falign.kit.ledger rejudge {chapter}",
                                 "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                                 "rule": "falign.kit.effects (effect, 97.5 % interval, class)"}
    atomic_files.write_text(run_json, json.dumps(record, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m falign.kit.ledger")
    sub = parser.add_subparsers(dest="command", required=True)
    again = sub.add_parser("rejudge", help="judge committed runs again from their per-seed values")
    again.add_argument("chapters", nargs="+")
    args = parser.parse_args(argv)
    for chapter in args.chapters:
        print(rejudge(chapter))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
