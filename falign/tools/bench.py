"""``make bench``: speed of the hot paths, written to ``results/bench.csv`` with provenance.

Measured on the CPU (all of its threads, one process) and, when torch sees one, on the GPU:

* SynthFace generation, everything included (3DMM sampling, rendering, backgrounds, occluders,
  noise, blur, landmarks and visibility), at 128 and 256 pixels, and the photo-like preset (realism
  effects on) at 128 with its rate relative to the plain one;
* each chapter's inference (its ``bench`` module: e.g. a visualization layer, and every model at batch 1
  and a large batch (throughput);
* every aligner with shipped weights (``falign.kit.aligner.available()``), end to end from a photo and
  its face boxes: latency at batch 1 (ms per face) and throughput at a large batch (faces/s). No
  shipped weights, no rows;
* the peer, dlib's ERT (68 and 5 points, :mod:`falign.baselines.dlib_ert`), timed the same way in the same run;
* each chapter's ``small`` training: samples/s with its configured precision and with float32, and
  their ratio (:func:`bench_training`).

Every row's ``device`` names the CPU, its SIMD level (``torch.backends.cpu.get_cpu_capability()``),
whether it computes bf16 natively, and the thread count.

Tests never assert on time; this is where speed claims come from. Each row is the median of
``repeats`` timed runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform

import pandas as pd
import torch

from falign.base import atomic_files as atomic, paths
from falign.kit import report
from falign.kit.timing import aligner_speed, seconds_per_call


def bench_synthface(device: torch.device, quick: bool) -> list[dict]:
    """300-W-like faces at 128 and 256 pixels; photo-like faces (the realism effects on) at 128 in the
    same run, and their rate as a share of 300-W-like's: what the realism costs."""
    from falign.synthface.dataset import synthface_arrays

    def rate(preset: str, size: int, n: int) -> float:
        seconds = seconds_per_call(lambda: synthface_arrays(preset, "train", n, size=size, seed=1, cache=False,
                                                            device=str(device)), device, repeats=1 if quick else 3)
        return n / seconds

    rows = []
    sizes = {128: 256 if device.type == "cpu" else 8192, 256: 128 if device.type == "cpu" else 4096}
    for size, n in sizes.items():
        n = max(16, n // 8) if quick else n
        rows.append(dict(benchmark="synthface generation", size=size, batch=n, value=rate("300w-like", size, n),
                         unit="images/s"))
    n = rows[0]["batch"]
    photo = rate("photo-like", 128, n)
    rows += [dict(benchmark="synthface generation (photo-like)", size=128, batch=n, value=photo, unit="images/s"),
             dict(benchmark="synthface generation photo-like / 300w-like", size=128, batch=n,
                  value=photo / rows[0]["value"], unit="ratio")]
    return rows


def bench_training(device: torch.device, quick: bool) -> list[dict]:
    """Each chapter's ``small`` training, its main model through the chapter's own code
    (:mod:`falign.tools.trainspeed`): samples/s with the configured precision (``auto``: what
    :mod:`falign.kit.precision` picks on this machine) and with float32, each the faster of two alternating
    runs in this run, and their ratio. The setting chosen is in the benchmark's name."""
    from falign.tools import trainspeed

    rows = []
    steps = 2 if quick else 30
    for chapter in trainspeed.chapters():
        # Each setting twice, alternating, the faster run of each kept: the order cannot favour either
        # (caches warm up, clocks settle), and a slow outlier does not decide the ratio.
        runs: dict[str, list] = {"configured": [], "fp32": []}
        for _ in range(1 if quick else 2):
            for which in ("fp32", "configured"):
                runs[which].append(trainspeed.run(chapter, "small", steps=steps, device=device,
                                                  precision="fp32" if which == "fp32" else None))
        setting = runs["configured"][0][0].precision
        tag = f"{setting['precision']}, {setting['memory_format']}"
        size, batch = trainspeed.scale(chapter, "small").size, trainspeed.scale(chapter, "small").batch
        a, b = (max(trainspeed.samples_per_s(h) for h in runs[which]) for which in ("configured", "fp32"))
        rows += [dict(benchmark=f"{chapter} training (small, configured: {tag})", size=size, batch=batch, value=a,
                      unit="samples/s"),
                 dict(benchmark=f"{chapter} training (small, float32)", size=size, batch=batch, value=b,
                      unit="samples/s"),
                 dict(benchmark=f"{chapter} training (small) configured / float32", size=size, batch=batch,
                      value=a / b, unit="ratio")]
    return rows


def _aligner_rows(name: str, model, size, device: torch.device, quick: bool) -> list[dict]:
    import numpy as np

    photo = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    batch = 8 if quick else 64
    ms, rate = aligner_speed(model.predict, photo, [200.0, 120.0, 440.0, 360.0], batch, device, 1 if quick else 5)
    return [dict(benchmark=f"aligner {name} latency", size=size, batch=1, value=ms, unit="ms/face"),
            dict(benchmark=f"aligner {name} throughput", size=size, batch=batch, value=rate, unit="faces/s")]


def bench_aligners(device: torch.device, quick: bool) -> list[dict]:
    """The shipped aligners as a user calls them: crop, network and mapping back, on a 640x480 photo."""
    from falign.kit import aligner

    rows = []
    loaded, refused = aligner.shipped(device)
    for name, why in refused.items():
        print(f"  {name}: not timed: {why}", flush=True)
    for name, model in loaded.items():
        rows += _aligner_rows(name, model, model.preprocess["size"], device, quick)
    return rows


def bench_peer(device: torch.device, quick: bool) -> list[dict]:
    """The peer, dlib's ERT (:mod:`falign.baselines.dlib_ert`, 68 and 5 points), timed exactly as the aligners
    above and in the same run, so its latency reads beside ours; CPU only (dlib-bin)."""
    from falign.baselines import dlib_ert as peers

    if device.type != "cpu":
        return []
    return [row for points in (68, 5) for row in _aligner_rows(f"dlib-ert-{points}", peers.dlib_ert(points), None,
                                                                device, quick)]


def benchmarks() -> dict:
    """Every benchmark by name: the kit's own and each registered chapter's ``BENCHMARKS``."""
    from falign.kit import registry

    out = {"training": bench_training, "synthface": bench_synthface}
    for chapter in registry.chapters():
        module = chapter.module("bench")
        out.update(getattr(module, "BENCHMARKS", {}) if module else {})
    return {**out, "aligners": bench_aligners, "peer": bench_peer}


ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def run(names: list[str], quick: bool = False) -> pd.DataFrame:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for name in names:
            print(f"bench {name} on {device.type} ...", flush=True)
            torch.manual_seed(0)
            for row in benchmarks()[name](device, quick):
                rows.append({**row, "device": report.describe_device(device)})
                print(f"  {row['benchmark']} size {row['size']} batch {row['batch']}: "
                      f"{row['value']:.1f} {row['unit']}", flush=True)
    state = report.git_state()
    df = pd.DataFrame(rows, columns=["benchmark", "size", "batch", "value", "unit", "device"])
    df["value"] = df["value"].round(3)
    df["torch"] = torch.__version__
    df["python"] = platform.python_version()
    df["commit"] = state["commit"][:12] + ("+dirty" if state["dirty"] else "")
    df["quick"] = quick
    # An ISA cap set for the run (e.g. ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 to measure what an
    # AVX2-only CPU gets on a newer one) is part of the label.
    df["cpu_limits"] = " ".join(f"{k}={os.environ[k]}" for k in ISA_LIMITS if os.environ.get(k))
    return df


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falign.tools.bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(benchmarks())}")
    parser.add_argument("--quick", action="store_true", help="small batches, one repeat (a check that it runs)")
    parser.add_argument("--out", default=str(paths.RESULTS_DIR / "bench.csv"))
    args = parser.parse_args(argv)
    known = benchmarks()
    unknown = sorted(set(args.names) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; valid: {', '.join(known)}")
    df = run(args.names or list(known), quick=args.quick)
    with atomic.atomic_path(args.out) as tmp:
        df.to_csv(tmp, index=False)
    print(df.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
