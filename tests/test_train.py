"""The training loop: learning happens, resume is exact, DDP ranks agree, checkpoints are safe."""

import io
import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

from falign.kit import precision, progress, train


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1
    return TensorDataset(x, y)


def _model():
    torch.manual_seed(1)
    # Dropout makes the test sensitive to the RNG state being restored on resume.
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                               torch.nn.Linear(16, 1))


def _loss(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y)


def _fit(model, epochs, ckpt=None, **kw):
    return train.fit(model, _loss, _problem(), epochs=epochs, batch_size=8, optimizer=train.sgd(0.01),
                     scheduler=train.step_decay([2], 0.5), checkpoint_dir=ckpt, progress=False, **kw)


def test_loss_decreases():
    history = _fit(_model(), 5)
    assert history.losses[-1] < 0.5 * history.losses[0]
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("request_", ["fp32", "bf16"])
def test_precision_runs_the_forward_in_bf16_only_when_asked_and_keeps_fp32_weights(request_):
    if request_ == "bf16" and not precision.native_bf16():
        pytest.skip("this CPU has no native bf16 (fit refuses bf16 here; see the test below)")
    dtypes = []
    model = _model()
    model[0].register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    history = _fit(model, 3, precision=request_)
    assert set(dtypes) == {torch.bfloat16 if request_ == "bf16" else torch.float32}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert history.losses[-1] < history.losses[0]
    assert history.precision["precision"] == ("bfloat16" if request_ == "bf16" else "float32")


def _never(candidate):
    raise AssertionError("no probe was expected")


