"""The bodies of the KFP components: each step of ``ocrtune.platform.steps`` run on KFP artifact paths.

A component (``ocrtune.components.<step>``) is a thin call into the function of the same name here. The
function builds a ``StepContext`` whose top-level names ("data", "lmdb", "train", "export", the config)
map to the step's artifact paths, runs the same ``python -m ocrtune ...`` command the local runner runs
(its stdout and stderr into ``<step>.log``), and returns what the component records: artifact metadata
and metrics. The visualizations are written by ``ocrtune.platform.kfp_views``.

Outputs depend only on inputs (generation is seeded, the LMDB is built from the dataset), so KFP may cache
the data steps. ``$OCRTUNE_STEP_LOG_DIR`` names where step logs go (default: beside the first output);
``$OCRTUNE_PROGRESS_FILE``, when set, receives one JSON line per finished step (what ``kfp_local`` prints).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from ocrtune.charsets import load_charset
from ocrtune.config import RunConfig, load_config, override
from ocrtune.data.card import write_card
from ocrtune.data.gt_layout import GT_FILE, SAMPLES_FILE, read_gt
from ocrtune.data.lmdb import LmdbReader
from ocrtune.errors import UserError
from ocrtune.files import write_text
from ocrtune.platform import kfp_views
from ocrtune.platform.launcher import BACKENDS, TrainSpec, job_shape, launch, placement_from_env
from ocrtune.platform.steps import (
    CARD_FILE,
    CONFIG_FILE,
    PARITY_FILE,
    TRAIN_RESULT_FILE,
    StepContext,
    registered_line,
    step,
)
from ocrtune.platform.storage import ObjectStore, S3Settings
from ocrtune.release import error_report
from ocrtune.release.export import export_model
from ocrtune.release.frozen_benchmark import (
    Benchmark,
    load_benchmark,
    ocrtune_predictions,
    parity_of,
    reader_predictions,
)
from ocrtune.release.registry import log_artifacts
from ocrtune.training.loop import build
from ocrtune.training.tracking import plot_history

LOG_DIR_ENV = "OCRTUNE_STEP_LOG_DIR"
PROGRESS_ENV = "OCRTUNE_PROGRESS_FILE"
SPLITS = ("val", "test")
SAMPLES_SHOWN = 24


# ---- plumbing ------------------------------------------------------------------------------------------
def run_config(profile: str, **sections: Mapping[str, Any]) -> RunConfig:
    """The profile (or config file) with the pipeline's parameters put over its sections, checked."""
    cfg = load_config(profile)
    for name, values in sections.items():
        setattr(cfg, name, override(getattr(cfg, name), name, dict(values), label="{key}"))
    return cfg


def context(cfg: RunConfig, paths: Mapping[str, str | Path], run_id: str = "", nproc: int = 1) -> StepContext:
    """A StepContext on a fresh work directory holding the step's config.yaml; ``paths``: the artifacts."""
    work = Path(tempfile.mkdtemp(prefix="ocrtune-step-"))
    atexit.register(shutil.rmtree, work, True)
    write_text(work / CONFIG_FILE, yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))
    # env {}: one pod or one machine, a standalone torchrun rendezvous
    return StepContext(work, cfg, run_id=run_id, nproc=nproc, env={}, paths=dict(paths))


def log_path(name: str, beside: str | Path) -> Path:
    root = Path(os.environ.get(LOG_DIR_ENV) or Path(beside).parent)
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}.log"


