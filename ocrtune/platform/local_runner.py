"""The whole pipeline on one machine: the step table of ``ocrtune.platform.steps``, run in order.

fonts -> data generate -> lmdb -> train (torchrun) -> export -> evaluate (parity) -> register -> promote.
A run is named by its config and seed (``<profile>-<hash8>``); a step whose output is complete is skipped,
so a rerun after a failure continues where it stopped (as KFP's step caching would). Datasets and exports
are published to object storage (manifest last), the frozen promotion benchmark is the first run's test
split, kept in the bucket so every later challenger is scored on the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from ocrtune.config import RunConfig, load_config
from ocrtune.errors import UserError
from ocrtune.files import write_text
from ocrtune.platform import endpoints
from ocrtune.platform.stack import LocalStack
from ocrtune.platform.steps import (
    CARD_FILE,
    CONFIG_FILE,
    PARITY_FILE,
    PROMOTION_FILE,
    REGISTERED_FILE,
    STEPS,
    Step,
    StepContext,
)
from ocrtune.platform.storage import ObjectStore, S3Settings


def run_name(cfg: RunConfig) -> str:
    digest = hashlib.sha256(yaml.safe_dump(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.name}-{digest}"


# what the runner says after a step, from the output file the step just wrote
def _report_evaluate(d: Path) -> str:
    r = json.loads((d / PARITY_FILE).read_text("utf-8"))
    return (
        f"  ocrtune accuracy {r['ocrtune_accuracy']:.4f}, easyocr accuracy "
        f"{r['easyocr_accuracy']:.4f}, agreement {r['agreement']:.4f}"
    )


def _report_register(d: Path) -> str:
    return "  " + (d / REGISTERED_FILE).read_text().strip()


def _report_promote(d: Path) -> str:
    decision = json.loads((d / PROMOTION_FILE).read_text("utf-8"))
    return f"  promoted: {decision['promoted']} ({decision['reason']})"


REPORTS: dict[str, Callable[[Path], str]] = {
    "evaluate": _report_evaluate,
    "register": _report_register,
    "promote": _report_promote,
}


class LocalRun:
    def __init__(
        self,
        config: str,
        root: str | Path = "runs",
        nproc: int = 2,
        echo: Callable[[str], None] = print,
        max_steps: int | None = None,
    ):
        self.config_spec = config
        self.cfg = load_config(config)
        if max_steps:
            self.cfg.train.max_steps = max_steps
        self.name = run_name(self.cfg)
        self.dir = Path(root).absolute() / self.name
        self.nproc = nproc
        self.echo = echo
        self.timings: dict[str, float] = {}
        # env {}: one machine, a standalone torchrun rendezvous whatever this shell's PET_* say
        self.ctx = StepContext(self.dir, self.cfg, run_id=self.name, nproc=nproc, env={})

    # ---- plumbing ------------------------------------------------------------------------------
    def _exec(self, argv: list[str], capture: bool = False) -> str:
        self.echo("  $ " + " ".join(a if " " not in a else repr(a) for a in argv[2:] if a))
        r = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, text=True)
        if r.returncode != 0:
            raise UserError(
                f"step failed (exit {r.returncode}): {' '.join(argv[1:4])} ...; see the output above"
            )
        return r.stdout if capture else ""

    @cached_property
    def store(self) -> ObjectStore | None:
        """The object store, asked for once (at its first use); None, said once, when there is none."""
        try:
            return ObjectStore(S3Settings.from_env(bucket=self.cfg.storage.bucket), retries=2)
        except UserError as exc:
            self.echo(f"  (no object storage: {exc})")
            return None

    @property
    def prefix(self) -> str:
        return f"{self.cfg.storage.prefix}/{self.name}"

    # ---- the steps -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        write_text(
            self.dir / CONFIG_FILE, yaml.safe_dump(self.cfg.to_dict(), sort_keys=False, allow_unicode=True)
        )
        self.echo(f"run {self.name} in {self.dir}")
        for step in STEPS:
            self._run_step(step)
            if step.publish:
                self._publish(step)
        return self._summary()

    def _run_step(self, step: Step) -> None:
        if step.is_done(self.ctx):
            self.echo(f"[{step.name}] cached: {step.done_path(self.ctx)}")
            return
        self.echo(f"[{step.name}]")
        t = time.monotonic()
        ctx = replace(self.ctx, benchmark=self._frozen_benchmark()) if step.name == "promote" else self.ctx
        out = self._exec(step.command(ctx), capture=step.capture is not None)
        if step.capture is not None:
            write_text(ctx.path(step.capture.file), step.capture.text(out))
        if step.name in REPORTS:
            self.echo(REPORTS[step.name](self.dir))
        self.timings[step.name] = round(time.monotonic() - t, 1)

    def _publish(self, step: Step) -> None:
        """A step's output directory to object storage, once (it is named by the run, so never changes)."""
        store, key = self.store, f"{self.prefix}/{step.publish}"
        if store is None or store.is_published(key):
            return
        meta = step.publish_meta(self.ctx) if step.publish_meta else None
        store.publish_tree(self.ctx.path(step.publish), key, meta=meta)
        if step.name == "lmdb":  # the dataset's publication is said, the export's is not (as before)
            self.echo(f"  published s3://{store.bucket}/{key}")

    def _summary(self) -> dict[str, Any]:
        d = self.dir
        card = json.loads((d / CARD_FILE).read_text("utf-8"))
        parity = json.loads((d / PARITY_FILE).read_text("utf-8"))
        summary = {
            "run": self.name,
            "dir": str(d),
            "dataset_sha256": card["content_sha256"],
            "parity": {k: parity[k] for k in ("agreement", "ocrtune_accuracy", "easyocr_accuracy", "ok")},
            "registered": (d / REGISTERED_FILE).read_text().strip(),
            "promotion": json.loads((d / PROMOTION_FILE).read_text("utf-8")),
            "timings_s": self.timings,
        }
        write_text(d / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
        return summary

    def _frozen_benchmark(self) -> Path:
        """The model's frozen benchmark: published once from the first run's test split, reused after."""
        d = self.dir
        key = f"benchmarks/{self.cfg.registry.model_name}"
        local = d / "benchmark"
        store = self.store
        if store is None:
            return d / "lmdb" / "test"
        if not store.is_published(key):
            store.publish_tree(d / "lmdb" / "test", key, meta={"from_run": self.name})
            self.echo(f"  frozen benchmark published: s3://{store.bucket}/{key}")
        if local.exists():
            shutil.rmtree(local)
        store.fetch_tree(key, local)
        return local


def stack_env_for_run(stack_dir: str | Path | None = None) -> dict[str, str]:
    """Point the steps at the local stack when the environment names no MLflow (``ocrtune run``): the stack's
    variables for whatever the environment leaves unset. With the fallback off, one line naming the variable."""
    endpoints.require_local_stack([endpoints.TRACKING_URI_ENV])
    st = LocalStack(stack_dir)
    if not st.status()["healthy"]:
        raise UserError(f"the local stack in {st.root} is not running: ocrtune stack up (or make run)")
    return {k: v for k, v in st.env().items() if k not in os.environ}
