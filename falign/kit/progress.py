"""Live training progress for the person at the terminal, kept out of the executed notebooks.

``make reproduce`` runs each notebook in a Jupyter kernel, whose output goes into the notebook, not to
the terminal. So the pipeline names a file in ``$FALIGN_PROGRESS``; :class:`Reporter` (inside
:func:`falign.kit.train.fit`) appends one JSON line to it about once a second and at every epoch's end, and
:class:`Tail` (in the pipeline's process) prints them: one live line per training on a terminal, a
line per epoch in a log file. Run by hand (no ``$FALIGN_PROGRESS``), a training shows a tqdm bar in
the notebook instead.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

ENV = "FALIGN_PROGRESS"
EVERY_S = 1.0                 # at most one line a second from a training


class Reporter:
    """One training's progress lines, written to ``$FALIGN_PROGRESS`` (nothing when it is unset)."""

    def __init__(self, desc: str, seed: int, epochs: int, steps_per_epoch: int, batch_size: int, start_epoch: int):
        path = os.environ.get(ENV)
        self.path = Path(path) if path else None
        self.head = {"training": desc, "seed": seed, "epochs": epochs}
        self.steps_per_epoch, self.batch_size = steps_per_epoch, batch_size
        self.remaining_epochs = epochs - start_epoch
        self.t0 = self.last = time.perf_counter()
        self.done_steps = 0

    @property
    def active(self) -> bool:
        return self.path is not None

    def due(self) -> bool:
        """Whether a line is due now (about one a second): only then does the caller read its running
        loss, which on a GPU waits for the device."""
        return time.perf_counter() - self.last >= EVERY_S

    def step(self, epoch: int, step: int, loss: float) -> None:
        """Mid-epoch: epoch (0-based), steps done in it, running mean loss."""
        self._write(event="step", epoch=epoch + 1, step=step, loss=loss, **self._speed(step))

    def epoch(self, record: dict[str, Any]) -> None:
        self._write(event="epoch", epoch=record["epoch"], step=self.steps_per_epoch, loss=record["loss"],
                    validation=record.get("validation"), **self._speed(self.steps_per_epoch))
        self.done_steps += self.steps_per_epoch

    def finish(self, cached: bool) -> None:
        self._write(event="done", cached=cached, seconds=time.perf_counter() - self.t0)

    def _speed(self, step: int) -> dict[str, float]:
        done = self.done_steps + step
        elapsed = time.perf_counter() - self.t0
        total = self.remaining_epochs * self.steps_per_epoch
        rate = done / elapsed if elapsed > 0 and done else 0.0
        return {"samples_per_s": rate * self.batch_size, "eta_s": (total - done) / rate if rate else None}

    def _write(self, **fields: Any) -> None:
        self.last = time.perf_counter()
        if self.path is None:
            return
        with open(self.path, "a") as f:           # one short line per write: appends do not interleave
            f.write(json.dumps({**self.head, **fields}) + "\n")


def line(event: dict[str, Any]) -> str:
    """One human line for a progress event."""
    head = f"{event['training']} seed {event['seed']}"
    if event["event"] == "done":
        if event.get("cached"):
            return f"{head}: loaded from the cache"
        return f"{head}: trained in {_clock(event['seconds'])}"
    parts = [head, f"epoch {event['epoch']}/{event['epochs']}"]
    if event["event"] == "step":
        parts.append(f"step {event['step']}")
    parts.append(f"loss {event['loss']:.4g}")
    if event.get("validation") is not None:
        parts.append(f"validation {event['validation']:.4g}")
    parts.append(f"{event['samples_per_s']:.0f} samples/s")
    if event.get("eta_s") is not None:
        parts.append(f"ETA {_clock(event['eta_s'])}")
    return " · ".join(parts)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


class Tail:
    """Follows a progress file in a thread and prints its lines with ``prefix``: on a terminal one line
    per training rewritten in place, elsewhere (a log file) one line per epoch and per finished training."""

    def __init__(self, path: Path, prefix: str, out: TextIO = sys.stdout):
        self.path, self.prefix, self.out = path, prefix, out
        self.live = out.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._offset = 0
        self._open_line = False

    def __enter__(self) -> "Tail":
        self.path.touch()
        self._offset = self.path.stat().st_size          # only what is written from now on
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self._read()
        if self._open_line:
            self.out.write("\n")
            self.out.flush()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path) as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[: chunk.rfind("\n") + 1]
        self._offset += len(complete.encode())
        for raw in complete.splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            self._show(event)

    def _show(self, event: dict[str, Any]) -> None:
        text = f"{self.prefix} {line(event)}"
        if self.live:
            self.out.write(f"\r\x1b[K{text}")
            self._open_line = event["event"] != "done"
            if not self._open_line:
                self.out.write("\n")
        elif event["event"] != "step":
            self.out.write(text + "\n")
        self.out.flush()
