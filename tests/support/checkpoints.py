"""Checkpoints: atomic, weights_only-loadable, RNG states restored exactly, and in object storage too."""

from __future__ import annotations

import torch

from ocrtune.model.network import Model
from ocrtune.training import checkpoint as ckpt


def model_and_state():
    torch.manual_seed(1)
    model = Model(num_class=5)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 1, 64, 64)).sum().backward()
    opt.step()
    return (
        model,
        opt,
        {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": 7, "rng": [ckpt.rng_state()]},
    )
