"""The TrainJob path end to end: the launcher against the Kubernetes stand-in, which really runs the trainer
command on 2 nodes x 1 process with the torch-distributed runtime's environment; data from and output to the
real local S3 (``stack``), credentials only from the stand-in's Secrets (the nodes run with
OCRTUNE_ENDPOINTS=env-only and their own working directory and cache). A preemption (SIGTERM to the nodes:
exit 75) is "preempted" and a rerun with --resume completes and publishes; a failing rank is "failed" with its
last lines; SIGTERM to the launcher deletes the TrainJob."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.kube_standin import KubeStandin
from support.train_data import cli_env, config_yaml

from ocrtune.platform.launcher import TrainSpec, launch
from ocrtune.platform.storage import ObjectStore, S3Settings
from ocrtune.training import checkpoint as ckpt

NS = "kubeflow"
VENV_BIN = str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def published(data, stack) -> dict:
    """The training LMDBs published to the stack's S3, as the pipeline's build step leaves them."""
    creds = stack.credentials()
    store = ObjectStore(
        S3Settings(stack.state.s3_url, creds.access_key, creds.secret_key, stack.state.bucket)
    )
    store.ensure_bucket()
    for split in ("train", "val"):
        store.publish_tree(data[split], f"standin/lmdb/{split}")
    return {"store": store, "bucket": stack.state.bucket}


@pytest.fixture()
def kube(tmp_path, stack_env, monkeypatch):
    env = {
        k: v
        for k, v in cli_env().items()
        if not k.startswith(("AWS_", "MLFLOW_", "S3_", "OCRTUNE_BUCKET", "KUBECONFIG"))
    }
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", OCRTUNE_ENDPOINTS="env-only", OCRTUNE_THREADS="1")
    env["OCRTUNE_RENDEZVOUS_TIMEOUT"] = "60"
    s3_keys = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OCRTUNE_BUCKET")
    standin = KubeStandin(
        tmp_path / "cluster",
        secrets_={
            "ocrtune-s3": {k: stack_env[k] for k in s3_keys},
            "ocrtune-mlflow": {"MLFLOW_TRACKING_URI": stack_env["MLFLOW_TRACKING_URI"]},
        },
        base_env=env,
    ).start()
    monkeypatch.setenv("KUBECONFIG", str(standin.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield standin
    standin.stop()


def train_args(cfg: Path, store: ObjectStore, run: str, val: str = "standin/lmdb/val") -> list[str]:
    """The arguments of a trainer that sees none of this machine's files: everything through S3."""
    bucket = store.bucket
    store.put_file(cfg, f"standin/{run}/config.yaml")
    return [
        "--config", f"s3://{bucket}/standin/{run}/config.yaml",
        "--train", f"s3://{bucket}/standin/lmdb/train",
        "--val", f"s3://{bucket}/{val}",
        "--out", "out",  # in the pod's own working directory
        "--checkpoint-dir", f"s3://{bucket}/standin/{run}/ckpt",
        "--publish", f"s3://{bucket}/standin/{run}/train",
        "--no-mlflow", "--no-progress",
    ]  # fmt: skip


def spec(name: str, args: list[str], **kw) -> TrainSpec:
    base = dict(
        backend="trainjob", train_args=args, num_nodes=2, nproc_per_node=1, image="ocrtune-train:test"
    )
    base.update(name=name, namespace=NS, poll_s=0.5, timeout_s=300, **kw)
    return TrainSpec(**base)


