"""``ocrtune data lmdb|convert-trdg|import``: other people's data into our layout, our layout into LMDB."""

from __future__ import annotations

import sys

import click

overwrite_option = click.option("--overwrite", is_flag=True, help="Replace DST once the new one is complete.")


def _summary(dst: str, stats: dict) -> None:
    click.echo(f"{dst}: {stats['written']} samples written, {stats['skipped_total']} skipped")
    for reason, n in sorted(stats["skipped"].items()):
        click.echo(f"  skipped, {reason}: {n}")
    bad = stats.get("out_of_charset_chars")
    if bad:
        shown = " ".join(f"{c!r}x{n}" for c, n in list(bad.items())[:30])
        click.echo(f"  characters outside the charset: {shown}{' ...' if len(bad) > 30 else ''}")
    if stats.get("labels_normalized"):
        click.echo(f"  labels NFC-normalized: {stats['labels_normalized']}")
    if stats.get("rotated_by_exif"):
        click.echo(f"  images rotated by their EXIF orientation: {stats['rotated_by_exif']}")
    if stats.get("note"):
        click.echo(f"note: {stats['note']}", err=True)


@click.command("lmdb")
@click.argument("src")
@click.argument("dst")
@overwrite_option
@click.option("--no-verify", is_flag=True, help="Do not decode each image first (unreadable ones get in).")
def lmdb_cmd(src: str, dst: str, overwrite: bool, no_verify: bool) -> None:
    """Write SRC (a gt.txt layout, or a dir of train/val/test layouts) as DTRB-format LMDB at DST.

    Keys num-samples, image-%09d, label-%09d (1-based, UTF-8), font-%09d when SRC has samples.tsv:
    DTRB's and EasyOCR's trainers read it. Unreadable images are skipped and counted.
    """
    from ocrtune.data.lmdb import write_lmdb

    stats = write_lmdb(src, dst, overwrite=overwrite, verify=not no_verify, progress=sys.stderr.isatty())
    _summary(dst, stats)
    for name, s in stats.get("splits", {}).items():
        click.echo(f"  {name}: {s['written']} written, {s['skipped_total']} skipped")


@click.command("convert-trdg")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--name-format",
    type=click.IntRange(0, 2),
    help="trdg's -na: 0 label_index.jpg, 1 index_label.jpg, 2 index.jpg + labels.txt "
    "(default: 2 when labels.txt exists, else 0).",
)
@overwrite_option
def convert_trdg(src: str, dst: str, name_format: int | None, overwrite: bool) -> None:
    """Turn trdg output in SRC into the gt.txt layout at DST (images/image_000000.jpg + gt.txt).

    With -na 0/1 the label is taken from the file name, where trdg has already dropped punctuation:
    generate with -na 2 when labels contain any.
    """
    from ocrtune.data.importers import convert_trdg as convert

    stats = convert(src, dst, name_format=name_format, overwrite=overwrite)
    _summary(dst, stats)


@click.command("import")
@click.argument("src")
@click.argument("dst")
@click.option(
    "--charset", default="korean_g2", show_default=True, help="korean_g2, english_g2 or a charset file."
)
@overwrite_option
def import_crops(src: str, dst: str, charset: str, overwrite: bool) -> None:
    """Import real labelled crops from SRC (gt.txt layout, or EasyOCR trainer's labels.csv) into DST.

    Labels outside the charset and images that do not decode are skipped and counted.
    """
    from ocrtune.data.importers import import_crops as do_import

    stats = do_import(src, dst, charset=charset, overwrite=overwrite)
    _summary(dst, stats)
