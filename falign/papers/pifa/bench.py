"""``make bench`` entries of the PIFA chapter (collected by :mod:`falign.tools.bench`)."""

from __future__ import annotations

import torch

from falign.kit.timing import seconds_per_call


def inference(device: torch.device, quick: bool) -> list[dict]:
    """PIFA at the paper's 114x114 input (Table 1 network): visualization layer and inference."""
    from falign.papers.pifa import experiment as chapter
    from falign.papers.pifa.model import split_params

    net = chapter.build_network().to(device).eval()
    rows = []
    with torch.no_grad():
        M, p = split_params(net.initial_params(net.crop_box(64, device)))
        for batch in (1, 64):
            s = seconds_per_call(lambda: net.visualization(M[:batch], p[:batch], net.size), device)
            rows.append(dict(benchmark="PIFA visualization layer", size=net.size, batch=batch,
                             value=batch / s, unit="images/s"))
        for batch in (1, 8 if quick else 64):
            images = torch.rand(batch, net.in_channels, net.size, net.size, device=device)
            s = seconds_per_call(lambda: net.predict(images), device)
            rows.append(dict(benchmark="PIFA inference", size=net.size, batch=batch, value=batch / s,
                             unit="images/s"))
    return rows


BENCHMARKS = {"pifa": inference}
