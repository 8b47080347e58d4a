"""A Kubernetes API stand-in on 127.0.0.1 that answers the launcher's calls as the API server does, and really
runs the jobs it is given.

There is no API server package to run here, so this serves exactly the paths ``ocrtune.platform.launcher``
calls, with the API's shapes and codes: ClusterTrainingRuntime get (404 for a runtime the cluster lacks);
TrainJob / PyTorchJob create (201; 409 ``AlreadyExists`` Status for an existing name; 404 for a kind whose
operator is not installed; 422 for a field the CRD's model does not know — stricter than a real server, which
would prune it), get, list, delete (Foreground: the pods are stopped, then the object goes); pods list by label
selector; pod log (``follow``, ``tailLines``).

A created job is trained for real: each node of a TrainJob is the trainer command (``command + args``) as a
process, with the environment the ``torch-distributed`` runtime gives (PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK, PET_MASTER_ADDR=127.0.0.1, PET_MASTER_PORT) and the trainer's ``env`` with ``secretKeyRef``s
resolved from the stand-in's Secrets; each PyTorchJob replica gets MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK and
its ``envFrom`` Secrets. Every pod has its own working directory and cache (the nodes share no disk with the
launcher). The job's conditions follow the processes' exits: Complete (PyTorchJob: Succeeded) when all exit 0,
Failed at the first non-zero exit, when the other pods are stopped as JobSet does. ``preempt`` sends SIGTERM to
every pod, as a reclaimed node pool would. Only the cluster is simulated.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from ocrtune.platform.stack import free_ports

TRAINER = ("trainer.kubeflow.org", "v1alpha1")
KINDS = {
    "trainjobs": ("trainer.kubeflow.org", "v1alpha1", "TrainJob"),
    "pytorchjobs": ("kubeflow.org", "v1", "PyTorchJob"),
}
GRACE_S = 30  # terminationGracePeriodSeconds


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def status(code: int, reason: str, message: str, **details) -> dict:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def model_round_trip(plural: str, body: dict) -> dict:
    """The body as the CRD's model (kubeflow_trainer_api / kubeflow-training) reads it back."""
    if plural == "trainjobs":
        from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob

        return TrainerV1alpha1TrainJob.from_dict(body).to_dict()
    from kubeflow.training import ApiClient

    class Resp:
        data = json.dumps(body)

    api = ApiClient()
    return api.sanitize_for_serialization(api.deserialize(Resp(), "KubeflowOrgV1PyTorchJob"))


@dataclass
class Pod:
    name: str
    namespace: str
    labels: dict
    container: str
    image: str
    cmd: list[str]
    env: dict
    workdir: Path
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: str = field(default_factory=now)
    proc: subprocess.Popen | None = None
    exit_code: int | None = None
    started: str = ""
    finished: str = ""
    waiting: str = ""  # a reason the container never started (CreateContainerConfigError)

    @property
    def log(self) -> Path:
        return self.workdir / "container.log"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.workdir,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = now()

    def poll(self) -> int | None:
        if self.exit_code is None and self.proc is not None and self.proc.poll() is not None:
            rc = self.proc.returncode
            self.exit_code = 128 - rc if rc < 0 else rc  # killed by a signal: 128 + signal, as a container
            self.finished = now()
        return self.exit_code

    def terminate(self, grace: float = GRACE_S) -> None:
        """As the kubelet does: SIGTERM to the container's main process, SIGKILL to all that is left after the
        grace period."""
        if self.proc is None or self.proc.poll() is not None:
            self.poll()
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        finally:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.poll()

    def to_dict(self) -> dict:
        if self.waiting:
            phase, state = (
                "Pending",
                {"waiting": {"reason": "CreateContainerConfigError", "message": self.waiting}},
            )
        elif self.exit_code is None:
            phase, state = "Running", {"running": {"startedAt": self.started}}
        else:
            phase = "Succeeded" if self.exit_code == 0 else "Failed"
            term = {"exitCode": self.exit_code, "reason": "Completed" if self.exit_code == 0 else "Error"}
            state = {"terminated": {**term, "startedAt": self.started, "finishedAt": self.finished}}
        cstatus = {
            "name": self.container,
            "image": self.image,
            "imageID": "",
            "ready": phase == "Running",
            "restartCount": 0,
            "state": state,
        }
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "labels": self.labels,
                "creationTimestamp": self.created,
            },
            "spec": {"containers": [{"name": self.container, "image": self.image, "command": self.cmd}]},
            "status": {"phase": phase, "containerStatuses": [cstatus]},
        }


@dataclass
class Job:
    plural: str
    obj: dict
    pods: list[Pod] = field(default_factory=list)
    deleting: bool = False


