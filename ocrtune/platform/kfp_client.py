"""Talking to a KFP 2.x API server: submit a run, schedule the retrain, list recent runs.

Everything goes through ``kfp.Client`` with its usual ways of authenticating: inside a cluster the pod's
service-account token (``KF_PIPELINES_SA_TOKEN_PATH`` names another token file), else ``existing_token``
or ``cookies`` (``$KFP_TOKEN`` / ``$KFP_COOKIES`` here). Before the client is built the host is probed
once (``/apis/v2beta1/healthz``) so a host that does not answer is one line, not kfp's 25 s of retries.

Parameters come as ``k=v`` strings and are checked against the compiled package's declared parameters
(their KFP types): an unknown name or a wrong type is a ``UserError``. ``schedule`` never leaves a
recurring run without its pipeline version, nor a version it uploaded without its recurring run.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import yaml

from ocrtune.errors import UserError

HEALTHZ = "/apis/v2beta1/healthz"
TOKEN_ENV = "KFP_TOKEN"
COOKIES_ENV = "KFP_COOKIES"
PROBE_TIMEOUT_S = 5.0
DEFAULT_EXPERIMENT = "ocrtune"
RUN_ID_TAG = "pipeline_run_id"
TRUE_WORDS, FALSE_WORDS = {"true", "1", "yes", "on"}, {"false", "0", "no", "off"}


@dataclass(frozen=True)
class RunRow:
    """One line of ``ocrtune pipeline runs``."""

    run_id: str
    name: str
    state: str
    created_at: str
    registered: str  # NAME/VERSION the register step returned, "-" when not (yet) known


def declared_parameters(package: str | Path) -> dict[str, str]:
    """name -> KFP parameter type (STRING, NUMBER_INTEGER, NUMBER_DOUBLE, BOOLEAN) of the compiled package."""
    doc = next(yaml.safe_load_all(Path(package).read_text(encoding="utf-8")))  # then the platform spec
    params = doc.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return {name: spec["parameterType"] for name, spec in params.items()}


def coerce(name: str, raw: str, kind: str) -> Any:
    """``raw`` as the KFP type ``kind``; a value that is not one is a ``UserError`` naming the parameter."""
    word = raw.strip()
    try:
        if kind == "NUMBER_INTEGER":
            return int(word)
        if kind == "NUMBER_DOUBLE":
            return float(word)
    except ValueError:
        raise UserError(
            f"--param {name}={raw!r}: must be {'an integer' if 'INT' in kind else 'a number'}"
        ) from None
    if kind == "BOOLEAN":
        if word.lower() in TRUE_WORDS | FALSE_WORDS:
            return word.lower() in TRUE_WORDS
        raise UserError(f"--param {name}={raw!r}: must be true or false")
    return raw


def parse_params(pairs: list[str] | tuple[str, ...], declared: dict[str, str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> typed values; an unknown name, a pair without ``=`` or a wrong type: ``UserError``."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UserError(f"--param {pair!r}: expected NAME=VALUE")
        if name not in declared:
            raise UserError(
                f"unknown pipeline parameter {name!r} (parameters: {', '.join(sorted(declared))})"
            )
        values[name] = coerce(name, raw, declared[name])
    return values


def check_cron(cron: str) -> str:
    """KFP's cron has 6 fields (seconds first: ``0 0 3 * * 0`` = Sundays 03:00); anything else: ``UserError``."""
    fields = cron.split()
    if len(fields) != 6:
        raise UserError(
            f"--cron {cron!r} has {len(fields)} fields; KFP's cron has 6 (second minute hour day month weekday), "
            "e.g. '0 0 3 * * 0'"
        )
    return " ".join(fields)


