"""The fine-tuning pipeline: generate_data -> build_lmdb -> train -> export -> evaluate -> register -> promote.

``finetune_pipeline`` is the one definition ``make run`` runs through kfp.local and ``ocrtune pipeline
compile`` writes for the KFP UI. Its parameters' defaults are the ``tiny`` profile's values.

Placement of the train task (kfp-kubernetes, :func:`build_pipeline` / :class:`Placement`):

- node selector ``ocrtune.dev/pool=gpu`` and a toleration of ``nvidia.com/gpu=present:NoSchedule`` (the GPU
  node pool), ``/dev/shm`` as a memory emptyDir (DataLoader workers and NCCL need more than 64 MiB), a
  timeout, and S3 / MLflow credentials as env from the Secrets ``ocrtune-s3`` / ``ocrtune-mlflow`` (never
  pipeline parameters: they would show in the UI and the run's record);
- the ``nvidia.com/gpu`` accelerator, limit = the ``gpus_per_node`` parameter, when the GPUs are on the
  component pod itself: ``backend="local"`` on a cluster runs torchrun inside that pod. With
  ``backend="trainjob"``/``"pytorchjob"`` the component pod is only the launcher: the GPUs are requested by
  the TrainJob's pods (resourcesPerNode), which get the same pool placement through the launcher. Compile
  with ``Placement(gpus_on_component=False)`` (``ocrtune pipeline compile --launcher-only``) for that cluster,
  so the launcher pod holds no GPU and lands off the GPU pool. One compiled file cannot choose per run:
  KFP resolves the pod's resources before the run's ``backend`` is known to the pod.

Data steps are cached and retried; register (a new registry version each time) and promote are not cached.
"""

import json
from dataclasses import dataclass, field

from kfp import compiler, dsl, kubernetes
from ocrtune.components.build_lmdb import build_lmdb
from ocrtune.components.evaluate import evaluate
from ocrtune.components.export import export
from ocrtune.components.generate_data import generate_data
from ocrtune.components.promote import promote
from ocrtune.components.register import register
from ocrtune.components.train import train

from ocrtune.platform.endpoints import ENV_ONLY, MODE_ENV
from ocrtune.platform.launcher import NODE_SELECTOR_ENV, TIMEOUT_ENV, TOLERATIONS_ENV

PIPELINE_NAME = "ocrtune-finetune"
PIPELINE_DESCRIPTION = (
    "Fine-tune EasyOCR's recognizer: synthetic (+ real) data, LMDB, distributed training, EasyOCR export, "
    "evaluation on held-out typefaces against the base model, MLflow registration, promotion gate."
)

GPU_POOL_LABEL = ("ocrtune.dev/pool", "gpu")
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
ACCELERATOR = "nvidia.com/gpu"
S3_SECRET = "ocrtune-s3"
MLFLOW_SECRET = "ocrtune-mlflow"
# secret key -> env var name, the names boto and MLflow read (ocrtune.platform.endpoints)
S3_SECRET_KEYS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "MLFLOW_S3_ENDPOINT_URL": "MLFLOW_S3_ENDPOINT_URL",
}
MLFLOW_SECRET_KEYS = {"MLFLOW_TRACKING_URI": "MLFLOW_TRACKING_URI"}
TRAIN_TIMEOUT_S = 6 * 3600
SHM_SIZE = "2Gi"
DATA_RETRIES = 2


@dataclass(frozen=True)
class Placement:
    """Where the train task runs on a cluster; the defaults are the module constants above."""

    pool_label: tuple[str, str] = GPU_POOL_LABEL
    tolerations: tuple[dict, ...] = (GPU_TAINT,)
    accelerator: str = ACCELERATOR
    gpus_on_component: bool = True
    timeout_s: int = TRAIN_TIMEOUT_S
    shm_size: str = SHM_SIZE
    secrets: dict[str, dict[str, str]] = field(
        default_factory=lambda: {S3_SECRET: dict(S3_SECRET_KEYS), MLFLOW_SECRET: dict(MLFLOW_SECRET_KEYS)}
    )


def with_secrets(task: dsl.PipelineTask, placement: Placement) -> dsl.PipelineTask:
    """The S3 / MLflow credentials as env from the Secrets (every step that talks to S3 or MLflow), and
    endpoints from the environment only: a step in a cluster fails naming a missing variable rather than
    looking for a local stack's files."""
    for secret, keys in placement.secrets.items():
        kubernetes.use_secret_as_env(task, secret_name=secret, secret_key_to_env=dict(keys))
    return task.set_env_variable(MODE_ENV, ENV_ONLY)


