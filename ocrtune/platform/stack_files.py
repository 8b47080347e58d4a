"""The files the local stack leaves for its clients: ``stack.json`` (ports, bucket) and ``credentials.json``.

The stack (``ocrtune.platform.stack``) writes them; ``ocrtune.platform.endpoints`` reads them when the
environment does not say which S3 and which MLflow to use. Kept apart from both so the client side needs
nothing of the server side (no process handling, no object store): the layering is
stack -> storage -> endpoints -> stack_files.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ocrtune.files import write_text

DEFAULT_DIR_ENV = "OCRTUNE_STACK_DIR"
DEFAULT_DIR = ".ocrtune"
DEFAULT_S3_PORT = 8333
DEFAULT_MLFLOW_PORT = 5000
DEFAULT_BUCKET = "ocrtune"
HOST = "127.0.0.1"


def default_stack_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$OCRTUNE_STACK_DIR``, else ``.ocrtune/`` in the current directory."""
    env = os.environ if env is None else env
    return Path(env.get(DEFAULT_DIR_ENV) or DEFAULT_DIR).absolute()


def mask(secret: str | None, keep: int = 0) -> str:
    """What a repr, an error or a log line may show of a credential: its first ``keep`` characters at most."""
    if not secret:
        return "''"
    return f"'{secret[:keep]}***'" if keep and len(secret) > 2 * keep else "'***'"


@dataclass
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # never the keys themselves: reprs end up in tracebacks and logs
        return f"Credentials(access_key={mask(self.access_key, 4)}, secret_key={mask(self.secret_key)})"


@dataclass
class StackState:
    """What ``up`` decided, kept in ``stack.json`` so ``status`` and ``down`` need no flags."""

    s3_port: int = DEFAULT_S3_PORT
    mlflow_port: int = DEFAULT_MLFLOW_PORT
    bucket: str = DEFAULT_BUCKET
    weed_ports: dict[str, int] = field(default_factory=dict)

    @property
    def s3_url(self) -> str:
        return f"http://{HOST}:{self.s3_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{HOST}:{self.mlflow_port}"


class StackFiles:
    """The stack directory's client-facing files (the default one is ``default_stack_dir()``)."""

    def __init__(self, root: str | Path | None = None, env: Mapping[str, str] | None = None):
        self.root = Path(root).absolute() if root else default_stack_dir(env)

    @property
    def state_file(self) -> Path:
        return self.root / "stack.json"

    @property
    def credentials_file(self) -> Path:
        return self.root / "credentials.json"

    def load_state(self) -> StackState:
        """The recorded state; the defaults when there is none (or it cannot be read)."""
        try:
            return StackState(**json.loads(self.state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return StackState()

    def save_state(self, state: StackState) -> None:
        write_text(self.state_file, json.dumps(asdict(state), indent=2))

    def read_credentials(self) -> Credentials | None:
        """The stack's S3 identity, or None when the stack never started here."""
        if not self.credentials_file.exists():
            return None
        return Credentials(**json.loads(self.credentials_file.read_text()))

    def ensure_credentials(self) -> Credentials:
        """The S3 identity of this stack, created once with random keys in a 0600 file.

        Created with O_EXCL (not written and renamed) so two racing ``up``s cannot each keep other keys."""
        if not self.credentials_file.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            creds = {"access_key": "ocrtune" + secrets.token_hex(6), "secret_key": secrets.token_urlsafe(30)}
            fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                json.dump(creds, fh)
        return self.read_credentials()
