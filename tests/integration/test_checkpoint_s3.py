"""Checkpoints: atomic, weights_only-loadable, RNG states restored exactly, and in object storage too."""

from __future__ import annotations

import torch
from support.checkpoints import model_and_state

from ocrtune.training import checkpoint as ckpt


def test_checkpoint_in_object_storage(store, stack_env, monkeypatch, tmp_path):
    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    _, _, state = model_and_state()
    url = f"s3://{store.bucket}/ckpt-test/run1/checkpoint.pth"
    assert not ckpt.exists(url)
    ckpt.save(state, url)
    assert ckpt.exists(url)
    back = ckpt.load(url)
    assert back["step"] == 7
    assert torch.equal(back["model"]["Prediction.bias"], state["model"]["Prediction.bias"])