def probe(host: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """One GET of the healthz endpoint: any HTTP answer (even 401/403) counts; no answer is a ``UserError``."""
    url = host.rstrip("/") + HEALTHZ
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--host {host!r}: expected an http:// or https:// URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"KFP host {host} does not answer ({reason})") from None


def connect(host: str, namespace: str = "kubeflow") -> kfp.Client:
    """A ``kfp.Client`` for ``host`` after a probe; token/cookies from the environment when set."""
    probe(host)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return kfp.Client(
            host=host.rstrip("/"),
            namespace=namespace,
            existing_token=os.environ.get(TOKEN_ENV) or None,
            cookies=os.environ.get(COOKIES_ENV) or None,
        )


@contextlib.contextmanager
def quiet():
    """kfp.Client prints links and logs through ``logging``: kept off the command's own output."""
    level = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(level)


def api_error(action: str, exc: kfp_server_api.ApiException) -> UserError:
    """An API answer that is an error, as one line (the server's message when it sent one)."""
    message = ""
    with contextlib.suppress(ValueError, TypeError):
        message = json.loads(exc.body or "{}").get("message", "")
    return UserError(f"{action} failed: HTTP {exc.status} {message or exc.reason}".strip())


def submit(
    client: kfp.Client, package: str | Path, params: dict[str, Any], experiment: str, run_name: str
) -> str:
    """Create one run of the compiled ``package`` in ``experiment``; returns its run id."""
    try:
        with quiet():
            result = client.create_run_from_pipeline_package(
                str(package), arguments=params, run_name=run_name, experiment_name=experiment
            )
    except kfp_server_api.ApiException as exc:
        raise api_error("creating the run", exc) from None
    return result.run_id


def upload_version(client: kfp.Client, package: str | Path, pipeline_name: str, version_name: str):
    """Upload ``package`` as a new version of ``pipeline_name`` (the pipeline too if it is new).

    Returns ``(pipeline_id, version_id, created_pipeline)``."""
    with quiet():
        pipeline_id = client.get_pipeline_id(pipeline_name)
        if pipeline_id is None:
            pipeline = client.upload_pipeline(str(package), pipeline_name=pipeline_name)
            versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1)
            version = (versions.pipeline_versions or [None])[0]
            if version is None:
                raise UserError(f"uploading pipeline {pipeline_name!r}: the server made no version")
            return pipeline.pipeline_id, version.pipeline_version_id, True
        version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
        return pipeline_id, version.pipeline_version_id, False


def schedule(
    client: kfp.Client,
    package: str | Path,
    *,
    pipeline_name: str,
    version_name: str,
    experiment: str,
    job_name: str,
    cron: str,
    params: dict[str, Any],
    max_concurrency: int,
    no_catchup: bool,
) -> dict[str, str]:
    """A recurring run on a freshly uploaded pipeline version; the version is removed again when the
    recurring run cannot be created (nothing half-created). Returns the ids."""
    cron = check_cron(cron)
    if max_concurrency < 1:
        raise UserError(f"--max-concurrency {max_concurrency}: must be at least 1")
    try:
        pipeline_id, version_id, created = upload_version(client, package, pipeline_name, version_name)
    except kfp_server_api.ApiException as exc:
        raise api_error("uploading the pipeline", exc) from None
    try:
        with quiet():
            experiment_id = client.create_experiment(experiment).experiment_id
            job = client.create_recurring_run(
                experiment_id,
                job_name,
                cron_expression=cron,
                max_concurrency=max_concurrency,
                no_catchup=no_catchup,
                params=params,
                pipeline_id=pipeline_id,
                version_id=version_id,
            )
    except kfp_server_api.ApiException as exc:
        undo_upload(client, pipeline_id, version_id, created)
        raise api_error("creating the recurring run", exc) from None
    return {
        "recurring_run_id": job.recurring_run_id,
        "pipeline_id": pipeline_id,
        "pipeline_version_id": version_id,
    }


def undo_upload(client: kfp.Client, pipeline_id: str, version_id: str, created_pipeline: bool) -> None:
    """Delete the version this command uploaded (and the pipeline when it created it)."""
    with quiet(), contextlib.suppress(kfp_server_api.ApiException):
        client.delete_pipeline_version(pipeline_id, version_id)
        if created_pipeline:
            client.delete_pipeline(pipeline_id)


def registered_by_tag(mlflow_client: Any) -> Callable[[str], str]:
    """run id -> NAME/VERSION the register step tagged with ``pipeline_run_id`` in MLflow ("-" when none).

    The v2beta1 run reports artifacts only, not the register step's returned string, so the registry is
    asked: every version the step registers carries its KFP run's id (``{{$.pipeline_job_uuid}}``)."""

    def lookup(run_id: str) -> str:
        versions = mlflow_client.search_model_versions(f"tags.{RUN_ID_TAG} = '{run_id}'")
        return ", ".join(f"{v.name}/{v.version}" for v in versions) or "-"

    return lookup


def recent_runs(
    client: kfp.Client,
    limit: int = 20,
    experiment: str | None = None,
    registered: Callable[[str], str] | None = None,
) -> list[RunRow]:
    """The newest ``limit`` runs (of ``experiment`` when given), newest first; ``registered``: run id ->
    the registered version (:func:`registered_by_tag`), else the column says "-"."""
    try:
        with quiet():
            experiment_id = (
                client.get_experiment(experiment_name=experiment).experiment_id if experiment else None
            )
            response = client.list_runs(
                page_size=limit, sort_by="created_at desc", experiment_id=experiment_id
            )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except kfp_server_api.ApiException as exc:
        raise api_error("listing runs", exc) from None
    return [
        RunRow(
            run_id=run.run_id,
            name=run.display_name or "",
            state=str(run.state or "UNKNOWN"),
            created_at=run.created_at.isoformat()
            if hasattr(run.created_at, "isoformat")
            else str(run.created_at),
            registered=registered(run.run_id) if registered else "-",
        )
        for run in response.runs or []
    ]
