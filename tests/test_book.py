"""The book's static pages stay in step with the code they describe."""

from falign.base import paths
from falign.data import DATASETS


def test_real_data_page_lists_every_dataset_layout():
    page = (paths.BOOK_DIR / "real_data.md").read_text()
    for name, spec in DATASETS.items():
        if spec.folder is None:  # generated data (SynthFace) needs no files
            continue
        assert f"`DATA={name}`" in page, name
        assert spec.layout.rstrip() in page, f"book/real_data.md: layout of {name} is out of date"


def test_intro_names_the_two_commands():
    intro = (paths.BOOK_DIR / "intro.md").read_text()
    assert "make reproduce PAPER=" in intro and "make test" in intro