def execute(argv: list[str], log: Path) -> str:
    """Run ``argv``; stderr (and stdout) appended to ``log``, stdout returned. A failure: its last lines."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1"}
    with log.open("a", encoding="utf-8") as fh:
        fh.write("$ " + " ".join(argv) + "\n")
        fh.flush()
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=fh, text=True, env=env)
        fh.write(r.stdout)
    if r.returncode != 0:
        tail = "\n".join(log.read_text("utf-8", errors="replace").splitlines()[-15:])
        raise UserError(f"{' '.join(argv[1:4])} ... failed (exit {r.returncode}); log {log}:\n{tail}")
    return r.stdout


def progress(name: str, started: float, line: str, **facts: Any) -> None:
    """One line about a finished step (and ``facts``: its outputs) for whoever watches ``$OCRTUNE_PROGRESS_FILE``."""
    path = os.environ.get(PROGRESS_ENV)
    if path:
        event = {"step": name, "seconds": round(time.monotonic() - started, 1), "line": line, **facts}
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event, ensure_ascii=False) + "\n")


def read_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing: the step that makes it did not run") from None


# ---- generate_data -------------------------------------------------------------------------------------
def mix_real(root: Path, real: Path, ratio: float, seed: int) -> dict[str, Any]:
    """Imported real crops (a gt.txt layout) copied into ROOT/train so they are ``ratio`` of it."""
    rows = read_gt(real)
    if not rows:
        raise UserError(f"{real}: no real crops in {GT_FILE}")
    train = root / "train"
    synthetic = len(read_gt(train))
    want = len(rows) if ratio >= 1 else min(len(rows), round(synthetic * ratio / max(1e-9, 1 - ratio)))
    picked = sorted(random.Random(seed).sample(range(len(rows)), want))
    (train / "real").mkdir(exist_ok=True)
    gt, side = [], []
    for n, i in enumerate(picked):
        rel, label = rows[i]
        dest = f"real/real_{n:06d}{Path(rel).suffix}"
        shutil.copyfile(real / rel, train / dest)
        gt.append(f"{dest}\t{label}\n")
        side.append(f"{dest}\treal\treal\n")
    with (train / GT_FILE).open("a", encoding="utf-8") as fh:
        fh.writelines(gt)
    with (train / SAMPLES_FILE).open("a", encoding="utf-8") as fh:
        fh.writelines(side)
    bench = load_benchmark(real)
    return {"source": str(real), "sha256": bench.sha256, "images": want, "ratio": ratio}


def fetch_real(real_data: str, work: Path) -> Path:
    """``real_data`` as a local directory: a path, or an ``s3://bucket/prefix`` published tree fetched."""
    if not real_data.startswith("s3://"):
        return Path(real_data)
    bucket, _, prefix = real_data[5:].partition("/")
    ObjectStore(S3Settings.from_env(bucket=bucket), retries=2).fetch_tree(prefix.rstrip("/"), work / "real")
    return work / "real"


def generate_data(
    *,
    profile: str,
    words: str,
    fonts: str,
    train_count: int,
    val_count: int,
    test_count: int,
    img_h: int,
    charset: str,
    real_data: str,
    real_ratio: float,
    seed: int,
    dataset_path: str,
    card_path: str,
) -> dict[str, Any]:
    """Synthetic train/val/test (test: held-out typefaces), real crops mixed in, the card as HTML."""
    started = time.monotonic()
    data = {"train_count": train_count, "val_count": val_count, "test_count": test_count, "height": img_h}
    data.update(charset=charset, seed=seed, words=words or None)
    cfg = run_config(profile, data=data)
    ctx = context(cfg, {"data": dataset_path})
    log = log_path("generate_data", dataset_path)
    if not fonts:
        execute(step("fonts").command(ctx), log)
    execute([*step("generate").command(ctx), "--overwrite", *(["--fonts-dir", fonts] if fonts else [])], log)
    root = Path(dataset_path)
    card = read_json(root / "card.json")
    if real_data:
        info = {**mix_real(root, fetch_real(real_data, ctx.run_dir), real_ratio, seed), "source": real_data}
        meta = {**(card.get("generation") or {}), "real_data": info}
        card = write_card(root, load_charset(charset), charset, meta, cfg.data.coverage_min)
    write_text(card_path, kfp_views.card_html(card, root / card.get("montage", "montage.png")))
    counts = card["counts"]
    progress("generate_data", started, f"{', '.join(f'{s} {n}' for s, n in counts.items())} images")
    return {"content_sha256": card["content_sha256"], "counts": counts, "charset": charset}


