"""``ocrtune data ...``: synthetic data generation, trdg conversion, imports and LMDB."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Training data: generate synthetic handwriting, convert trdg output, import real crops, write LMDB."""


# Commands are defined in their own modules and attached here, one line each.
from ocrtune.commands.convert import convert_trdg, import_crops, lmdb_cmd  # noqa: E402

for _cmd in (lmdb_cmd, convert_trdg, import_crops):
    data.add_command(_cmd)
from ocrtune.commands.generate import generate  # noqa: E402

data.add_command(generate)
