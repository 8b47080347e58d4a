"""Helpers the tests share: the repository root and the real ``ocrtune`` CLI in a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

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
