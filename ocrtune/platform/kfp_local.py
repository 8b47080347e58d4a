"""``ocrtune pipeline run --local``: the very pipeline one uploads to KFP, run here through ``kfp.local``.

``run_local`` compiles ``ocrtune.pipelines.finetune.finetune_pipeline`` (``<run>/pipeline.yaml``) and runs it with ``kfp.local``'s SubprocessRunner (this
interpreter, no venv per task) against the local stack (S3 + MLflow), in a child process (``CHILD``) whose own output
(kfp.local's logging, the executors' chatter) goes to ``<run>/kfp.log``; each step's command log goes to
``<run>/logs/<step>.log``. While it runs, one line per finished step (what it did, how long it took) is
printed from the steps' progress events; at the end the MLflow UI, the registered version, the export and
the scores (val and held-out-typeface test, Reader parity, the base model beside), written also to
``.ocrtune/last-run.json`` and ``.ocrtune/runs/<run-id>.json``.

The pipeline's arguments: the profile's values for the parameters the pipeline declares, ``params`` over them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kfp import compiler
from kfp.pipeline_spec.pipeline_spec_pb2 import ParameterType

from ocrtune.config import RunConfig, load_config
from ocrtune.errors import UserError
from ocrtune.files import write_text
from ocrtune.pipelines.finetune import finetune_pipeline
from ocrtune.platform import endpoints, kfp_steps
from ocrtune.platform.stack import stack_env_for_run
from ocrtune.platform.stack_files import StackFiles

LAST_RUN = "last-run.json"
TYPES: dict[str, Callable[[Any], Any]] = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}


# ---- the pipeline's arguments ----------------------------------------------------------------------------
def profile_arguments(profile: str, cfg: RunConfig) -> dict[str, Any]:
    """The pipeline parameters a profile gives values for (the components' parameter names)."""
    d, t = cfg.data, cfg.train
    return {
        "profile": profile,
        "words": d.words or "",
        "train_count": d.train_count,
        "val_count": d.val_count,
        "test_count": d.test_count,
        "img_h": d.height,
        "charset": t.charset,
        "seed": d.seed,
        "base_model": t.pretrained,
        "steps": t.max_steps,
        "batch_size": t.batch_size,
        "lr": t.lr,
        "model_name": cfg.registry.model_name,
        "min_delta": cfg.registry.min_delta,
        "backend": "local",
    }


def declared() -> dict[str, str]:
    """The pipeline's parameters and their types (``STRING``, ``NUMBER_INTEGER``, ``BOOLEAN`` ...)."""
    spec = finetune_pipeline.pipeline_spec.root.input_definitions.parameters
    return {name: ParameterType.ParameterTypeEnum.Name(p.parameter_type) for name, p in spec.items()}


def coerce(name: str, value: Any, kind: str) -> Any:
    if kind == "BOOLEAN":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
    elif kind in TYPES and not isinstance(value, bool):
        try:
            return TYPES[kind](value)
        except (TypeError, ValueError):
            pass
    else:
        return value
    raise UserError(f"--param {name}={value!r}: must be {kind.lower().replace('number_', '')}")


def arguments(profile: str, params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """The profile's values for what the pipeline declares, ``params`` over them (unknown: one line)."""
    kinds = declared()
    unknown = sorted(set(params) - set(kinds))
    if unknown:
        raise UserError(f"unknown pipeline parameter {unknown[0]!r} (parameters: {', '.join(sorted(kinds))})")
    values = {**profile_arguments(profile, load_config(profile)), "pipeline_run_id": run_id, **params}
    return {k: coerce(k, v, kinds[k]) for k, v in values.items() if k in kinds}


# ---- the child process: the pipeline through kfp.local ----------------------------------------------------
# the child's program: kfp.local on the compiled pipeline; nothing of ocrtune imported beyond what tasks need
CHILD = """
import json, sys
import kfp.local
from kfp.components import load_component_from_file
job = json.load(open(sys.argv[1], encoding="utf-8"))
kfp.local.init(runner=kfp.local.SubprocessRunner(use_venv=False), pipeline_root=job["pipeline_root"],
               raise_on_error=True)
load_component_from_file(job["pipeline"])(**job["arguments"])
"""


def watch(proc: subprocess.Popen, progress: Path, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The progress events, each said as it arrives, until the child exits."""
    events: list[dict[str, Any]] = []
    seen = 0
    while True:
        done = proc.poll() is not None
        text = progress.read_text("utf-8") if progress.exists() else ""
        lines = text.split("\n")[:-1]  # complete lines only: a step may be writing the next one
        for line in lines[seen:]:
            event = json.loads(line)
            events.append(event)
            say(f"[{event['step']}] {event['line']} ({event['seconds']:.0f}s)")
        seen = len(lines)
        if done:
            return events
        time.sleep(0.5)


def execute(run_dir: Path, args: dict[str, Any], env: dict[str, str], say) -> list[dict[str, Any]]:
    # the file one would upload to KFP is the one that runs here
    compiler.Compiler().compile(finetune_pipeline, str(run_dir / "pipeline.yaml"))
    job = {
        "pipeline": str(run_dir / "pipeline.yaml"),
        "pipeline_root": str(run_dir / "kfp"),
        "arguments": args,
    }
    write_text(run_dir / "job.json", json.dumps(job, indent=2, ensure_ascii=False))
    progress = run_dir / "progress.jsonl"
    env = {
        **os.environ,
        **env,
        kfp_steps.LOG_DIR_ENV: str(run_dir / "logs"),
        kfp_steps.PROGRESS_ENV: str(progress),
        "PYTHONWARNINGS": "ignore",
        "TQDM_DISABLE": "1",
    }
    argv = [sys.executable, "-c", CHILD, str(run_dir / "job.json")]
    with (run_dir / "kfp.log").open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            events = watch(proc, progress, say)
        finally:
            if proc.poll() is None:  # Ctrl-C: the run's processes go with it
                os.killpg(proc.pid, 15)
                proc.wait()
    if proc.returncode != 0:
        raise UserError(
            f"the pipeline failed (exit {proc.returncode}); step logs in {run_dir / 'logs'}, kfp.local's in "
            f"{run_dir / 'kfp.log'}:\n{failure(run_dir / 'kfp.log')}"
        )
    return events


def failure(log: Path) -> str:
    """What went wrong, from kfp.local's log: the failing step's own error (its message and log tail)."""
    lines = [ln for ln in log.read_text("utf-8", errors="replace").splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if "UserError: " in ln or "ConfigError: " in ln]
    if starts:
        return "\n".join(ln.strip() for ln in lines[starts[-1] : starts[-1] + 6])
    return "\n".join(lines[-12:])


# ---- the summary ---------------------------------------------------------------------------------------
def facts(events: list[dict[str, Any]], step: str) -> dict[str, Any]:
    found = [e for e in events if e["step"] == step]
    if not found:
        raise UserError(f"the pipeline ended without its {step} step reporting")
    return found[-1]


def summarize(profile: str, run_id: str, events: list[dict[str, Any]], started: float) -> dict[str, Any]:
    ev = kfp_steps.read_json(facts(events, "evaluate")["evaluation"])
    name, _, version = facts(events, "register")["registered"].partition("/")
    promoted = [e["decision"] for e in events if e["step"] == "promote"]
    keys = ("word_acc", "cer", "norm_ed")
    return {
        "run_id": run_id,
        "mlflow_run_id": facts(events, "train").get("mlflow_run_id"),
        "mlflow_url": endpoints.tracking_uri(),
        "model_name": name,
        "model_version": version,
        "export_dir": facts(events, "export")["export_dir"],
        "recog_network": ev["recog_network"],
        "metrics": {
            "val": {k: ev["val"]["easyocr"][k] for k in keys},
            "test": {k: ev["test"]["easyocr"][k] for k in keys},
            "base": {s: {k: ev["base"][s][k] for k in keys} for s in ("val", "test")},
        },
        "easyocr_parity": {
            s: {"agreement": ev[s]["parity"]["agreement"], "ok": ev[s]["parity"]["ok"]}
            for s in ("val", "test")
        },
        "base_model": ev["base_model"],
        "per_text_class": ev["test"].get("per_text_class", {}),
        "behind_base": ev["test"].get("behind_base", []),
        "profile": profile,
        "promotion": promoted[-1] if promoted else None,
        "timings_s": {
            **{e["step"]: e["seconds"] for e in events},
            "total": round(time.monotonic() - started, 1),
        },
    }


def report_lines(s: Mapping[str, Any]) -> list[str]:
    """What the user reads at the end: where things are, and the scores beside the base model's."""
    m = s["metrics"]
    lines = [
        f"MLflow UI: {s['mlflow_url']}",
        f"registered: models:/{s['model_name']}/{s['model_version']}",
        f"export (EasyOCR recog_network={s['recog_network']!r}): {s['export_dir']}",
        "",
        f"{'split':<6} {'word_acc':>9} {'cer':>7} {'norm_ed':>8}   base {s['base_model']}: "
        f"{'word_acc':>8} {'cer':>7} {'norm_ed':>8}   {'delta acc':>9}",
    ]
    for split in ("val", "test"):
        a, b = m[split], m["base"][split]
        lines.append(
            f"{split:<6} {a['word_acc']:>9.4f} {a['cer']:>7.4f} {a['norm_ed']:>8.4f}   "
            f"{'':>{len(s['base_model']) + 6}} {b['word_acc']:>8.4f} {b['cer']:>7.4f} {b['norm_ed']:>8.4f}   "
            f"{a['word_acc'] - b['word_acc']:>+9.4f}"
        )
    par = s["easyocr_parity"]
    lines.append(
        "Reader parity (ocrtune vs easyocr.Reader): "
        + ", ".join(f"{k} {v['agreement']:.4f} {'ok' if v['ok'] else 'FAILED'}" for k, v in par.items())
    )
    kinds = s.get("per_text_class") or {}
    if kinds:
        lines.append(
            "test per kind of text (fine-tuned / base): "
            + ", ".join(f"{k} {v['model']:.2f}/{v['base']:.2f} (n={v['samples']})" for k, v in kinds.items())
        )
        behind = s.get("behind_base") or []
        lines.append(
            f"behind the base model in: {', '.join(behind)}"
            if behind
            else "ahead of or level with the base model in every kind of text"
        )
    lines.append("(test = typefaces held out of training; scores read by plain easyocr.Reader)")
    return lines


def run_local(
    profile: str,
    params: Mapping[str, Any],
    run_root: str | Path,
    echo: Callable[[str], None] = print,
    state_dir: str | Path | None = None,
) -> dict[str, Any]:
    """The fine-tuning pipeline through kfp.local on the local stack; the summary (also in
    ``<state_dir>/last-run.json`` and ``<state_dir>/runs/<run-id>.json``, state_dir default ``.ocrtune/``)."""
    started = time.monotonic()
    run_id = f"{profile}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    env = {} if os.environ.get(endpoints.TRACKING_URI_ENV) else stack_env_for_run()
    args = arguments(profile, params, run_id)
    run_dir = Path(run_root).absolute() / run_id
    (run_dir / "logs").mkdir(parents=True)
    echo(f"pipeline {finetune_pipeline.name} ({profile}) in {run_dir}; step logs in {run_dir / 'logs'}")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the summary's MLflow URL comes from the same endpoints the steps used
    try:
        events = execute(run_dir, args, env, echo)
        summary = {**summarize(profile, run_id, events, started), "run_dir": str(run_dir)}
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    for line in report_lines(summary):
        echo(line)
    state = Path(state_dir) if state_dir else StackFiles().root
    text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
    write_text(state / "runs" / f"{run_id}.json", text)
    write_text(state / LAST_RUN, text)
    return summary
