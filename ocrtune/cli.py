"""The ``ocrtune`` command: one entry point, subcommand groups loaded on first use.

A user error (``UserError``, a bad flag) is one line on stderr and exit code 2; ``--verbose`` shows the
traceback of anything unexpected. Each group lives in ``ocrtune/commands/<group>.py``.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from ocrtune import __version__
from ocrtune.errors import UserError

# group name -> "module:attribute"; imported only when the group is used, so `ocrtune --help` is fast
GROUPS = {
    "stack": ("ocrtune.commands.stack:stack", "Start, stop and inspect the local S3 + MLflow stack."),
    "config": ("ocrtune.commands.config:config", "Validate and show run configs."),
    "data": ("ocrtune.commands.data:data", "Generate, convert, import training data; write LMDB."),
    "train": ("ocrtune.commands.train:train", "Fine-tune the recognizer (single process or under torchrun)."),
    "fonts": (
        "ocrtune.commands.fonts:fonts",
        "Fetch handwriting fonts and report which characters each really draws.",
    ),
    "export": ("ocrtune.commands.export:export", "Export a checkpoint to EasyOCR's custom-model format."),
    "run": (
        "ocrtune.commands.pipeline:local_run",
        "The pipeline on this machine through kfp.local (= pipeline run --local).",
    ),
    "evaluate": (
        "ocrtune.commands.evaluate:evaluate",
        "Score an export through ocrtune and plain easyocr (parity).",
    ),
    "ocr": ("ocrtune.commands.ocr:ocr", "Read images with an exported or registered model."),
    "register": ("ocrtune.commands.registry:register", "Register an export in the MLflow Model Registry."),
    "promote": ("ocrtune.commands.registry:promote", "Promote the challenger to champion if it wins now."),
    "rollback": ("ocrtune.commands.registry:rollback", "Move champion back to previous-champion."),
    "pull": ("ocrtune.commands.registry:pull", "Download models:/NAME@ALIAS as an EasyOCR directory."),
    "pipeline": (
        "ocrtune.commands.pipeline:pipeline",
        "The Kubeflow pipeline: compile, submit, schedule, runs, run --local.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *GROUPS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in GROUPS:
            module, attr = GROUPS[name][0].split(":")
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, GROUPS[name][1]) for name in GROUPS]
        rows += [(n, c.get_short_help_str(70)) for n, c in self.commands.items()]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and full tracebacks.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Fine-tune EasyOCR's recognizer on synthetic handwriting and export it in EasyOCR's format."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )


@cli.command()
def version() -> None:
    """Print the ocrtune version and the versions it runs with."""
    import platform

    click.echo(f"ocrtune {__version__} (python {platform.python_version()})")


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = any(a in ("-v", "--verbose") for a in args)
    try:
        rc = cli.main(args=args, prog_name="ocrtune", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("ocrtune: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if isinstance(exc, click.UsageError) else exc.exit_code)
    except UserError as exc:
        if verbose:
            raise
        click.echo(f"ocrtune: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("ocrtune: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        if verbose:
            raise
        click.echo(f"ocrtune: internal error: {type(exc).__name__}: {exc} (rerun with --verbose)", err=True)
        sys.exit(1)
    sys.exit(rc if isinstance(rc, int) else 0)
