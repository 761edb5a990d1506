"""torchrun with two gloo ranks computes what one process with the same global batch computes."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from hacm import checkpoint as ckpt
from hacm import train
from hacm.config import to_yaml
from hacm.evaluate import read_metrics
from test_train import make_toy_store, toy_config


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


def _torchrun(protocol: str, cfg, cfg_file, out_dir, *extra: str) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=2 -m hacm PROTOCOL --config CFG_FILE --out OUT_DIR ...` (gloo on the CPU)."""
    cfg_file.write_text(to_yaml(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "hacm", protocol, "--config", str(cfg_file), "--out", str(out_dir), *extra],
        capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.ddp
@pytest.mark.parametrize("protocol", ["linprobe", "finetune"])
def test_two_gloo_ranks_match_one_process(toy_store, tmp_path, monkeypatch, protocol):
    # No randomness outside the data pipeline (dropout, drop path): the two runs must agree to
    # float tolerance. The heads' batch norms see the global batch on both.
    cfg = toy_config(toy_store.path, protocol, model={"drop_path": 0.0},
                     train={"epochs": 2, "warmup_epochs": 0, "batch_size": 16, "max_steps_per_epoch": 3,
                            "log_every": 1,
                            "head_dropout": 0.0, "lr": 0.05 if protocol == "linprobe" else 1e-3})
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    train.run(cfg, tmp_path / "one")

    proc = _torchrun(protocol, cfg, tmp_path / "config.yaml", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]

    one = ckpt.load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    two = ckpt.load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert one["step"] == two["step"] == 6
    # The losses of every step (global-batch means) agree.
    s1 = [r["loss"] for r in read_metrics(tmp_path / "one") if r["kind"] == "step"]
    s2 = [r["loss"] for r in read_metrics(tmp_path / "two") if r["kind"] == "step"]
    # Two epochs: the data order is a function of (seed, epoch) on one process and on two ranks.
    assert len(s1) == 6 and s2 == pytest.approx(s1, rel=1e-4, abs=1e-6)
    e1 = [r for r in read_metrics(tmp_path / "one") if r["kind"] == "epoch"]
    e2 = [r for r in read_metrics(tmp_path / "two") if r["kind"] == "epoch"]
    assert [r["loss"] for r in e2] == pytest.approx([r["loss"] for r in e1], rel=1e-4)
    assert e2[0]["test_acc"] == pytest.approx(e1[0]["test_acc"])
    assert [r for r in read_metrics(tmp_path / "two") if r["kind"] == "start"][0]["world_size"] == 2
    if protocol == "linprobe":
        assert [r["test_acc"] for r in e2] == pytest.approx([r["test_acc"] for r in e1])
        # SGD moves the weights in proportion to the gradients: they agree too. (AdamW divides
        # by the gradient's size, so parameters whose gradient is zero in exact arithmetic -- the
        # attention key bias, anything right before a batch norm -- take noise-sized steps of
        # about lr in either run; there only the function, i.e. the losses above, is comparable.)
        assert one["model"].keys() == two["model"].keys()
        for k, v in one["model"].items():
            torch.testing.assert_close(two["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)


@pytest.mark.ddp
def test_two_gloo_ranks_pretrain_and_resume(toy_store, tmp_path):
    # Masks are drawn per rank, so pre-training cannot match one process bit for bit; it must run on
    # both ranks, write once (rank 0) and resume under torchrun.
    cfg = toy_config(toy_store.path, "pretrain", train={"epochs": 1, "warmup_epochs": 0, "batch_size": 16,
                                                        "max_steps_per_epoch": 2, "log_every": 1})
    proc = _torchrun("pretrain", cfg, tmp_path / "config.yaml", tmp_path / "two")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "two")
    assert [r["world_size"] for r in rows if r["kind"] == "start"] == [2]     # one writer
    steps = [r for r in rows if r["kind"] == "step"]
    assert [r["step"] for r in steps] == [1, 2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in steps)
    assert ckpt.load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["step"] == 2

    cfg_more = toy_config(toy_store.path, "pretrain", train={"epochs": 2, "warmup_epochs": 0, "batch_size": 16,
                                                             "max_steps_per_epoch": 2, "log_every": 1})
    proc = _torchrun("pretrain", cfg_more, tmp_path / "more.yaml", tmp_path / "two", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ckpt.load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")["step"] == 4