# ---- build_lmdb ----------------------------------------------------------------------------------------
def build_lmdb(*, dataset_path: str, lmdb_path: str) -> dict[str, Any]:
    started = time.monotonic()
    ctx = context(RunConfig(), {"data": dataset_path, "lmdb": lmdb_path})
    execute(step("lmdb").command(ctx), log_path("build_lmdb", lmdb_path))
    card = read_json(ctx.path(CARD_FILE))
    counts = {}
    for split in ("train", "val", "test"):
        with LmdbReader(Path(lmdb_path) / split) as reader:
            counts[split] = len(reader)
    progress("build_lmdb", started, ", ".join(f"{s} {n}" for s, n in counts.items()) + " records")
    return {"dataset_sha256": card["content_sha256"], "counts": counts}


# ---- train ---------------------------------------------------------------------------------------------
def remote_train_args(ctx: StepContext, store: ObjectStore, key: str) -> list[str]:
    """``ocrtune train``'s arguments for trainers that cannot see this pod: the config and LMDBs published
    under ``key``, the checkpoint kept there (a rerun resumes), the output published there when training ends."""
    url = f"s3://{store.bucket}/{key}"
    for split in ("train", "val"):
        if not store.is_published(f"{key}/lmdb/{split}"):
            store.publish_tree(ctx.path(f"lmdb/{split}"), f"{key}/lmdb/{split}")
    store.put_file(ctx.path(CONFIG_FILE), f"{key}/{CONFIG_FILE}")
    args = step("train").args(ctx)[1:]
    values = {"--config": f"{url}/{CONFIG_FILE}", "--train": f"{url}/lmdb/train", "--val": f"{url}/lmdb/val"}
    values["--out"] = "out"  # in the trainer pod's own working directory
    args = [values.get(args[i - 1], a) if i else a for i, a in enumerate(args)]
    return [*args, "--checkpoint-dir", f"{url}/checkpoint", "--publish", f"{url}/output"]


