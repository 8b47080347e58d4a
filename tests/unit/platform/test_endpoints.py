"""Which S3 and which MLflow: the environment first, the local stack's files only as a fallback, a setting
that turns the fallback off (one line naming the missing variable), one health probe, no secret in sight."""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading

import pytest

from ocrtune.errors import UserError
from ocrtune.platform import endpoints
from ocrtune.platform.endpoints import (
    S3Settings,
    client_env,
    probe,
    probe_tracking,
    redact_url,
    s3_settings,
    stack_tracking_uri,
    tracking_uri,
)
from ocrtune.platform.stack import LocalStack, free_ports
from ocrtune.platform.stack_files import Credentials, StackFiles, StackState
from ocrtune.platform.storage import S3Settings as StorageS3Settings

SECRET = "s3cr3t-value-that-must-never-show"
FULL_ENV = {
    "MLFLOW_TRACKING_URI": "http://mlflow.example:5000",
    "MLFLOW_S3_ENDPOINT_URL": "http://s3.example:9000",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEY",
    "AWS_SECRET_ACCESS_KEY": SECRET,
}


@pytest.fixture()
def stack_dir(tmp_path):
    """A stack directory as ``ocrtune stack up`` leaves it (no servers: these tests read files only)."""
    files = StackFiles(tmp_path / "stack")
    files.root.mkdir()
    files.save_state(StackState(s3_port=18333, mlflow_port=15000, bucket="stack-bucket"))
    files.ensure_credentials()
    return files


def test_the_environment_comes_first(stack_dir):
    env = {**FULL_ENV, "OCRTUNE_STACK_DIR": str(stack_dir.root), "OCRTUNE_BUCKET": "env-bucket"}
    s = s3_settings(env=env)
    assert (s.endpoint, s.access_key, s.secret_key, s.bucket, s.region) == (
        "http://s3.example:9000",
        "AKIAEXAMPLEKEY",
        SECRET,
        "env-bucket",
        "us-east-1",
    )
    assert s3_settings(bucket="asked", env=env).bucket == "asked"
    assert tracking_uri(env=env) == "http://mlflow.example:5000"
    assert tracking_uri("http://given:1", env=env) == "http://given:1"


def test_endpoint_and_region_names_in_order():
    base = {k: v for k, v in FULL_ENV.items() if k != "MLFLOW_S3_ENDPOINT_URL"}
    assert s3_settings(
        env={**base, "S3_ENDPOINT_URL": "http://a:1", "AWS_ENDPOINT_URL_S3": "http://b:2"}
    ).endpoint == ("http://a:1")
    assert s3_settings(env={**base, "AWS_ENDPOINT_URL_S3": "http://b:2"}).endpoint == "http://b:2"
    assert s3_settings(env={**FULL_ENV, "AWS_REGION": "eu-west-1"}).region == "eu-west-1"
    both = {**FULL_ENV, "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "ap-south-1"}
    assert s3_settings(env=both).region == "ap-south-1"
    assert s3_settings(env=FULL_ENV).bucket == "ocrtune"


def test_the_local_stack_fills_in_what_the_environment_leaves_unset(stack_dir):
    env = {"OCRTUNE_STACK_DIR": str(stack_dir.root)}
    creds = stack_dir.read_credentials()
    s = s3_settings(env=env)
    assert (s.endpoint, s.access_key, s.secret_key, s.bucket) == (
        "http://127.0.0.1:18333",
        creds.access_key,
        creds.secret_key,
        "stack-bucket",
    )
    partial = s3_settings(env={**env, "MLFLOW_S3_ENDPOINT_URL": "http://s3.example:9000"})
    assert partial.endpoint == "http://s3.example:9000" and partial.secret_key == creds.secret_key
    assert s3_settings(stack_dir=stack_dir.root, env={}).bucket == "stack-bucket"
    assert tracking_uri(env=env) == "http://127.0.0.1:15000"
    assert stack_tracking_uri(env=env) == "http://127.0.0.1:15000"


def test_no_stack_here(tmp_path):
    env = {"OCRTUNE_STACK_DIR": str(tmp_path / "none")}
    with pytest.raises(UserError, match="no S3 endpoint: set MLFLOW_S3_ENDPOINT_URL") as exc:
        s3_settings(env=env)
    assert str(tmp_path / "none") in str(exc.value)
    assert tracking_uri(env=env) == "http://127.0.0.1:5000"  # the default port: reported unreachable later
    assert stack_tracking_uri(env=env) is None  # train --mlflow: no stack recorded here


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (("AWS_SECRET_ACCESS_KEY",), "AWS_SECRET_ACCESS_KEY is not set"),
        (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
        ),
        (
            ("MLFLOW_S3_ENDPOINT_URL",),
            "MLFLOW_S3_ENDPOINT_URL (or S3_ENDPOINT_URL, AWS_ENDPOINT_URL_S3) is not set",
        ),
    ],
)
def test_env_only_names_the_missing_variable_in_one_line(stack_dir, unset, named):
    env = {k: v for k, v in FULL_ENV.items() if k not in unset}
    env.update(OCRTUNE_ENDPOINTS="env-only", OCRTUNE_STACK_DIR=str(stack_dir.root))
    with pytest.raises(UserError) as exc:
        s3_settings(env=env)
    msg = str(exc.value)
    assert msg == f"{named}, and OCRTUNE_ENDPOINTS=env-only does not read the local stack's files"
    assert "\n" not in msg and SECRET not in msg