def test_auto_is_float32_without_probing_where_bf16_would_be_emulated(monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    conv = torch.nn.Conv2d(3, 4, 3)
    setting, speeds = precision.choose("auto", conv, torch.device("cpu"), _never)
    assert (setting.autocast, setting.channels_last, speeds) == (None, False, {})
    with pytest.raises(ValueError, match="no native bf16"):
        precision.choose("bf16", conv, torch.device("cpu"), _never)


@pytest.mark.parametrize("bf16_speedup, chosen", [(1.05, "fp32"), (1.5, "bf16-cl")])
def test_auto_keeps_bf16_only_where_the_probe_measures_it_clearly_faster(monkeypatch, bf16_speedup, chosen):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    speed = {"fp32": 100.0, "fp32-cl": 98.0, "bf16": 90.0, "bf16-cl": 100.0 * bf16_speedup}
    setting, speeds = precision.choose("auto", torch.nn.Conv2d(3, 4, 3), torch.device("cpu"),
                                       lambda c: speed[c.tag])
    assert setting.tag == chosen and speeds == speed
    assert "probe" in setting.why


@pytest.mark.parametrize("cl_speedup, chosen", [(1.004, "bf16"), (1.2, "bf16-cl")])
def test_channels_last_needs_the_same_margin_over_contiguous(monkeypatch, cl_speedup, chosen):
    """The photo aligner's two runs of one recipe picked different layouts on timings 0.4 % apart."""
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    speed = {"fp32": 100.0, "fp32-cl": 100.0, "bf16": 200.0, "bf16-cl": 200.0 * cl_speedup}
    setting, _ = precision.choose("auto", torch.nn.Conv2d(3, 4, 3), torch.device("cpu"), lambda c: speed[c.tag])
    assert setting.tag == chosen


def test_an_auto_decision_is_kept_per_machine_and_keys_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    monkeypatch.setattr(precision, "probe", lambda *a, **k: lambda c: {"fp32": 10.0, "bf16": 20.0}[c.tag])
    first = _fit(_model(), 2, tmp_path, precision="auto")
    assert first.precision["precision"] == "bfloat16"
    assert (tmp_path / "bf16" / train.CHECKPOINT).exists()
    assert len(list(tmp_path.glob("precision-*.json"))) == 1
    monkeypatch.setattr(precision, "probe", lambda *a, **k: _never)   # resumed: the kept decision, no probe
    again = _fit(_model(), 3, tmp_path, precision="auto")
    assert again.precision["precision"] == "bfloat16" and len(again.epochs) == 3
    assert train.TRAININGS[-1]["precision"] == "bfloat16" and train.TRAININGS[-1]["cpu_capability"]


def test_the_probe_leaves_the_model_and_the_rng_as_they_were():
    model = _model()
    before = [p.clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    step = precision.probe(model, _loss, _problem()[:8], 8, torch.device("cpu"), train.sgd(0.1))
    assert step(precision.FP32) > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())


def test_a_setting_whose_probe_steps_go_non_finite_is_never_chosen(monkeypatch):
    """CFDRNN's bf16 + channels-last convolution backward once returned NaN: the probe scores it 0."""
    def loss(model, batch):
        nan = torch.is_autocast_enabled("cpu")          # diverges under autocast only
        return _loss(model, batch) * (float("nan") if nan else 1.0)

    step = precision.probe(_model(), loss, _problem()[:8], 8, torch.device("cpu"), train.sgd(0.1))
    assert step(precision.Precision("bfloat16")) == 0.0 and step(precision.FP32) > 0
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    setting, _ = precision.choose("auto", _model(), torch.device("cpu"), step)
    assert setting.autocast is None


def test_a_step_cap_stops_every_epoch_after_that_many_steps():
    with train.step_cap(2):
        history = _fit(_model(), 2)
    assert [e["samples_per_s"] > 0 for e in history.epochs] == [True, True]
    assert all(len(e.get("loss_fifths", [])) == 0 for e in history.epochs)   # 2 steps: too few for fifths


def test_progress_goes_to_the_progress_file_as_one_json_line_per_event(tmp_path, monkeypatch):
    log = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(log))
    _fit(_model(), 2)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["event"] for e in events if e["event"] != "step"] == ["epoch", "epoch", "done"]
    assert events[-2]["epoch"] == 2 and events[-2]["eta_s"] == 0
    out = io.StringIO()
    with progress.Tail(log, "[toy]", out):
        pass
    assert out.getvalue() == ""                       # a Tail prints only what comes after it starts
    with progress.Tail(log, "[toy]", out):
        _fit(_model(), 2)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[0].startswith("[toy] train seed 0 · epoch 1/2 · loss ")
    assert "samples/s" in lines[0] and lines[-1].startswith("[toy] train seed 0: trained in ")


def test_validation_is_recorded_each_epoch():
    x, y = _problem(1).tensors
    history = _fit(_model(), 3, validate=lambda model: torch.nn.functional.mse_loss(model(x), y))
    assert history.validation is not None and len(history.validation) == 3
    assert history.validation[-1] < history.validation[0]


def test_resumed_run_matches_uninterrupted(tmp_path):
    full = _model()
    _fit(full, 4)
    interrupted = _model()
    _fit(interrupted, 2, ckpt=tmp_path)  # "interrupted" after epoch 2
    resumed = _model()
    history = _fit(resumed, 4, ckpt=tmp_path)
    assert len(history.epochs) == 4
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_is_loadable_with_weights_only(tmp_path):
    _fit(_model(), 1, ckpt=tmp_path)
    state = train.load_checkpoint(train.checkpoint_path(tmp_path))
    assert state["epoch"] == 1 and "model" in state


