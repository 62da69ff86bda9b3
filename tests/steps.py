"""Shared by model tests: a few Adam steps on one fixed batch, to show that a loss can be lowered."""

import torch


def losses_over_steps(model: torch.nn.Module, loss_fn, batch: dict, steps: int, lr: float) -> list[float]:
    """The loss before each of ``steps`` Adam updates of ``model`` on ``batch``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
