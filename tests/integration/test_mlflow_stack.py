"""An MLflow run logged through the local stack lands its artifacts in the S3 bucket."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import mlflow
mlflow.set_experiment("stack-test")
with mlflow.start_run() as run:
    mlflow.log_param("p", 1)
    mlflow.log_metric("m", 0.5)
    with open("hello.txt", "w") as fh:
        fh.write("hello from ocrtune")
    mlflow.log_artifact("hello.txt", artifact_path="notes")
    print("RUN_ID=" + run.info.run_id)
"""


def test_mlflow_artifact_lands_in_s3(stack, stack_env, store, tmp_path):
    # a client that knows only the tracking URI: artifacts go through the server's proxy to S3
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = stack_env["MLFLOW_TRACKING_URI"]
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run_id = next(ln for ln in r.stdout.splitlines() if ln.startswith("RUN_ID=")).split("=", 1)[1]
    keys = [k for k in store.list("mlflow/") if run_id in k]
    assert any(k.endswith("notes/hello.txt") for k in keys), keys
    key = next(k for k in keys if k.endswith("notes/hello.txt"))
    assert store.get_bytes(key) == b"hello from ocrtune"
