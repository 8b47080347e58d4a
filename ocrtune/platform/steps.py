"""The pipeline's steps, declared once: name, inputs, outputs and command of each.

fonts -> generate -> lmdb -> train (torchrun) -> export -> evaluate (parity) -> register -> promote.

Every input and output is a path relative to the run directory (``{export}`` stands for the export's name;
a KFP step maps the top-level names to its artifacts' paths, ``StepContext.paths``), and a step reads only
its declared inputs: what training really started from, for example, is the ``base_model`` of
``train/train_result.json`` that training writes, not read back from its checkpoint. The KFP component
bodies (``ocrtune.platform.kfp_steps``) build their commands from this table, whether kfp.local runs them
(``make run``) or a cluster does; ``evaluate`` has no command: it scores in the component's own process
(ocrtune and plain easyocr.Reader, the base model beside) and writes ``parity.json`` itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrtune.config import RunConfig
from ocrtune.errors import UserError
from ocrtune.training.distributed import torchrun_command

CONFIG_FILE = "config.yaml"
CARD_FILE = "data/card.json"
TRAIN_RESULT_FILE = "train/train_result.json"  # written by ``ocrtune train`` (ocrtune.training.report)
PARITY_FILE = "parity.json"
BENCHMARK_DIR = "benchmark"
REGISTERED_MARK = "registered: models:/"


@dataclass(frozen=True)
class StepContext:
    """What the commands are built from: the run directory, its config, how processes start."""

    run_dir: Path
    cfg: RunConfig
    run_id: str = ""  # the pipeline_run_id tag; default: the run directory's name
    nproc: int = 1  # training processes on this node (torchrun ranks)
    python: str = sys.executable
    # torchrun_command reads a TrainJob's PET_* variables from here; empty: a standalone rendezvous
    env: Mapping[str, str] = field(default_factory=dict)
    benchmark: Path | None = None  # promote's frozen benchmark, if not <run>/benchmark
    # where a top-level name lives instead of under run_dir: a KFP step maps "data", "lmdb", "train",
    # "export" (and the files it writes itself) to its artifacts' paths, e.g. {"lmdb": "/…/build-lmdb/lmdb"}
    paths: Mapping[str, str | Path] = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        rel = rel.format(export=self.cfg.export.name)
        head, _, rest = rel.partition("/")
        if rel in self.paths:
            return Path(self.paths[rel])
        if head in self.paths:
            return Path(self.paths[head]) / rest if rest else Path(self.paths[head])
        return self.run_dir / rel

    def arg(self, rel: str) -> str:
        return str(self.path(rel))

    @property
    def pipeline_run_id(self) -> str:
        return self.run_id or self.run_dir.name


@dataclass(frozen=True)
class Step:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    # the ``ocrtune`` command line, subcommand first; None: the component does the work in its own process
    args: Callable[[StepContext], list[str]] | None
    distributed: bool = False  # started by torchrun when more than one process

    def command(self, ctx: StepContext) -> list[str]:
        """The process to start: ``python -m ocrtune ...``, or torchrun's command line for training."""
        if self.args is None:
            raise KeyError(f"pipeline step '{self.name}' runs no command: its component does the work")
        args = self.args(ctx)
        if self.distributed and ctx.nproc > 1:
            return torchrun_command(args[1:], nproc_per_node=ctx.nproc, env=ctx.env, python=ctx.python)
        return [ctx.python, "-m", "ocrtune", *args]


# ---- reading inputs ------------------------------------------------------------------------------------
def read_json(ctx: StepContext, rel: str) -> Any:
    """A step's input file, or one line saying which step did not write it."""
    path = ctx.path(rel)
    producer = next((s.name for s in STEPS if rel in s.outputs), "an earlier")
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing: the {producer} step did not write it") from None
    except ValueError as exc:
        raise UserError(f"{path}: not JSON ({exc})") from None


