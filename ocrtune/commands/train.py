"""``ocrtune train``: fine-tune the recognizer, alone or as one rank under torchrun / a Kubeflow job."""

from __future__ import annotations

import sys

import click

from ocrtune.config import load_config, override
from ocrtune.errors import UserError


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise UserError(f"--ratio {text!r}: expected numbers separated by commas, e.g. 0.5,0.5") from None


@click.command()
@click.option(
    "--config",
    "config_file",
    default="tiny",
    show_default=True,
    help="Run config file (a path or s3://bucket/key) or profile.",
)
@click.option(
    "--train",
    "train_paths",
    required=True,
    help="Training LMDB(s), comma-separated: paths or s3://bucket/prefix.",
)
@click.option("--ratio", help="Share of each batch per training LMDB, e.g. 0.5,0.5 (DTRB's batch_ratio).")
@click.option("--val", "val_path", required=True, help="Validation LMDB: a path or s3://bucket/prefix.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option(
    "--resume", is_flag=True, help="Continue from OUT's checkpoint (a fresh start if there is none)."
)
@click.option("--max-steps", type=int, help="Override train.max_steps.")
@click.option("--pretrained", help="korean_g2, english_g2, a .pth path, or none (override train.pretrained).")
@click.option("--charset", help="korean_g2, english_g2 or a charset file (override train.charset).")
@click.option("--batch-size", type=int, help="Per-rank batch size (override train.batch_size).")
@click.option("--lr", type=float, help="Peak learning rate (override train.lr).")
@click.option("--workers", type=int, help="Data loader processes per rank (override train.workers).")
@click.option(
    "--stop-at", type=int, help="Save a checkpoint and stop after this step, as a preemption would."
)
@click.option(
    "--checkpoint-dir", help="Where checkpoint.pth lives: a directory or s3://bucket/prefix (default OUT)."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--mlflow/--no-mlflow", default=None, help="Force MLflow logging on or off (default: if configured)."
)
@click.option("--progress/--no-progress", default=True, help="Progress bar on rank 0.")
@click.option(
    "--publish", help="Upload OUT to s3://bucket/prefix when training ends (manifest last), from rank 0."
)
def train(
    config_file,
    train_paths,
    ratio,
    val_path,
    out_dir,
    resume,
    max_steps,
    pretrained,
    charset,
    batch_size,
    lr,
    workers,
    stop_at,
    checkpoint_dir,
    device,
    mlflow,
    progress,
    publish,
) -> None:
    """Fine-tune the recognizer (single process or under torchrun).

    Under torchrun (`torchrun --standalone --nproc_per_node N -m ocrtune train ...`), a TrainJob or a
    PyTorchJob every process runs this same command. Exit code 75: stopped by SIGTERM after saving a
    checkpoint; rerun with --resume. In a TrainJob (PET_* set, no RANK) this process is the node: it starts
    torchrun's agent for the node's ranks and exits 75 when they were preempted.
    """
    from ocrtune.training import node, remote
    from ocrtune.training.loop import PREEMPTED_EXIT, Job, Preempted, run

    if publish:
        remote.split_s3(publish)  # a bad URL fails before any training
    if node.is_trainjob_node():
        sys.exit(node.run_node(sys.argv[sys.argv.index("train") + 1 :]))

    overrides = {
        "max_steps": max_steps,
        "pretrained": pretrained,
        "charset": charset,
        "batch_size": batch_size,
        "lr": lr,
        "workers": workers,
    }
    cfg = override(
        load_config(remote.fetch_file(config_file)).train, "train", overrides
    )  # checked as a config file is
    job = Job(
        train=[remote.fetch_input(p) for p in train_paths.split(",") if p],
        val=remote.fetch_input(val_path),
        out=out_dir,
        ratios=_floats(ratio),
        resume=resume,
        stop_at=stop_at,
        checkpoint_dir=checkpoint_dir,
        mlflow=mlflow,
        device=device,
        progress=progress,
    )
    try:
        summary = run(cfg, job)
    except Preempted as exc:
        click.echo(f"ocrtune: {exc}", err=True)
        sys.exit(PREEMPTED_EXIT)
    if summary.get("is_main", True):
        click.echo(
            f"{summary['status']} at step {summary['step']}: best accuracy {summary['best_accuracy']:.4f}, "
            f"best norm_ED {summary['best_norm_ED']:.4f}, {summary['bad_steps']} skipped steps, "
            f"{summary['dropped_samples']} undecodable samples, {summary['samples_per_s']:.1f} samples/s; "
            f"output in {out_dir}"
        )
        if publish:
            meta = {k: summary[k] for k in ("status", "step", "best_accuracy", "best_norm_ED")}
            remote.publish_output(out_dir, publish, meta=meta)
            click.echo(f"published {out_dir} to {publish}")
