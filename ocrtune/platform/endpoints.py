"""Which S3 and which MLflow a process uses: decided here, and only here.

Resolution order, for every process (a CLI command, a training rank, a pipeline step):

1. the environment, with the names MLflow and boto use:
   ``MLFLOW_TRACKING_URI``; ``MLFLOW_S3_ENDPOINT_URL`` (else ``S3_ENDPOINT_URL``, else ``AWS_ENDPOINT_URL_S3``),
   ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION`` (else ``AWS_REGION``, else
   us-east-1); and ocrtune's own ``OCRTUNE_BUCKET`` (the default bucket);
2. only as a fallback, the local stack's files (``stack.json``, ``credentials.json`` in ``$OCRTUNE_STACK_DIR``,
   default ``.ocrtune/``), for whatever the environment leaves unset.

``OCRTUNE_ENDPOINTS=env-only`` turns the fallback off (``auto``, the default, keeps it): a pipeline step in a
cluster then fails with one line naming the variable that is missing, instead of looking for ``.ocrtune/``.

``probe`` is the one health check (HTTP status of a URL within a timeout) for the stack, the registry and
training's tracker. Credentials never appear in a repr, an error or a log line (``mask``).
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ocrtune.errors import UserError
from ocrtune.platform.stack_files import DEFAULT_BUCKET, StackFiles, mask

MODE_ENV = "OCRTUNE_ENDPOINTS"
AUTO, ENV_ONLY = "auto", "env-only"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
S3_ENDPOINT_ENVS = ("MLFLOW_S3_ENDPOINT_URL", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")
ACCESS_KEY_ENV = "AWS_ACCESS_KEY_ID"
SECRET_KEY_ENV = "AWS_SECRET_ACCESS_KEY"
REGION_ENVS = ("AWS_DEFAULT_REGION", "AWS_REGION")
BUCKET_ENV = "OCRTUNE_BUCKET"
DEFAULT_REGION = "us-east-1"


# ---- the settings ------------------------------------------------------------------------------------
@dataclass
class S3Settings:
    endpoint: str  # http://host:port
    access_key: str
    secret_key: str
    bucket: str
    region: str = DEFAULT_REGION

    def __repr__(self) -> str:  # never the keys themselves: reprs end up in tracebacks and logs
        return (
            f"S3Settings(endpoint={redact_url(self.endpoint)!r}, access_key={mask(self.access_key, 4)}, "
            f"secret_key={mask(self.secret_key)}, bucket={self.bucket!r}, region={self.region!r})"
        )

    @classmethod
    def from_env(cls, bucket: str | None = None, stack_dir: str | Path | None = None) -> S3Settings:
        """The environment's S3, else the local stack's (see the module docstring): ``s3_settings``."""
        return s3_settings(bucket=bucket, stack_dir=stack_dir)


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((env[n] for n in names if env.get(n)), None)


def local_stack_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether the local stack's files may fill in what the environment leaves unset (``OCRTUNE_ENDPOINTS``)."""
    mode = (_env(env).get(MODE_ENV) or AUTO).strip().lower()
    if mode not in (AUTO, ENV_ONLY):
        raise UserError(f"{MODE_ENV}={mode!r} must be '{AUTO}' or '{ENV_ONLY}'")
    return mode == AUTO


