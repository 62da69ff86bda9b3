"""Which precision and memory format a training runs in, chosen per machine and never slower than float32.

bfloat16 autocast makes conv nets several times faster on CPUs that compute it natively (AMX, or
AVX512-BF16), and many times *slower* on CPUs that emulate it (AVX2 only: a 1024² matmul at
1 GFLOP/s against 139 in float32). So a chapter never fixes bf16; it asks for ``"auto"`` and
:func:`choose` decides, for this machine and this training's own step:

* on a CPU without native bf16: float32, contiguous (emulated bf16 is never tried);
* on a CPU with it: a short probe times a few steps of the training's own model, loss and batch under
  each candidate (float32 and bf16 autocast, contiguous and, for conv nets, channels-last) and keeps
  bf16 only where it is at least :data:`MARGIN` faster than float32, and channels-last only where it is
  :data:`MARGIN` faster than contiguous in the same dtype (:func:`_layout`);
* on CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient scaler, channels-last
  for conv nets.

The decision is recorded (:class:`Precision` ``.record()``) in the training's provenance, and it is a
part of the training's cache key (:func:`falign.kit.train.fit` keeps each setting's checkpoint apart),
because precision changes the numbers. Inference (evaluation, ``falign align``, the benchmarks) never
autocasts: it runs in float32 on every machine.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

REQUESTS = ("auto", "fp32", "bf16")
MARGIN = 0.10              # bf16 (and channels-last) must be at least 10 % faster to be chosen: faithfulness, stability
PROBE_STEPS = 3            # timed steps per candidate, after one warm-up step


@dataclass(frozen=True)
class Precision:
    """A training's numeric setting: the autocast dtype (None: float32 throughout) and memory format."""

    autocast: str | None = None          # "bfloat16" | "float16" | None
    channels_last: bool = False
    why: str = ""

    @property
    def tag(self) -> str:
        """A short name, also the sub-folder that keeps this setting's checkpoints apart."""
        dtype = {"bfloat16": "bf16", "float16": "fp16", None: "fp32"}[self.autocast]
        return dtype + ("-cl" if self.channels_last else "")

    @property
    def dtype(self) -> torch.dtype | None:
        return None if self.autocast is None else getattr(torch, self.autocast)

    def record(self) -> dict[str, Any]:
        """What the provenance says: the setting, why it was chosen, and the machine."""
        return {"precision": self.autocast or "float32", "memory_format": "channels_last" if self.channels_last
                else "contiguous", "why": self.why, **machine()}


FP32 = Precision(None, False, "float32 asked for")


