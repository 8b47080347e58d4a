"""Validation scores as DTRB reports them, read through the same greedy decoder EasyOCR's Reader uses.

Word accuracy, character error rate, norm_ED (ICDAR2019: 1 - ED / max(len(gt), len(pred)), averaged; an
empty ground truth or prediction scores 0, as DTRB counts it), accuracy per font and mean confidence (EasyOCR's
custom_mean of the per-column max probabilities). A model that scores well here reads well in Reader.

``Validator`` is what the training loop calls: every rank scores its shard, the totals are merged, and the
best-by-accuracy and best-by-norm_ED weights are kept (DTRB's best_accuracy.pth, best_norm_ED.pth).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ocrtune.data.lmdb import LmdbReader
from ocrtune.model.decode import decode_greedy
from ocrtune.training.checkpoint import save_weights
from ocrtune.training.distributed import gather
from ocrtune.training.loader import Collate, LmdbDataset, LmdbSource, eval_batches
from ocrtune.training.loss import ctc_criterion, ctc_loss

DASHED = "-" * 80


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def norm_ed_one(gt: str, pred: str) -> float:
    """ICDAR2019 normalised edit similarity of one word, as DTRB's validation computes it."""
    if not gt or not pred:
        return 0.0
    return 1.0 - edit_distance(pred, gt) / max(len(gt), len(pred))


