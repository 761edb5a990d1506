"""Distributed pre-training started from one process (a notebook's `train_or_read`, a batch job):
torchrun on one node, or one torchrun per node started by srun inside a Slurm allocation.

`train.nodes` x `train.gpus_per_node` processes train together (c10d rendezvous on the first node
of the allocation; hacm.distributed picks nccl on GPUs, gloo on CPUs) and rank 0 alone writes the
run directory. The commands are built by pure functions, so what is launched can be read and
checked without a cluster.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hacm.config import RunConfig, to_yaml
from hacm.errors import HacmError
from hacm.machine import usable_cores

RDZV_PORT = 29500


def is_distributed(cfg: RunConfig) -> bool:
    return cfg.train.nodes * cfg.train.gpus_per_node > 1


def torchrun_command(protocol: str, cfg_file: Path, run_dir: Path, *, nodes: int, procs_per_node: int,
                     rdzv_endpoint: str | None = None, rdzv_id: str | None = None, resume: bool = False) -> list[str]:
    """torchrun (as `python -m torch.distributed.run`) of `hacm PROTOCOL`: standalone on one node,
    else a c10d rendezvous at rdzv_endpoint that every node's torchrun joins under rdzv_id."""
    launcher = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={procs_per_node}"]
    if nodes == 1:
        launcher.append("--standalone")
    else:
        if not rdzv_endpoint or not rdzv_id:
            raise HacmError(f"train.nodes={nodes}: a multi-node run needs a rendezvous host (run it inside a Slurm allocation)")
        launcher += [f"--nnodes={nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={rdzv_endpoint}", f"--rdzv-id={rdzv_id}"]
    command = launcher + ["-m", "hacm", protocol, "--config", str(cfg_file), "--out", str(run_dir)]
    return command + (["--resume"] if resume else [])


def srun_command(nodes: int, inner: list[str]) -> list[str]:
    """One task per node of the allocation, each starting the node's torchrun."""
    return ["srun", f"--nodes={nodes}", "--ntasks-per-node=1", "--kill-on-bad-exit=1", *inner]


def launch_command(cfg: RunConfig, cfg_file: Path, run_dir: Path, resume: bool, env=os.environ) -> list[str]:
    """The command that trains cfg with its nodes x gpus_per_node processes from here."""
    t = cfg.train
    if t.nodes == 1:
        return torchrun_command(cfg.protocol, cfg_file, run_dir, nodes=1, procs_per_node=t.gpus_per_node, resume=resume)
    if "SLURM_JOB_NODELIST" not in env:
        raise HacmError(f"train.nodes={t.nodes}: multi-node training runs inside a Slurm allocation of "
                        f"{t.nodes} nodes (hacm report --executor slurm requests it)")
    hosts = subprocess.run(["scontrol", "show", "hostnames", env["SLURM_JOB_NODELIST"]],
                           capture_output=True, text=True, check=True).stdout.split()
    if len(hosts) < t.nodes:
        raise HacmError(f"train.nodes={t.nodes}: this Slurm allocation has {len(hosts)} node(s)")
    inner = torchrun_command(cfg.protocol, cfg_file, run_dir, nodes=t.nodes, procs_per_node=t.gpus_per_node,
                             rdzv_endpoint=f"{hosts[0]}:{RDZV_PORT}", rdzv_id=env.get("SLURM_JOB_ID", "hacm"),
                             resume=resume)
    return srun_command(t.nodes, inner)


def run_distributed(cfg: RunConfig, run_dir: str | Path, resume: bool) -> None:
    """Train cfg into run_dir with its processes; a failure is a HacmError with the end of their output."""
    run_dir = Path(run_dir)
    with tempfile.TemporaryDirectory(prefix="hacm-launch-") as tmp:
        cfg_file = Path(tmp) / "config.yaml"
        cfg_file.write_text(to_yaml(cfg))
        # every process of the run uses its share of the cores, not all of them
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS") or str(
            max(1, usable_cores() // cfg.train.gpus_per_node))}
        done = subprocess.run(launch_command(cfg, cfg_file, run_dir, resume), capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-25:])
        raise HacmError(f"distributed training ({cfg.train.nodes} node(s) x {cfg.train.gpus_per_node}) "
                        f"failed with status {done.returncode}:\n{tail}")
