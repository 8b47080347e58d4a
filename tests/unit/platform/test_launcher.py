"""The launcher's objects and protocol without training: the TrainJob and PyTorchJob built from a TrainSpec and
read back through the Trainer / Training Operator API models field for field (the models drop what they do
not know, so a dropped field must show), bad input as one line each with nothing created, and the API calls
against the Kubernetes stand-in (409 on an existing name, a runtime the cluster lacks, no PyTorchJob API, an
API that does not answer)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from kubeflow.training import ApiClient as TrainingApiClient
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from support.cli import run_cli
from support.kube_standin import KubeStandin

from ocrtune.errors import UserError
from ocrtune.platform import launcher, pytorchjob, trainjob
from ocrtune.platform.launcher import LaunchResult, TrainSpec, launch
from ocrtune.platform.stack import free_ports
from ocrtune.training import node, remote

ARGS = ["--config", "tiny", "--train", "s3://b/lmdb/train", "--val", "s3://b/lmdb/val", "--out", "/tmp/out"]
ARGS += ["--publish", "s3://b/runs/1/train", "--checkpoint-dir", "s3://b/runs/1/ckpt"]
GPU_POOL = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def spec(**kw) -> TrainSpec:
    base = dict(
        backend="trainjob",
        train_args=list(ARGS),
        num_nodes=2,
        nproc_per_node=4,
        gpus_per_node=4,
        image="ghcr.io/ocrtune/ocrtune-train:0.1.0",
        name="ft-1",
        node_selector=dict(GPU_POOL),
        tolerations=copy.deepcopy(TOLERATIONS),
        timeout_s=7200,
    )
    base.update(kw)
    return TrainSpec(**base)


def trainjob_round_trip(body: dict) -> dict:
    return TrainerV1alpha1TrainJob.from_dict(body).to_dict()


def pytorchjob_round_trip(body: dict) -> dict:
    class Resp:
        data = json.dumps(body)

    api = TrainingApiClient()
    return api.sanitize_for_serialization(api.deserialize(Resp(), "KubeflowOrgV1PyTorchJob"))


# ---- the objects -------------------------------------------------------------------------------------------
def test_trainjob_has_runtime_nodes_gpus_image_command_secrets_and_placement():
    body = trainjob.build_trainjob(spec().check())
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["name"] == "ft-1" and body["metadata"]["namespace"] == "kubeflow"
    s = body["spec"]
    assert s["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert s["activeDeadlineSeconds"] == 7200
    t = s["trainer"]
    assert t["image"] == "ghcr.io/ocrtune/ocrtune-train:0.1.0"
    assert t["command"] == ["ocrtune", "train"] and t["args"] == ARGS
    assert t["numNodes"] == 2 and t["numProcPerNode"] == 4
    assert t["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": "4"}, "requests": {"nvidia.com/gpu": "4"}}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in t["env"]}
    assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "ocrtune-s3", "key": "AWS_SECRET_ACCESS_KEY"}
    assert refs["MLFLOW_TRACKING_URI"] == {"name": "ocrtune-mlflow", "key": "MLFLOW_TRACKING_URI"}
    assert refs["OCRTUNE_BUCKET"]["optional"] is True
    assert all("value" not in e for e in t["env"])  # credentials never in the object
    (patch,) = s["runtimePatches"]
    assert "podTemplateOverrides" not in s and patch["manager"] == "ocrtune.io/launcher"
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert rjob["name"] == "node"
    pod = rjob["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == GPU_POOL and pod["tolerations"] == TOLERATIONS
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    assert pod["containers"] == [
        {"name": "node", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}]}
    ]


def test_trainjob_round_trips_through_the_trainer_api_model_without_losing_a_field():
    for s in (
        spec(),
        spec(gpus_per_node=0, node_selector={}, tolerations=[], timeout_s=0, env_from_secrets=[]),
    ):
        body = trainjob.build_trainjob(s.check())
        assert trainjob_round_trip(body) == body


def test_the_round_trip_comparison_catches_a_field_the_model_drops():
    body = trainjob.build_trainjob(spec().check())
    body["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}]}]  # gone in Trainer 2.3
    assert "podTemplateOverrides" not in trainjob_round_trip(body)["spec"]
    assert trainjob_round_trip(body) != body
    pj = pytorchjob.build_pytorchjob(spec(backend="pytorchjob", nproc_per_node=1).check())
    pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["nodeSelectorTerms"] = ["x"]
    assert pytorchjob_round_trip(pj) != pj


def test_pytorchjob_has_master_and_workers_secrets_gpus_and_placement_and_round_trips():
    body = pytorchjob.build_pytorchjob(spec(backend="pytorchjob", num_nodes=3, nproc_per_node=1).check())
    assert body["apiVersion"] == "kubeflow.org/v1" and body["kind"] == "PyTorchJob"
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    for r in replicas.values():
        pod = r["template"]["spec"]
        (c,) = pod["containers"]
        assert c["name"] == "pytorch" and c["command"] == ["ocrtune", "train"] and c["args"] == ARGS
        assert c["envFrom"] == [
            {"secretRef": {"name": "ocrtune-s3"}},
            {"secretRef": {"name": "ocrtune-mlflow"}},
        ]
        assert c["resources"]["limits"] == {"nvidia.com/gpu": "4"}
        assert pod["nodeSelector"] == GPU_POOL and pod["tolerations"] == TOLERATIONS
    assert body["spec"]["runPolicy"]["activeDeadlineSeconds"] == 7200
    assert pytorchjob_round_trip(body) == body
    single = pytorchjob.build_pytorchjob(spec(backend="pytorchjob", num_nodes=1, nproc_per_node=1).check())
    assert "Worker" not in single["spec"]["pytorchReplicaSpecs"]
    assert pytorchjob_round_trip(single) == single


def test_secrets_by_name_or_with_their_keys():
    env = trainjob.secret_env(["ocrtune-s3", "extra-creds:HF_TOKEN,WANDB_API_KEY"])
    names = [e["name"] for e in env]
    assert names[-2:] == ["HF_TOKEN", "WANDB_API_KEY"] and "AWS_ACCESS_KEY_ID" in names
    assert env[-1]["valueFrom"]["secretKeyRef"] == {"name": "extra-creds", "key": "WANDB_API_KEY"}


def test_a_generated_name_is_a_valid_object_name():
    s = spec(name="").check()
    assert s.name.startswith("ocrtune-train-") and trainjob.check_name(s.name) == s.name


# ---- bad input: one line each ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "slurm"}, "must be one of local, trainjob, pytorchjob"),
        ({"num_nodes": 0}, "num_nodes 0: must be an integer >= 1"),
        ({"nproc_per_node": "2"}, "nproc_per_node '2'"),
        ({"gpus_per_node": -1}, "gpus_per_node -1"),
        ({"timeout_s": -5}, "timeout_s -5"),
        ({"name": "Fine_Tune"}, "job name 'Fine_Tune'"),
        ({"name": "x" * 64}, "must be 1-63"),
        ({"namespace": "bad ns"}, "namespace 'bad ns'"),
        ({"image": ""}, "no trainer image"),
        (
            {"train_args": [a.replace("s3://b/lmdb/train", "/data/train") for a in ARGS]},
            "--train /data/train is a local path",
        ),
        (
            {"train_args": [a for a in ARGS if a not in ("--publish", "s3://b/runs/1/train")]},
            "need --publish",
        ),
        ({"tolerations": [{"key": "a", "effects": "NoSchedule"}]}, "only effect, key, operator"),
        ({"node_selector": {"pool": 1}}, "keys and values must be strings"),
        ({"env_from_secrets": ["my-secret"]}, "name its keys as my-secret:KEY1,KEY2"),
        ({"env_from_secrets": ["s:not-a-var"]}, "must be environment variable names"),
        ({"backend": "local", "num_nodes": 2}, "the local backend runs on one node"),
    ],
)
def test_bad_specs_are_one_line_user_errors(changes, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as err:
        s = spec(**changes).check()
        trainjob.build_trainjob(s)
    assert "\n" not in str(err.value)


def test_pytorchjob_runs_one_rank_per_pod_and_takes_whole_secrets():
    with pytest.raises(UserError, match="one rank per pod"):
        pytorchjob.build_pytorchjob(spec(backend="pytorchjob", nproc_per_node=2).check())
    with pytest.raises(UserError, match="takes whole Secrets"):
        pytorchjob.build_pytorchjob(
            spec(backend="pytorchjob", nproc_per_node=1, env_from_secrets=["a:B"]).check()
        )


def test_object_storage_urls():
    assert remote.split_s3("s3://bucket/a/b/") == ("bucket", "a/b")
    for bad in ("s3://bucket", "s3:///x", "/local/path", "gs://b/p"):
        with pytest.raises(UserError, match="s3://bucket/prefix"):
            remote.split_s3(bad)
    assert remote.fetch_input("/local/lmdb") == "/local/lmdb"


def test_a_node_exits_75_only_when_all_its_failed_ranks_were_preempted():
    class F:
        def __init__(self, code):
            self.exitcode = code

    assert node.failure_exit({0: F(75), 1: F(75)}) == 75
    assert node.failure_exit({0: F(75), 1: F(2)}) == 2
    assert node.failure_exit({}) == 1
    assert node.is_trainjob_node({"PET_NNODES": "2", "PET_NODE_RANK": "1"})
    assert not node.is_trainjob_node({"PET_NNODES": "2", "RANK": "3"})  # a rank under torchrun
    assert not node.is_trainjob_node({})


def test_launcher_main_reports_a_bad_spec_in_one_line_exit_2(tmp_path):
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"backend": "trainjob", "nodes": 2}), "utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "ocrtune.platform.launcher", str(f)], capture_output=True, text=True
    )
    assert (
        r.returncode == 2 and r.stderr.count("\n") == 1 and "unexpected keyword argument 'nodes'" in r.stderr
    )


# ---- the protocol against the stand-in, without training ---------------------------------------------------
@pytest.fixture()
def kube(tmp_path, monkeypatch):
    standin = KubeStandin(tmp_path / "cluster").start()
    monkeypatch.setenv("KUBECONFIG", str(standin.write_kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield standin
    standin.stop()


def test_an_existing_name_is_one_line_and_nothing_is_created(kube):
    kube.add_object("trainjobs", "kubeflow", "ft-1")
    with pytest.raises(UserError, match=r"TrainJob kubeflow/ft-1 already exists: choose another name") as err:
        launch(spec(poll_s=0.1))
    assert "\n" not in str(err.value)
    assert kube.job("trainjobs", "kubeflow", "ft-1").pods == []  # the old one, untouched
    assert [m for m, _ in kube.requests].count("POST") == 1 and "DELETE" not in [m for m, _ in kube.requests]


def test_a_runtime_the_cluster_lacks_is_one_line_and_nothing_is_created(kube):
    with pytest.raises(UserError, match="the cluster has no ClusterTrainingRuntime 'torch-tuned'"):
        launch(spec(runtime="torch-tuned"))
    assert kube.requests == [
        ("GET", "/apis/trainer.kubeflow.org/v1alpha1/clustertrainingruntimes/torch-tuned")
    ]


def test_a_cluster_without_the_training_operator(tmp_path, monkeypatch):
    standin = KubeStandin(tmp_path / "c", kinds=("trainjobs",)).start()
    monkeypatch.setenv("KUBECONFIG", str(standin.write_kubeconfig(tmp_path / "kc")))
    try:
        with pytest.raises(UserError, match="no kubeflow.org/v1 PyTorchJob API"):
            launch(spec(backend="pytorchjob", nproc_per_node=1))
    finally:
        standin.stop()


def test_an_api_that_does_not_answer_and_no_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(UserError, match="no Kubernetes API: not in a cluster and no usable kubeconfig"):
        launch(spec())
    dead = KubeStandin(tmp_path)
    dead.server = type("S", (), {"server_address": ("127.0.0.1", free_ports(1)[0])})()
    monkeypatch.setenv("KUBECONFIG", str(dead.write_kubeconfig(tmp_path / "kc")))
    with pytest.raises(UserError, match=r"Kubernetes API http://127.0.0.1:\d+ unreachable \(runtime check\)"):
        launch(spec())


def test_launch_result_is_plain_data():
    r = LaunchResult("preempted", 75, "tail", "ft-1", "node-1 preempted")
    assert r.to_dict() == {
        "status": "preempted",
        "exit_code": 75,
        "logs_tail": "tail",
        "name": "ft-1",
        "message": "node-1 preempted",
    }
    assert launcher.BACKENDS == ("local", "trainjob", "pytorchjob")


def test_train_refuses_a_publish_target_that_is_not_object_storage(tmp_path):
    r = run_cli("train", "--train", "x", "--val", "y", "--out", str(tmp_path / "o"), "--publish", "gs://b/p")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0, r.stderr
    assert "'gs://b/p': an object-storage tree must look like s3://bucket/prefix" in r.stderr
    assert not (tmp_path / "o").exists()


def test_a_cluster_trainer_cannot_read_a_local_config_file():
    args = [*ARGS[2:], "--config", "/home/me/run.yaml"]
    with pytest.raises(UserError, match="--config /home/me/run.yaml is a local file"):
        spec(train_args=args).check()
    assert spec(train_args=[*ARGS[2:], "--config", "s3://b/runs/1/config.yaml"]).check()


def test_placement_from_the_steps_environment():
    env = {
        launcher.NODE_SELECTOR_ENV: json.dumps(GPU_POOL),
        launcher.TOLERATIONS_ENV: json.dumps(TOLERATIONS),
        launcher.TIMEOUT_ENV: "600",
    }
    assert launcher.placement_from_env(env) == {
        "node_selector": GPU_POOL,
        "tolerations": TOLERATIONS,
        "timeout_s": 600,
    }
    assert launcher.placement_from_env({}) == {"node_selector": {}, "tolerations": [], "timeout_s": 0}
    for var, raw in (
        (launcher.NODE_SELECTOR_ENV, "[1]"),
        (launcher.TOLERATIONS_ENV, "{"),
        (launcher.TIMEOUT_ENV, "1h"),
    ):
        with pytest.raises(UserError, match=f"^{var}="):
            launcher.placement_from_env({var: raw})
