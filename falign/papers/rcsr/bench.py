"""``make bench`` entries of the RCSR chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch

from falign.kit.timing import seconds_per_call


def inference(device: torch.device, quick: bool) -> list[dict]:
    """RCSR (ConvGRU + SRCNN) at the paper's protocol: per-face time at batch 1 and batched."""
    from falign.papers.rcsr import experiment as chapter
    from falign.papers.rcsr.model import place_in_box

    cfg = chapter.SCALES["full"]
    net = chapter.build(cfg).to(device).eval()
    size = cfg.size
    rows = []
    with torch.no_grad():
        for batch in (1, 8 if quick else 64):
            images = torch.rand(batch, 1, size, size, device=device)
            box = torch.tensor([[8.0, 8.0, size - 8.0, size - 8.0]]).expand(batch, 4).numpy()
            init = torch.from_numpy(place_in_box(net.mean_shape.cpu().numpy(), box)).to(device)
            s = seconds_per_call(lambda: net.predict(images, init), device)
            rows.append(dict(benchmark="RCSR inference", size=size, batch=batch, value=batch / s,
                             unit="faces/s"))
    return rows


BENCHMARKS = {"rcsr": inference}
