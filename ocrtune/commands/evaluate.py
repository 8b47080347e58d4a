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
    "--report",
    "report_dir",
    type=click.Path(file_okay=False),
    help="Write the error report (report.md, report.html, report.json) of Reader's reading here.",
)
@click.option("--mlflow-run", help="Log the error report to this MLflow run's artifacts (error_report/).")
@click.option(
    "--check/--no-check",
    default=True,
    show_default=True,
    help="Exit 1 unless agreement >= 99% and the accuracies differ by <= 1 point.",
)
def evaluate(model_dir, data, limit, as_json, check, report_dir, mlflow_run) -> int:
    """Word accuracy of MODEL_DIR by ocrtune and by easyocr.Reader, and how often they agree; with --report,
    where Reader's reading goes wrong (per typeface, length, character class, Hangul jamo, confusions)."""
    from ocrtune.errors import UserError
    from ocrtune.release import error_report
    from ocrtune.release.frozen_benchmark import load_benchmark, parity_of, readings

    if mlflow_run and not report_dir:
        raise UserError("--mlflow-run logs the error report: give --report DIR too")
    bench = load_benchmark(data, limit=limit)
    ours, theirs, ours_float = readings(model_dir, bench)
    report = parity_of(bench, ours, theirs, ours_float)
    if report_dir:
        analysed = error_report.analyse_benchmark(bench, theirs, ours, title=f"{model_dir} on {bench.id}")
        error_report.write_report(report_dir, analysed, bench.image_bytes)
        if mlflow_run:
            from ocrtune.release.registry import log_artifacts

            log_artifacts(mlflow_run, report_dir, "error_report")
    if as_json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        click.echo(
            f"{report['samples']} samples of {report['benchmark']}: "
            f"ocrtune accuracy {report['ocrtune_accuracy']:.4f}, easyocr accuracy {report['easyocr_accuracy']:.4f}, "
            f"agreement {report['agreement']:.4f} -> {'parity ok' if report['ok'] else 'PARITY FAILED'}"
        )
    if report_dir and not as_json:
        click.echo(f"error report: {report_dir}/report.html (.md, .json)")
    return 0 if (report["ok"] or not check) else 1
