"""``ocrtune config validate|show``: run configs checked before anything runs."""

from __future__ import annotations

import click
import yaml

from ocrtune.config import load_config


@click.group()
def config() -> None:
    """Run configs: YAML files, or the shipped profiles (tiny, full)."""


@config.command()
@click.argument("file")
def validate(file: str) -> None:
    """Check FILE (or a profile name); errors name the key and the file."""
    cfg = load_config(file)
    click.echo(f"{file}: ok (name: {cfg.name})")


@config.command()
@click.argument("file", default="tiny")
def show(file: str) -> None:
    """Print FILE (or a profile: tiny, full) with every default filled in."""
    click.echo(yaml.safe_dump(load_config(file).to_dict(), sort_keys=False, allow_unicode=True), nl=False)
