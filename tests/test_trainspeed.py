"""The capped trainings behind `make bench`'s training rows and `make device-check`."""

import pytest
import torch

from falign.kit import registry
from falign.tools import devicecheck, trainspeed


@pytest.mark.parametrize("chapter", trainspeed.chapters())
def test_tiny_data_keeps_everything_but_the_face_counts(chapter):
    cfg = trainspeed.scale(chapter, "small")
    original = registry.experiment(chapter).SCALES["small"]
    changed = {k for k in vars(cfg) if getattr(cfg, k) != getattr(original, k)}
    assert changed and changed <= {"n_train", "n_val", "n_test", "n_afw"}           # face counts only


def test_a_capped_run_trains_the_chapters_own_model_and_reports_its_speed():
    histories = trainspeed.run("msrrn", "smoke", steps=2, epochs=2)
    assert len(histories) == 1 and len(histories[0].epochs) == 2
    assert histories[0].precision["precision"] == "float32"           # smoke asks for float32
    assert trainspeed.samples_per_s(histories) > 0


def test_the_device_check_records_what_the_budget_left_out():
    table = devicecheck.trainings("smoke", torch.device("cpu"), left=lambda: 0.0, steps=2)
    assert list(table["chapter"]) == list(trainspeed.chapters())
    assert table["status"].str.startswith("skipped").all()
