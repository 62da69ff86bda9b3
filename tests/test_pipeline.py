"""The notebook pipeline: parameters reach notebooks, results are promoted atomically, toc lists chapters."""

import json

import pytest

from falign import pipeline

NOTEBOOK = '''# %% [markdown]
# # A tiny chapter

# %% tags=["parameters"]
SCALE = "smoke"
DATA = "synthetic"
DATA_ROOT = ""
DEVICE = "cpu"
SEED = 0

# %%
import pandas as pd
from falign import report
run = report.start("tiny", "{stem}", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE, SEED=SEED)
{body}
run.table(pd.DataFrame({{"scale": [SCALE], "seed": [SEED]}}), "{stem}")
run.finish()
'''


def _chapter(root, bodies):
    chapter = root / "notebooks" / "tiny"
    chapter.mkdir(parents=True, exist_ok=True)
    for stem, body in bodies.items():
        (chapter / f"{stem}.py").write_text(NOTEBOOK.format(stem=stem, body=body))
    return root / "notebooks"


def _run(root, notebooks, params=pipeline.Params(scale="small", seed=3)):
    return pipeline.reproduce_chapter("tiny", params, notebooks_dir=notebooks, results_dir=root / "results",
                                      book_dir=root / "book", stage_root=root / "stage")


def test_success_promotes_results_and_executed_notebooks(tmp_path):
    notebooks = _chapter(tmp_path, {"01_a": "", "02_b": ""})
    assert _run(tmp_path, notebooks)
    results = tmp_path / "results" / "tiny"
    assert (results / "01_a.csv").read_text().splitlines() == ["scale,seed", "small,3"]
    record = json.loads((results / "run.json").read_text())
    assert set(record["notebooks"]) == {"01_a", "02_b"}
    assert record["parameters"]["SCALE"] == "small" and record["seed"] == 3
    assert {"commit", "dirty", "torch", "device"} <= set(record)
    assert sorted(p.name for p in (tmp_path / "book" / "tiny").iterdir()) == ["01_a.ipynb", "02_b.ipynb"]


def test_failing_notebook_leaves_previous_results_untouched(tmp_path, capsys):
    notebooks = _chapter(tmp_path, {"01_a": "", "02_b": ""})
    assert _run(tmp_path, notebooks)
    before = {p.name: p.read_bytes() for p in (tmp_path / "results" / "tiny").iterdir()}
    _chapter(tmp_path, {"02_b": "raise RuntimeError('boom in cell')"})
    assert not _run(tmp_path, notebooks, pipeline.Params(scale="smoke", seed=9))
    after = {p.name: p.read_bytes() for p in (tmp_path / "results" / "tiny").iterdir()}
    assert after == before
    assert "RuntimeError: boom in cell" in capsys.readouterr().err


def test_rerun_regenerates_identical_tables(tmp_path):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    assert _run(tmp_path, notebooks)
    first = (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes()
    assert _run(tmp_path, notebooks)
    assert (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes() == first


def test_unknown_paper_is_a_one_line_error(tmp_path):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    with pytest.raises(SystemExit, match=r"^unknown PAPER='nope'; valid: tiny all$"):
        pipeline.resolve("nope", notebooks)
    assert pipeline.resolve("all", notebooks) == ["tiny"]


def test_toc_lists_only_executed_chapters(tmp_path):
    (tmp_path / "foundations").mkdir()
    (tmp_path / "foundations" / "01_foundations.ipynb").write_text("{}")
    (tmp_path / "pifa").mkdir()  # a chapter folder without executed notebooks is left out
    toc = pipeline.write_toc(tmp_path).read_text()
    assert "foundations/01_foundations" in toc and "PIFA" not in toc


def test_progress_bars_are_stripped_from_executed_notebooks(tmp_path):
    import nbformat

    bar = "train 1/2:  50%|#####     | 1/2 [00:01<00:01,  1.0it/s]\rtrain 1/2: 100%|##########| 2/2 [00:02<00:00]\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=bar),
        nbformat.v4.new_output("stream", name="stderr", text=bar + "UserWarning: keep me\n"),
        nbformat.v4.new_output("stream", name="stdout", text="42\n"),
    ])])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    pipeline.strip_progress(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o["text"] for o in outputs] == ["UserWarning: keep me", "42\n"]
