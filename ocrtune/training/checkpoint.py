"""Training checkpoints that a preempted node can resume from exactly, written so none is ever half there.

A checkpoint holds the model, optimizer, scaler, scheduler, step, every rank's RNG states and the sampler
position, as tensors and plain Python values only, so it loads with ``torch.load(weights_only=True)``. It is
written to a temp file beside the target and renamed (``ocrtune.files``); an ``s3://bucket/prefix/...`` path
goes through ``ocrtune.platform.storage.ObjectStore`` (uploaded whole after the local write, so a reader never sees a partial one).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ocrtune.errors import UserError
from ocrtune.files import atomic_open
from ocrtune.platform.storage import ObjectStore, S3Settings

FORMAT = "ocrtune-checkpoint-1"
CHECKPOINT = "checkpoint.pth"  # its name in the output (or --checkpoint-dir) directory


def is_remote(path: str | Path) -> bool:
    return str(path).startswith("s3://")


def _split_s3(url: str) -> tuple[str, str]:
    rest = url[len("s3://") :]
    bucket, _, key = rest.partition("/")
    if not bucket or not key:
        raise UserError(f"{url}: an object-storage path must look like s3://bucket/path/to/file.pth")
    return bucket, key


def _store(bucket: str) -> ObjectStore:
    return ObjectStore(S3Settings.from_env(bucket=bucket))


def join(base: str | Path, name: str) -> str:
    """``base/name`` for a local directory or an s3:// prefix."""
    return f"{str(base).rstrip('/')}/{name}" if is_remote(base) else str(Path(base) / name)


# ---- RNG states as tensors and plain values ---------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch RNG states, in a form ``weights_only`` loading accepts."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            int(np_pos),
            int(np_has_gauss),
            float(np_gauss),
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- save / load --------------------------------------------------------------------------------------
def _write(obj: Any, path: str | Path) -> str:
    """torch.save ``obj`` so the target is complete or absent: temp file + fsync + rename, or one upload."""
    if is_remote(path):
        bucket, key = _split_s3(str(path))
        with tempfile.TemporaryDirectory(prefix="ocrtune-ckpt-") as tmp:
            local = Path(tmp) / Path(key).name
            torch.save(obj, local)
            _store(bucket).put_file(local, key)
        return str(path)
    with atomic_open(path) as fh:
        torch.save(obj, fh)
    return str(path)


def save(state: dict[str, Any], path: str | Path) -> str:
    """Write a training checkpoint atomically and return its path."""
    return _write({"format": FORMAT, **state}, path)


def save_weights(state_dict: dict[str, torch.Tensor], path: str | Path) -> str:
    """Model weights alone, keys prefixed ``module.`` as DTRB's best_accuracy.pth (what EasyOCR loads)."""
    weights = {
        (k if k.startswith("module.") else f"module.{k}"): v.detach().cpu() for k, v in state_dict.items()
    }
    return _write(weights, path)


def exists(path: str | Path) -> bool:
    if is_remote(path):
        bucket, key = _split_s3(str(path))
        return _store(bucket).exists(key)
    return Path(path).is_file()


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing or foreign file is a one-line UserError."""
    if is_remote(path):
        bucket, key = _split_s3(str(path))
        with tempfile.TemporaryDirectory(prefix="ocrtune-ckpt-") as tmp:
            local = Path(tmp) / "checkpoint.pth"
            _store(bucket).get_file(key, local)
            return load(local)
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UserError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not an ocrtune training checkpoint (no '{FORMAT}' marker)")
    return state


class Checkpointer:
    """This run's checkpoint: every rank reads it, one rank (``writes``) writes it for all."""

    def __init__(self, directory: str | Path, writes: bool):
        self.path = join(directory, CHECKPOINT)
        self.writes = writes

    def exists(self) -> bool:
        return exists(self.path)

    def load(self) -> dict[str, Any]:
        return load(self.path)

    def save(self, state: Any, rngs: list[dict]) -> str:
        """``state.state_dict(rngs)`` written atomically, by the writing rank only; returns the path."""
        if self.writes:
            save(state.state_dict(rngs), self.path)
        return self.path