def place_train(task: dsl.PipelineTask, gpus_per_node, placement: Placement) -> dsl.PipelineTask:
    """The train task's cluster placement (see the module docstring for the GPU decision)."""
    with_secrets(task, placement)
    # where the jobs this step creates (backend trainjob / pytorchjob) run: the same GPU pool
    task.set_env_variable(NODE_SELECTOR_ENV, json.dumps(dict([placement.pool_label])))
    task.set_env_variable(TOLERATIONS_ENV, json.dumps(list(placement.tolerations)))
    task.set_env_variable(TIMEOUT_ENV, str(placement.timeout_s))
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=placement.shm_size
    )
    kubernetes.set_timeout(task, placement.timeout_s)
    if placement.gpus_on_component:
        kubernetes.add_node_selector(
            task, label_key=placement.pool_label[0], label_value=placement.pool_label[1]
        )
        for tol in placement.tolerations:
            kubernetes.add_toleration(task, **tol)
        task.set_accelerator_type(placement.accelerator)
        task.set_accelerator_limit(gpus_per_node)
    return task


def data_step(task: dsl.PipelineTask) -> dsl.PipelineTask:
    """Cached by its inputs, retried with backoff on failure."""
    task.set_caching_options(True)
    task.set_retry(num_retries=DATA_RETRIES, backoff_duration="30s", backoff_factor=2.0)
    return task


def build_pipeline(placement: Placement | None = None):
    """The pipeline function with ``placement`` applied to its train task (the default: :class:`Placement`)."""
    placement = placement or Placement()

    @dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
    def finetune_pipeline(
        profile: str = "tiny",
        words: str = "",
        fonts: str = "",
        train_count: int = 3000,
        val_count: int = 300,
        test_count: int = 300,
        img_h: int = 64,
        base_model: str = "korean_g2",
        charset: str = "korean_g2",
        steps: int = 200,
        batch_size: int = 32,
        lr: float = 0.001,
        num_nodes: int = 1,
        gpus_per_node: int = 0,
        backend: str = "local",
        namespace: str = "kubeflow",
        model_name: str = "ocrtune-korean",
        auto_promote: bool = True,
        min_delta: float = 0.0,
        real_data: str = "",
        real_ratio: float = 0.0,
        seed: int = 0,
    ):
        gen = generate_data(
            profile=profile,
            words=words,
            fonts=fonts,
            train_count=train_count,
            val_count=val_count,
            test_count=test_count,
            img_h=img_h,
            charset=charset,
            real_data=real_data,
            real_ratio=real_ratio,
            seed=seed,
        ).set_display_name("generate data")
        with_secrets(data_step(gen), placement)
        lmdb = data_step(build_lmdb(dataset=gen.outputs["dataset"])).set_display_name("build LMDB")
        tr = train(
            profile=profile,
            base_model=base_model,
            charset=charset,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            num_nodes=num_nodes,
            gpus_per_node=gpus_per_node,
            backend=backend,
            namespace=namespace,
            lmdb=lmdb.outputs["lmdb"],
        ).set_display_name("train")
        place_train(tr, gpus_per_node, placement)
        exp = export(profile=profile, charset=charset, checkpoint=tr.outputs["checkpoint"])
        data_step(exp).set_display_name("export")
        ev = evaluate(
            profile=profile,
            model=exp.outputs["model"],
            lmdb=lmdb.outputs["lmdb"],
            dataset=gen.outputs["dataset"],
            base_model=base_model,
        ).set_display_name("evaluate")
        with_secrets(ev, placement)
        reg = register(
            model_name=model_name,
            model=exp.outputs["model"],
            evaluation=ev.outputs["evaluation"],
            dataset=gen.outputs["dataset"],
            checkpoint=tr.outputs["checkpoint"],
            pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name("register")
        with_secrets(reg.set_caching_options(False), placement)
        with dsl.If(auto_promote == True, name="auto-promote"):  # noqa: E712 (a KFP condition, not Python's)
            pro = promote(
                model_name=model_name, version=reg.output, min_delta=min_delta, lmdb=lmdb.outputs["lmdb"]
            )
            with_secrets(pro.set_caching_options(False).set_display_name("promote"), placement)

    return finetune_pipeline


finetune_pipeline = build_pipeline()


def compile_pipeline(path: str, placement: Placement | None = None) -> str:
    """Write the compiled pipeline (the YAML one uploads in the KFP UI) to ``path``; returns ``path``."""
    func = finetune_pipeline if placement is None else build_pipeline(placement)
    compiler.Compiler().compile(func, package_path=path)
    return path
