"""``ocrtune pipeline``: compile the fine-tuning pipeline, submit or schedule it on KFP, list runs, run it locally.

``compile -o pipeline.yaml`` writes the file one uploads in the KFP UI. ``submit`` / ``schedule`` compile the
same pipeline (or take ``--package``) and talk to a KFP 2.x API server (ocrtune.platform.kfp_client);
``run --local`` runs that very definition through kfp.local (ocrtune.platform.kfp_local).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path

import click

from ocrtune.errors import UserError

EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def placement_options(func):
    """The train task's cluster placement, as compile options (defaults: pipelines/finetune.py's constants)."""

    @click.option(
        "--gpu-pool", default="ocrtune.dev/pool=gpu", show_default=True, help="Node selector KEY=VALUE."
    )
    @click.option(
        "--gpu-taint",
        default="nvidia.com/gpu=present:NoSchedule",
        show_default=True,
        help="Toleration KEY=VALUE:EFFECT of the GPU pool's taint; 'none' for no toleration.",
    )
    @click.option(
        "--train-timeout", type=int, default=6 * 3600, show_default=True, help="Train task timeout (s)."
    )
    @click.option(
        "--launcher-only",
        is_flag=True,
        help="backend trainjob/pytorchjob: the train pod only launches; no GPU or GPU-pool placement on it.",
    )
    @functools.wraps(func)
    def wrapper(*args, gpu_pool, gpu_taint, train_timeout, launcher_only, **kwargs):
        return func(
            *args, placement=make_placement(gpu_pool, gpu_taint, train_timeout, launcher_only), **kwargs
        )

    return wrapper


def make_placement(gpu_pool: str, gpu_taint: str, timeout_s: int, launcher_only: bool):
    from ocrtune.pipelines.finetune import Placement

    key, sep, value = gpu_pool.partition("=")
    if not sep or not key:
        raise UserError(f"--gpu-pool {gpu_pool!r}: expected KEY=VALUE")
    tolerations: tuple[dict, ...] = ()
    if gpu_taint.lower() != "none":
        kv, sep2, effect = gpu_taint.rpartition(":")
        tkey, sep3, tvalue = kv.partition("=")
        if not sep2 or effect not in EFFECTS or not tkey:
            raise UserError(f"--gpu-taint {gpu_taint!r}: expected KEY[=VALUE]:{'|'.join(EFFECTS)}")
        op = "Equal" if sep3 else "Exists"
        tolerations = (
            {"key": tkey, "operator": op, **({"value": tvalue} if sep3 else {}), "effect": effect},
        )
    if timeout_s < 1:
        raise UserError(f"--train-timeout {timeout_s}: must be at least 1 second")
    return Placement(
        pool_label=(key, value),
        tolerations=tolerations,
        timeout_s=timeout_s,
        gpus_on_component=not launcher_only,
    )


def compile_to(path: str | Path, placement) -> Path:
    from ocrtune.pipelines.finetune import compile_pipeline

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).stem}.tmp.yaml")
    compile_pipeline(str(tmp), placement)
    tmp.replace(path)
    return Path(path)


def arguments(package: Path, profile: str | None, pairs: tuple[str, ...]) -> dict:
    """The run's parameters: the profile's values (when given), ``--param`` over them, typed and checked."""
    from ocrtune.platform import kfp_client

    declared = kfp_client.declared_parameters(package)
    values = {}
    if profile:
        from ocrtune.config import load_config
        from ocrtune.platform.kfp_local import profile_arguments

        values = {k: v for k, v in profile_arguments(profile, load_config(profile)).items() if k in declared}
    return {**values, **kfp_client.parse_params(pairs, declared)}


def host_option(func):
    func = click.option("--namespace", default="kubeflow", show_default=True, help="KFP user namespace.")(
        func
    )
    return click.option("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080.")(func)


def params_options(func):
    func = click.option("--param", "params", multiple=True, metavar="K=V", help="A pipeline parameter.")(func)
    func = click.option("--profile", default=None, help="Start from this profile's parameter values.")(func)
    return click.option(
        "--package",
        type=click.Path(dir_okay=False, exists=True),
        help="A compiled pipeline (default: compile now).",
    )(func)


def package_for(package: str | None, placement, workdir: str) -> Path:
    return Path(package) if package else compile_to(Path(workdir) / "pipeline.yaml", placement)


@click.group()
def pipeline() -> None:
    """The Kubeflow pipeline: compile, submit, schedule, runs, run --local."""


@pipeline.command("compile")
@click.option("-o", "--output", default="pipeline.yaml", show_default=True, type=click.Path(dir_okay=False))
@placement_options
def compile_cmd(output, placement) -> None:
    """Write the compiled pipeline (the file one uploads in the KFP UI)."""
    click.echo(f"wrote {compile_to(output, placement)}")


@pipeline.command()
@host_option
@params_options
@click.option("--experiment", default="ocrtune", show_default=True)
@click.option("--run-name", default=None, help="Default: ocrtune-finetune-<UTC time>.")
@placement_options
def submit(host, namespace, package, profile, params, experiment, run_name, placement) -> None:
    """Create one run of the pipeline on a KFP server."""
    from ocrtune.platform import kfp_client

    with tempfile.TemporaryDirectory() as tmp:
        pkg = package_for(package, placement, tmp)
        values = arguments(pkg, profile, params)
        client = kfp_client.connect(host, namespace)
        name = run_name or f"ocrtune-finetune-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        run_id = kfp_client.submit(client, pkg, values, experiment, name)
    click.echo(
        f"run {run_id} ({name}) in experiment {experiment}: {host.rstrip('/')}/#/runs/details/{run_id}"
    )


@pipeline.command()
@host_option
@params_options
@click.option(
    "--cron", required=True, help="KFP cron, 6 fields (second first): '0 0 3 * * 0' = Sundays 03:00."
)
@click.option("--max-concurrency", type=int, default=1, show_default=True)
@click.option("--no-catchup", is_flag=True, help="Do not backfill missed intervals.")
@click.option("--experiment", default="ocrtune", show_default=True)
@click.option(
    "--name", "job_name", default="ocrtune-retrain", show_default=True, help="The recurring run's name."
)
@placement_options
def schedule(
    host,
    namespace,
    package,
    profile,
    params,
    cron,
    max_concurrency,
    no_catchup,
    experiment,
    job_name,
    placement,
) -> None:
    """A KFP recurring run of the pipeline (the scheduled retrain), on a newly uploaded pipeline version."""
    from ocrtune.platform import kfp_client

    kfp_client.check_cron(cron)
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package_for(package, placement, tmp)
        values = arguments(pkg, profile, params)
        client = kfp_client.connect(host, namespace)
        ids = kfp_client.schedule(
            client,
            pkg,
            pipeline_name="ocrtune-finetune",
            version_name=f"ocrtune-finetune-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
            experiment=experiment,
            job_name=job_name,
            cron=cron,
            params=values,
            max_concurrency=max_concurrency,
            no_catchup=no_catchup,
        )
    click.echo(
        f"recurring run {ids['recurring_run_id']} ({job_name}, cron '{' '.join(cron.split())}') on pipeline "
        f"version {ids['pipeline_version_id']}"
    )


@pipeline.command()
@host_option
@click.option("--experiment", default=None, help="Only this experiment's runs.")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@click.option("--mlflow", "mlflow_uri", default=None, help="MLflow to look the registered versions up in.")
@click.option("--json", "as_json", is_flag=True)
def runs(host, namespace, experiment, limit, mlflow_uri, as_json) -> None:
    """Recent runs: state and the model version each registered (from MLflow's pipeline_run_id tag)."""
    import os

    from ocrtune.platform import kfp_client

    client = kfp_client.connect(host, namespace)
    lookup = None
    if mlflow_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        from ocrtune.release import registry

        lookup = kfp_client.registered_by_tag(registry.client(mlflow_uri))
    rows = kfp_client.recent_runs(client, limit=limit, experiment=experiment, registered=lookup)
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows], indent=2))
        return
    click.echo(f"{'RUN ID':<38} {'STATE':<10} {'CREATED':<26} {'REGISTERED':<24} NAME")
    for row in rows:
        click.echo(f"{row.run_id:<38} {row.state:<10} {row.created_at:<26} {row.registered:<24} {row.name}")
    if not rows:
        click.echo("(no runs)")


