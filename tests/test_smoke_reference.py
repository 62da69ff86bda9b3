"""The smoke reference: each chapter checks one trained number against tests/smoke_reference.json."""

import json
import re
import types

import pytest
import torch

from falign.base import paths
from falign.kit import report

CHAPTERS = ("ccnn", "cfdrnn", "msrrn", "pifa", "rcsr")


def _run(scale="smoke", data="synthetic", seed=0, device="cpu"):
    return types.SimpleNamespace(paper="toy", notebook="03_train", scale=scale, data=data, seed=seed,
                                 device=torch.device(device))


@pytest.fixture
def reference(tmp_path, monkeypatch):
    path = tmp_path / "smoke_reference.json"
    path.write_text(json.dumps({"tolerance": 0.05, "chapters": {"toy": {
        "name": "test NME", "value": 10.0, "commit": "abc1234", "command": "make reproduce PAPER=toy SCALE=smoke"}}}))
    monkeypatch.setattr(report, "SMOKE_REFERENCE", path)
    return path


def test_within_the_tolerance_passes_beyond_it_fails(reference, capsys):
    report.check_smoke_reference(_run(), "test NME", 10.4)
    assert "+4.00% from 10" in capsys.readouterr().out
    for value in (10.6, 9.4, float("nan")):
        with pytest.raises(AssertionError, match=r"toy/03_train: test NME at SCALE=smoke is .* beyond ±5%") as err:
            report.check_smoke_reference(_run(), "test NME", value)
        assert str(reference) in str(err.value) and "\n" not in str(err.value)


def test_only_the_ci_setting_is_checked(reference):
    """Other scales, data, seeds and devices train other models: no reference applies to them."""
    for run in (_run(scale="small"), _run(data="300w"), _run(seed=1), _run(device="meta")):
        report.check_smoke_reference(run, "test NME", 99.0)


def test_a_number_without_a_reference_fails(reference):
    with pytest.raises(AssertionError, match="no smoke reference for toy 'other'"):
        report.check_smoke_reference(_run(), "other", 10.0)


def test_every_chapter_checks_its_committed_reference():
    """Each chapter's notebooks call the check with the name its committed entry records, once."""
    recorded = json.loads(report.SMOKE_REFERENCE.read_text())["chapters"]
    assert set(recorded) == set(CHAPTERS)
    for chapter in CHAPTERS:
        calls = [name for nb in sorted((paths.NOTEBOOKS_DIR / chapter).glob("*.py"))
                 for name in re.findall(r'check_smoke_reference\(run, "([^"]+)"', nb.read_text())]
        assert calls == [recorded[chapter]["name"]], chapter
