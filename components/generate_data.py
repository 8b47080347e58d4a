"""Component: synthetic train/val/test crops (test: typefaces held out of training) and the dataset card."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Output
from ocrtune.components.image import image


@dsl.component(base_image=image(), install_kfp_package=False)
def generate_data(
    dataset: Output[Dataset],
    card: Output[HTML],
    profile: str = "tiny",
    words: str = "",
    fonts: str = "",
    train_count: int = 3000,
    val_count: int = 300,
    test_count: int = 300,
    img_h: int = 64,
    charset: str = "korean_g2",
    real_data: str = "",
    real_ratio: float = 0.0,
    seed: int = 0,
):
    """The gt.txt layout (train/ val/ test/, card.json, montage.png); ``real_data``: imported crops mixed in."""
    from ocrtune.platform import kfp_steps

    meta = kfp_steps.generate_data(
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
        dataset_path=dataset.path,
        card_path=card.path,
    )
    dataset.metadata.update(meta)
