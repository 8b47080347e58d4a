"""``ocrtune export``: a checkpoint -> NAME.pth/.yaml/.py that plain easyocr loads."""

from __future__ import annotations

import click

from ocrtune.charsets import load_charset


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option(
    "--out", required=True, type=click.Path(file_okay=False), help="Directory to write the three files."
)
@click.option("--name", default="custom", show_default=True, help="File stem = EasyOCR's recog_network.")
@click.option(
    "--charset", help="korean_g2, english_g2 or a charset file (default: recorded in the checkpoint)."
)
@click.option("--lang", "lang_list", multiple=True, help="lang_list entries (default: ko, en).")
@click.option("--overwrite", is_flag=True, help="Replace an existing export directory.")
def export(checkpoint, out, name, charset, lang_list, overwrite) -> None:
    """Export CHECKPOINT to EasyOCR's custom-model format."""
    from ocrtune.release.export import export_model

    info = export_model(
        checkpoint,
        out,
        name=name,
        charset=load_charset(charset) if charset else None,
        lang_list=list(lang_list) or None,
        overwrite=overwrite,
    )
    click.echo(f"exported {info['name']} ({info['num_class']} classes, imgH {info['imgH']}) to {info['dir']}")
    click.echo(_snippet(info["dir"], info["name"], info["lang_list"]))


def _snippet(model_dir: str, name: str, lang_list: list[str]) -> str:
    return (
        "import easyocr\n"
        f"reader = easyocr.Reader({list(lang_list)!r}, recog_network={name!r}, "
        f"model_storage_directory={model_dir!r}, user_network_directory={model_dir!r})"
    )
