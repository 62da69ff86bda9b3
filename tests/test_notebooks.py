"""Every chapter notebook follows the conventions the pipeline and CI rely on."""

import jupytext
import pytest

from falign.kit import pipeline

NOTEBOOKS = [py for chapter in pipeline.chapters() for py in pipeline.notebooks(pipeline.paths.NOTEBOOKS_DIR / chapter)]


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_notebook_conventions(py):
    cells = jupytext.read(py).cells
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{py}: needs exactly one cell tagged 'parameters'"
    for name in ("SCALE", "DATA", "DATA_ROOT", "DEVICE", "SEED"):
        assert f"{name} = " in params[0].source, f"{py}: parameters cell lacks {name}"
    assert 'SCALE = "smoke"' in params[0].source, f"{py}: the default scale must be smoke (fast by hand, CI)"
    code = [c.source for c in cells if c.cell_type == "code"]
    assert any(s.startswith("# NBVAL_CHECK_OUTPUT") for s in code), f"{py}: no cell checked by nbval"
    assert any("run.finish()" in s for s in code), f"{py}: never calls run.finish() (no provenance)"
    assert cells[0].cell_type == "markdown" and cells[0].source.startswith("# "), f"{py}: no title cell"


def test_there_are_chapters():
    assert {"foundations", "landmarks"} <= set(pipeline.chapters())
