"""The claims ledger: each claim of a paper, the arms that test it, and a computed verdict.

A chapter states the paper's claims once (:class:`Claim`: what, where the paper says it, and whether
lower or higher is better), trains the arms that test each one over a few seeds, and records them in
a :class:`ClaimsLedger`. The ledger computes every verdict with one rule (:func:`verdict`), writes
``results/<chapter>/claims.csv`` through :meth:`falign.kit.report.Run.table`, opens the chapter's
Discussion with :func:`summary`, and :func:`scorecard` gathers every chapter's ledger for the book's
scorecard page::

    claim = Claim("t6-ifv-fv", "I,F,V beats F,V", "Sec. 4.3, Table 6", better="lower")
    ledger = ClaimsLedger()
    ledger.add(claim, Arm("I,F,V", nme_ifv), Arm("F,V", nme_fv))   # one NME per seed
    ledger.write(run)                                              # results/<chapter>/claims.csv
    print(summary(ledger.to_frame()))

The deviations ledger (every ``Decision [id]`` of the code with the paper's side) is
:mod:`falign.kit.decisions`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"
ONE_SEED, NOT_CONVERGED = "inconclusive (1 seed)", "not converged"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, ONE_SEED, NOT_CONVERGED)
K_SD = 2.0  # a claim holds when its margin exceeds K_SD pooled standard deviations

# The columns of claims.csv; the scorecard reads only files that have all of them.
COLUMNS = ("claim id", "claim", "source", "better", "arms", "seeds", "mean ± std", "margin",
           "pooled sd", "verdict")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper: ``id`` (short, stable), ``text`` (in the book's words), ``source``
    (where the paper states it, e.g. "Sec. 4.3, Table 6") and ``better``: "lower" for errors,
    "higher" for AUC and the like."""

    id: str
    text: str
    source: str
    better: str = "lower"

    def __post_init__(self):
        if self.better not in ("lower", "higher"):
            raise ValueError(f"claim {self.id!r}: better must be 'lower' or 'higher', got {self.better!r}")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a comparison: its per-seed results (e.g. the test NME of each seed's training) and
    whether its training converged. ``Arm.reference(name, value)`` is a fixed number (a published
    value, a threshold) with no spread and no seeds."""

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
        """Seeds (0 for a fixed reference)."""
        return 0 if self.fixed else len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) over seeds; 0 for a reference, NaN for one seed."""
        if self.fixed:
            return 0.0
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan

    def summary(self) -> str:
        """'mean ± std' as the ledger prints it."""
        if self.fixed:
            return f"{self.mean:.4g} (fixed)"
        text = f"{self.mean:.4g} ± {self.std:.2g}" if self.n > 1 else f"{self.mean:.4g} (1 seed)"
        return text if self.converged else f"{text} (not converged)"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one claim. ``margin`` is the mean difference in the paper's direction (positive =
    as the paper says; for a chain, the weakest link's), ``pooled_sd`` the pooled standard deviation it
    is judged against; ``n``, ``means``, ``stds`` are per arm, in the order given."""

    verdict: str
    margin: float
    pooled_sd: float
    n: tuple[int, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS


def pooled_sd(a: Arm, b: Arm) -> float:
    """sqrt(((n1-1) s1^2 + (n2-1) s2^2) / (n1+n2-2)) with sample stds; a fixed reference contributes no
    spread, so the pooled SD is the other arm's std. NaN when an arm has a single seed."""
    arms = [x for x in (a, b) if not x.fixed]
    if any(x.n < 2 for x in arms):
        return math.nan
    if not arms:
        return 0.0
    dof = sum(x.n - 1 for x in arms)
    return math.sqrt(sum((x.n - 1) * x.std ** 2 for x in arms) / dof)


def _arm(x, name: str, converged: bool) -> Arm:
    if isinstance(x, Arm):
        return x
    if np.ndim(x) == 0:  # a bare number is a fixed reference (a published value or a threshold)
        return Arm.reference(name, float(x))
    return Arm(name, x, converged=converged)


def verdict(claim: Claim, a, b, *, converged: bool = True) -> Verdict:
    """Judge the claim "arm ``a`` is better than arm ``b``" (better = ``claim.better``).

    ``a`` and ``b`` are :class:`Arm` objects, per-seed value lists, or a plain number for a fixed
    reference (e.g. "ours is below the paper's 4.45": ``verdict(claim, ours, 4.45)``). The rule, the
    one place it is written:

    * margin = mean(b) - mean(a) when lower is better, mean(a) - mean(b) when higher is better, so a
      positive margin is the paper's direction; pooled SD = sqrt(((n1-1) s1^2 + (n2-1) s2^2) /
      (n1+n2-2)), s the sample std over seeds (ddof=1); a fixed reference has no spread.
    * **not converged** when either arm (or ``converged=False``) is labelled not converged, or any
      seed's value is not finite (a diverged run): no verdict is drawn from such a row.
    * **inconclusive (1 seed)** when an arm has fewer than 2 seeds: the spread is unknown.
    * **holds** when margin > 2 pooled SD; **fails** when margin < -2 pooled SD (the opposite is shown
      as clearly); **inconclusive** otherwise.
    """
    a, b = _arm(a, "a", converged), _arm(b, "b", converged)
    arms = (a, b)
    margin = b.mean - a.mean if claim.better == "lower" else a.mean - b.mean
    sd = pooled_sd(a, b)
    out = dict(margin=margin, pooled_sd=sd, n=tuple(x.n for x in arms),
               means=tuple(x.mean for x in arms), stds=tuple(x.std for x in arms))
    finite = all(np.isfinite(x.values).all() for x in arms)
    if not (converged and a.converged and b.converged and finite):
        return Verdict(NOT_CONVERGED, **out)
    if any(not x.fixed and x.n < 2 for x in arms):
        return Verdict(ONE_SEED, **out)
    if margin > K_SD * sd:
        return Verdict(HOLDS, **out)
    if margin < -K_SD * sd:
        return Verdict(FAILS, **out)
    return Verdict(INCONCLUSIVE, **out)


def chain(claim: Claim, arms: Sequence, *, converged: bool = True) -> Verdict:
    """Judge "each arm is better than the next" (``arms[0]`` best, as :func:`verdict` reads a, b).

    Every consecutive pair is judged by :func:`verdict`: the chain holds if every pair holds, fails if
    any pair fails, is not converged if any pair is, and is inconclusive otherwise (``inconclusive (1
    seed)`` if that is why). Its margin and pooled SD are those of the weakest link (smallest margin
    in units of its pooled SD). For "each block improves on the last", pass the blocks last first.
    """
    if len(arms) < 2:
        raise ValueError(f"claim {claim.id!r}: a chain needs at least two arms")
    arms = [_arm(x, f"arm {i + 1}", converged) for i, x in enumerate(arms)]
    pairs = [verdict(claim, x, y, converged=converged) for x, y in zip(arms, arms[1:])]
    kinds = {p.verdict for p in pairs}
    result = (NOT_CONVERGED if NOT_CONVERGED in kinds else FAILS if FAILS in kinds
              else HOLDS if kinds == {HOLDS} else ONE_SEED if ONE_SEED in kinds else INCONCLUSIVE)
    # The weakest link among the pairs that decided the verdict: smallest margin in pooled SDs.
    weakest = min((p for p in pairs if p.verdict == result), key=lambda p: (_in_sds(p), p.margin))
    return Verdict(result, weakest.margin, weakest.pooled_sd, tuple(x.n for x in arms),
                   tuple(x.mean for x in arms), tuple(x.std for x in arms))


def _in_sds(v: Verdict) -> float:
    """margin / pooled SD (+-inf for a spread of 0; 0 when the spread is unknown, so the margin ranks)."""
    if math.isnan(v.pooled_sd):
        return 0.0
    if v.pooled_sd == 0:
        return math.copysign(math.inf, v.margin) if v.margin else 0.0
    return v.margin / v.pooled_sd


@dataclasses.dataclass
class _Row:
    claim: Claim
    arms: tuple[Arm, ...]
    verdict: Verdict


# Every ledger table's caption states the rule; the scorecard finds the notebook that shows a chapter's
# ledger by this phrase, whatever the chapter calls its variables.
RULE_MARK = "inconclusive otherwise or with one seed"
RULE = (f"holds: margin > {K_SD:g} pooled SD in the paper's direction; fails: the same the other way; "
        f"{RULE_MARK}; none from an unconverged run")


class ClaimsLedger:
    """The chapter's claims, each with its arms and computed verdict, in the order added."""

    def __init__(self):
        self.rows: list[_Row] = []

    def add(self, claim: Claim, *arms, converged: bool = True) -> Verdict:
        """Record a claim: two arms read "the first is better than the second"; more arms are a
        :func:`chain` (each better than the next). Arms are :class:`Arm` objects, or per-seed lists
        (named "a", "b", ...), or plain numbers (fixed references). Returns the verdict."""
        if any(r.claim.id == claim.id for r in self.rows):
            raise ValueError(f"claim {claim.id!r} is already in the ledger")
        named = tuple(_arm(x, chr(ord("a") + i), converged) for i, x in enumerate(arms))
        v = verdict(claim, *named, converged=converged) if len(named) == 2 else chain(claim, named,
                                                                                       converged=converged)
        self.rows.append(_Row(claim, named, v))
        return v

    def to_frame(self) -> pd.DataFrame:
        """One row per claim with the columns of :data:`COLUMNS`: arms, seeds and mean ± std joined per
        arm with " | " in the order given (the first the paper's better one)."""
        rows = []
        for r in self.rows:
            v = r.verdict
            rows.append({
                "claim id": r.claim.id, "claim": r.claim.text, "source": r.claim.source,
                "better": r.claim.better, "arms": " | ".join(a.name for a in r.arms),
                "seeds": " | ".join("fixed" if a.fixed else str(a.n) for a in r.arms),
                "mean ± std": " | ".join(a.summary() for a in r.arms),
                "margin": v.margin, "pooled sd": v.pooled_sd, "verdict": v.verdict,
            })
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def write(self, run, caption: str = "The paper's claims, checked on this run"):
        """``claims.csv`` through ``run.table`` (:class:`falign.kit.report.Run`); returns the styled table."""
        return run.table(self.to_frame(), "claims", caption=f"{caption} ({RULE})", precision=3)


def summary(df: pd.DataFrame) -> str:
    """One plain-English paragraph for the Discussion to open with, from a ledger table
    (:meth:`ClaimsLedger.to_frame` or a read ``claims.csv``): how many claims held, failed, were
    inconclusive, or had no verdict because a training did not converge, each naming its claims.

    For example: '2 of 4 claims held: “A”, “B”; 1 failed: “C”; 1 was inconclusive: “D” (1 seed).'
    """
    if df.empty:
        return "No claims were checked."
    verdicts = df["verdict"]

    def named(mask) -> list[str]:
        return [f"“{t}”" + (" (1 seed)" if v == ONE_SEED else "")
                for t, v in zip(df.loc[mask, "claim"], verdicts[mask])]

    def group(mask, verb: str, verb_many: str | None = None) -> str:
        items = named(mask)
        if not items:
            return f"none {verb_many or verb}"
        verb = verb if len(items) == 1 or verb_many is None else verb_many
        return f"{len(items)} {verb}: {', '.join(items)}"

    held = named(verdicts == HOLDS)
    n = len(df)
    head = (f"{len(held)} of {n} claim{'s' if n != 1 else ''} held" + (f": {', '.join(held)}" if held else ""))
    parts = [head, group(verdicts == FAILS, "failed"),
             group(verdicts.isin([INCONCLUSIVE, ONE_SEED]), "was inconclusive", "were inconclusive")]
    if (verdicts == NOT_CONVERGED).any():
        parts.append(group(verdicts == NOT_CONVERGED, "had no verdict (a training did not converge)",
                           "had no verdict (a training did not converge)"))
    return "; ".join(parts) + "."


def is_ledger(df: pd.DataFrame) -> bool:
    """Whether a table is in the claims-ledger format (it has every column of :data:`COLUMNS`)."""
    return set(COLUMNS) <= set(df.columns)


def scorecard(results_dir: str | Path | None = None) -> pd.DataFrame:
    """Every chapter's claims in one table: ``results/<chapter>/claims.csv`` files in the ledger
    format (others, e.g. an older format, are skipped and listed in ``df.attrs["skipped"]``), with
    the chapter's scale from its ``run.json`` ("unknown" without one)."""
    if results_dir is None:
        from falign.kit import paths

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
        chapter = path.parent.name
        frames.append(df.assign(chapter=chapter, scale=_scale(path.parent / "run.json")))
    columns = ["chapter", "claim id", "claim", "source", "verdict", "margin ± spread", "margin", "pooled sd",
               "seeds", "scale"]
    if not frames:
        out = pd.DataFrame(columns=columns)
    else:
        out = pd.concat(frames, ignore_index=True)
        out["margin ± spread"] = [_pm(m, s) for m, s in zip(out["margin"], out["pooled sd"])]
        out = out[columns]
    out.attrs["skipped"] = skipped
    return out


def _pm(margin: float, sd: float) -> str:
    if pd.isna(margin):
        return "—"
    return f"{margin:+.3g} ± {sd:.2g}" if pd.notna(sd) else f"{margin:+.3g} (spread unknown)"


def _scale(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("scale", "unknown"))
    except (OSError, ValueError):
        return "unknown"
