"""The MLflow Model Registry side: register an export, promote by a gate, roll back, pull by alias.

MLflow 3 deprecates stages, so state is aliases and tags only: a new version gets ``challenger``;
``promote`` re-scores challenger and champion NOW on one frozen benchmark set and moves ``champion`` only
when the challenger wins by ``min_delta``, keeping ``previous-champion`` for ``rollback``. Promotions are
serialised by a lease tag on the registered model, so two racing promotions leave one consistent history.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from PIL import Image, ImageDraw

from ocrtune import __version__
from ocrtune.errors import UserError
from ocrtune.files import sha256_file, staged_dir
from ocrtune.platform import endpoints
from ocrtune.release.easyocr_reader import export_name

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous-champion"
LOCK_TAG = "ocrtune.promotion_lock"
SHA_TAG = "ocrtune.export_sha256"
HERE = Path(__file__).parent


def tracking_uri(uri: str | None = None) -> str:
    """``uri``, else the environment's, else the local stack's MLflow (``ocrtune.platform.endpoints``)."""
    return endpoints.tracking_uri(uri)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with one line instead of MLflow's minutes of retries."""
    health = endpoints.probe_tracking(uri, timeout)
    if health is not None and not health.answered:  # any answer will do: MLflow then says what it thinks
        raise UserError(f"MLflow tracking server {endpoints.redact_url(uri)} unreachable ({health.reason})")


def client(uri: str | None = None):
    uri = tracking_uri(uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str, uri: str | None = None) -> None:
    """The files of ``local_dir`` into an MLflow run's artifacts (the error report beside the training's)."""
    c = client(uri)
    try:
        c.log_artifacts(run_id, str(local_dir), artifact_path)
    except MlflowException as exc:
        where = endpoints.redact_url(tracking_uri(uri))
        raise UserError(f"logging {artifact_path} to MLflow run {run_id} at {where}: {exc.message}") from None


def export_sha256(model_dir: str | Path) -> str:
    """One hash over the three export files: the identity used to avoid duplicate versions."""
    d = Path(model_dir)
    name = export_name(d)
    h = hashlib.sha256()
    for suffix in (".pth", ".yaml", ".py"):
        h.update(suffix.encode())
        h.update(bytes.fromhex(sha256_file(d / f"{name}{suffix}")))
    return h.hexdigest()


def _version_by_alias(c, name: str, alias: str):
    try:
        return c.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise


def _ensure_model(c, name: str) -> None:
    try:
        c.get_registered_model(name)
    except MlflowException:
        try:
            c.create_registered_model(name, description="EasyOCR recognizer fine-tuned by ocrtune")
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise


def find_registered(c, name: str, sha: str):
    versions = c.search_model_versions(f"name = '{name}' and tags.`{SHA_TAG}` = '{sha}'")
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register(
    model_dir: str | Path,
    name: str,
    tags: dict[str, Any] | None = None,
    run_id: str | None = None,
    uri: str | None = None,
    experiment: str = "ocrtune-registry",
) -> tuple[Any, bool]:
    """Log the export as a pyfunc model and register it as a new version aliased ``challenger``.

    Returns (model version, created). Registering the same export twice returns the existing version.
    """
    d = Path(model_dir)
    try:
        export_name(d)
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    c = client(uri)
    sha = export_sha256(d)
    _ensure_model(c, name)
    existing = find_registered(c, name, sha)
    if existing is not None:
        return existing, False
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "image")]),
        outputs=Schema([ColSpec("string", "text"), ColSpec("double", "confidence")]),
    )
    all_tags = {**auto_tags(d), SHA_TAG: sha, **{k: str(v) for k, v in (tags or {}).items()}}
    if run_id is None:
        mlflow.set_experiment(experiment)
    with (
        mlflow.start_run(run_id=run_id, nested=mlflow.active_run() is not None) as run,
        tempfile.TemporaryDirectory(prefix="ocrtune-register-") as tmp,
    ):
        staged = shutil.copytree(d, Path(tmp) / "easyocr_model")  # a stable artifact path in every version
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(HERE / "pyfunc.py"),
            artifacts={"easyocr_model": str(staged)},
            code_paths=[str(HERE / "easyocr_reader.py")],
            signature=signature,
            input_example=_input_example(d),
            pip_requirements=["easyocr==1.7.2", "torch", "pandas", "pyyaml"],
        )
        all_tags["run_id"] = run.info.run_id
    mv = mlflow.register_model(info.model_uri, name, tags=all_tags)
    _wait_ready(c, name, mv.version)
    c.set_registered_model_alias(name, CHALLENGER, mv.version)
    return c.get_model_version(name, mv.version), True


