"""The statistics behind every verdict: an effect in the paper's direction with its interval, and the
class the interval puts it in. Written once, here; :mod:`falign.kit.ledger` applies it to each claim.

**The effect** is relative: how much lower (or higher, when higher is better) the paper's better arm
is than the arm it beats, as a fraction of that arm's value. Our SynthFace errors and the paper's
real-data errors are on different scales, so a relative effect is what the two can share; a paper's
"2.73 points of NME out of 8.9" and our "0.4 points out of 1.3" both become fractions.

**The interval** is a t-interval built on :mod:`scipy.stats`:

* arms that share their seeds (every arm of a chapter's grid trains on the scale's seeds) are
  *paired*: one relative difference per seed, ``(worse_s - better_s) / worse_s``, and a one-sample
  t-interval over those differences. Stages, blocks or recurrence counts of one network, and stopping
  rules applied to one model, are paired the same way (their faces too are the same, so each seed's
  difference is already a per-face paired mean);
* arms with different seeds: Welch's interval for the difference of the means, divided by the
  worse arm's mean;
* a fixed reference (a published value, a threshold): a one-sample t-interval of the relative
  distance of each seed's value from it.

One seed gives no interval: its claim is undecided.

**Two planned looks.** A chapter's scale declares, before any result is seen, a second stage of seeds
for the arms of claims left undecided by the first. Adding seeds until a claim looks decided would be
optional stopping, so both looks are planned and each is judged at :data:`LEVEL` = 97.5 %, which
keeps the chance of a false call over the two looks under 5 % (Bonferroni).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats

LEVEL = 0.975  # each of the two planned looks; 95 % over both
ONE_SEED = "one seed: no interval"
ZERO = "the beaten arm is 0: no relative effect"

REPRODUCED = "reproduced"
REVERSED = "reversed"
ABSENT = "absent at the paper's size"
UNDECIDED = "undecided"
UNTESTABLE = "untestable here"
CLASSES = (REPRODUCED, REVERSED, ABSENT, UNDECIDED, UNTESTABLE)

MEANING = {
    REPRODUCED: "the interval excludes 0 on the paper's side: the effect is there, in the paper's direction "
                "(\"smaller\" when the interval also excludes the paper's own effect from above)",
    REVERSED: "the interval excludes 0 on the other side: the opposite of the paper's claim happened",
    ABSENT: "the interval includes 0 and excludes the paper's effect: an effect as large as the paper's "
            "is ruled out here, though a smaller one may exist",
    UNDECIDED: "the interval includes 0 and, where the paper gives one, its effect: this run cannot tell "
               "(also: one seed, so no interval)",
    UNTESTABLE: "the regime's floor (the least difference this setup can show, computed in the run) "
                "exceeds the paper's effect, so the run could not have shown it",
}
# What each class says of the paper's choice, in a Discussion's plain words.
PLAIN = {
    REPRODUCED: "held, as the paper says",
    REVERSED: "lost: the opposite of the paper's claim happened, beyond the spread between seeds",
    ABSENT: "was not there at anything near the paper's size (an effect as large as the paper's is ruled out; a "
            "smaller one may exist)",
    UNDECIDED: "could not be told apart from no effect on this run",
    UNTESTABLE: "could not be tested in this regime",
}


@dataclasses.dataclass(frozen=True)
class Effect:
    """A relative effect in the paper's direction (positive = as the paper says) with its interval at
    ``level``; ``n`` values it rests on (seeds), ``method`` names the interval."""

    estimate: float
    low: float
    high: float
    n: int
    method: str
    level: float = LEVEL

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def _values(x: Sequence[float]) -> np.ndarray:
    out = np.asarray(x, dtype=float).ravel()
    if out.size == 0:
        raise ValueError("an arm has no values")
    if not np.isfinite(out).all():
        raise ValueError(f"an arm has non-finite values {out.tolist()}: a diverged run cannot be judged")
    return out


def _undefined(n: int, level: float) -> Effect:
    """A beaten arm at 0 (e.g. an AUC of 0 at smoke scale) has no relative effect: no number, no interval."""
    return Effect(math.nan, math.nan, math.nan, n, ZERO, level)


def _sign(better: str) -> float:
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    return 1.0 if better == "lower" else -1.0


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    if d.size < 2:
        return math.nan, math.nan
    if np.ptp(d) == 0:  # no spread: the interval is the point itself
        return float(d[0]), float(d[0])
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)


def paired(good: Sequence[float], bad: Sequence[float], better: str = "lower", level: float = LEVEL) -> Effect:
    """The effect of "``good`` beats ``bad``" from values paired by seed (same seeds, same order):
    the mean of the per-seed relative differences and their one-sample t-interval."""
    g, b = _values(good), _values(bad)
    if g.size != b.size:
        raise ValueError(f"paired arms need one value per shared seed, got {g.size} and {b.size}")
    if (b == 0).any():
        return _undefined(int(b.size), level)
    d = _sign(better) * (b - g) / np.abs(b)
    low, high = _t_interval(d, level)
    return Effect(float(d.mean()), low, high, int(d.size), "paired t over seeds" if d.size > 1 else ONE_SEED, level)


def unpaired(good: Sequence[float], bad: Sequence[float], better: str = "lower", level: float = LEVEL) -> Effect:
    """The effect of "``good`` beats ``bad``" from arms with different seeds: Welch's interval for the
    difference of the means, relative to ``bad``'s mean."""
    g, b = _values(good), _values(bad)
    scale = abs(b.mean())
    if scale == 0:
        return _undefined(int(min(g.size, b.size)), level)
    estimate = _sign(better) * (b.mean() - g.mean()) / scale
    if min(g.size, b.size) < 2:
        return Effect(float(estimate), math.nan, math.nan, int(min(g.size, b.size)), ONE_SEED, level)
    ci = stats.ttest_ind(b, g, equal_var=False).confidence_interval(confidence_level=level)
    low, high = sorted(_sign(better) * np.array([ci.low, ci.high]) / scale)
    return Effect(float(estimate), float(low), float(high), int(min(g.size, b.size)), "Welch t over seeds", level)


