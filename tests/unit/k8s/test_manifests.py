"""k8s/: every manifest validates strictly for a current Kubernetes, carries the app.kubernetes.io labels and
no credential; the RBAC grants what the launcher calls and nothing cluster-wide but one read; the TrainJob
and PyTorchJob examples are exactly what the launcher creates for the pipeline's defaults (golden files).

Regenerate the examples after an intended change to the launcher (then review the diff):
    OCRTUNE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/k8s
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubeflow.training import ApiClient as TrainingApiClient
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from ocrtune.pipelines import finetune

from ocrtune.platform import pytorchjob, trainjob
from ocrtune.platform.launcher import TrainSpec, job_shape

K8S = Path(__file__).resolve().parents[3] / "k8s"
KUBERNETES = "1.33"
UPDATE_ENV = "OCRTUNE_UPDATE_GOLDEN"
KEY = "s3://ocrtune/runs/kfp-train/0123456789abcdef"
# the arguments the pipeline's train step gives a cluster trainer (ocrtune.platform.kfp_steps.remote_train_args)
TRAIN_ARGS = [
    "--config", f"{KEY}/config.yaml", "--train", f"{KEY}/lmdb/train", "--val", f"{KEY}/lmdb/val",
    "--out", "out", "--resume", "--no-progress", "--checkpoint-dir", f"{KEY}/checkpoint", "--publish", f"{KEY}/output",
]  # fmt: skip
EXAMPLES = {"trainjob-example.yaml": "trainjob", "pytorchjob-example.yaml": "pytorchjob"}


def example_spec(backend: str) -> TrainSpec:
    """The job for the pipeline's defaults: 2 nodes of 8 GPUs on the GPU pool of pipelines/finetune.py."""
    nodes, nproc, gpus = job_shape(backend, 2, 8)
    return TrainSpec(
        backend=backend,
        train_args=list(TRAIN_ARGS),
        num_nodes=nodes,
        nproc_per_node=nproc,
        gpus_per_node=gpus,
        image="ghcr.io/ocrtune/ocrtune-train:0.1.0",
        namespace="ocrtune",
        name=f"ocrtune-train-example-{backend}",
        node_selector=dict([finetune.GPU_POOL_LABEL]),
        tolerations=[dict(finetune.GPU_TAINT)],
        timeout_s=finetune.TRAIN_TIMEOUT_S,
    ).check()


def built(backend: str) -> dict:
    spec = example_spec(backend)
    return trainjob.build_trainjob(spec) if backend == "trainjob" else pytorchjob.build_pytorchjob(spec)


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


MANIFESTS = sorted(
    p.name for p in K8S.glob("*.yaml") if p.name not in EXAMPLES and p.name != "kustomization.yaml"
)


@pytest.mark.parametrize("name", MANIFESTS)
def test_each_manifest_validates_strictly_and_is_labelled(name):
    for obj in docs(K8S / name):
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/name") == "ocrtune" and "app.kubernetes.io/part-of" in labels, (
            obj
        )


def test_kustomization_lists_every_manifest_but_the_secret_template():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == set(MANIFESTS) - {"secrets.template.yaml"}


def test_secret_templates_hold_no_credential_and_name_what_the_steps_read():
    secrets = {o["metadata"]["name"]: o for o in docs(K8S / "secrets.template.yaml")}
    assert set(secrets) == set(finetune.Placement().secrets)
    for name, keys in finetune.Placement().secrets.items():
        data = secrets[name]["stringData"]
        assert set(keys) <= set(data) and all(v == "" for v in data.values()), data
        assert set(data) <= {k for k, _ in trainjob.SECRET_KEYS[name]}


def test_rbac_grants_what_the_launcher_calls_in_its_namespace_only():
    objs = {(o["kind"], o["metadata"]["name"]): o for o in docs(K8S / "rbac.yaml")}
    role = objs[("Role", "ocrtune-training")]
    grants = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    job_verbs = {"create", "get", "list", "watch", "delete"}
    assert grants[(trainjob.GROUP, trainjob.PLURAL)] == job_verbs
    assert grants[(pytorchjob.GROUP, pytorchjob.PLURAL)] == job_verbs
    assert grants[("", "pods")] == {"get", "list", "watch"} and grants[("", "pods/log")] == {"get"}
    cluster = objs[("ClusterRole", "ocrtune-runtime-reader")]["rules"]
    assert cluster == [
        {"apiGroups": [trainjob.GROUP], "resources": [trainjob.RUNTIME_PLURAL], "verbs": ["get"]}
    ]
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        binding = next(o for (k, _), o in objs.items() if k == kind)
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ocrtune-pipeline", "namespace": "ocrtune"}
        ]


@pytest.mark.parametrize("name, backend", sorted(EXAMPLES.items()))
def test_examples_are_what_the_launcher_creates(name, backend):
    body = built(backend)
    path = K8S / name
    header = f"# What the pipeline's train step creates for backend={backend}, num_nodes=2, gpus_per_node=8 (the GPU\n"
    header += (
        "# pool of pipelines/finetune.py); generated by tests/unit/k8s/test_manifests.py from the launcher.\n"
    )
    if os.environ.get(UPDATE_ENV):
        path.write_text(header + yaml.safe_dump(body, sort_keys=False), encoding="utf-8")
    (on_disk,) = docs(path)
    assert on_disk == body, f"{path} differs from the launcher's object; rerun with {UPDATE_ENV}=1 and review"
    assert on_disk["metadata"]["labels"]["app.kubernetes.io/name"] == "ocrtune"


def test_a_pytorchjob_gets_a_pod_per_gpu():
    assert job_shape("pytorchjob", 2, 8) == (16, 1, 1) and job_shape("trainjob", 2, 8) == (2, 8, 8)
    assert job_shape("pytorchjob", 1, 0) == (1, 1, 0) and job_shape("trainjob", 1, 0) == (1, 1, 0)
    (body,) = docs(K8S / "pytorchjob-example.yaml")
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 15

    class Response:  # what the Training Operator's API client deserializes from
        data = json.dumps(body)

    api = TrainingApiClient()
    assert api.sanitize_for_serialization(api.deserialize(Response(), "KubeflowOrgV1PyTorchJob")) == body


def test_the_trainjob_example_round_trips_through_the_trainer_api_and_lands_on_the_gpu_pool():
    (body,) = docs(K8S / "trainjob-example.yaml")
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body  # no field dropped
    assert body["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert body["spec"]["trainer"]["numNodes"] == 2
    assert body["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] in (8, "8")
    patch = yaml.safe_dump(body["spec"]["runtimePatches"])
    assert "ocrtune.dev/pool: gpu" in patch and "nvidia.com/gpu" in patch