def require_local_stack(missing: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """A one-line UserError naming the ``missing`` variables when the fallback to the local stack is off."""
    if not local_stack_allowed(env):
        verb = "is" if len(missing) == 1 else "are"
        raise UserError(
            f"{' and '.join(missing)} {verb} not set, and {MODE_ENV}={ENV_ONLY} does not read the local "
            "stack's files"
        )


def s3_settings(
    bucket: str | None = None, stack_dir: str | Path | None = None, env: Mapping[str, str] | None = None
) -> S3Settings:
    """The S3 a process uses: the environment's, the local stack's for whatever it leaves unset."""
    env = _env(env)
    endpoint = _first(env, S3_ENDPOINT_ENVS)
    access, secret = env.get(ACCESS_KEY_ENV), env.get(SECRET_KEY_ENV)
    bucket = bucket or env.get(BUCKET_ENV)
    region = _first(env, REGION_ENVS) or DEFAULT_REGION
    if not (endpoint and access and secret):
        missing = [
            name
            for name, value in (
                (f"{S3_ENDPOINT_ENVS[0]} (or {', '.join(S3_ENDPOINT_ENVS[1:])})", endpoint),
                (ACCESS_KEY_ENV, access),
                (SECRET_KEY_ENV, secret),
            )
            if not value
        ]
        require_local_stack(missing, env)
        files = StackFiles(stack_dir, env)
        creds = files.read_credentials()
        if creds is None:
            raise UserError(
                "no S3 endpoint: set MLFLOW_S3_ENDPOINT_URL (or S3_ENDPOINT_URL), AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY, or start the local stack (ocrtune stack up) in {files.root}"
            )
        state = files.load_state()
        endpoint = endpoint or state.s3_url
        access, secret = access or creds.access_key, secret or creds.secret_key
        bucket = bucket or state.bucket
    return S3Settings(endpoint, access, secret, bucket or DEFAULT_BUCKET, region)


def tracking_uri(
    uri: str | None = None, stack_dir: str | Path | None = None, env: Mapping[str, str] | None = None
) -> str:
    """The MLflow a process uses: ``uri``, else ``$MLFLOW_TRACKING_URI``, else the local stack's server (the
    port it recorded, or its default one: a stack that is not running is then reported unreachable)."""
    env = _env(env)
    uri = uri or env.get(TRACKING_URI_ENV)
    if uri:
        return uri
    require_local_stack([TRACKING_URI_ENV], env)
    return StackFiles(stack_dir, env).load_state().mlflow_url


def stack_tracking_uri(
    stack_dir: str | Path | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """The local stack's MLflow server only if a stack recorded one here (and the fallback is on), else None:
    for callers that log only when a server is configured (``train --mlflow``)."""
    if not local_stack_allowed(env):
        return None
    files = StackFiles(stack_dir, env)
    return files.load_state().mlflow_url if files.state_file.exists() else None


def client_env(s3: S3Settings, tracking: str | None = None) -> dict[str, str]:
    """The variables that point another process (a step, a server, a container) at these endpoints: the
    inverse of ``s3_settings`` / ``tracking_uri``."""
    out = {TRACKING_URI_ENV: tracking} if tracking else {}
    out.update(
        {
            S3_ENDPOINT_ENVS[0]: s3.endpoint,
            ACCESS_KEY_ENV: s3.access_key,
            SECRET_KEY_ENV: s3.secret_key,
            BUCKET_ENV: s3.bucket,
        }
    )
    if s3.region != DEFAULT_REGION:
        out[REGION_ENVS[0]] = s3.region
    return out


# ---- health ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """One GET: its HTTP status, or None and why when nothing answered."""

    url: str
    status: int | None
    reason: str = ""

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def healthy(self) -> bool:
        return self.status == 200


def probe(url: str, timeout: float = 2.0) -> Probe:
    """The health probe: HTTP status of a GET on ``url`` within ``timeout`` seconds (an error status is an
    answer too); never raises for a server that is down, slow or not speaking HTTP."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return Probe(url, resp.status)
    except urllib.error.HTTPError as exc:
        return Probe(url, exc.code)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Probe(url, None, str(reason) or type(reason).__name__)


def probe_tracking(uri: str, timeout: float = 5.0) -> Probe | None:
    """The tracking server's ``/health``; None for a URI with nothing to probe (a file store, databricks)."""
    if not uri.startswith(("http://", "https://")):
        return None
    return probe(uri.rstrip("/") + "/health", timeout)


def redact_url(url: str) -> str:
    """``url`` with the password of any ``user:password@`` replaced by ``***``, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