class KubeStandin:
    """``start()``, then point a kubeconfig at ``url`` (``write_kubeconfig``); ``stop()`` ends every process."""

    def __init__(
        self,
        root: Path,
        runtimes=("torch-distributed",),
        kinds=("trainjobs", "pytorchjobs"),
        secrets_: dict[str, dict[str, str]] | None = None,
        base_env: dict[str, str] | None = None,
    ):
        self.root, self.runtimes, self.kinds = Path(root), set(runtimes), set(kinds)
        self.secrets = dict(secrets_ or {})
        self.base_env = dict(base_env or {})
        self.jobs: dict[tuple[str, str, str], Job] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None

    # ---- server -------------------------------------------------------------------------------------------
    def start(self) -> KubeStandin:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and chunked log streams

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                standin._handle(self, "GET")

            def do_POST(self):
                standin._handle(self, "POST")

            def do_DELETE(self):
                standin._handle(self, "DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def write_kubeconfig(self, path: Path, namespace: str = "kubeflow") -> Path:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token"}}],
            "contexts": [
                {
                    "name": "standin",
                    "context": {"cluster": "standin", "user": "standin", "namespace": namespace},
                }
            ],
            "current-context": "standin",
        }
        path.write_text(json.dumps(cfg), "utf-8")
        return path

    def stop(self) -> None:
        with self.lock:
            pods = [p for job in self.jobs.values() for p in job.pods]
        for pod in pods:
            pod.terminate(grace=5)
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # ---- routing -------------------------------------------------------------------------------------------
    ROUTES = [
        ("runtime", re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/clustertrainingruntimes/([^/]+)$")),
        ("pods", re.compile(r"^/api/v1/namespaces/([^/]+)/pods$")),
        ("log", re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/log$")),
        ("jobs", re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?$")),
    ]

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        length = int(h.headers.get("Content-Length") or 0)
        body = json.loads(h.rfile.read(length)) if length else None
        for name, pattern in self.ROUTES:
            m = pattern.match(url.path)
            if m:
                getattr(self, f"_{name}")(h, method, query, body, *m.groups())
                return
        self._send(
            h, 404, status(404, "NotFound", f"the server could not find the requested resource {url.path}")
        )

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, code: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # ---- handlers -----------------------------------------------------------------------------------------
    def _runtime(self, h, method, query, body, name):
        if method != "GET":
            return self._send(h, 405, status(405, "MethodNotAllowed", method))
        if name not in self.runtimes:
            return self._send(
                h,
                404,
                status(
                    404,
                    "NotFound",
                    f'clustertrainingruntimes.trainer.kubeflow.org "{name}" not found',
                    name=name,
                    group="trainer.kubeflow.org",
                    kind="clustertrainingruntimes",
                ),
            )
        self._send(
            h,
            200,
            {
                "apiVersion": "trainer.kubeflow.org/v1alpha1",
                "kind": "ClusterTrainingRuntime",
                "metadata": {"name": name, "labels": {"trainer.kubeflow.org/framework": "torch"}},
            },
        )

    def _jobs(self, h, method, query, body, group, version, ns, plural, name):
        if plural not in self.kinds or KINDS.get(plural, ("", ""))[:2] != (group, version):
            return self._send(
                h,
                404,
                status(404, "NotFound", f"the server could not find the requested resource ({plural})"),
            )
        if method == "POST" and name is None:
            return self._create(h, ns, plural, body)
        with self.lock:
            if name is None and method == "GET":
                items = [j.obj for (p, n, _), j in self.jobs.items() if p == plural and n == ns]
                return self._send(
                    h,
                    200,
                    {
                        "apiVersion": f"{group}/{version}",
                        "kind": KINDS[plural][2] + "List",
                        "metadata": {},
                        "items": items,
                    },
                )
            job = self.jobs.get((plural, ns, name))
        if job is None:
            return self._send(
                h,
                404,
                status(
                    404,
                    "NotFound",
                    f'{plural}.{group} "{name}" not found',
                    name=name,
                    group=group,
                    kind=plural,
                ),
            )
        if method == "GET":
            return self._send(h, 200, job.obj)
        if method == "DELETE":
            job.obj["metadata"].setdefault("deletionTimestamp", now())
            if not job.deleting:
                job.deleting = True
                threading.Thread(target=self._finish_delete, args=((plural, ns, name),), daemon=True).start()
            return self._send(h, 200, job.obj)
        self._send(h, 405, status(405, "MethodNotAllowed", method))

    def _create(self, h, ns, plural, body):
        name = (body.get("metadata") or {}).get("name", "")
        group = KINDS[plural][0]
        try:
            back = model_round_trip(plural, body)
        except Exception as exc:
            return self._send(h, 422, status(422, "Invalid", f"{plural} {name!r} is invalid: {exc}"))
        if back != body:
            return self._send(
                h, 422, status(422, "Invalid", f"{plural} {name!r}: unknown fields (the model drops them)")
            )
        with self.lock:
            if (plural, ns, name) in self.jobs:
                return self._send(
                    h,
                    409,
                    status(
                        409,
                        "AlreadyExists",
                        f'{plural}.{group} "{name}" already exists',
                        name=name,
                        group=group,
                        kind=plural,
                    ),
                )
            obj = json.loads(json.dumps(body))
            obj["metadata"].update(
                {
                    "namespace": ns,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": now(),
                    "resourceVersion": "1",
                }
            )
            obj["status"] = {"conditions": []}
            job = Job(plural, obj)
            job.pods = self._trainjob_pods(obj) if plural == "trainjobs" else self._pytorchjob_pods(obj)
            self.jobs[(plural, ns, name)] = job
        threading.Thread(target=self._supervise, args=(job,), daemon=True).start()
        self._send(h, 201, obj)

    def _pods(self, h, method, query, body, ns):
        want = dict(kv.split("=", 1) for kv in (query.get("labelSelector") or "").split(",") if "=" in kv)
        with self.lock:
            pods = [p for j in self.jobs.values() for p in j.pods if p.namespace == ns]
        items = [p.to_dict() for p in pods if all(p.labels.get(k) == v for k, v in want.items())]
        self._send(
            h,
            200,
            {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items},
        )

    def _log(self, h, method, query, body, ns, name):
        with self.lock:
            pod = next(
                (p for j in self.jobs.values() for p in j.pods if p.name == name and p.namespace == ns), None
            )
        if pod is None or pod.waiting or not pod.log.exists():
            msg = (
                f'pods "{name}" not found'
                if pod is None
                else f'container "{pod.container}" is waiting to start'
            )
            code = 404 if pod is None else 400
            return self._send(h, code, status(code, "NotFound" if pod is None else "BadRequest", msg))
        if str(query.get("follow")).lower() != "true":
            lines = pod.log.read_bytes().splitlines(keepends=True)
            tail = int(query["tailLines"]) if query.get("tailLines") else len(lines)
            data = b"".join(lines[-tail:] if tail else [])
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return
        h.send_response(200)  # follow: chunked, as the API server streams a log
        h.send_header("Content-Type", "text/plain")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        with open(pod.log, "rb") as fh:
            while True:
                chunk = fh.read(65536)
                if chunk:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    continue
                if pod.poll() is not None:
                    rest = fh.read()
                    if rest:
                        h.wfile.write(b"%x\r\n%s\r\n" % (len(rest), rest))
                    h.wfile.write(b"0\r\n\r\n")
                    return
                time.sleep(0.1)

    # ---- jobs -------------------------------------------------------------------------------------------------
    def _env_value(self, var: dict) -> tuple[str | None, str]:
        """(value, error) of one EnvVar, ``secretKeyRef`` resolved from this cluster's Secrets."""
        if "value" in var:
            return var["value"], ""
        ref = (var.get("valueFrom") or {}).get("secretKeyRef") or {}
        secret = self.secrets.get(ref.get("name"))
        if secret is None or ref.get("key") not in secret:
            if ref.get("optional"):
                return None, ""
            return None, f'secret "{ref.get("name")}" has no key "{ref.get("key")}"'
        return secret[ref["key"]], ""

    def _pod(
        self, job_obj: dict, name: str, labels: dict, container: dict | str, env: dict, errors: list[str]
    ) -> Pod:
        md = job_obj["metadata"]
        c = container if isinstance(container, dict) else {}
        cmd = list(c.get("command") or []) + list(c.get("args") or [])
        workdir = self.root / md["namespace"] / name
        home = workdir / "home"
        full_env = {**self.base_env, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), **env}
        pod = Pod(
            name, md["namespace"], labels, c.get("name", "node"), c.get("image", ""), cmd, full_env, workdir
        )
        pod.waiting = "; ".join(errors)
        return pod

    def _trainjob_pods(self, obj: dict) -> list[Pod]:
        trainer = obj["spec"].get("trainer") or {}
        nodes = int(trainer.get("numNodes") or 1)
        nproc = trainer.get("numProcPerNode") or 1
        port = free_ports(1)[0]
        env, errors = {}, []
        for var in trainer.get("env") or []:
            value, err = self._env_value(var)
            if err:
                errors.append(err)
            elif value is not None:
                env[var["name"]] = value
        name, pods = obj["metadata"]["name"], []
        for i in range(nodes):
            pet = {
                "PET_NNODES": str(nodes),
                "PET_NPROC_PER_NODE": str(nproc),
                "PET_NODE_RANK": str(i),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": str(port),
            }
            labels = {
                "jobset.sigs.k8s.io/jobset-name": name,
                "jobset.sigs.k8s.io/replicatedjob-name": "node",
                "batch.kubernetes.io/job-completion-index": str(i),
                "trainer.kubeflow.org/trainjob-ancestor-step": "trainer",
            }
            container = {"name": "node", **{k: trainer.get(k) for k in ("image", "command", "args")}}
            pods.append(
                self._pod(
                    obj,
                    f"{name}-node-0-{i}-{secrets.token_hex(3)}",
                    labels,
                    container,
                    {**env, **pet},
                    errors,
                )
            )
        return pods

    def _pytorchjob_pods(self, obj: dict) -> list[Pod]:
        replicas = obj["spec"]["pytorchReplicaSpecs"]
        order = [("Master", replicas["Master"])] + (
            [("Worker", replicas["Worker"])] if "Worker" in replicas else []
        )
        world = sum(int(r.get("replicas") or 1) for _, r in order)
        port, name, pods, rank = free_ports(1)[0], obj["metadata"]["name"], [], 0
        for rtype, rspec in order:
            container = rspec["template"]["spec"]["containers"][0]
            env, errors = {}, []
            for src in container.get("envFrom") or []:
                secret = self.secrets.get(src["secretRef"]["name"])
                if secret is None:
                    errors.append(f'secret "{src["secretRef"]["name"]}" not found')
                else:
                    env.update(secret)
            for i in range(int(rspec.get("replicas") or 1)):
                dist = {
                    "MASTER_ADDR": "127.0.0.1",
                    "MASTER_PORT": str(port),
                    "WORLD_SIZE": str(world),
                    "RANK": str(rank),
                }
                labels = {
                    "training.kubeflow.org/job-name": name,
                    "training.kubeflow.org/replica-type": rtype.lower(),
                    "training.kubeflow.org/replica-index": str(i),
                }
                pods.append(
                    self._pod(obj, f"{name}-{rtype.lower()}-{i}", labels, container, {**env, **dist}, errors)
                )
                rank += 1
        return pods

    def _condition(self, job: Job, ctype: str, reason: str, message: str) -> None:
        with self.lock:
            job.obj["status"]["conditions"].append(
                {
                    "type": ctype,
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now(),
                }
            )

    def _supervise(self, job: Job) -> None:
        """Start the pods; the job's conditions from their exits (the first failure stops the rest)."""
        done = "Complete" if job.plural == "trainjobs" else "Succeeded"
        if job.pods[0].waiting:
            return self._condition(job, "Failed", "CreateContainerConfigError", job.pods[0].waiting)
        for pod in job.pods:
            pod.start()
        self._condition(
            job, "Created" if job.plural == "pytorchjobs" else "Running", "Started", "pods started"
        )
        while not job.deleting:
            codes = [p.poll() for p in job.pods]
            failed = [p for p in job.pods if p.exit_code not in (None, 0)]
            if failed:
                first = min(failed, key=lambda p: p.finished)
                for pod in job.pods:
                    if pod.exit_code is None:
                        pod.terminate()
                return self._condition(
                    job, "Failed", "FailedJobs", f"pod {first.name} failed with exit code {first.exit_code}"
                )
            if all(c == 0 for c in codes):
                return self._condition(job, done, "JobsCompleted", "all pods succeeded")
            time.sleep(0.2)

    def _finish_delete(self, key) -> None:
        job = self.jobs[key]
        for pod in job.pods:
            pod.terminate()
        with self.lock:
            self.jobs.pop(key, None)

    # ---- what a cluster does to a job from outside -------------------------------------------------------
    def preempt(self, plural: str, ns: str, name: str) -> None:
        """SIGTERM to every pod of the job at once (a reclaimed spot pool, a Kueue preemption)."""
        job = self.jobs[(plural, ns, name)]
        for pod in job.pods:
            if pod.proc is not None and pod.proc.poll() is None:
                pod.proc.send_signal(signal.SIGTERM)

    def add_object(self, plural: str, ns: str, name: str) -> None:
        """An object that exists already (made by someone else), with no pods."""
        group, version, kind = KINDS[plural]
        obj = {
            "apiVersion": f"{group}/{version}",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns},
            "status": {"conditions": []},
        }
        with self.lock:
            self.jobs[(plural, ns, name)] = Job(plural, obj)

    def job(self, plural: str, ns: str, name: str) -> Job | None:
        with self.lock:
            return self.jobs.get((plural, ns, name))
