"""Where the pipeline's train step trains: torchrun on this machine, or a Kubeflow job on the cluster.

``launch(TrainSpec)`` runs ``ocrtune train`` with the spec's arguments and returns a ``LaunchResult``
(``succeeded``, ``preempted`` — exit 75, a checkpoint was flushed: a rerun with ``--resume`` continues — or
``failed`` with the failing rank's last lines):

- ``local``: ``torchrun`` with ``nproc_per_node`` CPU ranks (gloo), the command of
  ``ocrtune.training.distributed.torchrun_command``;
- ``trainjob``: a Kubeflow Trainer v2 TrainJob (``ocrtune.platform.trainjob``) on the ``torch-distributed``
  ClusterTrainingRuntime;
- ``pytorchjob``: a ``kubeflow.org/v1`` PyTorchJob (``ocrtune.platform.pytorchjob``), for the legacy Training
  Operator.

The cluster protocol goes straight through the Kubernetes API (``CustomObjectsApi`` and ``CoreV1Api`` of the
``kubernetes`` client) rather than the Kubeflow SDK's ``TrainerClient``: the SDK builds its own TrainJob from its
trainer types (no ``runtimePatches`` for the GPU pool's placement, no Secret env) and has no PyTorchJob, while
one small client does both kinds with the exact objects the tests validate. The runtime is checked before
anything is created; a name that exists is one line (exit 2) and nothing is created; the job's conditions are
polled until Complete (Succeeded) or Failed while the trainer's (node 0's, the master's) log is streamed; on
SIGTERM (a cancelled run, a deleted step pod), Ctrl-C or an error the job is deleted. Cluster trainers cannot see
this pod's files: their ``--train`` / ``--val`` must be ``s3://`` trees and ``--publish`` where the output goes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from ocrtune.errors import UserError
from ocrtune.platform import pytorchjob, trainjob
from ocrtune.training.distributed import torchrun_command

BACKENDS = ("local", "trainjob", "pytorchjob")
PREEMPTED_EXIT = 75
TERMINATED_EXIT = 143  # 128 + SIGTERM
TAIL_LINES = 40
GRACE_S = 60  # for the ranks to flush a checkpoint after SIGTERM, and past activeDeadlineSeconds
LAUNCH_ID = "ocrtune.io/launch-id"  # annotation: which launcher created the job
TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}
# the GPU pool's placement for the jobs a pipeline step creates: compiled into the train task's environment
# (pipelines/finetune.py), so a TrainJob lands where the compiled pipeline says the GPU pool is
NODE_SELECTOR_ENV = "OCRTUNE_GPU_NODE_SELECTOR"  # JSON object: label -> value
TOLERATIONS_ENV = "OCRTUNE_GPU_TOLERATIONS"  # JSON list of tolerations
TIMEOUT_ENV = "OCRTUNE_TRAIN_TIMEOUT_S"  # seconds, 0: none
Echo = Callable[[str], None]


def job_shape(backend: str, nodes: int, gpus_per_node: int) -> tuple[int, int, int]:
    """(num_nodes, nproc_per_node, gpus_per_node) of the job for ``nodes`` machines of ``gpus_per_node`` GPUs:
    a TrainJob runs one torchrun per node with a rank per GPU; a PyTorchJob one rank per pod, so it gets a
    pod per GPU (2 nodes x 8 GPUs: 16 pods of 1 GPU), the same 16 ranks."""
    if backend == "pytorchjob":
        return nodes * max(1, gpus_per_node), 1, 1 if gpus_per_node else 0
    return nodes, max(1, gpus_per_node), gpus_per_node


def placement_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """``node_selector``, ``tolerations`` and ``timeout_s`` for a TrainSpec from the step's environment
    (unset: none); a value that is not what its variable holds is one line naming the variable."""
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {"node_selector": {}, "tolerations": [], "timeout_s": 0}
    for var, key, kind in (
        (NODE_SELECTOR_ENV, "node_selector", dict),
        (TOLERATIONS_ENV, "tolerations", list),
    ):
        raw = env.get(var, "").strip()
        if not raw:
            continue
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if not isinstance(value, kind):
            raise UserError(f"{var}={raw!r}: expected a JSON {'object' if kind is dict else 'list'}")
        out[key] = value
    raw = env.get(TIMEOUT_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise UserError(f"{TIMEOUT_ENV}={raw!r}: expected whole seconds")
        out["timeout_s"] = int(raw)
    return out


@dataclass
class TrainSpec:
    """What to train where. ``train_args`` are the arguments after ``ocrtune train``."""

    backend: str = "local"
    train_args: list[str] = field(default_factory=list)
    num_nodes: int = 1
    nproc_per_node: int = 1
    gpus_per_node: int = 0
    image: str = ""  # the trainer image (components/image.py: trainer_image()); cluster backends need it
    namespace: str = "kubeflow"
    name: str = ""  # the job's name; "" = ocrtune-train-<random>
    runtime: str = "torch-distributed"
    env_from_secrets: list[str] = field(default_factory=lambda: ["ocrtune-s3", "ocrtune-mlflow"])
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    timeout_s: int = 0  # 0: no limit
    poll_s: float = 5.0

    def check(self) -> TrainSpec:
        """Every field checked (one-line UserErrors), the name filled in; returns self."""
        if self.backend not in BACKENDS:
            raise UserError(f"backend {self.backend!r}: must be one of {', '.join(BACKENDS)}")
        for what in ("num_nodes", "nproc_per_node"):
            value = getattr(self, what)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"{what} {value!r}: must be an integer >= 1")
        if not isinstance(self.gpus_per_node, int) or self.gpus_per_node < 0:
            raise UserError(f"gpus_per_node {self.gpus_per_node!r}: must be an integer >= 0")
        if not isinstance(self.timeout_s, int) or self.timeout_s < 0:
            raise UserError(f"timeout_s {self.timeout_s!r}: must be an integer >= 0 (0: no limit)")
        if not all(isinstance(a, str) for a in self.train_args):
            raise UserError(f"train_args {self.train_args!r}: must be strings")
        if self.backend == "local":
            if self.num_nodes != 1:
                raise UserError(f"num_nodes {self.num_nodes}: the local backend runs on one node")
            return self
        self.name = trainjob.check_name(self.name or f"ocrtune-train-{secrets.token_hex(3)}", "job name")
        trainjob.check_name(self.namespace, "namespace")
        trainjob.check_name(self.runtime, "runtime")
        if not self.image:
            raise UserError(f"backend {self.backend}: no trainer image given (TrainSpec.image)")
        self._check_placement()
        self._check_remote_args()
        return self

    def _check_placement(self) -> None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.node_selector.items()):
            raise UserError(f"node_selector {self.node_selector!r}: keys and values must be strings")
        for tol in self.tolerations:
            if not isinstance(tol, dict) or not set(tol) <= TOLERATION_KEYS:
                raise UserError(f"toleration {tol!r}: only {', '.join(sorted(TOLERATION_KEYS))} are allowed")

    def _check_remote_args(self) -> None:
        """The trainer pods cannot see this pod's files: data from and output to object storage."""
        args = self.train_args
        for flag in ("--train", "--val", "--publish"):
            values = [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]
            values += [a.split("=", 1)[1] for a in args if a.startswith(flag + "=")]
            if not values:
                raise UserError(f"backend {self.backend}: train_args need {flag} s3://bucket/prefix")
            local = [p for v in values for p in v.split(",") if p and not p.startswith("s3://")]
            if local:
                raise UserError(
                    f"backend {self.backend}: {flag} {local[0]} is a local path the cluster's trainers "
                    "cannot see: use s3://bucket/prefix"
                )
        configs = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
        files = [
            c for c in configs if not c.startswith("s3://") and ("/" in c or c.endswith((".yaml", ".yml")))
        ]
        if files:
            raise UserError(
                f"backend {self.backend}: --config {files[0]} is a local file the cluster's trainers cannot see: "
                "use a profile name or s3://bucket/key"
            )


