"""``ocrtune register|promote|rollback|pull``: the MLflow Model Registry, aliases and tags only."""

from __future__ import annotations

import json

import click


def _tags(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"'{pair}' is not KEY=VALUE", param_hint="--tag")
        k, v = pair.split("=", 1)
        out[k] = v
    return out


@click.command()
@click.option(
    "--from-dir",
    "model_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="An export directory (NAME.pth, NAME.yaml, NAME.py).",
)
@click.option(
    "--name", "model_name", default="ocrtune-korean", show_default=True, help="Registered model name."
)
@click.option("--tag", "tags", multiple=True, help="KEY=VALUE version tag (repeatable).")
@click.option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or the local stack).")
def register(model_dir, model_name, tags, tracking_uri) -> None:
    """Register an export as a new version aliased 'challenger' (never twice for the same files)."""
    from ocrtune.release.registry import register as do_register

    mv, created = do_register(model_dir, model_name, tags=_tags(tags), uri=tracking_uri)
    verb = "registered" if created else "already registered"
    click.echo(f"{verb}: models:/{model_name}/{mv.version} (aliases: {', '.join(mv.aliases) or '-'})")


@click.command()
@click.argument("model_name")
@click.option(
    "--benchmark",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Frozen benchmark set (gt.txt dir or LMDB) both models are scored on now.",
)
@click.option("--version", help="Version to consider (default: the 'challenger' alias).")
@click.option(
    "--min-delta",
    type=float,
    default=0.0,
    show_default=True,
    help="Word-accuracy margin the challenger must win by.",
)
@click.option("--limit", type=int, help="Score only the first N samples.")
@click.option("--dry-run", is_flag=True, help="Score and decide, change nothing.")
@click.option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or the local stack).")
def promote(model_name, benchmark, version, min_delta, limit, dry_run, tracking_uri) -> None:
    """Gate: move 'champion' to the challenger only if it wins on the benchmark now."""
    from ocrtune.release.frozen_benchmark import load_benchmark, reader_accuracy
    from ocrtune.release.registry import promote as do_promote

    bench = load_benchmark(benchmark, limit=limit)
    decision = do_promote(
        model_name,
        lambda d: reader_accuracy(d, bench),
        bench.id,
        version=version,
        min_delta=min_delta,
        dry_run=dry_run,
        uri=tracking_uri,
    )
    click.echo(json.dumps(decision, indent=2))


@click.command()
@click.argument("model_name")
@click.option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or the local stack).")
def rollback(model_name, tracking_uri) -> None:
    """Move 'champion' back to 'previous-champion'."""
    from ocrtune.release.registry import rollback as do_rollback

    click.echo(json.dumps(do_rollback(model_name, uri=tracking_uri), indent=2))


@click.command()
@click.argument("model_uri")
@click.option("--to", "dest", required=True, type=click.Path(file_okay=False), help="Directory to write.")
@click.option("--tracking-uri", help="MLflow URI (default $MLFLOW_TRACKING_URI or the local stack).")
def pull(model_uri, dest, tracking_uri) -> None:
    """Write models:/NAME@ALIAS as an EasyOCR-ready directory and print how to load it."""
    from ocrtune.commands.export import _snippet
    from ocrtune.release.easyocr_reader import model_config
    from ocrtune.release.registry import pull as do_pull

    path, mv = do_pull(model_uri, dest, uri=tracking_uri)
    cfg = model_config(path)
    click.echo(f"# version {mv.version} of {mv.name} in {path}")
    click.echo(_snippet(str(path.absolute()), mv.tags.get("recog_network", "custom"), cfg["lang_list"]))
