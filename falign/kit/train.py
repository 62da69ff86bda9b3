"""One training loop for every chapter: CPU or CUDA, checkpoints and resume, progress, DDP.

``fit`` is deliberately small (read it top to bottom, nanoGPT-style). A chapter supplies the model, a
``loss_fn(model, batch) -> scalar`` and a torch ``Dataset``; the loop supplies:

* live progress: a line per training on the terminal of ``make reproduce`` (:mod:`falign.kit.progress`),
  a tqdm bar in a notebook run by hand;
* a checkpoint after every epoch (atomic, loaded with ``weights_only=True``) and automatic resume, so
  an interrupted run ends with the same weights as an uninterrupted one on CPU (the shuffling order
  of epoch ``e`` depends only on ``seed`` and ``e``, and the RNG state is checkpointed);
* precision chosen per machine (:mod:`falign.kit.precision`): bf16 autocast only where it is native and
  measured faster, float32 otherwise;
* data parallelism: started under ``torchrun`` the same code runs PyTorch DDP, the global batch split
  across ranks (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import contextlib
import math
import dataclasses
import hashlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, default_collate
from tqdm import tqdm  # plain text bars: Jupyter renders them without ipywidgets

from falign.base import atomic_files as atomic
from falign.kit import precision as precision_, progress as progress_lines

CHECKPOINT = "checkpoint.pt"
HALF = "half.pt"  # the weights after half the optimiser steps: the claims' budget check


# The convergence rule (History.converged), stated once: the fall of the validation trend over the last
# quarter of the budget, at most 2 % of its level, judged on at least 3 epochs.
CONVERGENCE_TOLERANCE = 0.02
CONVERGENCE_POINTS = 3


@dataclass
class History:
    """Per-epoch training record; ``losses`` is the mean training loss of each epoch and, when
    :func:`fit` got a ``validate`` function, ``validation`` its value after each epoch."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    precision: dict[str, Any] = field(default_factory=dict)   # falign.kit.precision's record of the setting
    # Epochs read back from a checkpoint rather than trained by this call (a cached or resumed run): their
    # ``seconds`` were measured when they ran, maybe on another machine or beside other jobs.
    reloaded: int = 0

    @property
    def seconds(self) -> float:
        """Measured training time: the sum of every epoch's wall seconds, when it ran (no cache reads)."""
        return float(sum(e.get("seconds", 0.0) for e in self.epochs))

    @property
    def losses(self) -> list[float]:
        return [e["loss"] for e in self.epochs]

    @property
    def validation(self) -> list[float] | None:
        values = [e.get("validation") for e in self.epochs]
        return values if values and None not in values else None

    def converged(self, tolerance: float = CONVERGENCE_TOLERANCE) -> bool:
        """The book's convergence label, read from the held-out validation curve over the last quarter
        of the budget (at least its last :data:`CONVERGENCE_POINTS` epochs): converged when the trend
        of a least-squares line through those points falls by at most ``tolerance`` of their mean level
        over that stretch, or rises. A learning-rate decay cannot grant it: the curve's level over a
        quarter of the budget, not the last epoch's step, is judged, so a curve still falling after a
        decay stays "not converged". No validation curve, or fewer points than that: False (no
        evidence). The rule and its numbers were fixed before the reruns that use it."""
        curve = self.validation
        if not curve:
            return False
        k = max(CONVERGENCE_POINTS, math.ceil(len(curve) / 4))
        if len(curve) < k:
            return False
        tail = np.asarray(curve[-k:], dtype=float)
        slope = np.polyfit(np.arange(k), tail, 1)[0]
        return -slope * (k - 1) <= tolerance * abs(tail.mean())


