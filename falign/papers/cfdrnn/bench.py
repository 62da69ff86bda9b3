"""``make bench`` entries of the CFDRNN chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch

from falign.kit.timing import seconds_per_call



def inference(device: torch.device, quick: bool) -> list[dict]:
    """CFDRNN (two resizers, 3 HML and 4 LML branches; L4 of Eq. 4) at the paper's 256x256 input and
    width and at the chapter's small scale: per-face time at batch 1 (latency) and batched
    (throughput)."""
    from falign.papers.cfdrnn import experiment as chapter

    rows = []
    for scale, bulk in (("full", 16), ("small", 64)):
        cfg = chapter.SCALES[scale]
        net = chapter.build(cfg).to(device).eval()
        for batch in (1, 2 if quick else bulk):
            x = torch.rand(batch, 3, cfg.size, cfg.size, device=device)
            s = seconds_per_call(lambda: net.predict(x), device, repeats=1 if quick else 5)
            rows.append(dict(benchmark=f"CFDRNN inference ({scale})", size=cfg.size, batch=batch, value=batch / s,
                             unit="faces/s"))
    return rows


BENCHMARKS = {"cfdrnn": inference}
