"""MLflow logging of a training run, from rank 0 only, and never a reason for training to fail or hang.

The tracking server comes from MLFLOW_TRACKING_URI (or, when ``--mlflow`` forces it, the local stack). Without
one the run trains and says that nothing was logged. Logged: params, metrics per step, the dataset card next
to the LMDB, loss/accuracy plots, a sample-prediction image and the machine (CPU/GPU, torch, CUDA).
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import torch
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

from ocrtune.errors import UserError
from ocrtune.files import atomic_path
from ocrtune.platform import endpoints
from ocrtune.training.distributed import cpu_count

log = logging.getLogger(__name__)
EXPERIMENT = "ocrtune-train"
CARD_FILES = ("card.json", "card.md", "montage.png")


def system_info() -> dict[str, str]:
    """What a reader of the run needs to judge its speed: CPU, cores, GPU, torch, CUDA, python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": str(cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": str(torch.version.cuda) if torch.cuda.is_available() else "none",
        "gpu": "none",
    }
    if torch.cuda.is_available():
        info["gpu"] = f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return info


def resolve_uri(force: bool | None) -> tuple[str | None, str]:
    """(tracking URI or None, a note saying why). ``force`` True: must log; False: never; None: if configured.

    Training logs to MLflow only when one is configured, and never fails for want of one unless forced: a GPU
    hour is not lost to a tracking server that is not there."""
    if force is False:
        return None, "MLflow off (--no-mlflow)"
    uri = os.environ.get(endpoints.TRACKING_URI_ENV)
    if not uri and force:
        uri = endpoints.stack_tracking_uri()
    if not uri:
        if force:
            raise UserError(
                "--mlflow: no tracking server (set MLFLOW_TRACKING_URI or run `ocrtune stack up`)"
            )
        return None, "MLflow not logged: MLFLOW_TRACKING_URI is not set"
    probe = endpoints.probe_tracking(uri)
    if probe is not None and not probe.healthy:
        shown = endpoints.redact_url(uri)
        if force:
            raise UserError(f"--mlflow: tracking server {shown} does not answer")
        return None, f"MLflow not logged: tracking server {shown} does not answer"
    return uri, f"MLflow: logging to {endpoints.redact_url(uri)}"


class Tracker:
    """A run on the tracking server, or nothing at all when ``uri`` is None (every method is then a no-op)."""

    def __init__(self, uri: str | None, experiment: str = EXPERIMENT):
        self.uri = uri
        self.experiment = experiment
        self.run_id: str | None = None
        self._mlflow = None

    @property
    def active(self) -> bool:
        return self.run_id is not None

    def start(
        self, run_name: str, params: dict[str, Any], tags: dict[str, str], run_id: str | None = None
    ) -> None:
        if self.uri is None:
            return
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")  # read per request, not at import
        self._mlflow = mlflow
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(self.experiment)
        if run_id:  # a resumed training continues its MLflow run
            run = mlflow.start_run(run_id=run_id)
        else:
            run = mlflow.start_run(run_name=run_name, tags=tags)
            mlflow.log_params({k: _short(v) for k, v in params.items()})
        self.run_id = run.info.run_id

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.active:
            clean = {k: float(v) for k, v in values.items() if v == v}  # drop NaN
            self._mlflow.log_metrics(clean, step=step, synchronous=False)

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.active and Path(path).is_file():
            self._mlflow.log_artifact(str(path), artifact_path=artifact_path)

    def dataset_cards(self, lmdb_paths: Sequence[str | Path], role: str) -> list[str]:
        """Log card.json/card.md/montage.png found beside (or one level above) each LMDB."""
        found = []
        for i, p in enumerate(lmdb_paths):
            for folder in (Path(p), Path(p).parent):
                card = folder / "card.json"
                if card.is_file():
                    dest = f"dataset/{role}{i if len(lmdb_paths) > 1 else ''}"
                    for name in CARD_FILES:
                        self.artifact(folder / name, dest)
                    found.append(str(card))
                    if self.active:
                        try:
                            data = json.loads(card.read_text("utf-8"))
                            self._mlflow.set_tag(
                                f"dataset.{role}{i}", _short(data.get("name", card.parent.name))
                            )
                        except (ValueError, AttributeError):
                            pass
                    break
        return found

    def end(self, status: str = "FINISHED") -> None:
        if self.active:
            self._mlflow.flush_async_logging()
            self._mlflow.end_run(status=status)
            self.run_id = None


def _short(value: Any, limit: int = 500) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plot_history(history: Sequence[dict], path: str | Path) -> Path | None:
    """Train/valid loss and accuracy/norm_ED against step, as one PNG."""
    if not history:
        return None
    steps = [h["step"] for h in history]
    fig = Figure(figsize=(10, 4))  # no pyplot: no global backend, no figure left open
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(steps, [h["train_loss"] for h in history], label="train loss")
    ax1.plot(steps, [h["valid_loss"] for h in history], label="valid loss")
    ax1.set_xlabel("step")
    ax1.set_yscale("log")
    ax1.legend()
    ax2.plot(steps, [h["accuracy"] for h in history], label="word accuracy")
    ax2.plot(steps, [h["norm_ED"] for h in history], label="norm_ED")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png", mode=0o644) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    return path


def _label_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    for candidate in (
        "/usr/share/fonts/truetype/nanum/NanumGothic.ttf",
        "/usr/share/fonts/truetype/nanum/NanumSquare_acR.ttf",
        "/usr/share/fonts/truetype/unfonts-core/UnDotum.ttf",
    ):
        if Path(candidate).is_file():
            return ImageFont.truetype(candidate, size)
    return ImageFont.load_default()


def prediction_image(samples: Sequence[tuple[bytes, str, str, float]], path: str | Path) -> Path | None:
    """A sheet of validation crops with ground truth, prediction and confidence under each (green = right)."""
    if not samples:
        return None
    width, row_h = 640, 110
    font = _label_font(18)
    sheet = Image.new("RGB", (width, row_h * len(samples)), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (data, gt, pred, conf) in enumerate(samples):
        y = k * row_h
        try:
            crop = Image.open(io.BytesIO(data)).convert("RGB")
            crop.thumbnail((width - 10, 64))
            sheet.paste(crop, (5, y + 5))
        except Exception:
            draw.text((5, y + 5), "(unreadable image)", fill="red", font=font)
        colour = (0, 128, 0) if gt == pred else (200, 0, 0)
        draw.text((5, y + 74), f"gt: {gt}   pred: {pred}   conf: {conf:.3f}", fill=colour, font=font)
    path = Path(path)
    with atomic_path(path, suffix=".png", mode=0o644) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def end_active_run(status: str = "FAILED") -> None:
    """End this process's MLflow run if one is open (a failed training is not left "running")."""
    if mlflow.active_run() is not None:
        mlflow.end_run(status=status)