def against(good: Sequence[float], reference: float, better: str = "lower", level: float = LEVEL) -> Effect:
    """The effect of "``good`` beats the fixed ``reference``" (a published value, a threshold): each
    seed's relative distance from it and their one-sample t-interval."""
    g = _values(good)
    if reference == 0:
        return _undefined(int(g.size), level)
    d = _sign(better) * (reference - g) / abs(reference)
    low, high = _t_interval(d, level)
    return Effect(float(d.mean()), low, high, int(d.size), "one-sample t over seeds" if d.size > 1 else ONE_SEED, level)


def relative(good: float, bad: float, better: str = "lower") -> float:
    """A published pair of numbers as the same relative effect (the paper's effect); NaN if ``bad`` is 0."""
    return _sign(better) * (bad - good) / abs(bad) if bad != 0 else math.nan


def classify(effect: Effect, paper: float | None = None, floor: float | None = None) -> str:
    """The claim's class (:data:`CLASSES`, :data:`MEANING`) from its effect's interval, the paper's own
    relative effect (None: none published) and the regime's floor in the same units (None: none)."""
    if floor is not None and paper is not None and floor > abs(paper):
        return UNTESTABLE
    if not effect.has_interval:
        return UNDECIDED
    if effect.low > 0:
        return REPRODUCED
    if effect.high < 0:
        return REVERSED
    if paper is not None and not effect.low <= paper <= effect.high:
        return ABSENT
    return UNDECIDED


def smaller_than_paper(effect: Effect, paper: float | None) -> bool:
    """Whether a reproduced effect is smaller than the paper's: its interval lies wholly below it."""
    return paper is not None and effect.has_interval and effect.high < paper
