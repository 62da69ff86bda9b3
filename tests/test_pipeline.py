"""The notebook pipeline: parameters reach notebooks, results are promoted atomically, toc lists chapters."""

import json

import pytest

from falign.kit import pipeline

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
from falign.kit import report
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
    assert pipeline.strip_progress(path) == ["UserWarning: keep me"]       # shown in the terminal too
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert [o["text"] for o in outputs] == ["UserWarning: keep me", "42\n"]


def test_training_epoch_lines_are_stripped_like_progress_bars(tmp_path):
    import nbformat

    line = "pifa main epoch 3/12: loss 0.5, 120 samples/s, 9.1 s\n"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=line)])])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    pipeline.strip_progress(path)
    assert nbformat.read(path, as_version=4).cells[0].outputs == []


def test_machine_paths_leave_the_executed_notebook(tmp_path):
    import nbformat

    staged = "PosixPath('/tmp/x/build/stage/tiny-20261207-1-ab/results/tiny/aligner.pt')"
    warning = "/tmp/ipykernel_640/19477.py:4: ExcludedFacesWarning: 1 of 150 faces have no error\n  x = f()\n"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("SCALE = 'smoke'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("SCALE = 'small'", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("x", outputs=[
            nbformat.v4.new_output("execute_result", data={"text/plain": staged}, execution_count=1),
            nbformat.v4.new_output("execute_result", data={"text/plain": "42"}, execution_count=1),
            nbformat.v4.new_output("stream", name="stderr", text=warning)])],
        metadata={"papermill": {"input_path": "/tmp/x/build/stage/a.ipynb", "output_path": "/tmp/x/b.ipynb"}})
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    pipeline.strip_progress(path)
    done = nbformat.read(path, as_version=4)
    outputs = done.cells[2].outputs
    assert [o["data"]["text/plain"] for o in outputs[:-1]] == ["42"]
    assert outputs[-1]["text"] == "ExcludedFacesWarning: 1 of 150 faces have no error\n  x = f()"
    assert "/tmp" not in nbformat.writes(done)
    assert done.cells[0].metadata["tags"] == ["parameters", "remove-cell"]   # the page shows the run's own once


def test_failed_stages_are_cleaned_keeping_the_latest(tmp_path):
    notebooks = _chapter(tmp_path, {"01_a": "raise RuntimeError('boom')"})
    for _ in range(3):
        assert not _run(tmp_path, notebooks)
    assert len(list((tmp_path / "stage").glob("tiny-*"))) == 2      # the latest failure before this run, and this run


def test_a_chapter_refuses_data_it_cannot_use_before_running(tmp_path, capsys):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    with pytest.raises(SystemExit, match=r"^PAPER=tiny does not use DATA=300w; it supports: synthetic$"):
        pipeline.chapters_for("tiny", "300w", notebooks)
    assert pipeline.chapters_for("tiny", "synthetic", notebooks) == ["tiny"]
    assert pipeline.supported_data("rcsr") == ("synthetic", "300w")
    assert "aflw-pifa" in pipeline.supported_data("pifa") and pipeline.supported_data("landmarks") == ("synthetic",)


@pytest.mark.parametrize("seed", ["-1", "abc", str(2**32)])
def test_a_bad_seed_is_a_one_line_error_naming_seed(seed, capsys):
    with pytest.raises(SystemExit) as exit_:
        pipeline.main(["reproduce", "--paper", "pifa", "--seed", seed])
    assert exit_.value.code == 2 and f"SEED={seed} must be an integer" in capsys.readouterr().err


def test_relative_data_root_is_read_from_where_make_runs(tmp_path, monkeypatch):
    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "reproduce_chapter", lambda chapter, params, **folders: seen.setdefault("p", params)
                        and False)
    pipeline.main(["reproduce", "--paper", "rcsr", "--data", "300w", "--data-root", "faces"])
    assert seen["p"].data_root == str(tmp_path / "faces")


def _claims(folder, half=None):
    from falign.kit.ledger import Arm, Claim, ClaimsLedger

    book = ClaimsLedger()
    book.add(Claim("a", "A beats B", "Table 1"), Arm("A", [1.0, 1.1, 0.9]), Arm("B", [2.0, 2.1, 1.9]), half=half)
    folder.mkdir(parents=True, exist_ok=True)
    book.to_frame().to_csv(folder / "claims.csv", index=False)


