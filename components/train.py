"""Component: fine-tune the recognizer where the pipeline says (torchrun here, a TrainJob or PyTorchJob)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def train(
    lmdb: Input[Dataset],
    checkpoint: Output[Model],
    curves: Output[HTML],
    metrics: Output[Metrics],
    profile: str = "tiny",
    base_model: str = "korean_g2",
    charset: str = "korean_g2",
    steps: int = 200,
    batch_size: int = 32,
    lr: float = 0.001,
    num_nodes: int = 1,
    gpus_per_node: int = 0,
    backend: str = "local",
    namespace: str = "kubeflow",
):
    """checkpoint = best_accuracy.pth, train_result.json, log_train.txt; curves and figures beside."""
    from ocrtune.components.image import trainer_image

    from ocrtune.platform import kfp_steps

    result = kfp_steps.train(
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
        lmdb_path=lmdb.path,
        checkpoint_path=checkpoint.path,
        curves_path=curves.path,
        image=trainer_image(),
    )
    for name, value in result["metrics"].items():
        metrics.log_metric(name, value)
    checkpoint.metadata.update(
        {"mlflow_run_id": result["mlflow_run_id"], "base_model": result["base_model"], "charset": charset}
    )
