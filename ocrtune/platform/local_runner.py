"""The whole pipeline on one machine: the same step commands the KFP components run, in order.

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
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ocrtune.config import RunConfig, load_config
from ocrtune.errors import UserError

STEPS = ("fonts", "generate", "lmdb", "train", "export", "evaluate", "register", "promote")


def run_name(cfg: RunConfig) -> str:
    digest = hashlib.sha256(yaml.safe_dump(cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:8]
    return f"{cfg.name}-{digest}"


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

    # ---- plumbing ------------------------------------------------------------------------------
    def _cli(self, *args: str, capture: bool = False) -> str:
        return self._exec([sys.executable, "-m", "ocrtune", *args], capture)

    def _exec(self, argv: list[str], capture: bool = False) -> str:
        self.echo("  $ " + " ".join(a if " " not in a else repr(a) for a in argv[2:] if a))
        r = subprocess.run(argv, stdout=subprocess.PIPE if capture else None, text=True)
        if r.returncode != 0:
            raise UserError(
                f"step failed (exit {r.returncode}): {' '.join(argv[1:4])} ...; see the output above"
            )
        return r.stdout if capture else ""

    def _step(self, name: str, done: Path | None, fn: Callable[[], Any]) -> Any:
        if done is not None and done.exists():
            self.echo(f"[{name}] cached: {done}")
            return None
        self.echo(f"[{name}]")
        t = time.monotonic()
        out = fn()
        self.timings[name] = round(time.monotonic() - t, 1)
        return out

    def _store(self):
        from ocrtune.platform.storage import ObjectStore, S3Settings

        try:
            return ObjectStore(S3Settings.from_env(bucket=self.cfg.storage.bucket), retries=2)
        except UserError as exc:
            self.echo(f"  (no object storage: {exc})")
            return None

    # ---- the steps -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(
            yaml.safe_dump(self.cfg.to_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8"
        )
        d = self.dir
        cfg_file = str(d / "config.yaml")
        self.echo(f"run {self.name} in {d}")
        self._step("fonts", None, lambda: self._cli("fonts", "fetch"))
        self._step(
            "generate",
            d / "data" / "card.json",
            lambda: self._cli("data", "generate", "--config", cfg_file, "--out", str(d / "data"), "--quiet"),
        )
        self._step("lmdb", d / "lmdb", lambda: self._cli("data", "lmdb", str(d / "data"), str(d / "lmdb")))
        card = json.loads((d / "data" / "card.json").read_text("utf-8"))
        store = self._store()
        prefix = f"{self.cfg.storage.prefix}/{self.name}"
        if store is not None and not store.is_published(f"{prefix}/lmdb"):
            store.publish_tree(d / "lmdb", f"{prefix}/lmdb", meta={"dataset_sha256": card["content_sha256"]})
            self.echo(f"  published s3://{store.bucket}/{prefix}/lmdb")
        self._step("train", d / "train" / "best_accuracy.pth", lambda: self._train(cfg_file))
        self._step(
            "export",
            d / "export" / f"{self.cfg.export.name}.pth",
            lambda: self._cli(
                "export",
                str(d / "train" / "best_accuracy.pth"),
                "--out",
                str(d / "export"),
                "--name",
                self.cfg.export.name,
                "--charset",
                self.cfg.train.charset,
                *[x for lang in self.cfg.export.lang_list for x in ("--lang", lang)],
                "--overwrite",
            ),
        )
        if store is not None and not store.is_published(f"{prefix}/export"):
            store.publish_tree(d / "export", f"{prefix}/export")
        self._step("evaluate", d / "parity.json", lambda: self._evaluate())
        parity = json.loads((d / "parity.json").read_text("utf-8"))
        self._step("register", d / "registered.txt", lambda: self._register(card, parity))
        self._step("promote", d / "promotion.json", lambda: self._promote(store))
        summary = {
            "run": self.name,
            "dir": str(d),
            "dataset_sha256": card["content_sha256"],
            "parity": {k: parity[k] for k in ("agreement", "ocrtune_accuracy", "easyocr_accuracy", "ok")},
            "registered": (d / "registered.txt").read_text().strip(),
            "promotion": json.loads((d / "promotion.json").read_text("utf-8")),
            "timings_s": self.timings,
        }
        (d / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
        return summary

    def _train(self, cfg_file: str) -> None:
        d = self.dir
        args = [
            "train",
            "--config",
            cfg_file,
            "--train",
            str(d / "lmdb" / "train"),
            "--val",
            str(d / "lmdb" / "val"),
            "--out",
            str(d / "train"),
            "--resume",
            "--no-progress",
        ]
        if self.nproc > 1:
            torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
            self._exec(
                [
                    sys.executable,
                    torchrun,
                    "--standalone",
                    f"--nproc_per_node={self.nproc}",
                    "-m",
                    "ocrtune",
                    *args,
                ]
            )
        else:
            self._cli(*args)

    def _evaluate(self) -> None:
        d = self.dir
        out = self._cli(
            "evaluate",
            str(d / "export"),
            "--data",
            str(d / "lmdb" / "val"),
            "--json",
            "--no-check",
            capture=True,
        )
        report = json.loads(out)
        self.echo(
            f"  ocrtune accuracy {report['ocrtune_accuracy']:.4f}, easyocr accuracy "
            f"{report['easyocr_accuracy']:.4f}, agreement {report['agreement']:.4f}"
        )
        (d / "parity.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")

    def _base_model(self) -> str:
        """The weights training actually started from (the fallback when the pretrained one was unavailable)."""
        from ocrtune.training import checkpoint as ckpt  # torch: only once training has run

        state = ckpt.load(self.dir / "train" / "checkpoint.pth")
        return state.get("base_model") or self.cfg.train.pretrained

    def _register(self, card: dict, parity: dict) -> None:
        d = self.dir
        tags = {
            "dataset_sha256": card["content_sha256"],
            "base_model": self._base_model(),
            "charset": self.cfg.train.charset,
            "pipeline_run_id": self.name,
            "val_accuracy_ocrtune": f"{parity['ocrtune_accuracy']:.4f}",
            "val_accuracy_easyocr": f"{parity['easyocr_accuracy']:.4f}",
            "parity_agreement": f"{parity['agreement']:.4f}",
        }
        out = self._cli(
            "register",
            "--from-dir",
            str(d / "export"),
            "--name",
            self.cfg.registry.model_name,
            *[x for k, v in tags.items() for x in ("--tag", f"{k}={v}")],
            capture=True,
        )
        line = next(ln for ln in reversed(out.splitlines()) if "registered: models:/" in ln)
        self.echo("  " + line)
        (d / "registered.txt").write_text(line + "\n")

    def _frozen_benchmark(self, store) -> Path:
        """The model's frozen benchmark: published once from the first run's test split, reused after."""
        d = self.dir
        key = f"benchmarks/{self.cfg.registry.model_name}"
        local = d / "benchmark"
        if store is None:
            return d / "lmdb" / "test"
        if not store.is_published(key):
            store.publish_tree(d / "lmdb" / "test", key, meta={"from_run": self.name})
            self.echo(f"  frozen benchmark published: s3://{store.bucket}/{key}")
        if local.exists():
            shutil.rmtree(local)
        store.fetch_tree(key, local)
        return local

    def _promote(self, store) -> dict:
        bench = self._frozen_benchmark(store)
        out = self._cli(
            "promote",
            self.cfg.registry.model_name,
            "--benchmark",
            str(bench),
            "--min-delta",
            str(self.cfg.registry.min_delta),
            capture=True,
        )
        decision = json.loads(out)
        self.echo(f"  promoted: {decision['promoted']} ({decision['reason']})")
        (self.dir / "promotion.json").write_text(json.dumps(decision, indent=2), encoding="utf-8")
        return decision


def stack_env_for_run() -> dict[str, str]:
    """Point the steps at the local stack when nothing else is configured."""
    from ocrtune.platform.stack import LocalStack

    st = LocalStack()
    if not st.status()["healthy"]:
        raise UserError(f"the local stack in {st.root} is not running: ocrtune stack up (or make run)")
    return {k: v for k, v in st.env().items() if k not in os.environ}