@dataclass
class LaunchResult:
    status: str  # succeeded | preempted | failed
    exit_code: int
    logs_tail: str = ""
    name: str = ""
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Terminated(SystemExit):
    """SIGTERM reached the launcher (a cancelled run, a deleted step pod): the job is stopped, then this."""

    def __init__(self) -> None:
        super().__init__(TERMINATED_EXIT)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM raises ``Terminated`` in the main thread (elsewhere signals cannot be handled)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def launch(spec: TrainSpec, echo: Echo = print, api: k8s.ApiClient | None = None) -> LaunchResult:
    """Train as ``spec`` says; returns when the training has ended (or raises ``Terminated`` on SIGTERM)."""
    spec.check()
    if spec.backend == "local":
        return launch_local(spec, echo)
    return ClusterJob(spec, api or api_client(), echo).run()


# ---- local: torchrun on this machine ------------------------------------------------------------------
def _pump(stream, echo: Echo, tail: collections.deque) -> None:
    for line in stream:
        line = line.rstrip("\n")
        tail.append(line)
        echo(line)


def _child_env() -> dict[str, str]:
    """This process's environment without a distributed job's variables: torchrun sets its own."""
    drop = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    return {k: v for k, v in os.environ.items() if not k.startswith("PET_") and k not in drop}


