"""``ocrtune evaluate``: score an export on a data set through ocrtune and through plain easyocr."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Validation/benchmark set: a gt.txt directory or an LMDB.",
)
@click.option("--limit", type=int, help="Only the first N samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Exit 1 unless agreement >= 99% and the accuracies differ by <= 1 point.",
)
def evaluate(model_dir, data, limit, as_json, check) -> int:
    """Word accuracy of MODEL_DIR by ocrtune and by easyocr.Reader, and how often they agree."""
    from ocrtune.release.frozen_benchmark import load_benchmark, parity

    report = parity(model_dir, load_benchmark(data, limit=limit))
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"{report['samples']} samples of {report['benchmark']}: "
            f"ocrtune accuracy {report['ocrtune_accuracy']:.4f}, easyocr accuracy {report['easyocr_accuracy']:.4f}, "
            f"agreement {report['agreement']:.4f} -> {'parity ok' if report['ok'] else 'PARITY FAILED'}"
        )
    return 0 if (report["ok"] or not check) else 1
