"""``make bench`` entries of the MSRRN chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch

from falign.kit.timing import seconds_per_call


def inference(device: torch.device, quick: bool) -> list[dict]:
    """MSRRN (3 stages, shared weights, initial-shape CNN) at the paper's 200/100/50-pixel faces and at
    the chapter's small scale: per-face time at batch 1 (latency) and batched (throughput), the whole
    forward pass (pyramid, S^0, every stage). The paper: 100 frames/s on a GTX 1080, 10 on a Core i7."""
    from falign.papers.msrrn import experiment as chapter

    rows = []
    for scale in ("full", "small"):
        cfg = chapter.SCALES[scale]
        net = chapter.build(cfg).to(device).eval()
        for batch in (1, 8 if quick else 64):
            x = torch.rand(batch, 1, cfg.size, cfg.size, device=device)
            s = seconds_per_call(lambda: net.predict(x), device, 2 if quick else 20, warmup=2) / batch
            rows.append(dict(benchmark=f"MSRRN inference ({scale})", size=cfg.size, batch=batch, value=1 / s,
                             unit="faces/s"))
    return rows


BENCHMARKS = {"msrrn": inference}
