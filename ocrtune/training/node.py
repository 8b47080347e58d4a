"""One node of a Kubeflow Trainer v2 TrainJob: ``ocrtune train`` starts torchrun's agent for its ranks.

The torch-distributed runtime runs the trainer command once per node with PET_NNODES, PET_NPROC_PER_NODE,
PET_NODE_RANK and PET_MASTER_ADDR/PORT set, and no RANK: that process becomes torchrun's elastic agent (the
same arguments ``distributed.torchrun_command`` gives), whose workers are ``ocrtune train`` ranks. torchrun
itself exits 1 whatever its workers did; here a node whose ranks stopped on SIGTERM (each saved a checkpoint
and exited 75), or that was itself stopped by SIGTERM, exits 75 (``PREEMPTED_EXIT``), so the launcher tells a
preemption (resumable) from a failure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args
from torch.distributed.run import run as torchrun

from ocrtune.training.distributed import torchrun_command
from ocrtune.training.loop import PREEMPTED_EXIT


def is_trainjob_node(env: Mapping[str, str] | None = None) -> bool:
    """A TrainJob node process: the runtime's PET_* variables and no rank of its own yet."""
    env = os.environ if env is None else env
    return bool(env.get("PET_NNODES")) and not env.get("RANK") and not env.get("LOCAL_RANK")


def failure_exit(failures: Mapping[int, object]) -> int:
    """The node's exit code from its failed ranks: 75 when every one was preempted, else the first one's."""
    codes = [int(getattr(f, "exitcode", 1)) for _, f in sorted(failures.items())]
    if codes and all(c == PREEMPTED_EXIT for c in codes):
        return PREEMPTED_EXIT
    return next((c for c in codes if c not in (0, PREEMPTED_EXIT)), 1) if codes else 1


def run_node(train_args: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run this node's ranks under torchrun's agent; returns the exit code the node should end with."""
    argv = torchrun_command(train_args, env=env)[3:]  # [python, -m, torch.distributed.run, *argv]
    try:
        torchrun(parse_args(argv))
    except ChildFailedError as exc:
        return failure_exit(exc.failures)
    except SignalException:
        return PREEMPTED_EXIT  # the agent forwarded the signal; checkpoints are whole or the previous one
    return 0