@dataclass
class Scores:
    """Running totals; ``summary()`` gives the figures."""

    n: int = 0
    correct: int = 0
    norm_ed: float = 0.0
    edits: int = 0
    gt_chars: int = 0
    confidence: float = 0.0
    loss_sum: float = 0.0
    loss_batches: int = 0
    per_font: dict[str, list[int]] = field(default_factory=dict)  # font -> [correct, total]

    def add(self, gt: str, pred: str, confidence: float, font: str | None = None) -> bool:
        ok = pred == gt
        self.n += 1
        self.correct += ok
        self.norm_ed += norm_ed_one(gt, pred)
        self.edits += edit_distance(pred, gt)
        self.gt_chars += len(gt)
        self.confidence += confidence
        if font is not None:
            counts = self.per_font.setdefault(font, [0, 0])
            counts[0] += ok
            counts[1] += 1
        return ok

    def merge(self, other: Scores) -> None:
        """Add another rank's totals (validation is sharded across ranks)."""
        for name in (
            "n",
            "correct",
            "norm_ed",
            "edits",
            "gt_chars",
            "confidence",
            "loss_sum",
            "loss_batches",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for font, (c, t) in other.per_font.items():
            counts = self.per_font.setdefault(font, [0, 0])
            counts[0] += c
            counts[1] += t

    def summary(self) -> dict:
        n = max(self.n, 1)
        return {
            "samples": self.n,
            "accuracy": self.correct / n,
            "norm_ED": self.norm_ed / n,
            "cer": self.edits / max(self.gt_chars, 1),
            "mean_confidence": self.confidence / n,
            "loss": self.loss_sum / self.loss_batches if self.loss_batches else float("nan"),
            "per_font": {f: c / t for f, (c, t) in sorted(self.per_font.items())},
        }


def score(gts: Sequence[str], preds: Sequence[str], confidences: Sequence[float] | None = None) -> dict:
    """The figures for lists of ground truths and predictions."""
    s = Scores()
    for i, (gt, pred) in enumerate(zip(gts, preds, strict=True)):
        s.add(gt, pred, confidences[i] if confidences is not None else 0.0)
    return s.summary()


@torch.no_grad()
def collect(
    model: torch.nn.Module,
    batches: Iterable[dict],
    charset: str,
    device: torch.device | str = "cpu",
    amp_dtype: torch.dtype | None = None,
    keep: int = 5,
) -> tuple[Scores, list[tuple[str, str, float]]]:
    """Totals of ``model`` over loader batches (``images``, ``labels``, ``fonts``, ``targets``, ``lengths``)
    and the first ``keep`` examples as (gt, pred, confidence)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    criterion = ctc_criterion()
    scores, examples = Scores(), []
    try:
        for batch in batches:
            if batch["images"] is None:
                continue
            images = batch["images"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = model(images)
            logits = logits.float().cpu()
            loss = ctc_loss(logits, batch["targets"], batch["lengths"], criterion)
            scores.loss_sum += float(loss)
            scores.loss_batches += 1
            fonts = batch.get("fonts") or [None] * len(batch["labels"])
            for (pred, conf), gt, font in zip(
                decode_greedy(logits, charset), batch["labels"], fonts, strict=True
            ):
                scores.add(gt, pred, float(conf), font)
                if len(examples) < keep:
                    examples.append((gt, pred, float(conf)))
    finally:
        model.train(was_training)
    return scores, examples


def validate(model: torch.nn.Module, batches: Iterable[dict], charset: str, **kwargs) -> dict:
    """``Scores.summary`` of ``model`` over ``batches`` plus ``examples`` and ``seconds``."""
    start = time.perf_counter()
    scores, examples = collect(model, batches, charset, **kwargs)
    out = scores.summary()
    out["examples"] = examples
    out["seconds"] = time.perf_counter() - start
    return out


def prediction_table(examples: Sequence[tuple[str, str, float]]) -> str:
    """DTRB's ``Ground Truth | Prediction | Confidence Score & T/F`` block."""
    head = f"{'Ground Truth':25s} | {'Prediction':25s} | Confidence Score & T/F"
    lines = [DASHED, head, DASHED]
    lines += [f"{gt:25s} | {pred:25s} | {conf:0.4f}\t{pred == gt}" for gt, pred, conf in examples]
    lines.append(DASHED)
    return "\n".join(lines)


# ---- during training -------------------------------------------------------------------------------------
@dataclass
class ValResult:
    """One validation: the merged figures (``Scores.summary``), rank 0's first examples, early-stop verdict."""

    step: int
    train_loss: float
    summary: dict
    examples: list[tuple[str, str, float]]
    stop: bool


class Validator:
    """Validation during training: sharded over ranks, merged, best weights kept, early stopping decided.

    ``out`` is where the best weights go; None on ranks that write nothing (all ranks still score their
    shard and take part in the gather). Bests and patience live in the run's counters, so they resume.
    """

    def __init__(
        self,
        source: LmdbSource,
        charset: str,
        batch_size: int,
        rank: int,
        world: int,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        out: Path | None,
        patience: int = 0,
    ):
        self.source, self.charset, self.world, self.device = source, charset, world, device
        self.dataset, self.collate = LmdbDataset([source]), Collate(charset)
        self.plan = eval_batches(source, batch_size)[rank::world]
        # on CPU validation runs in fp32, as Reader reads: its accuracy is the one the export will show
        self.amp_dtype = amp_dtype if device.type == "cuda" else None
        self.out, self.patience = out, patience

    def __call__(self, model: torch.nn.Module, counters: Any, step: int, train_loss: float) -> ValResult:
        """Score ``model`` at ``step``; updates ``counters`` (bests, patience, history)."""
        batches = (self.collate([self.dataset[k] for k in b]) for b in self.plan)
        scores, examples = collect(model, batches, self.charset, device=self.device, amp_dtype=self.amp_dtype)
        merged = Scores()
        parts = gather((asdict(scores), examples), self.world > 1, self.world)
        for part, _ in parts:
            merged.merge(Scores(**part))
        result = merged.summary()
        self._keep_best(model, counters, result["accuracy"], result["norm_ED"])
        counters.history.append(
            {
                "step": step,
                "train_loss": train_loss,
                "valid_loss": result["loss"],
                "accuracy": result["accuracy"],
                "norm_ED": result["norm_ED"],
            }
        )
        stop = self.patience > 0 and counters.evals_without_gain >= self.patience
        return ValResult(step, train_loss, result, parts[0][1], stop)

    def _keep_best(self, model: torch.nn.Module, counters: Any, acc: float, ned: float) -> None:
        gained = False
        if acc > counters.best_accuracy:
            counters.best_accuracy, gained = acc, True
            self._save(model, "best_accuracy.pth")
        if ned > counters.best_norm_ED:
            counters.best_norm_ED, gained = ned, True
            self._save(model, "best_norm_ED.pth")
        counters.evals_without_gain = 0 if gained else counters.evals_without_gain + 1

    def _save(self, model: torch.nn.Module, name: str) -> None:
        if self.out is not None:
            save_weights(model.state_dict(), self.out / name)

    def crops(self, examples: Sequence[tuple[str, str, float]]) -> list[tuple[bytes, str, str, float]]:
        """The images of this rank's first validation batch beside ``examples`` (gt, pred, confidence)."""
        first = [pos for _, pos, _ in self.plan[0]] if self.plan else []
        with LmdbReader(self.source.path) as reader:
            return [
                (reader.get(int(self.source.index[pos]))[0], gt, pred, conf)
                for pos, (gt, pred, conf) in zip(first, examples, strict=False)
            ]
