"""``ocrtune pipeline submit|schedule|runs`` against tests/support/kfp_standin.py: the real kfp.Client talks
HTTP to a recording stand-in of the KFP v2beta1 API on 127.0.0.1 (there is no KFP server to run here)."""

from __future__ import annotations

import socket

import pytest
from support.cli import run_cli
from support.kfp_standin import KfpStandin

from ocrtune.errors import UserError
from ocrtune.platform import kfp_client

NO_MLFLOW = {"MLFLOW_TRACKING_URI": ""}


@pytest.fixture
def kfp():
    with KfpStandin() as standin:
        yield standin


def cli(*args, env=None):
    return run_cli("pipeline", *args, env={**NO_MLFLOW, **(env or {})}, timeout=180)


def one_line_exit_2(res, says: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert says in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def posts(kfp) -> list[str]:
    return kfp.paths("POST")


def test_submit_creates_one_run_with_typed_parameters_in_the_experiment(kfp):
    res = cli(
        "submit", "--host", kfp.url, "--experiment", "nightly", "--param", "steps=5", "--param", "lr=2e-4",
        "--param", "auto_promote=false", "--param", "real_data=s3://ocrtune/real/", "--run-name", "r1",
        env={"KFP_TOKEN": "t0ken"},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    (run,) = kfp.runs.values()
    assert f"run {run['run_id']} (r1) in experiment nightly" in res.stdout
    params = run["runtime_config"]["parameters"]
    assert params == {"steps": 5, "lr": 0.0002, "auto_promote": False, "real_data": "s3://ocrtune/real/"}
    # kfp.Client sends {"pipeline_spec", "platform_spec"} when the package has a platform spec (ours does)
    sent = run["pipeline_spec"]
    assert sent["pipeline_spec"]["pipelineInfo"]["name"] == "ocrtune-finetune"
    train = sent["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"ocrtune.dev/pool": "gpu"}  # the placement goes with the run
    (experiment,) = kfp.experiments.values()
    assert experiment["display_name"] == "nightly" and run["experiment_id"] == experiment["experiment_id"]
    created = [r for r in kfp.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
    headers = {k.lower(): v for k, v in created[0]["headers"].items()}  # HTTP header names: any case
    assert headers.get("authorization") == "Bearer t0ken"  # an existing token is used


def test_submit_with_a_profile_starts_from_its_values(kfp):
    assert cli("submit", "--host", kfp.url, "--profile", "tiny-en", "--param", "steps=3").returncode == 0
    (run,) = kfp.runs.values()
    params = run["runtime_config"]["parameters"]
    assert params["profile"] == "tiny-en" and params["charset"] == "english_g2" and params["steps"] == 3


def test_schedule_uploads_a_version_then_the_recurring_run_on_it(kfp):
    res = cli(
        "schedule", "--host", kfp.url, "--cron", "0 0 3 * * 0", "--max-concurrency", "2", "--no-catchup"
    )
    assert res.returncode == 0, res.stderr
    (job,) = kfp.recurring_runs.values()
    (version,) = kfp.versions.values()
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 0"
    assert job["max_concurrency"] == "2" or job["max_concurrency"] == 2
    assert job["no_catchup"] is True and job["mode"] == "ENABLE"
    assert job["pipeline_version_reference"]["pipeline_version_id"] == version["pipeline_version_id"]
    assert "pipeline_spec" not in job or job["pipeline_spec"] is None  # it runs the uploaded version
    train = version["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"ocrtune.dev/pool": "gpu"}  # the upload carries the placement
    assert job["recurring_run_id"] in res.stdout
    # the second schedule adds a version to the same pipeline
    assert cli("schedule", "--host", kfp.url, "--cron", "0 30 2 * * *").returncode == 0
    assert len(kfp.pipelines) == 1 and len(kfp.versions) == 2 and len(kfp.recurring_runs) == 2
    assert any(p.endswith("/pipelines/upload_version") for p in posts(kfp))


def test_a_failed_recurring_run_leaves_no_pipeline_version_behind(kfp):
    kfp.fail[("POST", "/apis/v2beta1/recurringruns")] = (400, "invalid cron for this server")
    res = cli("schedule", "--host", kfp.url, "--cron", "0 0 3 * * 0")
    one_line_exit_2(res, "invalid cron for this server")
    assert any(p.endswith("/pipelines/upload") for p in posts(kfp))  # it was uploaded ...
    assert kfp.versions == {} and kfp.pipelines == {} and kfp.recurring_runs == {}  # ... and removed again


def test_a_failed_schedule_keeps_an_existing_pipeline_and_its_old_versions(kfp):
    assert cli("schedule", "--host", kfp.url, "--cron", "0 0 3 * * 0").returncode == 0
    kfp.fail[("POST", "/apis/v2beta1/recurringruns")] = (500, "boom")
    one_line_exit_2(cli("schedule", "--host", kfp.url, "--cron", "0 0 4 * * 0"), "boom")
    assert len(kfp.pipelines) == 1 and len(kfp.versions) == 1 and len(kfp.recurring_runs) == 1


def test_runs_lists_recent_runs_with_state_and_registered_version(kfp, tmp_path):
    for name in ("first", "second"):
        assert cli("submit", "--host", kfp.url, "--run-name", name).returncode == 0
    first = next(r for r in kfp.runs.values() if r["display_name"] == "first")
    first["state"] = "SUCCEEDED"
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    register_version_tagged(mlflow_uri, "ocrtune-korean", first["run_id"])
    res = cli("runs", "--host", kfp.url, "--mlflow", mlflow_uri)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["RUN", "ID", "STATE"] and len(lines) == 3
    assert "second" in lines[1] and "PENDING" in lines[1] and " - " in lines[1]  # newest first
    assert "first" in lines[2] and "SUCCEEDED" in lines[2] and "ocrtune-korean/1" in lines[2]
    listing = [r for r in kfp.requests if r["method"] == "GET" and r["path"].endswith("/runs")][-1]
    assert listing["query"]["sort_by"] == ["created_at desc"]


def register_version_tagged(uri: str, name: str, run_id: str) -> None:
    """A real MLflow registry (sqlite) with one version tagged as the register step tags it."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(name)
    client.create_model_version(name, source="s3://ocrtune/m", tags={"pipeline_run_id": run_id})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "args, says",
    [
        (["submit", "--param", "stepz=5"], "unknown pipeline parameter 'stepz'"),
        (["submit", "--param", "steps=five"], "--param steps='five': must be an integer"),
        (["submit", "--param", "lr=fast"], "--param lr='fast': must be a number"),
        (["submit", "--param", "auto_promote=maybe"], "must be true or false"),
        (["submit", "--param", "steps"], "expected NAME=VALUE"),
        (["submit", "--profile", "nope"], "no such config file"),
        (["schedule", "--cron", "0 3 * * 0"], "has 5 fields; KFP's cron has 6"),
        (["schedule", "--cron", "0 0 3 * * 0", "--max-concurrency", "0"], "--max-concurrency 0"),
        (["schedule", "--cron", "0 0 3 * * 0", "--param", "seed=x"], "--param seed='x'"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(kfp, args, says):
    one_line_exit_2(cli(*args[:1], "--host", kfp.url, *args[1:]), says)
    assert posts(kfp) == [] and not kfp.runs and not kfp.pipelines and not kfp.recurring_runs


@pytest.mark.parametrize("command", [["submit"], ["schedule", "--cron", "0 0 3 * * 0"], ["runs"]])
def test_a_host_that_does_not_answer_is_one_line(command):
    host = f"http://127.0.0.1:{closed_port()}"
    res = cli(command[0], "--host", host, *command[1:])
    one_line_exit_2(res, f"KFP host {host} does not answer")


def test_run_needs_local_and_a_known_profile():
    one_line_exit_2(cli("run", "--profile", "tiny"), "add --local")
    one_line_exit_2(cli("run", "--local", "--profile", "nope"), "no such config file")


def test_parse_params_and_cron_directly():
    declared = {
        "steps": "NUMBER_INTEGER",
        "lr": "NUMBER_DOUBLE",
        "auto_promote": "BOOLEAN",
        "words": "STRING",
    }
    assert kfp_client.parse_params(["steps=7", "auto_promote=YES", "words=a=b"], declared) == {
        "steps": 7,
        "auto_promote": True,
        "words": "a=b",
    }
    assert kfp_client.check_cron(" 0  0 3 * * 0 ") == "0 0 3 * * 0"
    with pytest.raises(UserError, match="7 fields"):
        kfp_client.check_cron("0 0 3 * * 0 2027")
    with pytest.raises(UserError, match="http:// or https://"):
        kfp_client.probe("localhost:8080")
