"""Component: the best checkpoint as an EasyOCR custom model (NAME.pth, NAME.yaml, NAME.py)."""

from kfp import dsl
from kfp.dsl import Input, Model, Output
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def export(checkpoint: Input[Model], model: Output[Model], profile: str = "tiny", charset: str = "korean_g2"):
    """model = a directory plain easyocr.Reader loads (recog_network = the profile's export name)."""
    from ocrtune.platform import kfp_steps

    model.metadata.update(
        kfp_steps.export(
            profile=profile, charset=charset, checkpoint_path=checkpoint.path, model_path=model.path
        )
    )
    # the training's MLflow run, where evaluate logs the error report
    model.metadata["mlflow_run_id"] = checkpoint.metadata.get("mlflow_run_id", "")
