"""torchrun with two gloo ranks computes what one process with the same global batch computes."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from hacm import checkpoint as ckpt
from hacm import train
from hacm.config import to_yaml
from hacm.rundir import read_metrics, read_predictions
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


# Tolerances of the float64 comparison below. Reordered float64 sums (the gradient all-reduce, the
# global batch norm's statistics, the thread split of a matmul) differ by ~1e-16 relative: the
# training losses of one process under 1 vs 2 threads, or with each batch reversed, differ from
# each other by up to 5e-15, as much as DDP's differ from one process (measured; 3e-15 at most in
# 20 runs). rel 1e-9 leaves 10^5 of margin for longer sums or other CPUs, and is 10^6 below what a
# broken DDP path changes (local batch-norm statistics, or no gradient all-reduce: 2e-3 to 2e-2 by
# the second step).
LOSS_REL = 1e-9
# AdamW steps by m / (sqrt(v) + eps): a parameter the training loss does not depend on (a bias right
# before a batch norm, the attention's key bias) gets a rounding-noise gradient delta and moves by
# about lr * delta / eps per step. In float64, delta <= ~1e-14 (100 roundings of gradients of order
# 1) gives at most 1e-3 * 1e-14 / 1e-8 = 1e-9 a step, 6e-9 in 6 steps (measured: 3e-10). The eval-mode
# batch norm's running mean follows such a bias, so the test losses see the drift too (measured:
# 9e-12 relative). 1e-7 bounds both, 10^4 below the lr-sized steps (1e-3) a real gradient difference
# makes. (In float32, delta ~ 1e-8 is eps itself: those parameters step by ~lr in directions the
# rounding picks, and the function drifts by 1e-6 to 1e-4 relative depending on the CPU -- the reason
# this comparison runs in float64.)
DRIFT_TOL = 1e-7


@pytest.mark.ddp
@pytest.mark.parametrize("protocol", ["linprobe", "finetune"])
def test_two_gloo_ranks_match_one_process(toy_store, tmp_path, monkeypatch, protocol):
    # No randomness outside the data pipeline (dropout, drop path): the two runs compute the same
    # function of the same global batches. The heads' batch norms see the global batch on both.
    # float64 (train.dtype), so that only the order of float64 sums can differ.
    cfg = toy_config(toy_store.path, protocol, model={"drop_path": 0.0},
                     train={"epochs": 2, "warmup_epochs": 0, "batch_size": 16, "max_steps_per_epoch": 3,
                            "log_every": 1, "dtype": "float64",
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
    assert len(s1) == 6 and s2 == pytest.approx(s1, rel=LOSS_REL, abs=0)
    e1 = [r for r in read_metrics(tmp_path / "one") if r["kind"] == "epoch"]
    e2 = [r for r in read_metrics(tmp_path / "two") if r["kind"] == "epoch"]
    assert [r["loss"] for r in e2] == pytest.approx([r["loss"] for r in e1], rel=LOSS_REL, abs=0)
    assert [r["test_loss"] for r in e2] == pytest.approx([r["test_loss"] for r in e1], rel=DRIFT_TOL, abs=0)
    # Accuracies are counts over the 24 test clips, the shards of two ranks summed: equal.
    assert [r["test_acc"] for r in e2] == [r["test_acc"] for r in e1]
    assert [r for r in read_metrics(tmp_path / "two") if r["kind"] == "start"][0]["world_size"] == 2
    # the per-clip scores the ranks gathered into predictions.npz are the one process's, clip by clip
    p1, p2 = read_predictions(tmp_path / "one"), read_predictions(tmp_path / "two")
    assert p1["scores"].shape == (24, toy_store.num_classes)
    np.testing.assert_allclose(p2["scores"], p1["scores"], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(p2["pred"], p1["pred"])
    assert {v.dtype for v in one["model"].values() if v.is_floating_point()} == {torch.float64}
    assert one["model"].keys() == two["model"].keys()
    for k, v in one["model"].items():
        assert v.dtype == two["model"][k].dtype, k
        torch.testing.assert_close(two["model"][k], v, rtol=LOSS_REL, atol=DRIFT_TOL, msg=k)


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
