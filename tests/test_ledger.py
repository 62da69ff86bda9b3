"""The two ledgers: claims (effects, intervals and classes per claim, chains, the budget check, the
table, summary, scorecard, re-judging) and deviations (the Decision scanner on constructed sources,
and the real tree)."""

import json

import numpy as np
import pandas as pd
import pytest

from falign import papers
from falign.kit import decisions as deviations, effects, ledger
from falign.kit.ledger import Arm, Claim, ClaimsLedger, Published

LOWER = Claim("c1", "A beats B", "Sec. 1, Table 1", better="lower")


# ---- one claim -------------------------------------------------------------------------------------
def test_two_arms_sharing_seeds_are_judged_paired():
    judged = ClaimsLedger().add(LOWER, [0.9, 1.78, 2.64], [1.0, 2.0, 3.0])     # 10, 11 and 12 % better
    assert judged.effect == effects.paired([0.9, 1.78, 2.64], [1.0, 2.0, 3.0])
    assert judged.cls == effects.REPRODUCED and judged.paper is None and not judged.smaller


def test_arms_with_other_seeds_and_fixed_references():
    unequal = ClaimsLedger().add(LOWER, [1.0, 1.1, 0.9], [2.0, 2.1])
    assert unequal.effect.method == "Welch t over seeds"
    told = ClaimsLedger().add(LOWER, [1.0, 1.1], [2.0, 2.1], paired=False)
    assert told.effect.method == "Welch t over seeds"
    below = ClaimsLedger().add(LOWER, [4.0, 4.1, 3.9], 4.45)           # ours below a fixed 4.45
    assert below.effect.method == "one-sample t over seeds" and below.cls == effects.REPRODUCED
    with pytest.raises(ValueError, match="cannot be a fixed reference"):
        ClaimsLedger().add(LOWER, 4.45, [4.0, 4.1])


def test_the_papers_effect_is_read_from_its_published_numbers():
    claim = Claim("t3", "block 6 beats block 5", "Table 3", paper=Published("pifa", "table3/block6", "table3/block5"))
    good, bad = papers.number("pifa", "table3/block6"), papers.number("pifa", "table3/block5")
    judged = ClaimsLedger().add(claim, [7.0, 7.1, 7.05], [7.0, 7.12, 7.04])   # no effect here
    assert judged.paper == pytest.approx((bad - good) / bad)
    book = ClaimsLedger()
    book.add(claim, [7.0, 7.1, 7.05], [7.0, 7.12, 7.04])
    row = book.to_frame().iloc[0]
    assert row["paper numbers"] == f"pifa table3/block6 = {good:g} vs table3/block5 = {bad:g}"


def test_a_null_effect_with_a_tight_interval_against_a_large_published_effect_is_absent():
    claim = Claim("x", "A beats B", "Table 1", paper=Published("pifa", "table3/block3", "table3/block0"))
    bad = np.array([2.0, 2.1, 1.9, 2.05, 1.95])
    judged = ClaimsLedger().add(claim, bad * [1.01, 0.99, 1.005, 0.995, 1.0], bad)
    assert judged.paper > 0.2 and judged.cls == effects.ABSENT