def distributed_context(device: str | torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _save(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        torch.save(state, tmp)


def code_version(*modules: Any) -> str:
    """A short hash of the source files of ``modules`` (module objects): the model code's version.
    Any edit to the code that defines and trains a model gives a new version, so no cached model
    outlives the code that produced it."""
    digest = hashlib.sha1()
    for module in modules:
        digest.update(Path(inspect.getsourcefile(module)).read_bytes())
    return digest.hexdigest()[:12]


def cache_dir(work: str | Path, name: str, *, recipe: Any, data: Any, code: str) -> Path:
    """``work/<name>-<hash>``: the folder of one cached model, keyed by everything that determines it:
    the ``recipe`` (scale config, variant, epochs, seed, ...), the training ``data`` (its fingerprints)
    and the ``code`` version (:func:`code_version`). A change to any of them starts a fresh run
    instead of resuming or reloading a stale one."""
    text = json.dumps({"recipe": _plain(recipe), "data": _plain(data), "code": code}, sort_keys=True, default=str)
    return Path(work) / f"{name}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def _plain(value: Any) -> Any:
    """Dataclass configs become dicts so the key does not depend on their repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def checkpoint_path(checkpoint_dir: str | Path, precision: str = "fp32") -> Path | None:
    """Where :func:`fit` keeps the checkpoint of a training asked to run at ``precision`` in
    ``checkpoint_dir`` on this machine; None for an ``"auto"`` training not yet decided here."""
    folder = Path(checkpoint_dir)
    if precision != "auto":
        return folder / {"fp32": "fp32", "bf16": "bf16"}[precision] / CHECKPOINT
    memo = folder / f"precision-{precision_.machine_key()}.json"
    if not memo.exists():
        return None
    saved = json.loads(memo.read_text())
    return folder / precision_.Precision(saved["autocast"], saved["channels_last"]).tag / CHECKPOINT


def finished(checkpoint_dir: str | Path, epochs: int, precision: str = "fp32") -> dict[str, Any] | None:
    """The checkpoint of a training that ran all ``epochs`` in ``checkpoint_dir`` on this machine, or
    None: lets a chapter skip the work that only feeds a training (e.g. a cascade's anchors) when it is done."""
    path = checkpoint_path(checkpoint_dir, precision)
    if path is None or not path.exists():
        return None
    state = load_checkpoint(path)
    return state if state.get("epoch") == epochs else None


def half_weights(checkpoint_dir: str | Path, precision: str = "fp32") -> dict[str, Any] | None:
    """The model's state dict after half of a finished training's optimiser steps (saved by :func:`fit`
    beside its checkpoint), or None: a chapter evaluates it to judge its claims at half the budget."""
    path = checkpoint_path(checkpoint_dir, precision)
    if path is None or not (path.parent / HALF).exists():
        return None
    return load_checkpoint(path.parent / HALF)["model"]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers, never code."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # say which file, in one line: torch's own text runs to paragraphs of advice
        why = "the file is empty" if path.is_file() and path.stat().st_size == 0 else \
            f"truncated, corrupt or not written by torch.save: {type(err).__name__}"
        raise RuntimeError(f"{path}: cannot read checkpoint ({why}); delete it to start afresh") from err


def fit(
    model: torch.nn.Module,
    loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor],
    train_data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    optimizer: Callable[[Any], torch.optim.Optimizer],
    scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    desc: str = "train",
    precision: str = "fp32",
    validate: Callable[[torch.nn.Module], float] | None = None,
    grad_clip: float | None = None,
    num_workers: int = 0,
    progress: bool = True,
    max_steps: int | None = None,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs and return its :class:`History`.

    ``batch_size`` is the global batch; under DDP each of the ``world`` ranks takes
    ``batch_size // world`` samples. The scheduler, if any, steps once per epoch.

    ``precision``: ``"fp32"``, ``"bf16"`` or ``"auto"``, decided by :func:`falign.kit.precision.choose` for
    this machine and this training's own step (never emulated bf16). The weights, the optimiser and
    the loss's reduction stay float32 whatever runs under autocast. The setting chosen is part of the
    checkpoint's path (``checkpoint_dir/<tag>/``), because it changes the numbers, and an ``"auto"``
    probe's decision is kept beside it per machine, so a resumed run keeps its setting.
    ``History.precision`` and :data:`TRAININGS` record it for the run's provenance.

    ``validate(model)``, when given, is called after every epoch (model in eval mode, no gradients)
    and its value is recorded as the epoch's ``validation``: the curve :meth:`History.converged`
    reads. It must not touch test data.

    With a ``checkpoint_dir``, the weights after half of all optimiser steps are kept too
    (:func:`half_weights`), so every claim can also be judged at half its budget (evaluation only).

    ``max_steps`` (or an enclosing :func:`step_cap`) stops each epoch after that many optimiser steps: the
    tests run every scale's configuration for a few steps on the CPU, so a configuration error in a
    ``gpu`` or ``full`` scale shows before a GPU is found.

    On CUDA the loop never waits for the GPU inside an epoch, except for a progress line about once a
    second: losses stay on the device and are checked for non-finite values at the epoch's end.
    """
    max_steps = max_steps if max_steps is not None else _STEP_CAP[-1]
    device = torch.device(device)
    rank, world = distributed_context(device)
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {world} ranks")
    model.to(device)
    setting, speeds = _precision(precision, model, loss_fn, train_data, batch_size // world, device, optimizer,
                                 checkpoint_dir, probe=world == 1)
    if setting.channels_last:
        model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = optimizer(model.parameters())
    sched = scheduler(opt) if scheduler else None
    scaler = torch.amp.GradScaler(device.type, enabled=setting.autocast == "float16")
    history = History(precision={**setting.record(), **({"probe_samples_per_s": speeds} if speeds else {})})
    start_epoch = 0

    ckpt_path = Path(checkpoint_dir) / setting.tag / CHECKPOINT if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.exists():
        start_epoch = history.reloaded = _resume(ckpt_path, device, model, opt, sched, history)

    if world > 1:
        sampler = DistributedSampler(train_data, num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = RandomSampler(train_data, generator=torch.Generator())
    loader = DataLoader(
        train_data, batch_size=batch_size // world, sampler=sampler, drop_last=True,
        num_workers=num_workers, pin_memory=device.type == "cuda",
    )
    if len(loader) == 0:
        raise ValueError(f"{desc}: {len(train_data)} training samples are fewer than one batch of {batch_size}")
    per_epoch = min(len(loader), max_steps) if max_steps is not None else len(loader)
    half_step = epochs * per_epoch // 2           # the budget check's evaluation point
    reporter = progress_lines.Reporter(desc, seed, epochs, per_epoch, batch_size, start_epoch)
    on_cpu = device.type == "cpu"

    for epoch in range(start_epoch, epochs):
        # The order of epoch e depends on (seed, e) only, so a resumed run sees the same batches.
        if world > 1:
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(seed * 100_003 + epoch)
        net.train()
        steps, t0 = [], time.perf_counter()                     # every iteration's loss, on the device
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", total=per_epoch, leave=False, dynamic_ncols=True,
                   disable=not progress or rank != 0 or reporter.active)
        for batch in bar:
            if len(steps) >= per_epoch:
                break
            batch = to_device(batch, device)
            if setting.channels_last:
                batch = precision_.to_channels_last(batch)
            with torch.autocast(device.type, dtype=setting.dtype, enabled=setting.autocast is not None):
                loss = loss_fn(net, batch)
            if on_cpu and not torch.isfinite(loss):            # free on the CPU; CUDA checks at the epoch's end
                raise FloatingPointError(f"{desc}: loss became {loss.item()} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(opt)
            scaler.update()
            steps.append(loss.detach())
            if ckpt_path is not None and rank == 0 and epoch * per_epoch + len(steps) == half_step:
                _save(ckpt_path.parent / HALF, {"model": model.state_dict(), "epoch": epoch, "step": half_step})
            if reporter.due():
                running = float(torch.stack(steps).float().mean())
                reporter.step(epoch, len(steps), running)
                bar.set_postfix(loss=f"{running:.4g}", img_s=f"{len(steps) * batch_size / (time.perf_counter() - t0):.0f}")
        losses = torch.stack(steps).float().cpu()
        if not torch.isfinite(losses).all():
            raise FloatingPointError(f"{desc}: loss became non-finite in epoch {epoch + 1}")
        if not all(torch.isfinite(p).all() for p in model.parameters()):  # the last step can diverge unseen
            raise FloatingPointError(f"{desc}: weights became non-finite in epoch {epoch + 1}")
        if sched is not None:
            sched.step()
        seconds = time.perf_counter() - t0
        history.epochs.append({
            "epoch": epoch + 1, "loss": float(losses.mean()), "lr": opt.param_groups[0]["lr"],
            "seconds": seconds, "samples_per_s": len(steps) * batch_size / seconds,
        })
        if len(steps) >= 5:
            history.epochs[-1]["loss_fifths"] = [float(part.mean()) for part in losses.tensor_split(5)]
        if validate is not None:
            model.eval()
            with torch.no_grad():
                history.epochs[-1]["validation"] = float(validate(model))
        if ckpt_path is not None and rank == 0:
            _save(ckpt_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict() if sched is not None else {},
                "rng": torch.get_rng_state(), "history": history.epochs, "epoch": epoch + 1,
            })
        if rank == 0:
            reporter.epoch(history.epochs[-1])
    if rank == 0:
        reporter.finish(cached=start_epoch >= epochs)
        TRAININGS.append({"training": desc, "seed": seed, "epochs": epochs, "cached": start_epoch >= epochs,
                          "seconds": round(sum(e.get("seconds", 0.0) for e in history.epochs[start_epoch:]), 2),
                          **history.precision})
    return history


# Every training of this process, with its precision and machine: a notebook's report.Run writes the
# ones made during the notebook into run.json.
TRAININGS: list[dict[str, Any]] = []


def _precision(request: str, model: torch.nn.Module, loss_fn, train_data: Dataset, batch: int,
               device: torch.device, optimizer, checkpoint_dir, *, probe: bool):
    """The training's :class:`falign.kit.precision.Precision` and probe speeds; an ``"auto"`` decision is
    kept in ``checkpoint_dir/precision-<machine>.json``, so a resumed run keeps the same setting."""
    memo = Path(checkpoint_dir) / f"precision-{precision_.machine_key()}.json" if checkpoint_dir else None
    if request == "auto" and memo is not None and memo.exists():
        saved = json.loads(memo.read_text())
        return precision_.Precision(saved["autocast"], saved["channels_last"], saved["why"]), saved["speeds"]
    step = None
    if probe and request == "auto":
        n = min(len(train_data), batch)
        sample = to_device(default_collate([train_data[i] for i in range(n)]), device)
        step = precision_.probe(model, loss_fn, sample, n, device, optimizer)
    setting, speeds = precision_.choose(request, model, device, step)
    if request == "auto" and memo is not None:
        atomic.write_text(memo, json.dumps({**dataclasses.asdict(setting), "speeds": speeds}, indent=1))
    return setting, speeds


def _resume(path: Path, device: torch.device, model, opt, sched, history: History) -> int:
    """Load a training checkpoint into ``model``, ``opt``, ``sched`` and ``history``; returns its epoch."""
    state = load_checkpoint(path, map_location=device)
    if isinstance(state, dict):
        missing = sorted({"model", "optimizer", "rng", "history", "epoch"} - set(state))
        problem = f"no {', '.join(missing)}" if missing else ""
    else:
        problem = f"it holds a {type(state).__name__}, not a dict"
    if problem:
        raise RuntimeError(f"{path}: not a training checkpoint of falign.kit.train.fit ({problem}); delete it to start "
                           "afresh")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise RuntimeError(f"{path}: holds the weights of another model ({first}); delete it to start "
                           "afresh") from None
    opt.load_state_dict(state["optimizer"])
    if sched is not None:
        sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    history.epochs = state["history"]
    return state["epoch"]


_STEP_CAP: list[int | None] = [None]


@contextlib.contextmanager
def step_cap(steps: int):
    """Within this block every :func:`fit` stops each epoch after ``steps`` optimiser steps (a test's
    way to run a whole scale's configuration for a few steps without changing the chapter's code)."""
    _STEP_CAP.append(steps)
    try:
        yield
    finally:
        _STEP_CAP.pop()


def step_decay(milestones: list[int], gamma: float) -> Callable[[torch.optim.Optimizer], Any]:
    """A MultiStepLR factory: the learning rate is multiplied by ``gamma`` at each milestone epoch."""
    return lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)


def sgd(lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def adam(lr: float, weight_decay: float = 0.0) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
