"""The local stack: real SeaweedFS and MLflow processes, started, checked and stopped by PID."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess

from support.cli import run_cli

from ocrtune.platform.stack import LocalStack, free_ports, port_free


def test_up_status_down_and_idempotency(tmp_path):
    s3_port, mlflow_port = free_ports(2)
    d = tmp_path / "st"
    r = run_cli("stack", "up", "--dir", str(d), "--s3-port", str(s3_port), "--mlflow-port", str(mlflow_port))
    assert r.returncode == 0, r.stderr
    assert "healthy" in r.stdout and f"127.0.0.1:{s3_port}" in r.stdout
    try:
        st = LocalStack(d)
        pids = {s: st.pid(s) for s in ("s3", "mlflow")}
        assert all(pids.values())
        # the 0600 credentials file exists and the secret is never printed
        creds = st.credentials()
        assert stat.S_IMODE(os.stat(d / "credentials.json").st_mode) == 0o600
        assert creds.secret_key not in r.stdout + r.stderr

        # up twice is harmless: same processes, ports remembered without flags
        r2 = run_cli("stack", "up", "--dir", str(d))
        assert r2.returncode == 0, r2.stderr
        assert {s: LocalStack(d).pid(s) for s in ("s3", "mlflow")} == pids

        r3 = run_cli("stack", "status", "--dir", str(d), "--json")
        assert r3.returncode == 0
        status = json.loads(r3.stdout)
        assert status["healthy"] and status["services"]["mlflow"]["url"] == f"http://127.0.0.1:{mlflow_port}"
        assert creds.secret_key not in r3.stdout
    finally:
        r4 = run_cli("stack", "down", "--dir", str(d))
    assert r4.returncode == 0 and "mlflow" in r4.stdout and "s3" in r4.stdout
    for pid in pids.values():
        assert (
            not os.path.exists(f"/proc/{pid}")
            or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z"
        )
    r5 = run_cli("stack", "status", "--dir", str(d))
    assert r5.returncode == 1 and "stopped" in r5.stdout
    assert run_cli("stack", "down", "--dir", str(d)).stdout.strip() == "nothing was running"


def test_down_never_kills_a_process_it_did_not_start(tmp_path):
    """A pid file whose PID now belongs to another process (PID reuse) must not be acted on."""
    other = subprocess.Popen(["sleep", "60"])
    try:
        st = LocalStack(tmp_path / "st")
        st.pid_file("s3").parent.mkdir(parents=True)
        st.pid_file("s3").write_text(json.dumps({"pid": other.pid, "start": "1", "argv": ["weed"]}))
        assert st.down() == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_port_in_use_is_one_line_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("stack", "up", "--dir", str(tmp_path / "st"), "--s3-port", str(port))
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == f"ocrtune: error: port {port} (s3) on 127.0.0.1 is already in use; choose another with --s3-port"
    )
    assert "Traceback" not in r.stderr


def test_missing_binary_is_one_line_error(tmp_path):
    s3_port, mlflow_port = free_ports(2)
    r = run_cli(
        "stack",
        "up",
        "--dir",
        str(tmp_path / "st"),
        "--s3-port",
        str(s3_port),
        env={"OCRTUNE_WEED": str(tmp_path / "no-such-weed")},
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "'weed' binary not found" in r.stderr


def test_a_disk_too_full_for_s3_is_one_line_error_and_starts_nothing(tmp_path):
    """SeaweedFS makes every volume read-only on a low disk and uploads then wait forever (a CI run lost an
    hour that way): ``up`` refuses instead, naming the free space."""
    d = tmp_path / "st"
    s3_port, mlflow_port = free_ports(2)
    argv = ["stack", "up", "--dir", str(d), "--s3-port", str(s3_port), "--mlflow-port", str(mlflow_port)]
    r = run_cli(*argv, env={"OCRTUNE_S3_MIN_FREE_MB": str(10**12)})
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "MiB free on the disk of" in r.stderr and "free some space" in r.stderr
    assert LocalStack(d).pid("s3") is None and LocalStack(d).pid("mlflow") is None
    assert port_free(s3_port)

    r = run_cli(*argv, env={"OCRTUNE_S3_MIN_FREE_MB": "lots"})
    assert r.returncode == 2
    assert (
        r.stderr.strip()
        == "ocrtune: error: OCRTUNE_S3_MIN_FREE_MB='lots' is not a whole number of MiB of at least 1"
    )
