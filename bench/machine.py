"""What every benchmark prints first: the machine and the versions its figures were measured with."""

from __future__ import annotations

import os
import platform


def machine(*modules: str) -> str:
    """CPU, usable cores, load, python and torch versions, plus the versions of ``modules``."""
    import importlib

    import torch

    from ocrtune.training.tracking import system_info

    parts = [
        f"{system_info()['cpu']}, {len(os.sched_getaffinity(0))} cores (load {os.getloadavg()[0]:.1f})",
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
    ]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    for name in modules:
        mod = importlib.import_module(name)
        parts.append(f"{name} {getattr(mod, '__version__', '?')}")
    return ", ".join(parts) + f"; {gpu}"