def test_a_flip_between_half_and_full_budget_is_budget_sensitive():
    book = ClaimsLedger()
    book.add(LOWER, [1.0, 1.1, 0.9], [2.0, 2.1, 1.9], half=([2.0, 2.1, 1.9], [1.0, 1.1, 0.9]))
    book.add(Claim("same", "same at both", "x"), [1.0, 1.1, 0.9], [2.0, 2.1, 1.9],
             half=([1.2, 1.3, 1.1], [2.0, 2.1, 1.9]))
    book.add(Claim("unchecked", "no half", "x"), [1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    df = book.to_frame()
    assert df["class"].tolist() == [effects.REPRODUCED] * 3
    assert df["class at half budget"].tolist() == [effects.REVERSED, effects.REPRODUCED, "not run"]
    assert df["budget-sensitive"].tolist() == [True, False, False]
    assert df["verdict"].iloc[0] == "reproduced; budget-sensitive (at half budget: reversed)"
    assert "budget-sensitive" in ledger.summary(df)


def test_convergence_is_read_from_the_compared_arms_only():
    book = ClaimsLedger()
    book.add(LOWER, Arm("a", [1.0, 1.1], converged=False), Arm("b", [2.0, 2.1]))
    row = book.to_frame().iloc[0]
    assert row["not converged"] == "a" and row["verdict"] == "reproduced; not converged: a"


def test_a_chain_is_as_strong_as_its_weakest_link():
    blocks = [[1.0, 1.1, 1.05], [2.0, 2.1, 2.05], [3.0, 3.1, 3.05]]      # each beats the next
    assert ClaimsLedger().add(LOWER, *blocks).cls == effects.REPRODUCED
    one_reversed = ClaimsLedger().add(LOWER, [1.0, 1.1, 1.05], [2.0, 2.1, 2.05], [1.5, 1.6, 1.55])
    assert one_reversed.cls == effects.REVERSED
    book = ClaimsLedger()
    book.add(LOWER, [1.0, 1.1, 1.05], [2.0, 2.1, 2.05], [2.0, 2.4, 1.8])
    row = book.to_frame().iloc[0]
    assert row["class"] == effects.UNDECIDED and "link 2 of 2" in row["interval method"]
    with pytest.raises(ValueError, match="two arms"):
        ClaimsLedger().add(LOWER, [1.0, 1.1])


def test_claim_checks_its_direction():
    with pytest.raises(ValueError, match="lower"):
        Claim("x", "text", "Sec. 1", better="smaller")


# ---- the ledger table, summary, scorecard, re-judging ------------------------------------------------
def _ledger() -> ClaimsLedger:
    book = ClaimsLedger()
    book.add(Claim("vis", "visualization layers help", "Sec. 4.3"), Arm("with V", [7.0, 7.1, 6.9]),
             Arm("without V", [8.0, 8.2, 7.8]))
    book.add(Claim("mask", "mask 1 beats no mask", "Table 7"), Arm("mask 1", [8.0, 8.2, 8.1]), Arm("none", [7.0, 7.1, 7.05]))
    book.add(Claim("t8", "6x2 beats 4x3", "Table 8"), Arm("6x2", [7.0, 7.6]), Arm("4x3", [7.2, 7.4]))
    book.add(Claim("t6", "I,F,V beats F,V", "Table 6"), Arm("IFV", [7.0]), Arm("FV", [7.5]))
    return book


def test_frame_columns_and_rows():
    df = _ledger().to_frame()
    assert list(df.columns) == list(ledger.COLUMNS)
    assert df["class"].tolist() == [effects.REPRODUCED, effects.REVERSED, effects.UNDECIDED, effects.UNDECIDED]
    row = df.iloc[0]
    assert row["arms"] == "with V | without V" and row["seeds"] == "3 | 3" and row["look"] == 1
    assert row["mean ± sd"].startswith("7 ± 0.1 | 8 ± 0.2")
    assert np.isnan(df.iloc[3]["low"]) and df.iloc[3]["paper numbers"] == ledger.NONE_PUBLISHED
    assert _ledger().undecided() == ["t8", "t6"]
    with pytest.raises(ValueError, match="already"):
        _ledger().add(Claim("vis", "again", "x"), [1, 2], [3, 4])


def test_write_through_a_run(tmp_path, monkeypatch):
    from falign.kit import report

    monkeypatch.setenv("FALIGN_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FALIGN_WORK", str(tmp_path / "work"))
    run = report.start("toy", "01_toy", SCALE="smoke")
    _ledger().write(run)
    written = pd.read_csv(tmp_path / "results" / "toy" / "claims.csv")
    assert ledger.is_ledger(written)


def test_summary_names_the_claims_of_each_class():
    text = ledger.summary(_ledger().to_frame())
    assert text.startswith("Of 4 claims, 1 reproduced: “visualization layers help”; 1 reversed: “mask 1 beats no mask”")
    assert "2 undecided: “6x2 beats 4x3”, “I,F,V beats F,V”" in text
    assert ledger.summary(pd.DataFrame(columns=list(ledger.COLUMNS))) == "No claims were judged."
    assert "about 1.0 of them" in ledger.chance_note(40)


def test_scorecard_table_and_forest(tmp_path):
    for chapter, scale in (("alpha", "small"), ("beta", "smoke")):
        (tmp_path / chapter).mkdir()
        _ledger().to_frame().to_csv(tmp_path / chapter / "claims.csv", index=False)
        (tmp_path / chapter / "run.json").write_text(json.dumps({"scale": scale}))
    (tmp_path / "gamma").mkdir()  # an older format (margin and pooled SD): skipped, and listed
    pd.DataFrame({"claim id": ["x"], "verdict": ["holds"]}).to_csv(tmp_path / "gamma" / "claims.csv", index=False)
    card = ledger.scorecard(tmp_path)
    assert sorted(card["chapter"].unique()) == ["alpha", "beta"] and len(card) == 8
    assert card.attrs["skipped"] == [str(tmp_path / "gamma" / "claims.csv")]
    shown = ledger.table(card)
    assert {"chapter", "claim", "effect", "interval", "paper's effect", "class", "seeds", "scale", "floor"} <= set(shown)
    assert shown.iloc[0]["effect"] == "+12.5%" and shown.iloc[3]["interval"] == "none (1 seed)"
    fig = ledger.forest(card)
    assert len(fig.axes[0].get_yticklabels()) == 8


def test_rejudge_writes_the_ledger_and_says_so_in_run_json(tmp_path, monkeypatch):
    from falign.kit import registry

    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "run.json").write_text(json.dumps({"scale": "small"}))
    monkeypatch.setattr(registry, "experiment", lambda name: type("E", (), {"rejudge": staticmethod(lambda r: _ledger())}))
    path = ledger.rejudge("toy", tmp_path)
    assert ledger.is_ledger(pd.read_csv(path))
    record = json.loads((tmp_path / "toy" / "run.json").read_text())
    assert record["scale"] == "small" and record["claims_rejudged"]["command"].endswith("rejudge toy")


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