def test_too_small_dataset_is_a_clear_error():
    data = TensorDataset(torch.zeros(3, 4), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.fit(_model(), _loss, data, epochs=1, batch_size=8, optimizer=train.sgd(0.1), progress=False)


def _ddp_worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    model = _model()
    _fit(model, 3)
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_ranks_end_with_identical_weights(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and training happened: the weights moved away from the initialisation
    assert not torch.equal(a["0.weight"], _model().state_dict()["0.weight"])


def test_cache_dir_changes_with_recipe_data_and_code(tmp_path):
    from falign.measure import metrics

    code = train.code_version(train)
    a = train.cache_dir(tmp_path, "main", recipe={"epochs": 12, "lr": 1e-3}, data=["fp-a"], code=code)
    assert a == train.cache_dir(tmp_path, "main", recipe={"lr": 1e-3, "epochs": 12}, data=["fp-a"], code=code)
    assert a != train.cache_dir(tmp_path, "main", recipe={"epochs": 6, "lr": 1e-3}, data=["fp-a"], code=code)
    assert a != train.cache_dir(tmp_path, "main", recipe={"epochs": 12, "lr": 1e-3}, data=["fp-b"], code=code)
    other = train.code_version(train, metrics)
    assert a != train.cache_dir(tmp_path, "main", recipe={"epochs": 12, "lr": 1e-3}, data=["fp-a"], code=other)


def test_a_single_epoch_records_its_fifths():
    history = _fit(_model(), 1)
    fifths = history.epochs[0]["loss_fifths"]
    assert len(fifths) == 5 and fifths[-1] < fifths[0]              # recorded by fit, and it fell
    assert history.epochs[0]["loss"] == pytest.approx(sum(fifths) / 5, rel=0.05)


def test_weights_that_diverge_on_the_last_step_are_an_error():
    with pytest.raises(FloatingPointError, match="weights became non-finite in epoch 1"):
        train.fit(_model(), _loss, _problem(), epochs=1, batch_size=64, optimizer=train.sgd(float("inf")),
                  progress=False)  # one step: its loss is finite, the weights it leaves are not


def _curve(values):
    return train.History([{"epoch": i + 1, "loss": 1.0, "validation": v} for i, v in enumerate(values)])


def test_convergence_is_read_from_the_last_quarter_of_the_validation_curve():
    assert not _curve([11.4, 10.8, 10.1, 9.4]).converged()              # still falling at the end
    after_decay = [14, 12.5, 12.1, 12.0, 12.0, 11.99, 10.0, 9.6]          # an LR drop in the last quarter
    assert not _curve(after_decay).converged()
    flat_after_decay = [14, 13, 12.5, 12.2, 12.1, 12.0, 9.8, 9.7, 9.65, 9.64, 9.64, 9.63]
    assert _curve(flat_after_decay).converged()                          # a quarter of the budget flat
    assert _curve([5.0, 4.0, 3.9, 3.95, 4.0]).converged()               # rising is no longer improving
    assert not _curve([5.0, 4.0]).converged()                            # fewer than 3 points: no evidence
    assert not train.History([{"epoch": 1, "loss": 1.0}]).converged()     # no validation curve: no evidence


def test_half_the_budget_is_kept_for_the_budget_check(tmp_path):
    model = _model()
    _fit(model, 4, ckpt=tmp_path)
    half = train.half_weights(tmp_path)
    assert half is not None and set(half) == set(model.state_dict())
    assert any(not torch.equal(half[k], v) for k, v in model.state_dict().items())   # earlier weights
    assert train.half_weights(tmp_path / "elsewhere") is None


def test_convergence_is_judged_again_from_committed_curves():
    from falign.kit import chapter
    import pandas as pd

    rows = [{"arm": "flat", "seed": s, "epoch": i + 1, "loss": 1.0, "val": v}
            for s in (0, 1) for i, v in enumerate([5.0, 4.0, 3.9, 3.9, 3.9])]
    rows += [{"arm": "falling", "seed": 0, "epoch": i + 1, "loss": 1.0, "val": v}
             for i, v in enumerate([11.4, 10.8, 10.1, 9.4])]
    curves = pd.DataFrame(rows)
    assert chapter.converged_from_curves(curves, "val") == {"flat": True, "falling": False}
    assert chapter.converged_from_curves(curves, "val", ["flat", "absent"]) == {"flat": True, "absent": False}
