"""Component: the dataset's splits as DTRB LMDBs (train/ val/ test/)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def build_lmdb(dataset: Input[Dataset], lmdb: Output[Dataset]):
    """One LMDB per split, with each sample's font; metadata: the dataset's sha256 and the record counts."""
    from ocrtune.platform import kfp_steps

    lmdb.metadata.update(kfp_steps.build_lmdb(dataset_path=dataset.path, lmdb_path=lmdb.path))
