"""What a checkpoint saves and a resumed run restores, written once: the ``TrainState`` of one run.

``state_dict`` and ``load_state_dict`` are the two directions of the same list of keys, so a field added here
is saved and restored alike. The file format is the one ``checkpoint.save`` has always written (``model``,
``optimizer``, ``scheduler``, ``scaler``, ``step``, ``rng``, ``sampler``, ``counters``, ``charset``,
``base_model``, ``config``, ``mlflow_run_id``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ocrtune.errors import UserError
from ocrtune.training import checkpoint as ckpt
from ocrtune.training.loader import BucketBatchSampler

log = logging.getLogger(__name__)


@dataclass
class Counters:
    """What went wrong and was survived; saved in checkpoints so a resumed run reports the whole story."""

    bad_steps: int = 0
    bad_in_a_row: int = 0
    dropped_samples: int = 0
    samples: int = 0
    best_accuracy: float = -1.0
    best_norm_ED: float = -1.0
    evals_without_gain: int = 0
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainState:
    """The run's model, optimizer, schedule, scaler, step and counters, plus what identifies the run.

    ``sampler`` is set once the loader exists (it starts at the restored step); ``mlflow_run_id`` is the run a
    resumed training continues and, when saving, the run it logs to now.
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    charset: str
    base_model: str
    config: dict
    counters: Counters = field(default_factory=Counters)
    step: int = 0
    mlflow_run_id: str | None = None
    sampler: BucketBatchSampler | None = None

    def state_dict(self, rngs: list[dict]) -> dict[str, Any]:
        """The checkpoint's contents; ``rngs`` holds every rank's RNG states (gathered, in rank order)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "rng": rngs,
            "sampler": self.sampler.state(self.step),
            "counters": asdict(self.counters),
            "charset": self.charset,
            "base_model": self.base_model,
            "config": self.config,
            "mlflow_run_id": self.mlflow_run_id,
        }

    def load_state_dict(self, state: dict[str, Any], rank: int, world: int, where: str) -> list[str]:
        """Restore from a checkpoint read from ``where``; returns notes for the training log.

        Each rank takes its own RNG states back when the world size is the same; otherwise the streams
        restart (a warning). ``base_model`` and ``charset`` are not restored: the caller decided them already.
        """
        self.model.load_state_dict(state["model"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # other parameter groups: frozen layers or head_lr_scale groups differ
            raise UserError(
                f"{where}: its optimizer does not fit this run's trainable parameters ({exc}); "
                "resume with the checkpoint's freeze settings, or start a new --out"
            ) from None
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.counters = Counters(**state["counters"])
        self.step = int(state["step"])
        self.mlflow_run_id = state.get("mlflow_run_id")
        rngs = state["rng"]
        if len(rngs) == world:
            ckpt.set_rng_state(rngs[rank])
        elif rank == 0:
            log.warning(
                "checkpoint saved with %d ranks, resuming with %d: RNG streams restart", len(rngs), world
            )
        saved_world = state["sampler"]["world_size"]
        return [f"note: world size changed {saved_world} -> {world}"] if saved_world != world else []
