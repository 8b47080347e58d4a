"""``ocrtune run``: the whole pipeline on this machine against the local stack (what `make run` does)."""

from __future__ import annotations

import json
import os

import click


@click.command()
@click.option(
    "--config", "config_file", default="tiny", show_default=True, help="Run config file or profile."
)
@click.option(
    "--runs-dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where run directories (named <profile>-<config hash>) go.",
)
@click.option("--nproc", type=int, default=2, show_default=True, help="Training processes (torchrun ranks).")
@click.option("--max-steps", type=int, help="Override train.max_steps.")
def run(config_file, runs_dir, nproc, max_steps) -> None:
    """Fonts -> data -> LMDB -> DDP training -> export -> parity -> register -> promote."""
    from ocrtune.platform.local_runner import LocalRun, stack_env_for_run

    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ.update(stack_env_for_run())
    summary = LocalRun(config_file, runs_dir, nproc=nproc, echo=click.echo, max_steps=max_steps).run()
    click.echo(json.dumps(summary, indent=2, ensure_ascii=False))