def wait_for(what, predicate, timeout: float = 120, poll: float = 0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def test_preempted_trainjob_is_resumable_and_the_rerun_completes_and_publishes(
    data, published, kube, tmp_path
):
    store, bucket = published["store"], published["bucket"]
    cfg = config_yaml(tmp_path / "c.yaml", data, checkpoint_interval=1, val_interval=1000, max_steps=300)
    args = train_args(cfg, store, "pre")
    result, lines = {}, []
    t = threading.Thread(target=lambda: result.update(r=launch(spec("ft-pre", args), echo=lines.append)))
    t.start()
    wait_for("a checkpoint in S3", lambda: store.exists("standin/pre/ckpt/checkpoint.pth"), timeout=150)
    kube.preempt("trainjobs", NS, "ft-pre")  # the node pool is reclaimed: SIGTERM to every node
    t.join(120)
    r = result["r"]
    assert r.status == "preempted" and r.exit_code == 75, (r, lines[-20:])
    assert any("stopped by SIGTERM after step" in line for line in lines)  # node 0's log, streamed
    store.get_file("standin/pre/ckpt/checkpoint.pth", tmp_path / "ck.pth")
    step = ckpt.load(tmp_path / "ck.pth")["step"]
    assert step >= 1 and not store.is_published("standin/pre/train")  # stopped: nothing published

    lines.clear()
    again = launch(spec("ft-pre-2", [*args, "--resume", "--max-steps", str(step + 2)]), echo=lines.append)
    assert again.status == "succeeded" and again.exit_code == 0, again
    assert any(f"finished at step {step + 2}" in line for line in lines)
    manifest = store.manifest("standin/pre/train")
    assert {"train_result.json", "best_accuracy.pth", "log_train.txt"} <= set(manifest["files"])
    assert manifest["meta"]["step"] == step + 2 and manifest["meta"]["status"] == "finished"
    log = store.get_bytes("standin/pre/train/log_train.txt").decode()
    assert (
        "2 rank(s)" in log
        and f"resumed from s3://{bucket}/standin/pre/ckpt/checkpoint.pth at step {step}" in log
    )
    job = kube.job("trainjobs", NS, "ft-pre-2")
    assert [c["type"] for c in job.obj["status"]["conditions"]][-1] == "Complete"
    node1 = next(p for p in job.pods if p.labels["batch.kubernetes.io/job-completion-index"] == "1")
    assert node1.env["PET_NNODES"] == "2" and node1.env["PET_NODE_RANK"] == "1"
    assert node1.env["PET_MASTER_ADDR"] == "127.0.0.1" and "AWS_SECRET_ACCESS_KEY" in node1.env
    assert list((node1.workdir / "home" / ".cache" / "ocrtune" / "data" / bucket).iterdir())  # fetched itself


def test_pytorchjob_master_and_worker_train_and_publish(data, published, kube, tmp_path):
    store = published["store"]
    cfg = config_yaml(tmp_path / "c.yaml", data, max_steps=2, val_interval=2, checkpoint_interval=2)
    lines = []
    r = launch(spec("pj-1", train_args(cfg, store, "pj"), backend="pytorchjob"), echo=lines.append)
    assert r.status == "succeeded", (r, lines[-20:])
    assert any(line.startswith("pj-1-master-0: finished at step 2") for line in lines)
    job = kube.job("pytorchjobs", NS, "pj-1")
    assert [p.env["RANK"] for p in job.pods] == ["0", "1"] and job.pods[1].env["WORLD_SIZE"] == "2"
    assert [c["type"] for c in job.obj["status"]["conditions"]][-1] == "Succeeded"
    assert "2 rank(s)" in store.get_bytes("standin/pj/train/log_train.txt").decode()


def test_a_failing_rank_fails_the_trainjob_with_its_last_lines(data, published, kube, tmp_path):
    cfg = config_yaml(tmp_path / "c.yaml", data, max_steps=2)
    args = train_args(cfg, published["store"], "fail", val="standin/lmdb/nowhere")
    r = launch(spec("ft-fail", args), echo=lambda line: None)
    assert r.status == "failed" and r.exit_code == 2, r
    assert r.logs_tail.startswith("ft-fail-node-0-")
    assert "standin/lmdb/nowhere is not published" in r.logs_tail
    assert "FailedJobs" in r.message


def test_sigterm_to_the_launcher_deletes_the_trainjob(data, published, kube, tmp_path):
    cfg = config_yaml(tmp_path / "c.yaml", data, max_steps=300, val_interval=1000)
    spec_file = tmp_path / "spec.json"
    fields = spec("ft-cancel", train_args(cfg, published["store"], "cancel")).__dict__
    spec_file.write_text(json.dumps(fields), "utf-8")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ocrtune.platform.launcher", str(spec_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert "created TrainJob kubeflow/ft-cancel" in proc.stdout.readline()
        job = wait_for("running pods", lambda: kube.job("trainjobs", NS, "ft-cancel"))
        wait_for("both nodes", lambda: len(job.pods) == 2 and all(p.proc for p in job.pods))
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, out
    assert "deleted TrainJob kubeflow/ft-cancel (SIGTERM)" in out
    assert (
        "DELETE",
        f"/apis/trainer.kubeflow.org/v1alpha1/namespaces/{NS}/trainjobs/ft-cancel",
    ) in kube.requests
    wait_for("the job gone", lambda: kube.job("trainjobs", NS, "ft-cancel") is None, timeout=60)
    assert all(p.proc.poll() is not None for p in job.pods)