def launch_training(
    ctx: StepContext, backend: str, nodes: int, gpus: int, where: tuple[str, str], log: Path
) -> None:
    """``ocrtune train`` through ``ocrtune.platform.launcher``; the output in the checkpoint artifact.
    ``where``: (the trainer image, the namespace) for the cluster backends."""
    if backend not in BACKENDS:
        raise UserError(f"backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    out = ctx.path("train")
    store = None if backend == "local" else ObjectStore(S3Settings.from_env(bucket=ctx.cfg.storage.bucket))
    key = f"{ctx.cfg.storage.prefix}/kfp-train/{hashlib.sha256((ctx.path(CONFIG_FILE).read_text() + str(out)).encode()).hexdigest()[:16]}"
    shape = job_shape(backend, nodes, gpus) if store is not None else (nodes, ctx.nproc, 0)
    spec = TrainSpec(
        backend=backend,
        train_args=step("train").args(ctx)[1:] if store is None else remote_train_args(ctx, store, key),
        num_nodes=shape[0],
        nproc_per_node=shape[1],
        gpus_per_node=shape[2],
        image=where[0],
        namespace=where[1],
        **(placement_from_env() if store is not None else {}),
    )
    with log.open("a", encoding="utf-8") as fh:
        result = launch(spec, echo=lambda line: print(line, file=fh, flush=True))
    if result.status == "preempted":
        raise UserError(
            "training was preempted (exit 75) after flushing its checkpoint: rerun the step to resume "
            f"({result.name or 'torchrun'})"
        )
    if result.status != "succeeded":
        tail = result.logs_tail.splitlines()
        said = [ln for ln in tail if ln.startswith("ocrtune")] or tail[-10:]  # its own words, not torchrun's
        raise UserError(
            f"training {result.status} (exit {result.exit_code}): {result.message}\n" + "\n".join(said)
        )
    if store is not None:
        store.fetch_tree(f"{key}/output", out)


def train(
    *,
    profile: str,
    base_model: str,
    charset: str,
    steps: int,
    batch_size: int,
    lr: float,
    num_nodes: int,
    gpus_per_node: int,
    backend: str,
    namespace: str,
    lmdb_path: str,
    checkpoint_path: str,
    curves_path: str,
    image: str = "",
) -> dict[str, Any]:
    """Fine-tune ("local": torchrun with ``gpus_per_node`` CPU ranks, at least 1; "trainjob", "pytorchjob":
    a Kubeflow job); curves as HTML; the figures returned for the Metrics artifact."""
    started = time.monotonic()
    values = {"pretrained": base_model, "charset": charset, "max_steps": steps, "batch_size": batch_size}
    cfg = run_config(profile, train={**values, "lr": lr})
    ctx = context(cfg, {"lmdb": lmdb_path, "train": checkpoint_path}, nproc=max(1, gpus_per_node))
    log = log_path("train", checkpoint_path)
    launch_training(ctx, backend, num_nodes, gpus_per_node, (image, namespace), log)
    result = read_json(ctx.path(TRAIN_RESULT_FILE))
    png = plot_history(result.get("history") or [], ctx.run_dir / "curves.png")
    write_text(curves_path, kfp_views.curves_html(result, png))
    names = ("best_accuracy", "best_norm_ED", "samples_per_s")
    metrics = {k: float(result[k]) for k in names if isinstance(result.get(k), int | float)}
    metrics["steps"] = float(result.get("step") or 0)
    line = f"{result['status']} at step {result['step']}, best val accuracy {result['best_accuracy']:.4f}"
    progress("train", started, line, checkpoint=checkpoint_path, mlflow_run_id=result.get("mlflow_run_id"))
    return {
        "metrics": metrics,
        "mlflow_run_id": result.get("mlflow_run_id") or "",
        "base_model": result["base_model"],
    }


# ---- export --------------------------------------------------------------------------------------------
def export(*, profile: str, charset: str, checkpoint_path: str, model_path: str) -> dict[str, Any]:
    started = time.monotonic()
    cfg = run_config(profile, train={"charset": charset})
    ctx = context(cfg, {"train": checkpoint_path, "export": model_path})
    execute(step("export").command(ctx), log_path("export", model_path))
    line = f"{cfg.export.name} (EasyOCR recog_network) in {model_path}"
    progress("export", started, line, export_dir=model_path, recog_network=cfg.export.name)
    return {"recog_network": cfg.export.name, "charset": charset, "lang_list": cfg.export.lang_list}


# ---- evaluate ------------------------------------------------------------------------------------------
def per_font(labels: list[str], preds: list[str], fonts: list[str | None]) -> dict[str, float]:
    rows = [error_report.Reading(g, p, f) for g, p, f in zip(labels, preds, fonts, strict=True)]
    return {f: v["word_acc"] for f, v in error_report.grouped(rows, lambda r: r.font or "-").items()}


def score_split(model_dir: Path, lmdb_dir: Path) -> tuple[dict[str, Any], Benchmark, list[str], list[str]]:
    """One split through ocrtune (as Reader reads on CPU) and plain easyocr.Reader: scores and parity;
    the set and both readings (Reader's, ocrtune's)."""
    bench = load_benchmark(lmdb_dir)
    labels = [label for _, label in bench.samples]
    ours = [t for t, _ in ocrtune_predictions(model_dir, bench, quantize=True)]
    theirs = [t for t, _ in reader_predictions(model_dir, bench)]
    result = {
        "ocrtune": error_report.word_figures(labels, ours),
        "easyocr": error_report.word_figures(labels, theirs),
        "parity": parity_of(bench, ours, theirs),
        "per_font": per_font(labels, theirs, [bench.font(i) for i in range(len(labels))]),
    }
    return result, bench, theirs, ours


def export_base(cfg: RunConfig, out: Path) -> tuple[Path, dict[str, Any]]:
    """The untrained start training began from (the pretrained weights, head surgery to the charset, its
    fallback where the first choice is unavailable) as an EasyOCR export, and build_model's report of it."""
    model, report = build(cfg.train, load_charset(cfg.train.charset), None)
    weights = out.parent / "base_weights.pth"
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, weights)
    export_model(
        weights,
        out,
        name=cfg.export.name,
        charset=load_charset(cfg.train.charset),
        lang_list=cfg.export.lang_list,
        overwrite=True,
    )
    return out, report