def auto_tags(model_dir: Path) -> dict[str, str]:
    """Tags every version carries whatever the caller adds: what it reads and which code made it."""
    name = export_name(model_dir)
    cfg = yaml.safe_load((model_dir / f"{name}.yaml").read_text("utf-8"))
    chars = cfg["character_list"]
    tags = {
        "recog_network": name,
        "imgH": str(cfg["imgH"]),
        "lang_list": ",".join(cfg["lang_list"]),
        "charset_size": str(len(chars)),
        "charset_sha256": hashlib.sha256(chars.encode("utf-8")).hexdigest(),
        "ocrtune_version": __version__,
    }
    commit = os.environ.get("OCRTUNE_GIT_COMMIT") or _git_commit()
    if commit:
        tags["git_commit"] = commit
    return tags


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _input_example(model_dir: Path):
    """One base64 PNG word crop in the model's height: what a caller of the served model sends."""
    h = int(yaml.safe_load((model_dir / f"{export_name(model_dir)}.yaml").read_text("utf-8"))["imgH"])
    img = Image.new("L", (3 * h, h), 255)
    ImageDraw.Draw(img).line([(h // 4, h // 2), (3 * h - h // 4, h // 2)], fill=0, width=max(2, h // 16))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return pd.DataFrame({"image": [base64.b64encode(buf.getvalue()).decode()]})


def _wait_ready(c, name: str, version: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if c.get_model_version(name, version).status == "READY":
            return
        time.sleep(0.2)


def parse_model_uri(spec: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    if not spec.startswith("models:/"):
        raise UserError(f"'{spec}' is not a models:/NAME@ALIAS or models:/NAME/VERSION URI")
    rest = spec[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    if "/" in rest:
        name, version = rest.split("/", 1)
        return name, None, version
    raise UserError(f"'{spec}' names no alias or version (models:/NAME@champion)")


def _require_model(c, name: str):
    try:
        return c.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model named '{name}'") from None


def resolve_version(c, name: str, alias: str | None = None, version: str | None = None):
    _require_model(c, name)
    if alias:
        mv = _version_by_alias(c, name, alias)
        if mv is None:
            raise UserError(f"model '{name}' has no alias '{alias}'")
        return mv
    try:
        return c.get_model_version(name, str(version))
    except MlflowException:
        raise UserError(f"model '{name}' has no version {version}") from None


def pull(spec: str, dest: str | Path, uri: str | None = None) -> tuple[Path, Any]:
    """Download the EasyOCR files of a registered version into ``dest`` (written whole or not at all)."""
    c = client(uri)
    name, alias, version = parse_model_uri(spec)
    mv = resolve_version(c, name, alias, version)
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise UserError(f"{dest}: exists and is not empty")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with (  # an empty dest is replaced, as the check above allows; staged_dir publishes before tmp goes
        tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{dest.name}.") as tmp,
        staged_dir(dest, overwrite=True) as staging,
    ):
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp)
        src = Path(local) / "artifacts" / "easyocr_model"
        if not src.is_dir():
            raise UserError(f"models:/{name}/{mv.version} is not an ocrtune EasyOCR model (no easyocr_model)")
        shutil.copytree(src, staging, dirs_exist_ok=True)
        export_name(staging)
    return dest, mv


# ---- promotion ---------------------------------------------------------------------------------------


class _Lease:
    """A lease tag on the registered model: write a token, wait, read back; only the last writer holds it."""

    def __init__(self, c, name: str, ttl: float = 300.0, wait: float = 600.0, settle: float = 0.5):
        self.c, self.name, self.ttl, self.wait, self.settle = c, name, ttl, wait, settle
        self.token = uuid.uuid4().hex

    def _holder(self) -> tuple[str | None, float]:
        tag = self.c.get_registered_model(self.name).tags.get(LOCK_TAG)
        if not tag:
            return None, 0.0
        token, _, expiry = tag.partition(":")
        return token, float(expiry or 0)

    def __enter__(self):
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            holder, expiry = self._holder()
            if holder is None or holder == self.token or expiry < time.time():
                if self._write() and self._holder()[0] == self.token:
                    return self
            time.sleep(0.2 + (uuid.uuid4().int % 100) / 250)
        raise UserError(
            f"model '{self.name}': another promotion holds the lock ({LOCK_TAG}); try again later"
        )

    def _write(self) -> bool:
        """Write our token; False when a racing writer made the server refuse it (two inserts of the same
        tag at once: the sqlite store answers with an integrity error), which is losing the race."""
        try:
            self.c.set_registered_model_tag(self.name, LOCK_TAG, f"{self.token}:{time.time() + self.ttl}")
        except MlflowException:
            return False
        time.sleep(self.settle)
        return True

    def __exit__(self, *exc):
        if self._holder()[0] == self.token:
            self.c.delete_registered_model_tag(self.name, LOCK_TAG)


def promote(
    name: str,
    score: Callable[[Path], float],
    benchmark_id: str,
    version: str | None = None,
    min_delta: float = 0.0,
    dry_run: bool = False,
    uri: str | None = None,
) -> dict[str, Any]:
    """Gate: ``score(model_dir)`` both challenger and champion now; move champion if the challenger wins."""
    c = client(uri)
    _require_model(c, name)
    with _Lease(c, name) if not dry_run else _NoLease():
        challenger = resolve_version(c, name, None if version else CHALLENGER, version)
        champion = _version_by_alias(c, name, CHAMPION)
        decision: dict[str, Any] = {
            "model": name,
            "challenger_version": challenger.version,
            "champion_version": champion.version if champion else None,
            "benchmark": benchmark_id,
            "min_delta": min_delta,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if champion is not None and champion.version == challenger.version:
            decision.update(promoted=False, reason="challenger is already the champion")
            return decision
        with tempfile.TemporaryDirectory(prefix="ocrtune-promote-") as tmp:
            ch_dir, _ = pull(f"models:/{name}/{challenger.version}", Path(tmp) / "challenger", uri)
            decision["challenger_score"] = score(ch_dir)
            if champion is None:
                decision.update(promoted=True, reason="no champion yet: the first version becomes champion")
            else:
                cp_dir, _ = pull(f"models:/{name}/{champion.version}", Path(tmp) / "champion", uri)
                decision["champion_score"] = score(cp_dir)
                delta = decision["challenger_score"] - decision["champion_score"]
                decision["delta"] = delta
                won = delta >= min_delta
                decision.update(
                    promoted=won,
                    reason=f"challenger {'wins' if won else 'does not win'} by {delta:+.4f} (needs {min_delta:+.4f})",
                )
        if dry_run:
            decision["dry_run"] = True
            return decision
        if decision["promoted"]:
            if champion is not None:
                c.set_registered_model_alias(name, PREVIOUS, champion.version)
            c.set_registered_model_alias(name, CHAMPION, challenger.version)
        for key in (
            "promoted",
            "reason",
            "challenger_score",
            "champion_score",
            "champion_version",
            "benchmark",
        ):
            if decision.get(key) is not None:
                c.set_model_version_tag(name, challenger.version, f"promotion.{key}", str(decision[key]))
        c.set_model_version_tag(name, challenger.version, "promotion.time", decision["time"])
        c.set_registered_model_tag(name, "ocrtune.last_promotion", json.dumps(decision)[:4900])
        return decision


class _NoLease:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def rollback(name: str, uri: str | None = None) -> dict[str, Any]:
    """Move ``champion`` back to ``previous-champion``; the demoted version keeps its tags as history."""
    c = client(uri)
    _require_model(c, name)
    with _Lease(c, name):
        prev = _version_by_alias(c, name, PREVIOUS)
        if prev is None:
            raise UserError(f"model '{name}' has no '{PREVIOUS}' alias to roll back to")
        current = _version_by_alias(c, name, CHAMPION)
        c.set_registered_model_alias(name, CHAMPION, prev.version)
        c.delete_registered_model_alias(name, PREVIOUS)
        record = {
            "rolled_back_from": current.version if current else None,
            "champion": prev.version,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if current is not None:
            c.set_model_version_tag(name, current.version, "promotion.rolled_back", record["time"])
        c.set_registered_model_tag(name, "ocrtune.last_rollback", json.dumps(record))
        return record
