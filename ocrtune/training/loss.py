"""The CTC loss as DTRB's and EasyOCR's trainers compute it, shared by training and validation."""

from __future__ import annotations

import torch


def ctc_criterion() -> torch.nn.CTCLoss:
    """Blank 0, mean over the batch; an impossible alignment (label longer than the columns) counts 0."""
    return torch.nn.CTCLoss(zero_infinity=True)


def ctc_loss(
    logits: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor, criterion: torch.nn.CTCLoss
) -> torch.Tensor:
    """CTC as DTRB/EasyOCR's trainer: log_softmax over classes, (T, B, C), every column an input step."""
    log_probs = logits.float().log_softmax(2).permute(1, 0, 2)
    input_lengths = torch.full((logits.size(0),), logits.size(1), dtype=torch.long, device=logits.device)
    return criterion(log_probs, targets, input_lengths, target_lengths)
