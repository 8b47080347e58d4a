"""Component: the promotion gate: 'champion' moves to the new version only if it wins on the benchmark."""

from kfp import dsl
from kfp.dsl import Dataset, Input
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def promote(
    lmdb: Input[Dataset], model_name: str = "ocrtune-korean", version: str = "", min_delta: float = 0.0
) -> str:
    """The decision as JSON; the frozen benchmark is the first run's test split, kept in object storage."""
    from ocrtune.platform import kfp_steps

    return kfp_steps.promote(model_name=model_name, version=version, min_delta=min_delta, lmdb_path=lmdb.path)