def register_tags(ctx: StepContext) -> dict[str, str]:
    """The version tags: the dataset, the weights training really started from, the parity figures."""
    card, parity = read_json(ctx, CARD_FILE), read_json(ctx, PARITY_FILE)
    result = read_json(ctx, TRAIN_RESULT_FILE)
    if not result.get("base_model"):
        raise UserError(f"{ctx.path(TRAIN_RESULT_FILE)} names no base_model")
    return {
        "dataset_sha256": card["content_sha256"],
        "base_model": result["base_model"],
        "charset": ctx.cfg.train.charset,
        "pipeline_run_id": ctx.pipeline_run_id,
        "val_accuracy_ocrtune": f"{parity['ocrtune_accuracy']:.4f}",
        "val_accuracy_easyocr": f"{parity['easyocr_accuracy']:.4f}",
        "parity_agreement": f"{parity['agreement']:.4f}",
    }


# ---- stdout --------------------------------------------------------------------------------------------
def registered_line(stdout: str) -> str:
    """The last ``registered: models:/NAME/VERSION`` line of ``ocrtune register``."""
    line = next((ln for ln in reversed(stdout.splitlines()) if REGISTERED_MARK in ln), None)
    if line is None:
        raise UserError(f"register printed no '{REGISTERED_MARK}...' line")
    return line + "\n"


# ---- the commands ----------------------------------------------------------------------------------------
def _generate(ctx: StepContext) -> list[str]:
    return ["data", "generate", "--config", ctx.arg(CONFIG_FILE), "--out", ctx.arg("data"), "--quiet"]


def _lmdb(ctx: StepContext) -> list[str]:
    return ["data", "lmdb", ctx.arg("data"), ctx.arg("lmdb")]


def _train(ctx: StepContext) -> list[str]:
    return [
        "train",
        "--config",
        ctx.arg(CONFIG_FILE),
        "--train",
        ctx.arg("lmdb/train"),
        "--val",
        ctx.arg("lmdb/val"),
        "--out",
        ctx.arg("train"),
        "--resume",
        "--no-progress",
    ]


def _export(ctx: StepContext) -> list[str]:
    ex = ctx.cfg.export
    return [
        "export",
        ctx.arg("train/best_accuracy.pth"),
        "--out",
        ctx.arg("export"),
        "--name",
        ex.name,
        "--charset",
        ctx.cfg.train.charset,
        *[x for lang in ex.lang_list for x in ("--lang", lang)],
        "--overwrite",
    ]


def _register(ctx: StepContext) -> list[str]:
    tags = register_tags(ctx)
    name = ctx.cfg.registry.model_name
    return [
        "register",
        "--from-dir",
        ctx.arg("export"),
        "--name",
        name,
        *[x for k, v in tags.items() for x in ("--tag", f"{k}={v}")],
    ]


def _promote(ctx: StepContext) -> list[str]:
    bench = ctx.benchmark or ctx.path(BENCHMARK_DIR)
    reg = ctx.cfg.registry
    return ["promote", reg.model_name, "--benchmark", str(bench), "--min-delta", str(reg.min_delta)]


STEPS: tuple[Step, ...] = (
    Step("fonts", (), (), lambda ctx: ["fonts", "fetch"]),  # into the font cache, not the run
    Step("generate", (CONFIG_FILE,), ("data", CARD_FILE), _generate),
    Step("lmdb", ("data", CARD_FILE), ("lmdb",), _lmdb),
    Step(
        "train",
        (CONFIG_FILE, "lmdb/train", "lmdb/val"),
        ("train/best_accuracy.pth", TRAIN_RESULT_FILE, "train/checkpoint.pth", "train/log_train.txt"),
        _train,
        distributed=True,
    ),
    Step("export", ("train/best_accuracy.pth",), ("export",), _export),
    Step("evaluate", ("export", "lmdb/val", "lmdb/test"), (PARITY_FILE,), None),
    Step("register", ("export", CARD_FILE, TRAIN_RESULT_FILE, PARITY_FILE), (), _register),
    Step("promote", (BENCHMARK_DIR,), (), _promote),
)
NAMES = tuple(s.name for s in STEPS)


def step(name: str) -> Step:
    """The step called ``name``."""
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"no pipeline step '{name}' (steps: {', '.join(NAMES)})")
