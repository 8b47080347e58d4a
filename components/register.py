"""Component: the export as a new MLflow registry version aliased 'challenger' (never cached)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def register(
    model: Input[Model],
    evaluation: Input[Artifact],
    dataset: Input[Dataset],
    checkpoint: Input[Model],
    model_name: str = "ocrtune-korean",
    pipeline_run_id: str = "",
) -> str:
    """NAME/VERSION, tagged with the dataset's sha256, the base weights, parity and the test scores."""
    from ocrtune.platform import kfp_steps

    return kfp_steps.register(
        model_name=model_name,
        model_path=model.path,
        evaluation_path=evaluation.path,
        dataset_path=dataset.path,
        checkpoint_path=checkpoint.path,
        pipeline_run_id=pipeline_run_id,
    )
