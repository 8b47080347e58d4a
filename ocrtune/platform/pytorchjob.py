"""The PyTorchJob (``kubeflow.org/v1``, the legacy Training Operator) that trains on a GPU node pool, as a dict.

The option for clusters that run the Training Operator instead of Trainer v2. One Master and ``num_nodes - 1``
Workers, one process per pod: the operator sets MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK, so every pod
runs ``ocrtune train`` as one rank. Credentials come from the Secrets as ``envFrom`` (a pod template allows
it, unlike the Trainer API); nodeSelector and tolerations go straight into the pod template. Checked against
``kubeflow-training``'s models by the tests (a round trip that must not drop a field).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ocrtune.errors import UserError
from ocrtune.platform.trainjob import SHM_MOUNT, SHM_VOLUME, check_name, metadata, pod_patch, resources

if TYPE_CHECKING:
    from ocrtune.platform.launcher import TrainSpec

GROUP, VERSION, PLURAL, KIND = "kubeflow.org", "v1", "pytorchjobs", "PyTorchJob"
CONTAINER = "pytorch"  # the operator requires this container name
JOB_LABEL, TYPE_LABEL, INDEX_LABEL = (
    "training.kubeflow.org/job-name",
    "training.kubeflow.org/replica-type",
    "training.kubeflow.org/replica-index",
)


def _env_from(entries: list[str]) -> list[dict[str, Any]]:
    out = []
    for entry in entries:
        name, sep, _ = entry.partition(":")
        check_name(name, "secret")
        if sep:
            raise UserError(
                f"secret {entry!r}: a PyTorchJob takes whole Secrets (envFrom): give the name only"
            )
        out.append({"secretRef": {"name": name}})
    return out


def _replica(spec: TrainSpec, replicas: int) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "command": ["ocrtune", "train"],
        "args": list(spec.train_args),
        "volumeMounts": [SHM_MOUNT],
    }
    env_from = _env_from(spec.env_from_secrets)
    if env_from:
        container["envFrom"] = env_from
    if resources(spec.gpus_per_node):
        container["resources"] = resources(spec.gpus_per_node)
    pod: dict[str, Any] = {"containers": [container], "volumes": [SHM_VOLUME], **pod_patch(spec)}
    return {"replicas": replicas, "restartPolicy": "Never", "template": {"spec": pod}}


def build_pytorchjob(spec: TrainSpec) -> dict[str, Any]:
    """The PyTorchJob for ``spec`` (validated by ``TrainSpec.check``)."""
    if spec.nproc_per_node != 1:
        raise UserError(
            f"nproc_per_node {spec.nproc_per_node}: the pytorchjob backend runs one rank per pod "
            "(use num_nodes for more ranks, or the trainjob backend)"
        )
    replicas = {"Master": _replica(spec, 1)}
    if spec.num_nodes > 1:
        replicas["Worker"] = _replica(spec, spec.num_nodes - 1)
    run_policy: dict[str, Any] = {"cleanPodPolicy": "None", "backoffLimit": 0}
    if spec.timeout_s:
        run_policy["activeDeadlineSeconds"] = int(spec.timeout_s)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata(spec),
        "spec": {"pytorchReplicaSpecs": replicas, "runPolicy": run_policy},
    }


def pod_selector(name: str, master_only: bool = False) -> str:
    sel = f"{JOB_LABEL}={name}"
    return f"{sel},{TYPE_LABEL}=master,{INDEX_LABEL}=0" if master_only else sel
