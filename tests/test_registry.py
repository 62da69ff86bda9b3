"""The chapter registry: papers are found from their own packages, every list has one source, and a
new paper needs only its package folder and its notebooks (a toy paper proves it end to end)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap


from falign.data import registry as data_registry
from falign.base import paths
from falign.kit import pipeline, registry, report

KIT = ("base", "kit", "measure", "tools")  # the kit, the measurements, the tools: no paper named in any


def _make_list(name: str) -> list[str]:
    text = (paths.ROOT / "Makefile").read_text()
    return re.search(rf"^{name}\s*:=\s*(.*)$", text, re.M).group(1).split()


def test_every_paper_package_registers_its_chapter():
    papers = {c.name for c in registry.papers()}
    packages = {p.name for p in (paths.ROOT / "falign" / "papers").iterdir() if (p / "__init__.py").is_file()}
    assert papers == packages
    for c in registry.papers():
        assert c.experiment == f"falign.papers.{c.name}.experiment" and c.module() is not None
        assert c.aligner and c.bench, f"{c.name}: no aligner or bench module"


def test_the_makefile_lists_agree_with_falign():
    """The Makefile checks PAPER, SCALE and DATA before any Python exists, so it keeps copies; here
    they are held to the library's lists."""
    assert tuple(_make_list("SCALES")) == report.SCALES
    assert set(_make_list("DATASETS")) == set(data_registry.names())
    assert set(pipeline.chapters()) == {p.name for p in paths.NOTEBOOKS_DIR.iterdir() if pipeline.notebooks(p)}


def test_every_experiment_has_every_scale_and_only_known_datasets():
    for c in registry.chapters():
        module = c.module()
        if module is not None and hasattr(module, "SCALES"):
            assert tuple(module.SCALES) == report.SCALES, c.name
        assert set(c.datasets) <= set(data_registry.names()), c.name


def test_no_kit_module_names_a_paper():
    papers = [c.name for c in registry.papers()]
    for package in KIT:
        for path in (paths.ROOT / "falign" / package).rglob("*.py"):
            text = path.read_text().lower().replace("aflw-pifa", "aflw-protocol")  # a dataset named for its protocol
            named = [p for p in papers if re.search(rf"\b{p}\b", text)]
            assert not named, f"{path.relative_to(paths.ROOT)} names {named}"


TOY_INIT = '''
from pathlib import Path
from falign.kit.registry import register

register(__name__, title="Toy: a paper in a temporary tree", notebooks=Path(__file__).parent / "notebooks")
'''
TOY_EXPERIMENT = '''
import dataclasses
from falign.kit import chapter

DATASETS = ("synthetic",)


@dataclasses.dataclass(frozen=True)
class Scale(chapter.Scale):
    faces: int = 4


SCALES = {name: Scale(faces=4) for name in ("smoke", "small", "gpu", "full")}


def datasets(cfg, *, data="synthetic", root="", seed=0):
    return {}
'''
TOY_NOTEBOOK = '''
# %% tags=["parameters"]
SCALE = "smoke"
DATA = "synthetic"
DATA_ROOT = ""
DEVICE = "cpu"
SEED = 0

# %%
from falign.kit import chapter

run, cfg, crops = chapter.setup("toy", "01_toy", SCALE=SCALE, DATA=DATA, DATA_ROOT=DATA_ROOT, DEVICE=DEVICE,
                                SEED=SEED)
print("faces", cfg.faces)
run.finish();
'''
TOY_RUN = '''
import sys
from pathlib import Path
from falign.kit import pipeline, registry

tmp = Path(sys.argv[1])
assert "toy" in [c.name for c in registry.papers()], "toy paper not found"
status = pipeline.reproduce("toy", pipeline.Params("smoke"), results_dir=tmp / "results", book_dir=tmp / "book",
                            stage_root=tmp / "stage")
print(pipeline.write_toc(tmp / "book"))
sys.exit(status)
'''


def test_a_toy_paper_needs_only_its_folder(tmp_path):
    package = tmp_path / "papers" / "toy"
    (package / "notebooks").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(TOY_INIT))
    (package / "experiment.py").write_text(textwrap.dedent(TOY_EXPERIMENT))
    (package / "notebooks" / "01_toy.py").write_text(textwrap.dedent(TOY_NOTEBOOK))
    env = {**os.environ, "FALIGN_PAPERS": str(tmp_path / "papers"), "FALIGN_WORK": str(tmp_path / "work")}
    done = subprocess.run([sys.executable, "-c", TOY_RUN, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "book" / "toy" / "01_toy.ipynb").is_file()
    assert (tmp_path / "results" / "toy" / "run.json").is_file()
    toc = (tmp_path / "book" / "_toc.yml").read_text()
    assert "Toy: a paper in a temporary tree" in toc and "file: toy/01_toy" in toc
