"""Published numbers: every number has one stable id, every id resolves, spot values as printed."""

import math

import pytest

from falign import papers
from falign.papers.pifa import published as pifa
from falign.papers.rcsr import published as rcsr


@pytest.mark.parametrize("paper", papers.PAPERS)
def test_ids_are_unique_and_resolve_to_finite_numbers(paper):
    ids = papers.ids(paper)
    assert ids and len(ids) == len(set(ids))
    for i in ids:
        value = papers.number(paper, i)
        assert isinstance(value, float) and math.isfinite(value), i
        assert i.split("/")[0] in (*_module(paper).TABLES, papers.PROTOCOL), i
        assert i == i.lower() and " " not in i, i


def _module(paper):
    return papers._module(paper)


@pytest.mark.parametrize("paper", ["pifa", "rcsr"])
def test_every_table_has_ids(paper):
    mod = _module(paper)
    frame = papers.numbers(paper)
    assert set(frame["table"]) == {*mod.TABLES, papers.PROTOCOL}


def test_every_printed_cell_has_an_id():
    """Every non-empty number of a results table has exactly one id."""
    for mod, table, columns in ((pifa, "table5", ["Common", "Challenging", "Full"]),
                                (rcsr, "table1", ["common", "challenging", "full"]),
                                (rcsr, "table2", ["68 landmarks", "49 landmarks"])):
        cells = int(mod.TABLES[table]()[columns].notna().sum().sum())
        assert sum(i.startswith(f"{table}/") for i in mod.ids()) == cells, table
    assert len([i for i in rcsr.ids() if i.startswith("text_numbers/")]) == 37  # 25 rows, 4 of them lists


@pytest.mark.parametrize("paper, id_, value", [
    ("pifa", "table3/block6", 4.45),          # Table 3, final block
    ("pifa", "table3/block0", 25.8),          # Table 3's caption: initial NME
    ("pifa", "table2/lpfa-18", 4.72),
    ("pifa", "table5/proposed-method/full", 6.30),
    ("pifa", "table5/3ddfa-plus-sdm/common", 5.53),
    ("pifa", "table6/c", 5.06),
    ("pifa", "table7/no-mask", 5.31),
    ("pifa", "table8/3x4", 4.83),
    ("pifa", "table1/block1-conv2/filters", 16),
    ("pifa", "noise_study/block6", 5.16),
    ("pifa", "text_numbers/no-visualization-nme", 7.18),
    ("pifa", "training_protocol/momentum", 0.99),
    ("rcsr", "table1/rcsr-adaptive/full", 4.90),
    ("rcsr", "table4/convgru-srcnn/challenging", 8.58),
    ("rcsr", "table2/rcsr-adaptive/49-landmarks", 3.13),
    ("rcsr", "text_numbers/gamma", 0.01),
    ("rcsr", "text_numbers/cfss-reduction-68-helen-lfpw/2", 19),
    ("rcsr", "text_numbers/common-stable-steps/1", 5),
    ("rcsr", "training_protocol/batch-size", 204),
])
def test_spot_values(paper, id_, value):
    assert papers.number(paper, id_) == pytest.approx(value)


def test_module_accessors():
    assert pifa.number("table3/block6") == 4.45
    assert rcsr.number("table1/rcsr-adaptive/full") == 4.90
    assert pifa.ids() == papers.ids("pifa") and rcsr.ids() == papers.ids("rcsr")


def test_ids_agree_with_the_tables_the_book_shows():
    """The id layer reads the tables, it holds no numbers of its own."""
    t3 = pifa.table3()
    assert [pifa.number(f"table3/block{b}") for b in t3["block"]] == t3["NME"].tolist()
    t4 = rcsr.table4()
    assert [rcsr.number(f"table4/{k}/full") for k in t4["kind"]] == t4["full"].tolist()


def test_empty_cells_have_no_id():
    assert "table1/smith-et-al-51/challenging" in rcsr.ids()
    assert "table1/smith-et-al-51/common" not in rcsr.ids()  # "-" in the paper


def test_unknown_id_lists_close_matches():
    with pytest.raises(KeyError, match=r"table3/block6") as err:
        pifa.number("table3/block7")
    assert "closest" in str(err.value)
    with pytest.raises(KeyError, match=r"table5/proposed-method/full"):
        pifa.number("tabel5/proposed-method/ful")
    with pytest.raises(KeyError, match="tables: "):
        pifa.number("nothing like it")
    with pytest.raises(KeyError, match="known"):
        papers.number("no-such-paper", "table1/x")


def test_no_lookup_by_free_text():
    """A quantity's wording is not an id."""
    with pytest.raises(KeyError):
        pifa.number("NME on AFLW trained without any visualization layer")


def test_slug():
    assert papers.slug("LPFA [18]") == "lpfa-18"
    assert papers.slug("3DDFA+SDM") == "3ddfa-plus-sdm"
    assert papers.slug("68 landmarks") == "68-landmarks"
    assert papers.slug(6.0) == "6" and papers.slug(0.5) == "0-5"
