"""``make bench`` entries of the CCNN chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch

from falign.kit.timing import seconds_per_call


def inference(device: torch.device, quick: bool) -> list[dict]:
    """CCNN (3 stages, all 23 CNNs) on the chapter's 78x78 crop and its face box: per-face time at
    batch 1 (latency) and batched (throughput), and each stage count for Sec. 4.2's speed trade."""
    from falign.papers.ccnn import experiment as chapter
    from falign.papers.ccnn.model import CCNN

    size = chapter.SCALES["full"].size
    net = CCNN().to(device).eval()
    rows = []
    for batch in (1, 8 if quick else 256):
        images = torch.rand(batch, 3, size, size, device=device)
        quarter = size / 4
        box = torch.tensor([[quarter - 0.5, quarter - 0.5, size - quarter - 0.5, size - quarter - 0.5]],
                           device=device).expand(batch, 4)
        for stages in (1, 2, 3) if batch == 1 else (3,):
            first = chapter.first_stages(net, stages)
            s = seconds_per_call(lambda: first.predict(images, box), device,
                                 repeats=3 if quick else 50 if batch == 1 else 5)
            rows.append(dict(benchmark=f"CCNN inference ({stages} stage{'s' if stages > 1 else ''})", size=size,
                             batch=batch, value=batch / s, unit="faces/s"))
    return rows


BENCHMARKS = {"ccnn": inference}
