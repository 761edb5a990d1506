"""Multi-node pre-training: two torchrun "nodes" on this machine meet through a c10d rendezvous.

Each node is one `torchrun --nnodes 2 --nproc_per_node 1 --rdzv-backend c10d` process, as `srun`
starts one per node on a cluster (README, Scaling out). On both nodes LOCAL_RANK is 0; only the
global RANK tells the writer (rank 0) from the other, so a writer chosen by LOCAL_RANK would show
up here as duplicated metrics lines.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid

import pytest

from hacm import checkpoint as ckpt
from hacm.config import to_yaml
from hacm.rundir import read_metrics
from test_train import make_toy_store, toy_config

STEPS_PER_EPOCH = 2
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_nodes(cfg, cfg_file, out_dir, *extra: str) -> list[str]:
    """Run `hacm pretrain` as two torchrun nodes of one process each; each node's stdout."""
    cfg_file.write_text(to_yaml(cfg))
    endpoint, run_id = f"127.0.0.1:{_free_port()}", uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id, "--max-restarts", "0"]
    train = ["-m", "hacm", "pretrain", "--config", str(cfg_file), "--out", str(out_dir), *extra]
    # Node 0 hosts the rendezvous store, as the first node of an allocation does: left to guess, both
    # nodes would race to bind the port on one machine. The read timeout allows for a loaded machine.
    conf = [f"is_host={int(n == 0)},read_timeout=300" for n in range(2)]
    # Output goes to files, not pipes: a node blocked on a full pipe while the test waits on the
    # other would hang both (they meet in every collective).
    logs = [(cfg_file.with_suffix(f".node{n}.out"), cfg_file.with_suffix(f".node{n}.err")) for n in range(2)]
    nodes = []
    for (out, err), node_conf in zip(logs, conf):
        with open(out, "w") as fo, open(err, "w") as fe:
            nodes.append(subprocess.Popen([*cmd, "--rdzv-conf", node_conf, *train], stdout=fo, stderr=fe, text=True,
                                          env=env))
    try:
        for node in nodes:
            node.wait(timeout=TIMEOUT_S)
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.wait()
    assert all(node.returncode == 0 for node in nodes), "\n".join(
        f"--- node {n}, exit {node.returncode}:\n{err.read_text()[-2000:]}" for n, (node, (_, err)) in
        enumerate(zip(nodes, logs)))
    return [out.read_text() for out, _ in logs]


def _epoch_records(run_dir) -> list[dict]:
    return [r for r in read_metrics(run_dir) if r["kind"] == "epoch"]


@pytest.mark.ddp
def test_two_nodes_pretrain_rank0_writes_once_and_resume_continues(toy_store, tmp_path):
    run_dir = tmp_path / "run"
    train = {"warmup_epochs": 0, "batch_size": 16, "max_steps_per_epoch": STEPS_PER_EPOCH, "log_every": 100,
             "checkpoint_every": 1}
    outputs = _two_nodes(toy_config(toy_store.path, "pretrain", train={**train, "epochs": 2}),
                         tmp_path / "config.yaml", run_dir)
    # The CLI prints the run summary on global rank 0 only: exactly one node holds it.
    assert sum('run_dir:' in out for out in outputs) == 1, outputs

    rows = read_metrics(run_dir)
    assert [r["world_size"] for r in rows if r["kind"] == "start"] == [2]
    first = _epoch_records(run_dir)
    assert [(r["epoch"], r["step"]) for r in first] == [(0, STEPS_PER_EPOCH), (1, 2 * STEPS_PER_EPOCH)]
    assert len(rows) == 3        # start + two epochs: a second writer would have appended its own
    names = sorted(p.name for p in (run_dir / ckpt.CHECKPOINT_DIR).iterdir())
    assert names == ["epoch_0001.pt", "epoch_0002.pt", "last.pt"]
    assert ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT_DIR / "last.pt")["epoch"] == 2

    outputs = _two_nodes(toy_config(toy_store.path, "pretrain", train={**train, "epochs": 3}),
                         tmp_path / "more.yaml", run_dir, "--resume")
    assert sum('run_dir:' in out for out in outputs) == 1, outputs
    rows = read_metrics(run_dir)
    assert [r["kind"] for r in rows].count("start") == 1
    resumed = _epoch_records(run_dir)
    # Continued from epoch 2: the first two records are the first run's, one more was added.
    assert resumed[:2] == first
    assert [(r["epoch"], r["step"]) for r in resumed[2:]] == [(2, 3 * STEPS_PER_EPOCH)]
    last = ckpt.load_checkpoint(run_dir / ckpt.CHECKPOINT_DIR / "last.pt")
    assert (last["epoch"], last["step"]) == (3, 3 * STEPS_PER_EPOCH)
    assert (run_dir / ckpt.CHECKPOINT_DIR / "epoch_0003.pt").exists()
