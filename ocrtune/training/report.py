"""Everything a training run tells, from rank 0 only: log_train.txt, MLflow, the progress bar, plots, the result.

The loop calls a ``Reporter`` on every rank; on the others (``on`` False) each method returns at once, so the
loop needs no rank checks and every rank runs the same code. log_train.txt is DTRB's (a header, then one block
per validation); ``train_result.json`` is the run's result for whatever runs next (the pipeline's steps).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ocrtune.config import TrainConfig
from ocrtune.files import write_text
from ocrtune.training.loader import LmdbSource
from ocrtune.training.tracking import Tracker, plot_history, prediction_image, resolve_uri, system_info
from ocrtune.training.validation import ValResult, prediction_table

LOG_FILE = "log_train.txt"
RESULT_FILE = "train_result.json"


class TrainLog:
    """DTRB's log_train.txt (rank 0 only); appended on resume."""

    def __init__(self, out: Path | None):
        self.path = None if out is None else out / LOG_FILE

    def write(self, text: str, echo: bool = False) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        if echo:
            tqdm.write(text, file=sys.stderr)


def _metric_name(font: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in font)


def _json_safe(value: object) -> object:
    """NaN and infinities as null: train_result.json stays strict JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


class Reporter:
    """What rank 0 writes and logs about a run; a no-op object on every other rank."""

    def __init__(self, on: bool, out: Path, cfg: TrainConfig, progress: bool):
        self.on, self.out, self.cfg, self.progress = on, out, cfg, progress
        if on:
            out.mkdir(parents=True, exist_ok=True)
        self.log = TrainLog(out if on else None)
        self.tracker = Tracker(None)  # replaced by start(): the run on the tracking server, if any
        self.bar: tqdm | None = None

    @property
    def outputs(self) -> Path | None:
        """The output directory on the reporting rank, None on the others (they write no files)."""
        return self.out if self.on else None

    @property
    def run_id(self) -> str | None:
        return self.tracker.run_id

    def note(self, text: str) -> None:
        """A line in log_train.txt, echoed to stderr."""
        self.log.write(text, echo=True)

    def start(
        self,
        *,
        world: int,
        device: torch.device,
        threads: int,
        amp_dtype: torch.dtype | None,
        model_report: dict,
        sources: Sequence[LmdbSource],
        resume_line: str | None,
        train: list[str],
        val: str,
        ratios: list[float] | None,
        base_model: str,
        mlflow: bool | None,
        run_id: str | None,
        start_step: int,
    ) -> None:
        """The log's header, the MLflow run (new, or the resumed run's own) and the progress bar."""
        if not self.on:
            return
        uri, mlflow_note = resolve_uri(mlflow)
        self.tracker = Tracker(uri)
        sysinfo = system_info()
        header = [
            f"ocrtune train: {world} rank(s), device {device}, {threads} threads per rank, amp {amp_dtype}",
            f"machine: {sysinfo}",
            f"model: {model_report.get('message', model_report)}",
            *([f"note: {model_report['note']}"] if model_report.get("note") else []),
            f"note: {mlflow_note}",
            *(f"data {s.path}: {s.stats.as_dict()}" for s in sources),
            *([resume_line] if resume_line else []),
        ]
        self.log.write("\n".join(header) + "\n" + "-" * 80, echo=True)
        params = {
            **asdict(self.cfg),
            "train": train,
            "val": val,
            "ratios": ratios,
            "world_size": world,
            "base_model": base_model,
        }
        params.update({f"sys.{k}": v for k, v in sysinfo.items()})
        self.tracker.start(self.out.name, params, {"ocrtune.role": "train"}, run_id=run_id)
        self.tracker.dataset_cards(train, "train")
        self.tracker.dataset_cards([val], "val")
        if self.progress:
            self.bar = tqdm(
                total=self.cfg.max_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr
            )

    def step(self, step: int, loss: float, window_loss: float, rate: float, skipped: int, lr: float) -> None:
        """After each step: the progress bar, and the step's loss, LR and speed in MLflow."""
        if not self.on:
            return
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                loss=f"{window_loss:.4f}", samples_s=f"{rate:.1f}", skipped=skipped, refresh=False
            )
        if self.tracker.active:
            self.tracker.metrics({"train_loss": loss, "lr": lr, "samples_per_s": rate}, step)

    def validated(self, v: ValResult, counters, elapsed: float, crops: Callable[[list], list]) -> None:
        """DTRB's validation block in the log, the figures in MLflow, curves and sample predictions."""
        if not self.on:
            return
        r, best_acc, best_ned = v.summary, counters.best_accuracy, counters.best_norm_ED
        per_font = ", ".join(f"{f} {a:0.3f}" for f, a in r["per_font"].items()) or "-"
        self.log.write(
            f"[{v.step}/{self.cfg.max_steps}] Train loss: {v.train_loss:0.5f}, Valid loss: {r['loss']:0.5f}, "
            f"Elapsed_time: {elapsed:0.5f}\n"
            f"{'Current_accuracy':17s}: {r['accuracy'] * 100:0.3f}, {'Current_norm_ED':17s}: {r['norm_ED']:0.4f}\n"
            f"{'Best_accuracy':17s}: {best_acc * 100:0.3f}, {'Best_norm_ED':17s}: {best_ned:0.4f}\n"
            f"CER: {r['cer']:0.4f}, mean confidence: {r['mean_confidence']:0.4f}, per font: {per_font}\n"
            f"{prediction_table(v.examples)}",
            echo=True,
        )
        metrics = {
            "valid_loss": r["loss"],
            "accuracy": r["accuracy"],
            "norm_ED": r["norm_ED"],
            "cer": r["cer"],
            "mean_confidence": r["mean_confidence"],
            "best_accuracy": best_acc,
            "best_norm_ED": best_ned,
        }
        metrics.update({f"font_accuracy.{_metric_name(f)}": a for f, a in r["per_font"].items()})
        self.tracker.metrics(metrics, v.step)
        if self.tracker.active:
            self.tracker.artifact(plot_history(counters.history, self.out / "curves.png"))
            self.tracker.artifact(prediction_image(crops(v.examples), self.out / "predictions.png"))

    def finish(self, status: str, counters, step: int, summary: dict) -> None:
        """The bar closed, train_result.json written, the last figures and files logged, the MLflow run ended."""
        if not self.on:
            return
        if self.bar is not None:
            self.bar.close()
        write_text(
            self.out / RESULT_FILE, json.dumps(_json_safe(summary), indent=2, ensure_ascii=False) + "\n"
        )
        self.tracker.metrics(
            {"bad_steps": counters.bad_steps, "dropped_samples": counters.dropped_samples}, step
        )
        self.tracker.artifact(self.out / LOG_FILE)
        self.tracker.artifact(self.out / "best_accuracy.pth", "model")
        self.tracker.end("KILLED" if status == "preempted" else "FINISHED")