def local_run_options(func):
    """What a local run takes: the profile (or a config file), parameters over it, where runs go."""
    func = click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False))(
        func
    )
    func = click.option(
        "--param", "params", multiple=True, metavar="K=V", help="A pipeline parameter over the profile's."
    )(func)
    return click.option(
        "--profile",
        "--config",
        "profile",
        default="tiny",
        show_default=True,
        help="A profile or config file.",
    )(func)


def run_locally(profile: str, params: tuple[str, ...], runs_dir: str) -> None:
    from ocrtune.config import load_config
    from ocrtune.platform import kfp_client
    from ocrtune.platform.kfp_local import declared, run_local

    load_config(profile)  # an unknown profile: one line, before anything starts
    # the same K=V parsing and type checks as submit/schedule, against the pipeline's declared parameters
    run_local(profile, kfp_client.parse_params(params, declared()), runs_dir, echo=click.echo)


@pipeline.command("run")
@click.option("--local", "local", is_flag=True, help="Through kfp.local on this machine (the only mode).")
@local_run_options
def run_cmd(local, profile, params, runs_dir) -> None:
    """The pipeline through kfp.local against the local stack (what `make run` does)."""
    if not local:
        raise UserError(
            "`ocrtune pipeline run` runs locally only: add --local (a cluster: `ocrtune pipeline submit`)"
        )
    run_locally(profile, params, runs_dir)


@click.command("run")
@local_run_options
def local_run(profile, params, runs_dir) -> None:
    """The fine-tuning pipeline on this machine: `ocrtune pipeline run --local`, shorter."""
    run_locally(profile, params, runs_dir)
