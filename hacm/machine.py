"""One line saying what machine a run is timed on: timings mean little without it."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (its affinity: a Slurm allocation or taskset, not the whole node)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def describe() -> str:
    """e.g. '2 cores (AMD EPYC), torch 2.13.0+cpu with 2 threads, no GPU'."""
    import torch

    cores = usable_cores()
    gpu = (f"GPU {torch.cuda.get_device_name(0)} (x{torch.cuda.device_count()})" if torch.cuda.is_available()
           else "no GPU")
    return f"{cores} cores ({cpu_model()}), torch {torch.__version__} with {torch.get_num_threads()} threads, {gpu}"
