"""``make bench`` entries of the MSRRN chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch



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
            s = chapter.seconds_per_face(net, cfg.size, batch, device, repeats=2 if quick else 20)
            rows.append(dict(benchmark=f"MSRRN inference ({scale})", size=cfg.size, batch=batch, value=1 / s,
                             unit="faces/s"))
    return rows


BENCHMARKS = {"msrrn": inference}
