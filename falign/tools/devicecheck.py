"""``make device-check OUT=dir``: one prepared run that tests the book on a lent GPU in minutes.

A GPU is lent to this project rarely and for about 15 minutes, start-up included, so the whole check is
one command sized to fit 10 minutes of device time (``--budget``), tested at ``SCALE=smoke`` on the CPU
before a GPU is found. Under ``--out`` it writes:

1. ``machine.json``: the device, torch and CUDA versions, and what :mod:`falign.kit.precision` picks there;
2. ``trainings.csv``: every chapter's training at ``--scale`` (default ``gpu``), the real code for a few
   steps on a few faces (:mod:`falign.tools.trainspeed`): samples/s, seconds per step, the precision used;
3. ``results/`` and ``book/``: every chapter's notebooks at ``SCALE=smoke`` on the device, end to end,
   and ``notebooks.csv`` with their wall times.

A part that no longer fits the budget is recorded as skipped, never silently dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from falign.base import atomic_files as atomic
from falign.kit import pipeline, precision, report
from falign.tools import trainspeed


def _deadline(budget_s: float):
    end = time.time() + budget_s
    return lambda: end - time.time()


def trainings(scale: str, device: torch.device, left, steps: int) -> pd.DataFrame:
    """Part 2: each chapter's training at ``scale`` for ``steps`` steps an epoch, 2 epochs."""
    rows = []
    for chapter in trainspeed.chapters():
        if left() < 60:
            rows.append({"chapter": chapter, "scale": scale, "status": "skipped: device-time budget spent"})
            continue
        t0 = time.time()
        try:
            histories = trainspeed.run(chapter, scale, steps=steps, device=device)
        except Exception as err:                       # recorded: the point is to find such errors
            rows.append({"chapter": chapter, "scale": scale, "status": f"error: {type(err).__name__}: {err}"[:300]})
            continue
        rate = trainspeed.samples_per_s(histories)
        batch = trainspeed.scale(chapter, scale).batch
        rows.append({"chapter": chapter, "scale": scale, "status": "ok", "samples_per_s": round(rate, 2),
                     "ms_per_step": round(1000 * batch / rate, 2), "batch": batch,
                     "precision": histories[0].precision.get("precision"),
                     "memory_format": histories[0].precision.get("memory_format"),
                     "wall_s": round(time.time() - t0, 1)})
        print(f"device-check: {chapter} {scale}: {rows[-1]}", flush=True)
    return pd.DataFrame(rows)


def notebooks(out: Path, device: str, left) -> pd.DataFrame:
    """Part 3: every chapter's notebooks at SCALE=smoke on ``device``, outputs under ``out``."""
    params = pipeline.Params(scale="smoke", device=device)
    rows = []
    for chapter in pipeline.chapters():
        if left() < 60:
            rows.append({"chapter": chapter, "status": "skipped: device-time budget spent"})
            continue
        t0 = time.time()
        ok = pipeline.reproduce_chapter(chapter, params, results_dir=out / "results", book_dir=out / "book",
                                        stage_root=out / "stage")
        rows.append({"chapter": chapter, "status": "ok" if ok else "failed (see the log)",
                     "wall_s": round(time.time() - t0, 1)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m falign.tools.devicecheck", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="folder for the results and timings (created)")
    parser.add_argument("--device", default="cuda", choices=report.DEVICES)
    parser.add_argument("--scale", default="gpu", choices=report.SCALES, help="the trainings' scale (part 2)")
    parser.add_argument("--budget", type=float, default=540, help="seconds of device time for the whole check")
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps per epoch of each training")
    args = parser.parse_args(argv)
    try:
        device = report.resolve_device(args.device)
    except (RuntimeError, ValueError) as err:
        print(f"device-check: {err}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["FALIGN_WORK"] = str(out / "work")                  # nothing cached from another run
    left = _deadline(args.budget)
    info = {"device": report.describe_device(device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "machine": precision.machine(), "git": report.git_state(), "scale": args.scale, "steps": args.steps,
            "budget_s": args.budget}
    if device.type == "cuda":
        info["bf16"] = torch.cuda.is_bf16_supported()
    atomic.write_text(out / "machine.json", json.dumps(info, indent=2) + "\n")
    for name, part in (("trainings", lambda: trainings(args.scale, device, left, args.steps)),
                       ("notebooks", lambda: notebooks(out, args.device, left))):
        table = part()
        with atomic.atomic_path(out / f"{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
        print(table.to_string(index=False), flush=True)
    failed = [f for f in ("trainings", "notebooks") if (pd.read_csv(out / f"{f}.csv")["status"]
                                                       .str.startswith(("error", "failed")).any())]
    print(f"device-check: {'failures in ' + ', '.join(failed) if failed else 'every part ran'}; "
          f"{args.budget - left():.0f} s used; see {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
