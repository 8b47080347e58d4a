"""``ocrtune data generate``: synthetic handwriting crops in the gt.txt layout, with a dataset card."""

from __future__ import annotations

import dataclasses

import click

from ocrtune.config import DataConfig, load_config
from ocrtune.data.render import BACKGROUNDS


@click.command()
@click.option(
    "--out", required=True, type=click.Path(), help="Output dir: OUT/train, OUT/val, OUT/test + card."
)
@click.option("--count", type=int, help="Training images (data.train_count).")
@click.option("--val", type=int, help="Validation images (data.val_count).")
@click.option("--test", type=int, help="Test images, drawn only with held-out fonts (data.test_count).")
@click.option("--words", type=click.Path(dir_okay=False), help="UTF-8 word file, one entry a line.")
@click.option("--wordfreq-top", type=int, help="Most frequent Korean words taken from wordfreq (0: none).")
@click.option("--coverage-min", type=int, help="Every charset character at least this many times in train.")
@click.option("--fonts-dir", type=click.Path(file_okay=False), help="Fonts fetched by `ocrtune fonts fetch`.")
@click.option("--test-fonts", type=int, help="Fonts held out of train/val for the test split.")
@click.option("--charset", help="korean_g2, english_g2 or a charset file.")
@click.option("--height", type=int, help="Image height (default 64 = EasyOCR gen2 imgH).")
@click.option("--skew", type=float, help="Random skew within +-SKEW degrees.")
@click.option("--margins", help="top,left,bottom,right pixels (like trdg -m).")
@click.option("--background", type=click.Choice(BACKGROUNDS), help="Background kind.")
@click.option("--augment/--no-augment", default=None, help="Blur, noise, stroke, distortion, spacing, ink.")
@click.option("--seed", type=int, help="Same seed, same dataset (any number of workers).")
@click.option("--workers", type=int, help="Rendering processes.")
@click.option("--format", "image_format", type=click.Choice(["jpg", "png"]), help="Image file format.")
@click.option(
    "--backend", type=click.Choice(["pillow", "trdg"]), help="Our renderer, or the real trdg 1.8.0."
)
@click.option(
    "--overwrite", is_flag=True, help="Replace OUT if it exists (only once the new one is complete)."
)
@click.option(
    "--config", "config_file", help="Run config (or profile) whose data section gives the defaults."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(out, config_file, overwrite, quiet, fonts_dir, count, val, test, margins, **flags) -> None:
    """Render words in handwriting fonts into OUT (train/val/test split by font and by word)."""
    from ocrtune.data.generate import generate as run

    cfg = load_config(config_file).data if config_file else DataConfig()
    changes = {k: v for k, v in flags.items() if v is not None}
    for key, value in (("train_count", count), ("val_count", val), ("test_count", test)):
        if value is not None:
            changes[key] = value
    if margins is not None:
        try:
            changes["margins"] = [int(m) for m in margins.split(",")]
        except ValueError:
            raise click.BadParameter(
                "expected four integers: top,left,bottom,right", param_hint="--margins"
            ) from None
    cfg = dataclasses.replace(cfg, **changes)
    if cfg.train_count <= 0 or cfg.val_count < 0 or cfg.test_count < 0:
        raise click.BadParameter("counts must be positive (--count) or zero (--val, --test)")
    card = run(cfg, out, fonts_dir=fonts_dir, overwrite=overwrite, progress=not quiet, echo=click.echo)
    cov = card["coverage"]["train"]
    click.echo(
        f"charset coverage (train): {cov['present']}/{cov['charset_size']} present, "
        f"{cov['at_least_k']} at least {card['coverage']['k']} times; card: {out}/card.md"
    )
