"""``ocrtune stack up|down|status``: the local S3 + MLflow servers."""

from __future__ import annotations

import json

import click

from ocrtune.platform.stack import LocalStack
from ocrtune.platform.stack_files import DEFAULT_DIR_ENV

dir_option = click.option(
    "--dir",
    "stack_dir",
    type=click.Path(file_okay=False),
    envvar=DEFAULT_DIR_ENV,
    help=f"Stack directory (default .ocrtune/ here; env {DEFAULT_DIR_ENV}).",
)


def _print_status(status: dict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    click.echo(f"stack dir: {status['dir']}  bucket: {status['bucket']}")
    for name, svc in status["services"].items():
        state = "healthy" if svc["healthy"] else ("running, not answering" if svc["running"] else "stopped")
        pid = svc["pid"] or "-"
        click.echo(f"  {name:<7} {state:<24} pid {pid!s:<8} {svc['url']}")


@click.group()
def stack() -> None:
    """Local stack of real servers on 127.0.0.1: SeaweedFS S3 and an MLflow tracking server."""


@stack.command()
@dir_option
@click.option("--s3-port", type=int, help="S3 port (default 8333, or what the last `up` used).")
@click.option("--mlflow-port", type=int, help="MLflow port (default 5000, or what the last `up` used).")
@click.option("--bucket", help="Default bucket, created at start (default ocrtune).")
@click.option(
    "--timeout", type=float, default=90.0, show_default=True, help="Seconds to wait for each server."
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def up(stack_dir, s3_port, mlflow_port, bucket, timeout, as_json) -> None:
    """Start the servers that are not running yet (running twice is harmless)."""
    st = LocalStack(stack_dir, s3_port=s3_port, mlflow_port=mlflow_port, bucket=bucket)
    _print_status(st.up(timeout=timeout), as_json)


@stack.command()
@dir_option
def down(stack_dir) -> None:
    """Stop the servers that `up` started (by PID), nothing else."""
    stopped = LocalStack(stack_dir).down()
    click.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@stack.command()
@dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(stack_dir, as_json) -> int:
    """Health and URLs of each server; exit code 1 when not all are healthy."""
    s = LocalStack(stack_dir).status()
    _print_status(s, as_json)
    return 0 if s["healthy"] else 1
