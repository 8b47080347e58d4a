"""Where a training process stands in a distributed job, read only from the environment.

The same ``ocrtune train`` runs alone, under ``torchrun`` (which sets RANK, WORLD_SIZE, LOCAL_RANK,
LOCAL_WORLD_SIZE, MASTER_ADDR/PORT, and itself reads PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
PET_MASTER_ADDR/PORT as a Kubeflow Trainer v2 TrainJob sets them) and in a PyTorchJob (MASTER_ADDR,
MASTER_PORT, WORLD_SIZE, RANK set directly). Only ``env://`` is used, so nothing here depends on which.
A rendezvous that cannot be reached fails with one line within a timeout instead of hanging.

Also what a rank needs around the rendezvous: its device, its threads, mixed precision, and the two
collectives the loop uses (a sum and a gather) that are the identity when the process runs alone.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ocrtune.errors import UserError

DEFAULT_RENDEZVOUS_TIMEOUT = 300.0
TIMEOUT_ENV = "OCRTUNE_RENDEZVOUS_TIMEOUT"


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise UserError(f"environment variable {name}={raw!r} is not an integer") from None


def detect(env: Mapping[str, str] | None = None) -> DistEnv:
    """The process's place in the job: from torchrun's / PyTorchJob's variables, else a single process."""
    env = os.environ if env is None else env
    world = _int(env, "WORLD_SIZE", 1)
    if world < 1:
        raise UserError(f"WORLD_SIZE={world} must be >= 1")
    if world == 1:
        return DistEnv()
    rank = _int(env, "RANK")
    if rank is None:
        raise UserError(
            "WORLD_SIZE is set but RANK is not: start with torchrun or set RANK for every process"
        )
    if not 0 <= rank < world:
        raise UserError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    # a PyTorchJob runs one process per pod: no LOCAL_* variables, so local rank 0 of 1
    local_rank = _int(env, "LOCAL_RANK", 0)
    local_world = _int(env, "LOCAL_WORLD_SIZE", 1)
    addr = env.get("MASTER_ADDR")
    port = _int(env, "MASTER_PORT")
    if not addr or port is None:
        raise UserError(f"WORLD_SIZE={world} needs MASTER_ADDR and MASTER_PORT (env:// rendezvous)")
    return DistEnv(rank, world, local_rank, local_world, addr, port)


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


THREADS_ENV = "OCRTUNE_THREADS"


def threads_per_rank(dist_env: DistEnv, cores: int | None = None) -> int:
    """Cores of this machine shared evenly among the ranks that run on it (or $OCRTUNE_THREADS)."""
    forced = _int(os.environ, THREADS_ENV)
    if forced is not None and forced > 0:
        return forced
    cores = cpu_count() if cores is None else cores
    return max(1, cores // max(1, dist_env.local_world_size))


def set_threads(dist_env: DistEnv) -> int:
    n = threads_per_rank(dist_env)
    os.environ["OMP_NUM_THREADS"] = str(n)
    torch.set_num_threads(n)
    return n


def rendezvous_timeout(env: Mapping[str, str] | None = None) -> float:
    env = os.environ if env is None else env
    raw = env.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_RENDEZVOUS_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise UserError(f"{TIMEOUT_ENV}={raw!r} must be > 0")
    return value


def wait_for_master(addr: str, port: int, timeout: float, poll: float = 0.5) -> None:
    """Block until MASTER_ADDR:MASTER_PORT accepts TCP connections, or raise a one-line UserError."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(5.0, left))):
                return
        except OSError as exc:
            last = exc.strerror or type(exc).__name__
        if time.monotonic() + poll >= deadline:
            raise UserError(
                f"rendezvous {addr}:{port} unreachable after {timeout:g}s ({last}): is the rank-0 process "
                f"running and MASTER_ADDR/MASTER_PORT right? (timeout: {TIMEOUT_ENV})"
            )
        time.sleep(poll)


def init(dist_env: DistEnv, device_type: str = "cpu", timeout: float | None = None) -> str | None:
    """``init_process_group`` with ``env://`` when WORLD_SIZE > 1; returns the backend, None when alone."""
    if not dist_env.distributed:
        return None
    timeout = rendezvous_timeout() if timeout is None else timeout
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist_env.is_main:
        wait_for_master(dist_env.master_addr, dist_env.master_port, timeout)
    try:
        dist.init_process_group(
            backend,
            init_method="env://",
            timeout=datetime.timedelta(seconds=timeout),
        )
    except Exception as exc:  # store timeouts and refused connections come as several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"rendezvous at {dist_env.master_addr}:{dist_env.master_port} failed for rank {dist_env.rank} of "
            f"{dist_env.world_size} within {timeout:g}s: {first[:200]}"
        ) from None
    return backend


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# ---- device and mixed precision -------------------------------------------------------------------------
def pick_device(spec: str, dist_env: DistEnv) -> torch.device:
    """``auto``: this rank's GPU (by local rank) when one is visible, else the CPU."""
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible")
        torch.cuda.set_device(dist_env.local_rank)
        return torch.device("cuda", dist_env.local_rank)
    if spec != "cpu":
        raise UserError(f"--device {spec!r}: must be auto, cpu or cuda")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 convolutions and matmuls natively (about 2x fp32 here)."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: do not guess
        return False


def amp_setup(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler).

    GPU: bf16 where supported, else fp16 with a GradScaler. CPU: bf16 when asked, and under ``auto`` only where
    the CPU has native bf16 (elsewhere bf16 is emulated and slower than fp32); fp16 is a GPU format.
    Weights and optimizer state stay fp32 either way, so checkpoints and exports are the same format.
    """
    if mode == "off":
        return None, False
    if device.type != "cuda":
        if mode == "fp16":
            raise UserError("train.amp fp16 needs a GPU: use bf16, auto or off on CPU")
        if mode == "bf16" or (mode == "auto" and cpu_has_native_bf16()):
            return torch.bfloat16, False
        return None, False
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return (torch.bfloat16, False) if mode == "bf16" else (torch.float16, True)


# ---- collectives that are the identity in a single process -------------------------------------------
def sum_across(values: list[float], device: torch.device, distributed: bool) -> list[float]:
    """Element-wise sum over all ranks (float64, so counts and losses add exactly enough)."""
    if not distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj: object, distributed: bool, world: int) -> list:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not distributed:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def torchrun_command(
    train_args: Sequence[str],
    nproc_per_node: int | str | None = None,
    env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> list[str]:
    """The command line that starts ``ocrtune train`` on this node.

    In a TrainJob the PET_* variables describe the job and torchrun reads them itself, so only what they
    do not say is passed; without them (one machine) it is a standalone rendezvous.
    """
    env = os.environ if env is None else env
    cmd = [python or sys.executable, "-m", "torch.distributed.run"]
    if env.get("PET_NNODES") or env.get("PET_MASTER_ADDR"):
        if nproc_per_node is not None and not env.get("PET_NPROC_PER_NODE"):
            cmd += ["--nproc_per_node", str(nproc_per_node)]
    else:
        cmd += ["--standalone", "--nnodes", "1", "--nproc_per_node", str(nproc_per_node or 1)]
    return [*cmd, "-m", "ocrtune", "train", *train_args]