def test_env_only_tracking_and_the_full_environment(stack_dir, monkeypatch):
    env = {"OCRTUNE_ENDPOINTS": "env-only", "OCRTUNE_STACK_DIR": str(stack_dir.root)}
    with pytest.raises(UserError, match=r"^MLFLOW_TRACKING_URI is not set, and OCRTUNE_ENDPOINTS=env-only"):
        tracking_uri(env=env)
    assert stack_tracking_uri(env=env) is None
    assert s3_settings(env={**FULL_ENV, **env}).endpoint == "http://s3.example:9000"
    assert tracking_uri(env={**FULL_ENV, **env}) == FULL_ENV["MLFLOW_TRACKING_URI"]
    # the classmethod others call reads the process environment the same way
    for k in (*FULL_ENV, "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OCRTUNE_ENDPOINTS", "env-only")
    with pytest.raises(UserError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"):
        StorageS3Settings.from_env()
    monkeypatch.setenv("OCRTUNE_ENDPOINTS", "sometimes")
    with pytest.raises(UserError, match="OCRTUNE_ENDPOINTS='sometimes' must be 'auto' or 'env-only'"):
        S3Settings.from_env()


def test_client_env_is_the_inverse_of_resolution():
    s = S3Settings("http://s3.example:9000", "AKIAEXAMPLEKEY", SECRET, "b", "eu-west-1")
    env = client_env(s, "http://mlflow.example:5000")
    assert s3_settings(env={**env, "OCRTUNE_ENDPOINTS": "env-only"}) == s
    assert tracking_uri(env=env) == "http://mlflow.example:5000"
    assert "MLFLOW_TRACKING_URI" not in client_env(s)


def test_local_stack_env_is_client_env(stack_dir):
    st = LocalStack(stack_dir.root)
    creds = stack_dir.read_credentials()
    assert st.env() == {
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:15000",
        "MLFLOW_S3_ENDPOINT_URL": "http://127.0.0.1:18333",
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "OCRTUNE_BUCKET": "stack-bucket",
    }


def test_secrets_are_masked_in_reprs_and_urls(stack_dir):
    s = S3Settings("http://s3.example:9000", "AKIAEXAMPLEKEY", SECRET, "b")
    assert SECRET not in repr(s) and "AKIAEXAMPLEKEY" not in repr(s) and SECRET not in str(s)
    assert "'AKIA***'" in repr(s) and "endpoint='http://s3.example:9000'" in repr(s)
    creds = stack_dir.read_credentials()
    assert creds.secret_key not in repr(creds) and creds.access_key not in repr(creds)
    assert repr(Credentials("k", "")) == "Credentials(access_key='***', secret_key='')"
    assert (
        redact_url(f"https://user:{SECRET}@mlflow.example:443/x") == "https://user:***@mlflow.example:443/x"
    )
    assert redact_url("http://mlflow.example:5000") == "http://mlflow.example:5000"
    assert SECRET not in repr(S3Settings(f"http://u:{SECRET}@h:1", "a", "b", "c"))


def test_credentials_file_is_0600_and_created_once(tmp_path):
    files = StackFiles(tmp_path / "st")
    first = files.ensure_credentials()
    assert stat.S_IMODE(os.stat(files.credentials_file).st_mode) == 0o600
    assert files.ensure_credentials() == first == files.read_credentials()
    assert json.loads(files.credentials_file.read_text())["secret_key"] == first.secret_key
    assert StackFiles(tmp_path / "other").read_credentials() is None


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        code = 200 if self.path == "/health" else 503
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_one_probe_for_everything(server):
    assert probe(server + "/health").healthy
    other = probe(server + "/other")
    assert other.answered and other.status == 503 and not other.healthy  # an error status is an answer
    (port,) = free_ports(1)
    down = probe(f"http://127.0.0.1:{port}/", timeout=1)
    assert not down.answered and "Connection refused" in down.reason
    assert probe_tracking(server).healthy and probe_tracking(server + "/").healthy
    assert probe_tracking("file:///tmp/mlruns") is None and probe_tracking("databricks") is None
    assert endpoints.probe_tracking(f"http://127.0.0.1:{port}", timeout=1).answered is False
