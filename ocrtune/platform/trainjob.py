"""The Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``) that trains on a GPU node pool, as a dict.

Built offline from a ``TrainSpec`` and checked against ``kubeflow_trainer_api``'s models by the tests (a round
trip that must not drop a field). The ``torch-distributed`` runtime runs the trainer command once per node
with PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK and PET_MASTER_ADDR/PORT; ``ocrtune train`` is then the
node (``ocrtune.training.node``). On Trainer 2.3 the pool's nodeSelector and tolerations go through
``runtimePatches`` (``podTemplateOverrides`` is gone) for the ``node`` replicated job, with a memory-backed
/dev/shm for the data loaders. The Trainer API sets
environment only one variable at a time, so credentials come in as ``valueFrom.secretKeyRef``, one per key of
the Secrets in ``SECRET_KEYS`` (or ``name:KEY,KEY`` for another Secret).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ocrtune.errors import UserError

if TYPE_CHECKING:
    from ocrtune.platform.launcher import TrainSpec

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
RUNTIME_PLURAL = "clustertrainingruntimes"
NODE = "node"  # the runtime's replicated job and container of the trainer
PATCH_MANAGER = "ocrtune.io/launcher"
GPU = "nvidia.com/gpu"
# the data loaders' workers pass batches through /dev/shm: a memory-backed emptyDir, not the runtime's 64 MiB
SHM_VOLUME = {"name": "dshm", "emptyDir": {"medium": "Memory"}}
SHM_MOUNT = {"name": "dshm", "mountPath": "/dev/shm"}
# the keys each of ocrtune's Secrets holds: variables named as ocrtune.platform.endpoints reads them;
# the optional ones may be absent from the Secret
SECRET_KEYS: dict[str, list[tuple[str, bool]]] = {
    "ocrtune-s3": [
        ("MLFLOW_S3_ENDPOINT_URL", False),
        ("AWS_ACCESS_KEY_ID", False),
        ("AWS_SECRET_ACCESS_KEY", False),
        ("OCRTUNE_BUCKET", True),
        ("AWS_DEFAULT_REGION", True),
    ],
    "ocrtune-mlflow": [
        ("MLFLOW_TRACKING_URI", False),
        ("MLFLOW_TRACKING_USERNAME", True),
        ("MLFLOW_TRACKING_PASSWORD", True),
        ("MLFLOW_TRACKING_TOKEN", True),
    ],
}
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_name(name: str, what: str = "name") -> str:
    """A Kubernetes object name (DNS-1123 label, at most 63 characters: JobSet names its pods after it)."""
    if not name or len(name) > 63 or not DNS_1123.match(name):
        raise UserError(
            f"{what} {name!r}: must be 1-63 lowercase letters, digits or '-', starting and ending alphanumeric"
        )
    return name


def secret_keys(entry: str) -> tuple[str, list[tuple[str, bool]]]:
    """``ocrtune-s3`` (keys from SECRET_KEYS) or ``my-secret:KEY1,KEY2`` -> (name, [(key, optional)])."""
    name, sep, keys = entry.partition(":")
    check_name(name, "secret")
    if sep:
        pairs = [(k.strip(), False) for k in keys.split(",") if k.strip()]
    elif name in SECRET_KEYS:
        pairs = SECRET_KEYS[name]
    else:
        raise UserError(
            f"secret {name!r}: name its keys as {name}:KEY1,KEY2 (known without: {', '.join(SECRET_KEYS)})"
        )
    bad = [k for k, _ in pairs if not ENV_NAME.match(k)]
    if not pairs or bad:
        raise UserError(f"secret {entry!r}: keys must be environment variable names, got {bad or 'none'}")
    return name, pairs


def secret_env(entries: list[str]) -> list[dict[str, Any]]:
    """One EnvVar per Secret key, ``valueFrom.secretKeyRef`` (the values never appear in the object)."""
    out = []
    for entry in entries:
        name, pairs = secret_keys(entry)
        for key, optional in pairs:
            ref: dict[str, Any] = {"name": name, "key": key}
            if optional:
                ref["optional"] = True
            out.append({"name": key, "valueFrom": {"secretKeyRef": ref}})
    return out


def metadata(spec: TrainSpec) -> dict[str, Any]:
    """The job's name, namespace and the labels every ocrtune training object carries."""
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": {"app.kubernetes.io/name": "ocrtune", "app.kubernetes.io/component": "train"},
    }


def resources(gpus_per_node: int) -> dict[str, Any]:
    if gpus_per_node < 0:
        raise UserError(f"gpus_per_node {gpus_per_node}: must be >= 0")
    if not gpus_per_node:
        return {}
    return {"limits": {GPU: str(gpus_per_node)}, "requests": {GPU: str(gpus_per_node)}}


def pod_patch(spec: TrainSpec) -> dict[str, Any]:
    """The scheduling part of the pod spec: the GPU pool's nodeSelector and tolerations."""
    patch: dict[str, Any] = {}
    if spec.node_selector:
        patch["nodeSelector"] = {str(k): str(v) for k, v in spec.node_selector.items()}
    if spec.tolerations:
        patch["tolerations"] = [dict(t) for t in spec.tolerations]
    return patch


def build_trainjob(spec: TrainSpec) -> dict[str, Any]:
    """The TrainJob for ``spec`` (validated by ``TrainSpec.check``)."""
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": ["ocrtune", "train"],
        "args": list(spec.train_args),
        "numNodes": spec.num_nodes,
        "numProcPerNode": spec.nproc_per_node,
    }
    env = secret_env(spec.env_from_secrets)
    if env:
        trainer["env"] = env
    if resources(spec.gpus_per_node):
        trainer["resourcesPerNode"] = resources(spec.gpus_per_node)
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata(spec),
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": "ClusterTrainingRuntime", "name": spec.runtime},
            "trainer": trainer,
        },
    }
    if spec.timeout_s:
        body["spec"]["activeDeadlineSeconds"] = int(spec.timeout_s)
    patch = {
        **pod_patch(spec),
        "volumes": [SHM_VOLUME],
        "containers": [{"name": NODE, "volumeMounts": [SHM_MOUNT]}],
    }
    job_patch = {"name": NODE, "template": {"spec": {"template": {"spec": patch}}}}
    body["spec"]["runtimePatches"] = [
        {
            "manager": PATCH_MANAGER,
            "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [job_patch]}}},
        }
    ]
    return body


def node_selector(name: str, index: int | None = None) -> str:
    """The label selector of a TrainJob's node pods (the JobSet's ``node`` replicated job), or of one."""
    sel = f"jobset.sigs.k8s.io/jobset-name={name},jobset.sigs.k8s.io/replicatedjob-name={NODE}"
    return sel if index is None else f"{sel},batch.kubernetes.io/job-completion-index={index}"