def base_scores(cfg: RunConfig, lmdb_dir: Path, work: Path) -> tuple[dict[str, Any], list[str]]:
    """The base model's figures on val and test through plain easyocr.Reader, and its test predictions."""
    base_dir, report = export_base(cfg, work / "base")
    # what it was: the weights' name, and what the head surgery did to them (e.g. english_g2 -> korean_g2)
    out: dict[str, Any] = {
        "model": report["base"],
        "how": "; ".join(filter(None, (report.get("note"), report.get("message")))),
    }
    preds: list[str] = []
    for split in SPLITS:
        bench = load_benchmark(lmdb_dir / split)
        labels = [label for _, label in bench.samples]
        preds = [t for t, _ in reader_predictions(base_dir, bench)]
        out[split] = error_report.word_figures(labels, preds)
        if split == "test":
            out["per_font"] = per_font(labels, preds, [bench.font(i) for i in range(len(labels))])
    return out, preds


def samples_shown(bench: Benchmark, preds: list[str], base: list[str]) -> list[dict[str, Any]]:
    picks = range(0, len(bench.samples), max(1, len(bench.samples) // SAMPLES_SHOWN))
    return [
        {
            "image": bench.image_bytes(i),
            "gt": bench.samples[i][1],
            "pred": preds[i],
            "base": base[i],
            "font": bench.font(i),
        }
        for i in list(picks)[:SAMPLES_SHOWN]
    ]


def log_error_report(errors: dict[str, Any], bench: Benchmark, mlflow_run_id: str, work: Path) -> None:
    """The error report into the training's MLflow run (error_report/), beside its curves and card."""
    out = error_report.write_report(work / "error_report", errors, bench.image_bytes)
    log_artifacts(mlflow_run_id, out, "error_report")


def evaluate(
    *,
    profile: str,
    model_path: str,
    lmdb_path: str,
    dataset_path: str,
    base_model: str,
    charset: str,
    evaluation_path: str,
    report_path: str,
    mlflow_run_id: str = "",
) -> dict[str, float]:
    """Val and held-out-typeface test through ocrtune and plain easyocr.Reader, the base model beside; the
    test split's error report in the view, the evaluation JSON and (given its id) the training's MLflow run."""
    started = time.monotonic()
    cfg = run_config(profile, train={"pretrained": base_model, "charset": charset or None})
    model_dir, lmdb_dir = Path(model_path), Path(lmdb_path)
    ev: dict[str, Any] = {"charset": cfg.train.charset, "recog_network": cfg.export.name}
    for split in SPLITS:
        ev[split], bench, preds, ours = score_split(model_dir, lmdb_dir / split)
    errors = error_report.analyse_benchmark(bench, preds, ours, title="test: typefaces held out of training")
    ev["test"]["errors"] = errors
    work = Path(tempfile.mkdtemp(prefix="ocrtune-base-"))
    ev["base"], base_preds = base_scores(cfg, lmdb_dir, work)
    ev["base_model"] = ev["base"]["model"]
    kinds = error_report.against_base(bench, preds, base_preds)
    ev["test"]["per_text_class"] = kinds
    ev["test"]["behind_base"] = sorted(k for k, v in kinds.items() if v["model"] < v["base"])
    ev["dataset_sha256"] = read_json(Path(dataset_path) / "card.json")["content_sha256"]
    write_text(evaluation_path, json.dumps(ev, indent=2, ensure_ascii=False) + "\n")
    samples = samples_shown(bench, preds, base_preds)
    write_text(
        report_path, kfp_views.report_html(ev, samples, error_report.html_body(errors, bench.image_bytes))
    )
    if mlflow_run_id:
        log_error_report(errors, bench, mlflow_run_id, work)
    shutil.rmtree(work, ignore_errors=True)
    t, b = ev["test"]["easyocr"]["word_acc"], ev["base"]["test"]["word_acc"]
    line = f"test word accuracy {t:.4f} (base {ev['base_model']} {b:.4f}, {t - b:+.4f})"
    with log_path("evaluate", evaluation_path).open("a", encoding="utf-8") as fh:  # scored in this process
        fh.write(f"{model_dir} on {lmdb_dir} (val, test), base {ev['base_model']}: {line}\n")
        fh.write(json.dumps({k: ev[k] for k in ("val", "test", "base")}, indent=2, ensure_ascii=False) + "\n")
    progress("evaluate", started, line, evaluation=evaluation_path)
    return metric_values(ev)


def metric_values(ev: Mapping[str, Any]) -> dict[str, float]:
    """The flat figures of an evaluation, as KFP Metrics are named."""
    out = {}
    for split in SPLITS:
        for m in kfp_views.METRICS:
            out[f"{split}_{m}"] = float(ev[split]["easyocr"][m])
            out[f"{split}_{m}_ocrtune"] = float(ev[split]["ocrtune"][m])
            out[f"base_{split}_{m}"] = float(ev["base"][split][m])
        out[f"{split}_parity_agreement"] = float(ev[split]["parity"]["agreement"])
    return out


# ---- register, promote ---------------------------------------------------------------------------------
def register(
    *,
    model_name: str,
    model_path: str,
    evaluation_path: str,
    dataset_path: str,
    checkpoint_path: str,
    pipeline_run_id: str,
) -> str:
    """A new registry version of the export (tags: dataset, base weights, parity, test scores): NAME/VERSION."""
    started = time.monotonic()
    ev = read_json(evaluation_path)
    cfg = RunConfig()
    cfg.registry.model_name, cfg.train.charset = model_name, ev["charset"]
    ctx = context(
        cfg, {"export": model_path, "data": dataset_path, "train": checkpoint_path}, pipeline_run_id
    )
    write_text(ctx.path(PARITY_FILE), json.dumps(ev["val"]["parity"], indent=2, ensure_ascii=False))
    extra = {
        "test_accuracy_easyocr": f"{ev['test']['easyocr']['word_acc']:.4f}",
        "test_accuracy_base": f"{ev['base']['test']['word_acc']:.4f}",
        "recog_network": ev["recog_network"],
    }
    tags = [x for k, v in extra.items() for x in ("--tag", f"{k}={v}")]
    out = execute([*step("register").command(ctx), *tags], log_path("register", model_path))
    line = registered_line(out).strip()
    name_version = line.split("models:/", 1)[1].split(" ", 1)[0]
    progress("register", started, line, registered=name_version)
    return name_version


def frozen_benchmark(model_name: str, test_lmdb: Path, work: Path) -> Path:
    """The model's frozen benchmark: published once from the first run's test split, reused after; this
    run's test split where there is no object storage."""
    try:
        store = ObjectStore(S3Settings.from_env(), retries=2)
    except UserError:
        return test_lmdb
    key = f"benchmarks/{model_name}"
    if not store.is_published(key):
        store.publish_tree(test_lmdb, key, meta={"from": str(test_lmdb)})
    store.fetch_tree(key, work / "benchmark")
    return work / "benchmark"


def promote(*, model_name: str, version: str, min_delta: float, lmdb_path: str) -> str:
    """The promotion gate on the frozen benchmark: its decision as JSON."""
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="ocrtune-promote-"))
    bench = frozen_benchmark(model_name, Path(lmdb_path) / "test", work)
    cfg = RunConfig()
    cfg.registry.model_name, cfg.registry.min_delta = model_name, min_delta
    ctx = replace(context(cfg, {}), benchmark=bench)
    cmd = [*step("promote").command(ctx), "--version", version.rsplit("/", 1)[-1]]
    decision = json.loads(execute(cmd, log_path("promote", lmdb_path)))
    progress(
        "promote", started, f"promoted: {decision['promoted']} ({decision['reason']})", decision=decision
    )
    shutil.rmtree(work, ignore_errors=True)
    return json.dumps(decision, ensure_ascii=True)
