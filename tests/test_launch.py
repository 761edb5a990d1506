"""Distributed pre-training from one process (hacm.launch): the torchrun / srun commands, and a real
two-process (gloo) run started by a notebook's train_or_read."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hacm import launch, notebook
from hacm.config import load_config
from hacm.errors import ConfigError, HacmError
from test_train import make_toy_store, toy_config


def test_one_node_is_a_standalone_torchrun():
    command = launch.torchrun_command("pretrain", Path("c.yaml"), Path("runs/x"), nodes=1, procs_per_node=2,
                                      resume=True)
    assert command == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
                       "-m", "hacm", "pretrain", "--config", "c.yaml", "--out", "runs/x", "--resume"]


def test_several_nodes_are_srun_started_torchruns_meeting_on_the_first_node(monkeypatch):
    cfg = load_config("synth_pretrain", {"train.nodes": 2, "train.gpus_per_node": 4})
    hosts = type("Done", (), {"stdout": "gpu07\ngpu08\n"})
    monkeypatch.setattr(launch.subprocess, "run", lambda command, **kw: hosts)   # scontrol show hostnames
    command = launch.launch_command(cfg, Path("c.yaml"), Path("r"), False,
                                    env={"SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242"})
    assert command[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--kill-on-bad-exit=1"]
    torchrun = command[4:]
    assert torchrun[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert {"--nproc_per_node=4", "--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=gpu07:29500",
            "--rdzv-id=4242"} <= set(torchrun) and "--standalone" not in torchrun
    with pytest.raises(HacmError, match="inside a Slurm allocation"):
        launch.launch_command(cfg, Path("c.yaml"), Path("r"), False, env={})


def test_nodes_and_gpus_per_node_are_positive():
    with pytest.raises(ConfigError, match="train.nodes: expected a positive integer"):
        load_config("synth_pretrain", {"train.nodes": 0})
    assert not launch.is_distributed(load_config("synth_pretrain"))


@pytest.mark.ddp
def test_train_or_read_runs_two_gloo_processes_and_rank_0_writes(tmp_path):
    make_toy_store(tmp_path / "store", clips_per_class=6)
    cfg = toy_config(tmp_path / "store", train={"epochs": 1, "warmup_epochs": 0, "gpus_per_node": 2})
    run = notebook.train_or_read(cfg, tmp_path / "run")
    starts = run.rows("start")
    assert [r["world_size"] for r in starts] == [2]        # one line: rank 0 alone wrote the log
    assert len(run.rows("epoch")) == 1
    assert notebook.train_or_read(cfg, tmp_path / "run").summary == run.summary     # read, not trained again
