"""The two ledgers: claims (verdict rule, chains, the table, summary, scorecard) and deviations
(the Decision scanner on constructed sources, and the real tree against the registry)."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from falign.kit import decisions as deviations, ledger
from falign.kit.ledger import Arm, Claim, ClaimsLedger

LOWER = Claim("c1", "A beats B", "Sec. 1, Table 1", better="lower")
HIGHER = Claim("c2", "A has the higher AUC", "Sec. 2", better="higher")


# ---- the verdict rule ----------------------------------------------------------------------------
def test_holds_when_margin_exceeds_two_pooled_sd():
    v = ledger.verdict(LOWER, [1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert v.verdict == "holds" and v.holds
    assert v.margin == pytest.approx(1.0)
    assert v.pooled_sd == pytest.approx(0.1)
    assert v.n == (3, 3) and v.means == pytest.approx((1.0, 2.0)) and v.stds == pytest.approx((0.1, 0.1))


def test_fails_when_the_opposite_is_as_clear():
    v = ledger.verdict(LOWER, [2.0, 2.1, 1.9], [1.0, 1.1, 0.9])
    assert v.verdict == "fails" and v.margin == pytest.approx(-1.0)


def test_inconclusive_within_two_pooled_sd():
    v = ledger.verdict(LOWER, [1.0, 1.5, 0.5], [1.2, 0.7, 1.7])
    assert v.verdict == "inconclusive"
    assert 0 < v.margin < 2 * v.pooled_sd


def test_higher_is_better_flips_the_margin():
    v = ledger.verdict(HIGHER, [0.8, 0.81, 0.79], [0.5, 0.51, 0.49])
    assert v.verdict == "holds" and v.margin == pytest.approx(0.3)
    assert ledger.verdict(LOWER, [0.8, 0.81, 0.79], [0.5, 0.51, 0.49]).verdict == "fails"


def test_pooled_sd_formula_with_unequal_seeds():
    a, b = [1.0, 2.0, 4.0], [3.0, 5.0]
    s1, s2 = np.std(a, ddof=1), np.std(b, ddof=1)
    expected = math.sqrt((2 * s1**2 + 1 * s2**2) / 3)
    assert ledger.verdict(LOWER, a, b).pooled_sd == pytest.approx(expected)


def test_one_seed_is_always_inconclusive():
    v = ledger.verdict(LOWER, [1.0], [100.0, 100.1])  # a huge margin, but the spread is unknown
    assert v.verdict == "inconclusive (1 seed)"
    assert math.isnan(v.pooled_sd) and v.n == (1, 2)


def test_no_verdict_from_an_unconverged_row():
    assert ledger.verdict(LOWER, [1.0, 1.1], [2.0, 2.1], converged=False).verdict == "not converged"
    assert ledger.verdict(LOWER, Arm("a", [1.0, 1.1], converged=False), [2.0, 2.1]).verdict == "not converged"
    assert ledger.verdict(LOWER, [1.0, np.nan], [2.0, 2.1]).verdict == "not converged"  # a diverged seed
    # not converged wins over one seed: no verdict at all is drawn
    assert ledger.verdict(LOWER, [1.0], [2.0], converged=False).verdict == "not converged"


def test_fixed_reference_number():
    v = ledger.verdict(LOWER, [4.0, 4.1, 3.9], 4.45)  # ours below the paper's 4.45
    assert v.verdict == "holds" and v.margin == pytest.approx(0.45) and v.pooled_sd == pytest.approx(0.1)
    assert v.n == (3, 0)
    assert ledger.verdict(LOWER, [4.4, 4.5, 4.45], 4.45).verdict == "inconclusive"


def test_claim_checks_its_direction():
    with pytest.raises(ValueError, match="lower"):
        Claim("x", "text", "Sec. 1", better="smaller")


# ---- chains ----------------------------------------------------------------------------------------
def test_chain_holds_only_if_every_link_holds():
    blocks = [[3.0, 3.1], [2.0, 2.1], [1.0, 1.1]]  # block 1, 2, 3 NME: each improves on the last
    v = ledger.chain(LOWER, blocks[::-1])  # best first
    assert v.verdict == "holds" and v.n == (2, 2, 2) and len(v.means) == 3


def test_chain_fails_if_any_link_fails():
    v = ledger.chain(LOWER, [[1.0, 1.1], [2.0, 2.1], [1.5, 1.6]])
    assert v.verdict == "fails" and v.margin == pytest.approx(-0.5)


def test_chain_inconclusive_otherwise():
    assert ledger.chain(LOWER, [[1.0, 1.1], [2.0, 2.1], [2.0, 2.4]]).verdict == "inconclusive"
    assert ledger.chain(LOWER, [[1.0, 1.1], [2.0, 2.1], [3.0]]).verdict == "inconclusive (1 seed)"
    with pytest.raises(ValueError):
        ledger.chain(LOWER, [[1.0, 1.1]])


# ---- the ledger table, summary and scorecard ---------------------------------------------------------
def _ledger() -> ClaimsLedger:
    book = ClaimsLedger()
    book.add(Claim("vis", "visualization layers help", "Sec. 4.3"), Arm("with V", [7.0, 7.1, 6.9]),
             Arm("without V", [8.0, 8.2, 7.8]))
    book.add(Claim("mask", "mask 1 beats no mask", "Table 7"), Arm("mask 1", [8.0, 8.2]), Arm("none", [7.0, 7.1]))
    book.add(Claim("t8", "6x2 beats 4x3", "Table 8"), Arm("6x2", [7.0, 7.6]), Arm("4x3", [7.2, 7.4]))
    book.add(Claim("t6", "I,F,V beats F,V", "Table 6"), Arm("IFV", [7.0]), Arm("FV", [7.5]))
    book.add(Claim("div", "it trains", "Sec. 4"), Arm("a", [1.0, 1.1], converged=False), Arm("b", [2.0, 2.0]))
    return book


def test_frame_columns_and_rows():
    df = _ledger().to_frame()
    assert list(df.columns) == list(ledger.COLUMNS)
    assert df["verdict"].tolist() == ["holds", "fails", "inconclusive", "inconclusive (1 seed)", "not converged"]
    row = df.iloc[0]
    assert row["arms"] == "with V | without V" and row["seeds"] == "3 | 3"
    assert row["mean ± std"].startswith("7 ± 0.1 | 8 ± 0.2")
    assert "(not converged)" in df.iloc[4]["mean ± std"]
    with pytest.raises(ValueError, match="already"):
        _ledger().add(Claim("vis", "again", "x"), [1, 2], [3, 4])


def test_write_through_a_run(tmp_path, monkeypatch):
    from falign.kit import report

    monkeypatch.setenv("FALIGN_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FALIGN_WORK", str(tmp_path / "work"))
    run = report.start("toy", "01_toy", SCALE="smoke")
    _ledger().write(run)
    header = (tmp_path / "results" / "toy" / "claims.csv").read_text().splitlines()[0]
    assert "seeds" in header and "verdict" in header


def test_summary_paragraph():
    text = ledger.summary(_ledger().to_frame())
    assert text.startswith("1 of 5 claims held: “visualization layers help”")
    assert "1 failed: “mask 1 beats no mask”" in text
    assert "2 were inconclusive: “6x2 beats 4x3”, “I,F,V beats F,V” (1 seed)" in text
    assert "1 had no verdict" in text and "“it trains”" in text
    one = ledger.summary(_ledger().to_frame().iloc[:1])
    assert one == "1 of 1 claim held: “visualization layers help”; none failed; none were inconclusive."
    assert ledger.summary(pd.DataFrame(columns=list(ledger.COLUMNS))) == "No claims were checked."


def test_scorecard_reads_ledgers_and_skips_other_formats(tmp_path):
    for chapter, scale in (("alpha", "small"), ("beta", "smoke")):
        (tmp_path / chapter).mkdir()
        _ledger().to_frame().to_csv(tmp_path / chapter / "claims.csv", index=False)
        (tmp_path / chapter / "run.json").write_text(json.dumps({"scale": scale}))
    (tmp_path / "gamma").mkdir()  # an older format (like results/pifa/claims.csv before the ledger)
    pd.DataFrame({"claim of the paper": ["x"], "holds in our run": [True]}).to_csv(
        tmp_path / "gamma" / "claims.csv", index=False)
    (tmp_path / "delta").mkdir()  # a ledger without run.json
    _ledger().to_frame().iloc[:2].to_csv(tmp_path / "delta" / "claims.csv", index=False)

    card = ledger.scorecard(tmp_path)
    assert sorted(card["chapter"].unique()) == ["alpha", "beta", "delta"]
    assert len(card) == 12
    assert card.attrs["skipped"] == [str(tmp_path / "gamma" / "claims.csv")]
    assert dict(zip(card["chapter"], card["scale"])) == {"alpha": "small", "beta": "smoke", "delta": "unknown"}
    first = card.iloc[0]
    assert first["verdict"] == "holds" and first["margin ± spread"] == "+1 ± 0.16"
    assert card.loc[card["claim id"] == "t6", "margin ± spread"].iloc[0] == "+0.5 (spread unknown)"
    assert {"chapter", "claim", "verdict", "margin ± spread", "seeds", "scale"} <= set(card.columns)


def test_scorecard_of_the_repository_does_not_crash():
    card = ledger.scorecard()
    assert isinstance(card, pd.DataFrame)


# ---- the deviations scanner -------------------------------------------------------------------------
SOURCE = '''"""Module docstring. Decisions are marked ``Decision [x.y]`` (a mention, in backticks).

