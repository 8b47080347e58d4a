"""Pretrained starts: the offline english_g2, the korean_g2 download (served on 127.0.0.1), checked loading."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

from ocrtune.files import file_digest
from ocrtune.model.pretrained import (
    english_g2_path,
)
from ocrtune.platform.stack import free_ports


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A real HTTP server on 127.0.0.1 serving korean_g2.zip (the real english_g2 weights, renamed)."""
    root = tmp_path_factory.mktemp("hub")
    pth = english_g2_path()
    with zipfile.ZipFile(root / "korean_g2.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(pth, "korean_g2.pth")
    (root / "notazip.zip").write_bytes(b"<html>rate limited</html>")
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(base + "/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                os.kill(proc.pid, signal.SIGTERM)
                pytest.fail("http.server did not start")
            time.sleep(0.1)
    yield base, file_digest(pth, "md5")
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
