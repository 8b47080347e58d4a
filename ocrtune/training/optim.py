"""The optimizer and the learning-rate schedule: which parameters learn, how fast, and how that changes.

DTRB's default is Adadelta(lr=1); Adam and AdamW are there for fine-tuning. The output layer may learn
faster than the trunk (``head_lr_scale``); one schedule scales every group alike.
"""

from __future__ import annotations

import math

import torch

from ocrtune.config import TrainConfig


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters; the output layer gets ``head_lr_scale`` x the learning rate.

    After head surgery the rows of new characters start from scratch while the trunk is already trained:
    a faster head lets them catch up without shaking the trunk (the LR schedule scales both groups alike)."""
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.split(".")[-2] == "Prediction" else body).append(p)
    groups = [{"params": body, "lr": cfg.lr}] if body else []
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_scale})
    return groups


def make_optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    # DTRB's default: Adadelta(lr=1, rho=0.95, eps=1e-8)
    return torch.optim.Adadelta(groups, lr=cfg.lr, rho=0.95, eps=1e-8, weight_decay=cfg.weight_decay)


class LRFactor:
    """Linear warm-up, then cosine to zero (``cosine``), constant, or one-cycle (cosine up then down)."""

    def __init__(self, schedule: str, warmup: int, total: int):
        self.schedule, self.warmup, self.total = schedule, warmup, max(1, total)

    def __call__(self, step: int) -> float:
        if self.schedule == "onecycle":
            peak = max(1, self.warmup or self.total // 4)
            if step < peak:  # cosine rise from lr/25 to lr, then cosine decay to lr/1e4 (OneCycleLR's shape)
                return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / peak)) / 2
            t = min(1.0, (step - peak) / max(1, self.total - peak))
            return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * t)) / 2
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1 + math.cos(math.pi * t))


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of ``cfg``, stepped once per training step (skipped steps included)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRFactor(cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    )