Decision [toy.doc] (model): a docstring decision
that runs over two lines.
Paper: silent.

Next paragraph, not part of it.
"""

# Decision [toy.comment] (data): a comment decision
# continued here
# Paper: Sec. 2 says
# nothing more.
#
# not continued after a blank comment line
X = 1  # Decision [toy.trailing] (training): a trailing comment. Paper: silent
Y = 2  # Decision: bare, without an id


def f():
    """Something (Decision [toy.paren] (evaluation): inside parentheses (nested) only. Paper: Eq. 1) and more."""
    # Decisions: a plural marker is bare too
    # Decision [Bad Id]: malformed
    # Decision [toy.untopical]: no topic and no paper side
    return "Decision in a string is still checked"


class G:
    # Decision [toy.method] (model): inside a class. Paper: silent.
    def h(self):
        pass
'''


def test_scanner_on_a_constructed_source():
    found, problems = deviations.scan_source(SOURCE, "falign/toy.py")
    got = {f.id: (f.line, f.topic, f.text, f.paper, f.symbol) for f in found}
    assert got == {
        "toy.doc": (3, "model", "a docstring decision that runs over two lines", "silent.", "falign.toy"),
        "toy.comment": (10, "data", "a comment decision continued here", "Sec. 2 says nothing more.", "falign.toy.X"),
        "toy.trailing": (16, "training", "a trailing comment", "silent", "falign.toy.X"),
        "toy.paren": (21, "evaluation", "inside parentheses (nested) only", "Eq. 1", "falign.toy.f"),
        "toy.untopical": (24, "", "no topic and no paper side", "", "falign.toy.f"),
        "toy.method": (29, "model", "inside a class", "silent.", "falign.toy.G"),
    }
    lines = [p.split(":")[1] for p in problems]
    assert lines == ["17", "22", "23", "24", "24", "25"], problems
    assert "without an id" in problems[0] and "malformed" in problems[2]
    assert "needs a topic" in problems[3] and "no 'Paper:' side" in problems[4]


def test_scan_flags_ids_made_twice(tmp_path):
    (tmp_path / "a.py").write_text("# Decision [toy.same] (model): here. Paper: silent\n")
    (tmp_path / "b.py").write_text("X = 1  # Decision [toy.same] (model): and here. Paper: silent\n")
    found, problems = deviations.scan(tmp_path)
    assert len(found) == 2 and len(problems) == 1 and "make it in one place" in problems[0]


def test_chapter_ledger_reads_both_sides_from_the_code():
    df = deviations.deviations("pifa")
    assert list(df.columns) == list(deviations.COLUMNS)
    row = df.set_index("id").loc["pifa.vis-sigma"]
    assert row["topic"] == "model" and row["where"].startswith("falign.papers.pifa.model.")
    assert "sigma" in row["our decision"] and "not given" in row["the paper"]
    assert df["topic"].map(deviations.TOPICS.index).is_monotonic_increasing
    shared = deviations.deviations("rcsr").set_index("id")
    assert "protocol300w.full-set" in shared.index  # a kit decision shows in the chapters that name it
    assert "protocol300w.full-set" not in deviations.deviations("ccnn")["id"].tolist()


def test_the_real_tree_has_no_decision_problem():
    """Every Decision in falign/ has an id, a topic and the paper's side, and is made in one place."""
    problems = deviations.problems()
    assert not problems, "\n".join(problems)
