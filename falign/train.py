"""One training loop for every chapter: CPU or CUDA, checkpoints and resume, progress, DDP.

``fit`` is deliberately small (read it top to bottom, nanoGPT-style). A chapter supplies the model, a
``loss_fn(model, batch) -> scalar`` and a torch ``Dataset``; the loop supplies:

* a tqdm bar with the running loss and throughput;
* a checkpoint after every epoch (atomic, loaded with ``weights_only=True``) and automatic resume, so
  an interrupted run ends with the same weights as an uninterrupted one on CPU (the shuffling order
  of epoch ``e`` depends only on ``seed`` and ``e``, and the RNG state is checkpointed);
* mixed precision (bfloat16 autocast) on CUDA;
* data parallelism: started under ``torchrun`` the same code runs PyTorch DDP, the global batch split
  across ranks (gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from tqdm import tqdm  # plain text bars: Jupyter renders them without ipywidgets

from falign import atomic

CHECKPOINT = "checkpoint.pt"


@dataclass
class History:
    """Per-epoch training record; ``losses`` is the mean training loss of each epoch and, when
    :func:`fit` got a ``validate`` function, ``validation`` its value after each epoch."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [e["loss"] for e in self.epochs]

    @property
    def validation(self) -> list[float] | None:
        values = [e.get("validation") for e in self.epochs]
        return values if values and None not in values else None

    def plateaued(self, tolerance: float = 0.05) -> bool:
        """The book's convergence label. With a validation curve: the last epoch improved the
        validation error by less than ``tolerance`` (relative), or made it worse. Without one: the
        last epoch's mean training loss moved by less than ``tolerance`` (the optimiser stopped
        improving). A single epoch is read as its fifths (``loss_fifths``: the mean loss of each fifth
        of its iterations) and judged on the last two, so a one-pass training is judged, like a longer
        one, on two equal stretches at its end; its halves would not do: the first half holds the
        fall from the initial weights, so it never looked flat. Without fifths one epoch gives no
        evidence, so False."""
        if self.validation:
            if len(self.validation) < 2:
                return False
            last, before = self.validation[-1], self.validation[-2]
            return last >= before - tolerance * abs(before)
        curve = self.losses if len(self.epochs) != 1 else self.epochs[0].get("loss_fifths", [])
        if len(curve) < 2:
            return False
        last, before = curve[-1], curve[-2]
        return abs(before - last) <= tolerance * abs(before)


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
    amp: bool = True,
    cpu_amp: bool = False,
    validate: Callable[[torch.nn.Module], float] | None = None,
    grad_clip: float | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` in place for ``epochs`` epochs and return its :class:`History`.

    ``batch_size`` is the global batch; under DDP each of the ``world`` ranks takes
    ``batch_size // world`` samples. The scheduler, if any, steps once per epoch.

    Mixed precision: ``amp`` runs the forward pass under bf16 autocast on CUDA; ``cpu_amp`` does the
    same on the CPU, where AMX makes bf16 convolutions and matmuls several times faster for conv nets
    but gains little for small recurrent models (profile before switching it on). The weights, the
    optimiser and the loss's reduction stay fp32 either way.

    ``validate(model)``, when given, is called after every epoch (model in eval mode, no gradients)
    and its value is recorded as the epoch's ``validation``: the curve :meth:`History.plateaued`
    reads. It must not touch test data.
    """
    device = torch.device(device)
    rank, world = distributed_context(device)
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} is not divisible by the {world} ranks")
    model.to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = optimizer(model.parameters())
    sched = scheduler(opt) if scheduler else None
    history = History()
    start_epoch = 0

    ckpt_path = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        if isinstance(state, dict):
            missing = sorted({"model", "optimizer", "rng", "history", "epoch"} - set(state))
            problem = f"no {', '.join(missing)}" if missing else ""
        else:
            problem = f"it holds a {type(state).__name__}, not a dict"
        if problem:
            raise RuntimeError(f"{ckpt_path}: not a training checkpoint of falign.train.fit ({problem}); "
                               "delete it to start afresh")
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise RuntimeError(f"{ckpt_path}: holds the weights of another model ({first}); delete it to start "
                               "afresh") from None
        opt.load_state_dict(state["optimizer"])
        if sched is not None:
            sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        history.epochs = state["history"]
        start_epoch = state["epoch"]

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
    use_amp = (amp and device.type == "cuda") or (cpu_amp and device.type == "cpu")

    for epoch in range(start_epoch, epochs):
        # The order of epoch e depends on (seed, e) only, so a resumed run sees the same batches.
        if world > 1:
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(seed * 100_003 + epoch)
        net.train()
        steps, t0 = [], time.perf_counter()                     # every iteration's loss
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress or rank != 0,
                   leave=False, dynamic_ncols=True)
        for batch in bar:
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(net, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} in epoch {epoch + 1}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            steps.append(loss.item())
            seen = len(steps) * batch_size
            bar.set_postfix(loss=f"{sum(steps) / len(steps):.4g}", img_s=f"{seen / (time.perf_counter() - t0):.0f}")
        if not all(torch.isfinite(p).all() for p in model.parameters()):  # the last step can diverge unseen
            raise FloatingPointError(f"{desc}: weights became non-finite in epoch {epoch + 1}")
        if sched is not None:
            sched.step()
        seconds = time.perf_counter() - t0
        history.epochs.append({
            "epoch": epoch + 1, "loss": sum(steps) / len(steps), "lr": opt.param_groups[0]["lr"],
            "seconds": seconds, "samples_per_s": len(steps) * batch_size / seconds,
        })
        if len(steps) >= 5:
            history.epochs[-1]["loss_fifths"] = [float(part.mean()) for part in torch.tensor(steps).tensor_split(5)]
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
        if progress and rank == 0:  # for the terminal; the book shows the loss curve instead
            e = history.epochs[-1]
            val = f", validation {e['validation']:.4g}" if "validation" in e else ""
            print(f"{desc} epoch {e['epoch']}/{epochs}: loss {e['loss']:.4g}{val}, "
                  f"{e['samples_per_s']:.0f} samples/s, {e['seconds']:.1f} s", file=sys.stderr)
    return history


def step_decay(milestones: list[int], gamma: float) -> Callable[[torch.optim.Optimizer], Any]:
    """A MultiStepLR factory: the learning rate is multiplied by ``gamma`` at each milestone epoch."""
    return lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=gamma)


def sgd(lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def adam(lr: float, weight_decay: float = 0.0) -> Callable[[Any], torch.optim.Optimizer]:
    return lambda params: torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
