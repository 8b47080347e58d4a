"""Shared fixtures: one real local stack (SeaweedFS S3 + MLflow) on free ports for the whole session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocrtune.stack import LocalStack, free_ports
from ocrtune.storage import ObjectStore, S3Settings

REPO = Path(__file__).resolve().parents[1]


def sigint_as_in_a_terminal() -> None:
    """``preexec_fn`` for a Ctrl-C test: a background job (``cmd &``, nohup, some CI runners) starts with
    SIGINT ignored and its children inherit that, so Python would never raise KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: str | Path | None = None, env: dict | None = None, timeout: float = 300):
    """Run the real ``ocrtune`` console entry point in a subprocess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ocrtune", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> LocalStack:
    s3_port, mlflow_port = free_ports(2)
    st = LocalStack(
        tmp_path_factory.mktemp("stack") / ".ocrtune",
        s3_port=s3_port,
        mlflow_port=mlflow_port,
        bucket="ocrtune-test",
    )
    st.up()
    yield st
    st.down()


@pytest.fixture(scope="session")
def stack_env(stack) -> dict[str, str]:
    return stack.env()


@pytest.fixture()
def store(stack) -> ObjectStore:
    creds = stack.credentials()
    return ObjectStore(S3Settings(stack.state.s3_url, creds.access_key, creds.secret_key, stack.state.bucket))