def test_the_scorecard_page_lists_every_ledger_claim_with_a_link_and_a_forest_plot(tmp_path):
    _claims(tmp_path / "results" / "tiny")
    (tmp_path / "results" / "tiny" / "run.json").write_text(json.dumps({"scale": "small"}))
    (tmp_path / "book" / "tiny").mkdir(parents=True)
    (tmp_path / "book" / "tiny" / "01_data.ipynb").write_text('{"source": "ClaimsLedger is imported here"}')
    (tmp_path / "book" / "tiny" / "04_ablations.ipynb").write_text('{"source": "ledger.table(claims)"}')
    page = pipeline.write_scorecard(tmp_path / "book", tmp_path / "results").read_text()
    assert "| {doc}`tiny <tiny/04_ablations>` | A beats B | +50.1% | [+41.1%, +59.1%] | none published |" in page
    assert "| reproduced | 3 / 3 |" in page and "| small |" in page
    assert "![" in page and (tmp_path / "book" / "scorecard_forest.png").stat().st_size > 0
    assert "absent at the paper's size" in page and "The book judges 1 claims" in page
    assert "| tiny | 1 | 0 | 0 | 0 | 0 | 1 | 0 | 0 | 0 |" in page                      # the overview


def test_the_book_shows_the_largest_scale_whose_claims_pass_the_budget_check(tmp_path):
    assert pipeline.shows_new_run(None, True, "small", False)                 # nothing shown yet
    assert pipeline.shows_new_run("small", True, "full", True)                # both pass: the larger scale
    assert not pipeline.shows_new_run("full", True, "small", True)
    assert not pipeline.shows_new_run("small", True, "full", False)           # never a less converged run
    assert pipeline.shows_new_run("full", False, "small", True)
    assert not pipeline.shows_new_run("full", False, "smoke", True)          # smoke never replaces a real run
    assert pipeline.shows_new_run("smoke", True, "small", False)
    assert pipeline.budget_checked(tmp_path / "no-ledger")                    # a chapter without claims
    _claims(tmp_path / "unchecked")
    assert not pipeline.budget_checked(tmp_path / "unchecked")                # never judged at half budget
    _claims(tmp_path / "stable", half=([1.0, 1.1, 0.95], [2.0, 2.1, 1.9]))
    assert pipeline.budget_checked(tmp_path / "stable")
    _claims(tmp_path / "flips", half=([2.0, 2.1, 1.9], [1.0, 1.1, 0.9]))
    assert not pipeline.budget_checked(tmp_path / "flips")


def test_a_smaller_scale_never_replaces_a_larger_run(tmp_path):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    assert _run(tmp_path, notebooks, pipeline.Params(scale="gpu", device="cpu"))   # the device check is reproduce's
    kept = (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes()
    assert _run(tmp_path, notebooks, pipeline.Params(scale="small", seed=3))
    assert (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes() == kept
    side = tmp_path / "runs" / "small"
    assert (side / "results" / "tiny" / "01_a.csv").read_text().splitlines() == ["scale,seed", "small,3"]
    assert (side / "book" / "tiny" / "01_a.ipynb").exists()
    assert _run(tmp_path, notebooks, pipeline.Params(scale="full"))              # a larger run replaces it
    assert pipeline.kept_scale(tmp_path / "results" / "tiny") == "full"


def test_gpu_scale_without_cuda_is_refused_before_anything_runs(tmp_path, capsys):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    status = pipeline.reproduce("tiny", pipeline.Params(scale="gpu", device="cpu"), notebooks_dir=notebooks,
                                results_dir=tmp_path / "results", book_dir=tmp_path / "book",
                                stage_root=tmp_path / "stage")
    assert status == 1 and not (tmp_path / "results").exists() and not (tmp_path / "stage").exists()
    assert capsys.readouterr().err.strip() == "SCALE=gpu is sized for one GPU; run it with DEVICE=cuda (not DEVICE=cpu)"


def test_a_dead_kernel_is_one_line_and_leaves_results_untouched(tmp_path, capsys):
    notebooks = _chapter(tmp_path, {"01_a": ""})
    assert _run(tmp_path, notebooks)
    kept = (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes()
    _chapter(tmp_path, {"01_a": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"})
    assert not _run(tmp_path, notebooks)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("[tiny] 01_a.py: the notebook's kernel died") and "untouched" in err[-1]
    assert not any("Traceback" in line for line in err)
    assert (tmp_path / "results" / "tiny" / "01_a.csv").read_bytes() == kept
