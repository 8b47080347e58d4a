"""The pipeline's steps, declared once: name, inputs, outputs, command and "done" marker of each.

fonts -> generate -> lmdb -> train (torchrun) -> export -> evaluate (parity) -> register -> promote.

Every input and output is a path relative to the run directory (``{export}`` stands for the export's name),
and a step reads only its declared inputs: what training really started from, for example, is the
``base_model`` of ``train/train_result.json`` that training writes, not read back from its checkpoint. A
step whose ``done`` file exists is complete. The local runner (``ocrtune.platform.local_runner``) runs this
table in order; the KFP components build the same commands from it. A step that reports on stdout
(``--json``) has a ``Capture``: the output file its stdout becomes.
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
REGISTERED_FILE = "registered.txt"
PROMOTION_FILE = "promotion.json"
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
class Capture:
    """A step's output file made from its stdout: ``text(stdout)`` is what the file holds."""

    file: str
    text: Callable[[str], str]


@dataclass(frozen=True)
class Step:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    done: str | None  # the output whose presence means complete; None: always runs (it is cheap, cached)
    args: Callable[[StepContext], list[str]]  # the ``ocrtune`` command line, subcommand first
    distributed: bool = False  # started by torchrun when more than one process
    capture: Capture | None = None
    publish: str | None = None  # an output directory published to object storage (manifest last)
    publish_meta: Callable[[StepContext], dict[str, Any]] | None = None  # what its manifest records

    def done_path(self, ctx: StepContext) -> Path | None:
        return None if self.done is None else ctx.path(self.done)

    def is_done(self, ctx: StepContext) -> bool:
        path = self.done_path(ctx)
        return path is not None and path.exists()

    def command(self, ctx: StepContext) -> list[str]:
        """The process to start: ``python -m ocrtune ...``, or torchrun's command line for training."""
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


def lmdb_meta(ctx: StepContext) -> dict[str, str]:
    """What the published LMDB's manifest records: the dataset it was built from."""
    return {"dataset_sha256": read_json(ctx, CARD_FILE)["content_sha256"]}


# ---- stdout as output files ------------------------------------------------------------------------------
def _pretty_json(ensure_ascii: bool) -> Callable[[str], str]:
    return lambda stdout: json.dumps(json.loads(stdout), indent=2, ensure_ascii=ensure_ascii)


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


def _evaluate(ctx: StepContext) -> list[str]:
    return ["evaluate", ctx.arg("export"), "--data", ctx.arg("lmdb/val"), "--json", "--no-check"]


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
    Step("fonts", (), (), None, lambda ctx: ["fonts", "fetch"]),  # into the font cache, not the run
    Step("generate", (CONFIG_FILE,), ("data", CARD_FILE), CARD_FILE, _generate),
    Step("lmdb", ("data", CARD_FILE), ("lmdb",), "lmdb", _lmdb, publish="lmdb", publish_meta=lmdb_meta),
    Step(
        "train",
        (CONFIG_FILE, "lmdb/train", "lmdb/val"),
        ("train/best_accuracy.pth", TRAIN_RESULT_FILE, "train/checkpoint.pth", "train/log_train.txt"),
        "train/best_accuracy.pth",
        _train,
        distributed=True,
    ),
    Step(
        "export", ("train/best_accuracy.pth",), ("export",), "export/{export}.pth", _export, publish="export"
    ),
    Step(
        "evaluate",
        ("export", "lmdb/val"),
        (PARITY_FILE,),
        PARITY_FILE,
        _evaluate,
        capture=Capture(PARITY_FILE, _pretty_json(ensure_ascii=False)),
    ),
    Step(
        "register",
        ("export", CARD_FILE, TRAIN_RESULT_FILE, PARITY_FILE),
        (REGISTERED_FILE,),
        REGISTERED_FILE,
        _register,
        capture=Capture(REGISTERED_FILE, registered_line),
    ),
    Step(
        "promote",
        (BENCHMARK_DIR,),
        (PROMOTION_FILE,),
        PROMOTION_FILE,
        _promote,
        capture=Capture(PROMOTION_FILE, _pretty_json(ensure_ascii=True)),
    ),
)
NAMES = tuple(s.name for s in STEPS)


def step(name: str) -> Step:
    """The step called ``name``."""
    for s in STEPS:
        if s.name == name:
            return s
    raise KeyError(f"no pipeline step '{name}' (steps: {', '.join(NAMES)})")
