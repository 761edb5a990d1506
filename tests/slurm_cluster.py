"""A one-node Slurm cluster on this machine, for the tests of the Slurm executor: munged, slurmctld
and slurmd (Debian's slurm-wlm and munge, installed by .ci/install-slurm) with a generated
slurm.conf, every file under one temporary directory, on free ports, so that it touches nothing of
the system's own Slurm or munge set-up. Clients find it through SLURM_CONF."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def missing_daemons() -> list[str]:
    return [d for d in DAEMONS if shutil.which(d) is None and not Path("/usr/sbin", d).is_file()]


def _daemon(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(root: Path, node: str, cpus: int, munge_socket: Path) -> str:
    ctld_port, slurmd_port = _free_port(), _free_port()
    return f"""ClusterName=hacmtest
SlurmctldHost={node}
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={munge_socket}
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=600
NodeName={node} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """Start with `start()`, stop with `stop()`; `env` is what a client needs (SLURM_CONF)."""

    def __init__(self, root: Path):
        self.root = root
        self.processes: list[subprocess.Popen] = []
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> None:
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)       # munged wants its socket's directory reachable by everyone
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        munge_socket = self.root / "munge.sock"
        self.conf.write_text(slurm_conf(self.root, self.node, len(os.sched_getaffinity(0)), munge_socket))
        log = open(self.root / "log" / "daemons.out", "w")
        self._spawn([_daemon("munged"), "-F", "--force", "-S", str(munge_socket), "--key-file", str(key),
                     "--log-file", str(self.root / "log" / "munged.log"), "--pid-file", str(self.root / "munged.pid"),
                     "--seed-file", str(self.root / "munge.seed")], log)
        self._wait(lambda: munge_socket.exists(), timeout, "munged")
        self._spawn([_daemon("slurmctld"), "-D", "-i", "-f", str(self.conf)], log)
        self._spawn([_daemon("slurmd"), "-D", "-f", str(self.conf), "-N", self.node], log)
        self._wait(self._node_idle, timeout, "the Slurm node to be idle")

    def _spawn(self, command: list[str], log) -> None:
        self.processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env))

    def _node_idle(self) -> bool:
        info = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env)
        return info.returncode == 0 and info.stdout.strip() == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in (self.root / "log").glob("*")
                                 if p.is_file())
                raise RuntimeError(f"local Slurm: gave up waiting for {what} (exited: {dead})\n{logs}")
            time.sleep(0.3)

    def stop(self) -> None:
        """Cancel every job, wait for the queue to empty (a job step outlives slurmd by design), then
        stop the daemons in the reverse order (slurmd, slurmctld, munged)."""
        if all(self.running()):
            subprocess.run(["scancel", "--full", "--user", str(os.getuid())], env=self.env, capture_output=True)
            deadline = time.monotonic() + 60
            while self._queue() and time.monotonic() < deadline:
                time.sleep(0.5)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def _queue(self) -> str:
        return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, env=self.env).stdout.strip()

    def running(self) -> list[bool]:
        return [p.poll() is None for p in self.processes]