def _stop(proc: subprocess.Popen, grace: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def launch_local(spec: TrainSpec, echo: Echo = print) -> LaunchResult:
    """torchrun with ``nproc_per_node`` CPU ranks (gloo) in its own process group, its output streamed."""
    cmd = torchrun_command(spec.train_args, nproc_per_node=spec.nproc_per_node, env={})
    echo(f"local: torchrun with {spec.nproc_per_node} rank(s)")
    tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
    proc = subprocess.Popen(
        cmd,
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    pump = threading.Thread(target=_pump, args=(proc.stdout, echo, tail), daemon=True)
    pump.start()
    deadline = time.monotonic() + spec.timeout_s if spec.timeout_s else None
    try:
        with sigterm_raises():
            while proc.poll() is None:
                if deadline and time.monotonic() > deadline:
                    _stop(proc, GRACE_S)
                    pump.join(5)
                    return LaunchResult(
                        "failed", 1, "\n".join(tail), message=f"timed out after {spec.timeout_s}s"
                    )
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(0.5)
    finally:
        if proc.poll() is None:  # SIGTERM or Ctrl-C: the ranks checkpoint and stop
            _stop(proc, GRACE_S)
    pump.join(5)
    rc = proc.returncode
    status = "succeeded" if rc == 0 else "preempted" if rc == PREEMPTED_EXIT else "failed"
    return LaunchResult(status, rc, "\n".join(tail), message=f"torchrun exited {rc}")


# ---- cluster: a TrainJob or a PyTorchJob through the Kubernetes API ----------------------------------------
@dataclass(frozen=True)
class JobKind:
    group: str
    version: str
    plural: str
    kind: str
    build: Callable[[TrainSpec], dict[str, Any]]
    pods: Callable[[str], str]  # job name -> label selector of all its trainer pods
    main_pod: Callable[[str], str]  # job name -> selector of the pod whose log is streamed
    container: str
    done: str  # the condition type that means success ("Failed" means failure for both)


KINDS = {
    "trainjob": JobKind(
        trainjob.GROUP,
        trainjob.VERSION,
        trainjob.PLURAL,
        trainjob.KIND,
        trainjob.build_trainjob,
        lambda name: trainjob.node_selector(name),
        lambda name: trainjob.node_selector(name, 0),
        trainjob.NODE,
        "Complete",
    ),
    "pytorchjob": JobKind(
        pytorchjob.GROUP,
        pytorchjob.VERSION,
        pytorchjob.PLURAL,
        pytorchjob.KIND,
        pytorchjob.build_pytorchjob,
        lambda name: pytorchjob.pod_selector(name),
        lambda name: pytorchjob.pod_selector(name, master_only=True),
        pytorchjob.CONTAINER,
        "Succeeded",
    ),
}


def api_client() -> k8s.ApiClient:
    """The in-cluster service account's API when in a pod, else the kubeconfig's ($KUBECONFIG, ~/.kube)."""
    cfg = k8s.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=cfg)
        else:
            # read $KUBECONFIG now: the client's default was fixed when it was imported
            path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
            k8s_config.load_kube_config(config_file=path, client_configuration=cfg)
    except (ConfigException, OSError) as exc:
        raise UserError(
            f"no Kubernetes API: not in a cluster and no usable kubeconfig ($KUBECONFIG, ~/.kube/config): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    cfg.retries = 1
    return k8s.ApiClient(cfg)


def _status_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


class LogFollower(threading.Thread):
    """Streams one pod's container log (``follow``) to ``echo``, keeping its last lines; the pod is found by
    label, and followed again if it is replaced."""

    def __init__(
        self, core: k8s.CoreV1Api, namespace: str, selector: str, container: str, echo: Echo, poll: float
    ):
        super().__init__(daemon=True)
        self.core, self.namespace, self.selector, self.container = core, namespace, selector, container
        self.echo, self.poll = echo, poll
        self.tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
        self.done = threading.Event()
        self._resp = None

    def _next_pod(self, seen: set[str]):
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        for pod in pods:
            if pod.metadata.uid not in seen and pod.status and pod.status.phase != "Pending":
                return pod
        return None

    def run(self) -> None:
        seen: set[str] = set()
        while not self.done.is_set():
            try:
                pod = self._next_pod(seen)
                if pod is None:
                    self.done.wait(self.poll)
                    continue
                seen.add(pod.metadata.uid)
                self._resp = self.core.read_namespaced_pod_log(
                    pod.metadata.name,
                    self.namespace,
                    container=self.container,
                    follow=True,
                    _preload_content=False,
                )
                self._follow(pod.metadata.name)
            except (ApiException, urllib3.exceptions.HTTPError, OSError, AttributeError):
                self.done.wait(self.poll)  # not there yet, or the stream broke: look again

    def _follow(self, pod: str) -> None:
        buf = ""
        for raw in self._resp.stream(amt=None, decode_content=True):  # chunk by chunk, as they come
            buf += raw.decode("utf-8", "replace")
            *lines, buf = buf.split("\n")
            for line in lines:
                self.tail.append(line)
                self.echo(f"{pod}: {line}")
        if buf:
            self.tail.append(buf)
            self.echo(f"{pod}: {buf}")

    def stop(self) -> None:
        self.done.set()
        with contextlib.suppress(Exception):
            if self._resp is not None:
                self._resp.close()


class ClusterJob:
    """One TrainJob / PyTorchJob: created, watched (conditions polled, log streamed), deleted when stopped."""

    def __init__(self, spec: TrainSpec, api: k8s.ApiClient, echo: Echo = print):
        self.spec, self.echo, self.kind = spec, echo, KINDS[spec.backend]
        self.custom, self.core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
        self.host = api.configuration.host
        self.what = f"{self.kind.kind} {spec.namespace}/{spec.name}"
        self.launch_id = secrets.token_hex(8)

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn`` with the API's failures as one line (ApiException passes for the caller to read)."""
        try:
            return fn()
        except urllib3.exceptions.HTTPError as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UserError(
                f"Kubernetes API {self.host} unreachable ({what}): {type(reason).__name__}"
            ) from None

    def _coords(self) -> tuple[str, str, str, str]:
        return self.kind.group, self.kind.version, self.spec.namespace, self.kind.plural

    def check_runtime(self) -> None:
        """A TrainJob's ClusterTrainingRuntime must exist, or the job would never start."""
        try:
            self._call(
                "runtime check",
                lambda: self.custom.get_cluster_custom_object(
                    trainjob.GROUP, trainjob.VERSION, trainjob.RUNTIME_PLURAL, self.spec.runtime
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise UserError(
                    f"the cluster has no ClusterTrainingRuntime {self.spec.runtime!r} (is Kubeflow Trainer "
                    "installed with its runtimes? kubectl get clustertrainingruntimes)"
                ) from None
            raise UserError(
                f"runtime check at {self.host}: HTTP {exc.status} {_status_message(exc)}"
            ) from None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        group, version, ns, plural = self._coords()
        try:
            return self._call(
                f"create {self.what}",
                lambda: self.custom.create_namespaced_custom_object(group, version, ns, plural, body),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise UserError(
                    f"{self.what} already exists: choose another name or delete it "
                    f"(kubectl delete {plural} -n {ns} {self.spec.name})"
                ) from None
            if exc.status == 404 and self.kind.plural == pytorchjob.PLURAL:
                raise UserError(
                    f"the cluster has no {group}/{version} PyTorchJob API (is the Training Operator installed?)"
                ) from None
            raise UserError(f"create {self.what}: HTTP {exc.status} {_status_message(exc)}") from None

    def delete(self, why: str) -> None:
        group, version, ns, plural = self._coords()
        try:
            self.custom.delete_namespaced_custom_object(
                group, version, ns, plural, self.spec.name, body={"propagationPolicy": "Foreground"}
            )
            self.echo(f"deleted {self.what} ({why})")
        except ApiException as exc:
            if exc.status != 404:
                self.echo(f"could not delete {self.what} ({why}): HTTP {exc.status} {_status_message(exc)}")
        except urllib3.exceptions.HTTPError as exc:
            self.echo(f"could not delete {self.what} ({why}): {type(exc).__name__}")

    def conditions(self) -> dict[str, dict[str, Any]] | None:
        """The job's true conditions by type; None when the job is gone."""
        group, version, ns, plural = self._coords()
        try:
            obj = self._call(
                f"get {self.what}",
                lambda: self.custom.get_namespaced_custom_object(group, version, ns, plural, self.spec.name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise UserError(f"get {self.what}: HTTP {exc.status} {_status_message(exc)}") from None
        conds = (obj.get("status") or {}).get("conditions") or []
        return {c.get("type"): c for c in conds if str(c.get("status")) == "True"}

    def wait(self) -> tuple[str, str]:
        """Poll until the job's success or Failed condition (or it is deleted, or past its time)."""
        limit = self.spec.timeout_s + GRACE_S if self.spec.timeout_s else None
        started = time.monotonic()
        while True:
            conds = self.conditions()
            if conds is None:
                return "failed", f"{self.what} was deleted by someone else"
            if self.kind.done in conds:
                return "succeeded", conds[self.kind.done].get("message") or self.kind.done
            if "Failed" in conds:
                c = conds["Failed"]
                return "failed", f"{c.get('reason') or 'Failed'}: {c.get('message') or ''}".strip()
            if limit and time.monotonic() - started > limit:
                self.delete("timed out")
                return "failed", f"timed out after {self.spec.timeout_s}s"
            time.sleep(self.spec.poll_s)

    def exits(self) -> list[tuple[str, int, str]]:
        """(pod, exit code, finished at) of every trainer container that has terminated, earliest first."""
        pods = self.core.list_namespaced_pod(
            self.spec.namespace, label_selector=self.kind.pods(self.spec.name)
        )
        out = []
        for pod in pods.items:
            for cs in (pod.status and pod.status.container_statuses) or []:
                term = cs.state and cs.state.terminated
                if cs.name == self.kind.container and term is not None:
                    out.append((pod.metadata.name, int(term.exit_code), str(term.finished_at or "")))
        return sorted(out, key=lambda e: e[2])

    def failed_result(self, message: str) -> LaunchResult:
        """The pod that ended first with an error decides: exit 75 is a preemption (resumable), anything else a
        failure, reported with that pod's last lines (the other pods were stopped because of it)."""
        first = next((e for e in self.exits() if e[1] != 0), None)
        if first is None:
            return LaunchResult("failed", 1, "", self.spec.name, message)
        pod, code, _ = first
        if code == PREEMPTED_EXIT:
            return LaunchResult(
                "preempted", PREEMPTED_EXIT, "", self.spec.name, f"{pod} preempted: {message}"
            )
        try:
            tail = self.core.read_namespaced_pod_log(
                pod, self.spec.namespace, container=self.kind.container, tail_lines=TAIL_LINES
            )
        except ApiException as exc:
            tail = f"(no log: HTTP {exc.status})"
        return LaunchResult("failed", code, f"{pod}:\n{tail}".rstrip(), self.spec.name, message)

    def ours(self) -> bool:
        """Whether the job under our name is the one this launcher created (its launch id annotation)."""
        group, version, ns, plural = self._coords()
        try:
            obj = self.custom.get_namespaced_custom_object(group, version, ns, plural, self.spec.name)
        except (ApiException, urllib3.exceptions.HTTPError):
            return False
        return ((obj.get("metadata") or {}).get("annotations") or {}).get(LAUNCH_ID) == self.launch_id

    def watch(self, logs: LogFollower) -> tuple[str, str]:
        body = self.kind.build(self.spec)
        body["metadata"]["annotations"] = {LAUNCH_ID: self.launch_id}
        created = False
        try:
            if self.kind.plural == trainjob.PLURAL:
                self.check_runtime()
            self.create(body)
            created = True
            self.echo(
                f"created {self.what} ({self.spec.num_nodes} node(s) x {self.spec.nproc_per_node}) at {self.host}"
            )
            logs.start()
            return self.wait()
        except BaseException as exc:  # SIGTERM, Ctrl-C, a failure while watching: no orphan job
            # stopped in the middle of the create call: delete only what this launcher made (not a 409's owner)
            if created or (isinstance(exc, Terminated | KeyboardInterrupt) and self.ours()):
                self.delete("SIGTERM" if isinstance(exc, Terminated) else type(exc).__name__)
            raise

    def run(self) -> LaunchResult:
        logs = LogFollower(
            self.core,
            self.spec.namespace,
            self.kind.main_pod(self.spec.name),
            self.kind.container,
            self.echo,
            min(self.spec.poll_s, 2.0),
        )
        try:
            with sigterm_raises():  # from before the create on: a SIGTERM can never leave the job behind
                status, message = self.watch(logs)
        finally:
            if logs.is_alive():
                logs.join(min(10.0, self.spec.poll_s * 2))
            logs.stop()
        self.echo(f"{self.what}: {status} ({message})")
        if status == "succeeded":
            return LaunchResult("succeeded", 0, "\n".join(logs.tail), self.spec.name, message)
        return self.failed_result(message)


def main(argv: list[str] | None = None) -> int:
    """``python -m ocrtune.platform.launcher SPEC.json``: launch, print the result as JSON; exit 0 when it
    succeeded, 75 when preempted, 1 when failed, 2 for a user error."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if len(argv) != 1:
            raise UserError("usage: python -m ocrtune.platform.launcher SPEC.json")
        with open(argv[0], encoding="utf-8") as fh:
            fields = json.load(fh)
        try:
            spec = TrainSpec(**fields)
        except TypeError as exc:
            raise UserError(f"{argv[0]}: {exc}") from None
        result = launch(spec, echo=lambda line: print(line, flush=True))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict()), flush=True)
    return {"succeeded": 0, "preempted": PREEMPTED_EXIT}.get(result.status, 1)


if __name__ == "__main__":
    sys.exit(main())