@functools.lru_cache(maxsize=1)
def machine() -> dict[str, Any]:
    """The CPU facts that decide precision: its name, torch's SIMD level, native bf16, threads."""
    return {"cpu": cpu_name(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": native_bf16(), "threads": torch.get_num_threads(), "torch": torch.__version__}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether oneDNN computes bf16 in hardware here (AVX512-BF16 or AMX); False where it would emulate."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def machine_key() -> str:
    """A short hash of :func:`machine`: a probe's decision holds for this machine only."""
    return hashlib.sha1(json.dumps(machine(), sort_keys=True).encode()).hexdigest()[:10]


def has_conv(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def candidates(model: torch.nn.Module, device: torch.device) -> list[Precision]:
    """The settings worth probing on this device: none but float32 where bf16 would be emulated;
    with native bf16, float32 and bf16, each contiguous and (conv nets) channels-last."""
    if device.type != "cpu" or not native_bf16():
        return [Precision(None, False)]
    formats = (False, True) if has_conv(model) else (False,)
    return [Precision(d, cl) for d in (None, "bfloat16") for cl in formats]


def choose(request: str, model: torch.nn.Module, device: torch.device,
           step: Callable[[Precision], float] | None) -> tuple[Precision, dict[str, float]]:
    """The setting a training runs in, and the probe's samples/s per candidate tag (empty without one).

    ``request``: ``"fp32"`` (float32, contiguous), ``"bf16"`` (bf16 autocast, refused where bf16 would
    be emulated), or ``"auto"`` (see the module docstring). ``step(candidate)`` times the training's own
    step under a candidate and returns samples/s (see :func:`probe`).

    Decision [precision.per-machine] (training): the papers train in float32 on GPUs. Our CPU scales train in
    float32, or under bf16 autocast (weights, optimiser and the loss's reduction in float32) only where
    this CPU computes bf16 natively and a probe of the training's own step measures it at least 10 %
    faster. Smoke scales, and the paper-protocol ``full`` scales of papers that train in float32, ask for it. Each run's provenance says
    which setting every training used.
    Paper: Every paper trains on GPUs (Caffe, MatConvNet or PyTorch); one states float32, the others
    do not state the precision."""
    if request not in REQUESTS:
        raise ValueError(f"precision={request!r}: expected one of {', '.join(REQUESTS)}")
    conv = has_conv(model)
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        dtype = "bfloat16" if bf16 or request == "bf16" else "float16"
        if request == "fp32":
            return Precision(None, False, "float32 asked for"), {}
        return Precision(dtype, conv, f"CUDA: {dtype} autocast ({'native bf16' if bf16 else 'no bf16 on this GPU'})"
                         f"{', channels-last for convolutions' if conv else ''}"), {}
    if request == "fp32":
        return FP32, {}
    if request == "bf16":
        if not native_bf16():
            raise ValueError(f"precision='bf16': this CPU ({machine()['cpu_capability']}) has no native bf16 and "
                             "would emulate it many times slower than float32; use 'auto' or 'fp32'")
        return Precision("bfloat16", False, "bf16 asked for"), {}
    options = candidates(model, device)
    if len(options) == 1 or step is None:
        why = "no native bf16 on this CPU: float32" if not native_bf16() else "float32 (no probe)"
        return Precision(None, False, why), {}
    speed = {c.tag: step(c) for c in options}
    fp32 = _layout(speed, None)
    bf16 = _layout(speed, "bfloat16")
    best = bf16 if speed[bf16.tag] > (1 + MARGIN) * speed[fp32.tag] else fp32
    ratio = speed[best.tag] / speed["fp32"]
    why = (f"probe of this training's step: {best.tag} {speed[best.tag]:.0f} samples/s, "
           f"{ratio:.2f}x float32 contiguous; bf16 and channels-last each need {1 + MARGIN:.2f}x")
    return dataclasses.replace(best, why=why), speed


def _layout(speed: dict[str, float], autocast: str | None) -> Precision:
    """One dtype's memory format: channels-last only where the probe measures it :data:`MARGIN` faster than
    contiguous. Near-equal timings (the photo aligner's two runs: 0.4 % apart) would otherwise flip the
    choice between runs of the same recipe, and the trained weights with it."""
    plain, last = Precision(autocast, False), Precision(autocast, True)
    return last if speed.get(last.tag, 0.0) > (1 + MARGIN) * speed[plain.tag] else plain


def probe(model: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any], torch.Tensor], batch: Any,
          n: int, device: torch.device, optimizer: Callable[[Any], torch.optim.Optimizer],
          steps: int = PROBE_STEPS) -> Callable[[Precision], float]:
    """A ``step(candidate) -> samples/s`` for :func:`choose`: trains a copy of ``model`` (fresh optimiser)
    for one warm-up and ``steps`` timed steps on ``batch`` (``n`` samples). The real model, its
    optimiser and torch's RNG are left as they were, so probing does not change the training."""
    def step(candidate: Precision) -> float:
        rng = torch.get_rng_state()
        try:
            net = copy.deepcopy(model).train()
            opt = optimizer(net.parameters())
            data = batch
            if candidate.channels_last:
                net = net.to(memory_format=torch.channels_last)
                data = to_channels_last(batch)
            times = []
            for _ in range(steps + 1):
                t0 = time.perf_counter()
                with torch.autocast(device.type, dtype=candidate.dtype, enabled=candidate.autocast is not None):
                    loss = loss_fn(net, data)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if not torch.isfinite(loss):
                    return 0.0              # a setting that diverges on the first steps is never chosen
                times.append(time.perf_counter() - t0)
            if not all(torch.isfinite(p).all() for p in net.parameters()):
                return 0.0                  # e.g. a bf16 + channels-last convolution whose backward gave NaN
            return n / (sum(times[1:]) / steps)
        finally:
            torch.set_rng_state(rng)

    return step


def to_channels_last(batch: Any) -> Any:
    """Every 4-D floating tensor of a batch (dict, list, tuple or tensor) in channels-last layout."""
    if isinstance(batch, torch.Tensor):
        return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 and \
            batch.is_floating_point() else batch
    if isinstance(batch, dict):
        return {k: to_channels_last(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_channels_last(v) for v in batch)
    return batch



def same_format(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` in ``like``'s memory format: a loss that makes new images from its batch (augmentation)
    hands the network the layout :func:`falign.kit.train.fit` chose for the batch."""
    channels_last = like.dim() == 4 and not like.is_contiguous() and like.is_contiguous(
        memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x
