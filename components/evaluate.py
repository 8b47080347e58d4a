"""Component: val and held-out-typeface test scores, ocrtune's and plain easyocr.Reader's, the base model's."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Model, Output
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def evaluate(
    model: Input[Model],
    lmdb: Input[Dataset],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    evaluation: Output[Artifact],
    profile: str = "tiny",
    base_model: str = "korean_g2",
):
    """word_acc, cer, norm_ed per split (parity of the two readings); report = per font, samples and the
    test split's error report (also logged to the training's MLflow run)."""
    from ocrtune.platform import kfp_steps

    values = kfp_steps.evaluate(
        profile=profile,
        model_path=model.path,
        lmdb_path=lmdb.path,
        dataset_path=dataset.path,
        base_model=base_model,
        charset=model.metadata.get("charset", ""),
        evaluation_path=evaluation.path,
        report_path=report.path,
        mlflow_run_id=model.metadata.get("mlflow_run_id", ""),
    )
    for name, value in values.items():
        metrics.log_metric(name, value)
