"""Checkpoints: atomic, weights_only-loadable, RNG states restored exactly, and in object storage too."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from support.checkpoints import model_and_state

from ocrtune.errors import UserError
from ocrtune.model.network import Model
from ocrtune.training import checkpoint as ckpt


def _draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_save_load_roundtrip_with_weights_only(tmp_path):
    model, opt, state = model_and_state()
    expected = _draws()
    path = ckpt.save(state, tmp_path / "run" / "checkpoint.pth")
    # what load does, done by hand: the file is loadable with weights_only=True
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == ckpt.FORMAT and raw["step"] == 7
    back = ckpt.load(path)
    fresh = Model(num_class=5)
    fresh.load_state_dict(back["model"])
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k]), k
    opt2 = torch.optim.AdamW(fresh.parameters(), lr=1e-3)
    opt2.load_state_dict(back["optimizer"])
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    ckpt.set_rng_state(back["rng"][0])
    assert _draws() == expected
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["checkpoint.pth"]  # no temp file left


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path):
    _, _, state = model_and_state()
    path = tmp_path / "checkpoint.pth"
    ckpt.save(state, path)
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle")

    with pytest.raises(RuntimeError):
        ckpt.save({"bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


def test_load_rejects_missing_foreign_and_garbage_files(tmp_path):
    with pytest.raises(UserError, match="no such checkpoint"):
        ckpt.load(tmp_path / "nope.pth")
    torch.save({"model": {}}, tmp_path / "foreign.pth")
    with pytest.raises(UserError, match="not an ocrtune training checkpoint"):
        ckpt.load(tmp_path / "foreign.pth")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a zip")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        ckpt.load(tmp_path / "garbage.pth")


def test_weights_are_prefixed_module_like_dtrb(tmp_path):
    model, _, _ = model_and_state()
    path = ckpt.save_weights(model.state_dict(), tmp_path / "best_accuracy.pth")
    weights = torch.load(path, weights_only=True)
    assert all(k.startswith("module.") for k in weights)
    assert torch.equal(weights["module.Prediction.weight"], model.state_dict()["Prediction.weight"])
