"""train: its compiled spec, and its body for real: english_g2 fine-tuned 2 steps by torchrun on the tiny LMDBs."""

import json
import sys
from pathlib import Path

import pytest
from ocrtune.components.image import image
from ocrtune.components.train import train
from support.kfp_chain import checkpoint, compiled, executor, interface, lmdb
from support.kube_standin import KubeStandin
from support.train_data import cli_env

from ocrtune.errors import UserError
from ocrtune.platform import kfp_steps


def test_spec(tmp_path):
    spec = compiled(train, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {
        "profile": "STRING",
        "base_model": "STRING",
        "charset": "STRING",
        "steps": "NUMBER_INTEGER",
        "batch_size": "NUMBER_INTEGER",
        "lr": "NUMBER_DOUBLE",
        "num_nodes": "NUMBER_INTEGER",
        "gpus_per_node": "NUMBER_INTEGER",
        "backend": "STRING",
        "namespace": "STRING",
    }
    assert arts_in == {"lmdb": "system.Dataset"}
    assert arts_out == {"checkpoint": "system.Model", "curves": "system.HTML", "metrics": "system.Metrics"}


def test_body_trains_and_draws_the_curves(tmp_path_factory):
    out, result = checkpoint(tmp_path_factory.getbasetemp())
    assert {"best_accuracy.pth", "train_result.json", "log_train.txt"} <= {p.name for p in out.iterdir()}
    saved = json.loads((out / "train_result.json").read_text())
    assert saved["step"] == 2 and result["metrics"]["steps"] == 2.0
    assert result["base_model"] == saved["base_model"] == "english_g2"
    assert result["metrics"]["best_accuracy"] == saved["best_accuracy"]
    html = (out.parent / "curves.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html
    assert "local: torchrun with 1 rank(s)" in (out.parent / "train.log").read_text()


def test_a_bad_setting_is_one_line(tmp_path_factory, tmp_path):
    args = dict(profile="tiny-en", base_model="english_g2", charset="english_g2", batch_size=8, lr=0.001)
    args.update(
        num_nodes=1,
        gpus_per_node=1,
        namespace="kubeflow",
        lmdb_path=str(lmdb(tmp_path_factory.getbasetemp())),
    )
    paths = dict(checkpoint_path=str(tmp_path / "c"), curves_path=str(tmp_path / "h"))
    with pytest.raises(UserError, match="max_steps must be > 0"):
        kfp_steps.train(**args, **paths, steps=0, backend="local")
    with pytest.raises(UserError, match="backend 'slurm'"):
        kfp_steps.train(**args, **paths, steps=1, backend="slurm")


@pytest.fixture()
def kube(tmp_path, stack_env, monkeypatch):
    """The Kubernetes stand-in (tests/support/kube_standin.py): it really runs the TrainJob's trainer command,
    with credentials only from its Secrets and no view of this machine's files."""
    env = {
        k: v for k, v in cli_env().items() if not k.startswith(("AWS_", "MLFLOW_", "S3_", "OCRTUNE_BUCKET"))
    }
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", OCRTUNE_ENDPOINTS="env-only")
    env.update(OCRTUNE_THREADS="1", OCRTUNE_RENDEZVOUS_TIMEOUT="60")
    keys = ("MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OCRTUNE_BUCKET")
    secrets = {
        "ocrtune-s3": {k: stack_env[k] for k in keys},
        "ocrtune-mlflow": {"MLFLOW_TRACKING_URI": stack_env["MLFLOW_TRACKING_URI"]},
    }
    standin = KubeStandin(tmp_path / "cluster", secrets_=secrets, base_env=env).start()
    monkeypatch.setenv("KUBECONFIG", str(standin.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    yield standin
    standin.stop()


@pytest.mark.slow
def test_body_trains_on_a_trainjob_through_object_storage(kube, tmp_path_factory, tmp_path, monkeypatch):
    # the GPU pool's placement, as the compiled pipeline puts it in the train task's environment
    monkeypatch.setenv("OCRTUNE_GPU_NODE_SELECTOR", '{"ocrtune.dev/pool": "gpu"}')
    monkeypatch.setenv(
        "OCRTUNE_GPU_TOLERATIONS", '[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'
    )
    monkeypatch.setenv("OCRTUNE_TRAIN_TIMEOUT_S", "3600")
    args = dict(profile="tiny-en", base_model="english_g2", charset="english_g2", steps=2, batch_size=8)
    args.update(lr=0.00005, num_nodes=1, gpus_per_node=0, backend="trainjob", namespace="kubeflow")
    result = kfp_steps.train(
        **args,
        lmdb_path=str(lmdb(tmp_path_factory.getbasetemp())),
        checkpoint_path=str(tmp_path / "checkpoint"),
        curves_path=str(tmp_path / "curves.html"),
        image="ocrtune-train:test",
    )
    saved = json.loads((tmp_path / "checkpoint" / "train_result.json").read_text())
    assert saved["step"] == 2 and (tmp_path / "checkpoint" / "best_accuracy.pth").is_file()
    assert result["base_model"] == "english_g2"
    assert any(kind == "POST" and "trainjobs" in path for kind, path in kube.requests), kube.requests
    (job,) = [j.obj for (plural, _, _), j in kube.jobs.items() if plural == "trainjobs"]
    (patch,) = job["spec"]["runtimePatches"]
    pod = json.dumps(patch)
    assert '"ocrtune.dev/pool": "gpu"' in pod and '"nvidia.com/gpu"' in pod, patch
