"""``ocrtune data ...``: synthetic data generation, trdg conversion, imports and LMDB."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Training data: generate synthetic handwriting, convert trdg output, import real crops, write LMDB."""


# Commands are defined in their own modules and attached here, one line each.
