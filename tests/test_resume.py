"""Checkpoints: kill-and-resume equals an uninterrupted run; atomic writes; weights_only loads;
a non-finite loss stops the run and keeps the last good checkpoint."""
from __future__ import annotations

import math

import pytest
import torch
from test_train import make_toy_store, toy_config

from hacm import checkpoint as ckpt
from hacm import model as hacm_model
from hacm import train
from hacm.config import replace as config_replace
from hacm.errors import HacmError
from hacm.rundir import read_metrics


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


class Killed(KeyboardInterrupt):
    """Stands in for the SIGKILL / Ctrl-C that ends a job right after a checkpoint was written."""


def _kill_after(monkeypatch, name: str, epoch: int):
    real = ckpt.save_checkpoint

    def save_then_die(path, state):
        out = real(path, state)
        if path.name == name and state["epoch"] == epoch:
            raise Killed()
        return out
    monkeypatch.setattr(ckpt, "save_checkpoint", save_then_die)


@pytest.mark.parametrize("protocol", ["pretrain", "finetune"])
def test_kill_and_resume_reaches_the_same_weights(toy_store, tmp_path, monkeypatch, protocol):
    # drop path and head dropout draw from the global RNG, masks from the per-step generator,
    # the data order from (seed, epoch): all of it must survive the restart.
    cfg = toy_config(toy_store.path, protocol, model={"drop_path": 0.2},
                     train={"epochs": 3, "warmup_epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8,
                            "head_dropout": 0.3, "log_every": 1})
    train.run(cfg, tmp_path / "straight")

    _kill_after(monkeypatch, "last.pt", epoch=1)
    with pytest.raises(Killed):
        train.run(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    torch.manual_seed(12345)                       # the restarted process has a fresh RNG
    torch.rand(7)
    train.run(cfg, tmp_path / "resumed", resume=True)

    a = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = ckpt.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    assert a["epoch"] == b["epoch"] == 3 and a["step"] == b["step"] == 6
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    # metrics: the resumed run has each epoch exactly once, with the same losses
    ea = [r for r in read_metrics(tmp_path / "straight") if r["kind"] == "epoch"]
    eb = [r for r in read_metrics(tmp_path / "resumed") if r["kind"] == "epoch"]
    assert [r["epoch"] for r in eb] == [0, 1, 2]
    assert [r["loss"] for r in ea] == [r["loss"] for r in eb]


def test_resume_refuses_a_changed_config_and_a_missing_checkpoint(toy_store, tmp_path):
    cfg = toy_config(toy_store.path, train={"epochs": 1, "max_steps_per_epoch": 1})
    with pytest.raises(HacmError, match="no such checkpoint"):
        train.pretrain(cfg, tmp_path / "none", resume=True)
    train.pretrain(cfg, tmp_path / "run")
    changed = config_replace(cfg, masking={"mask_ratio": 0.5})
    with pytest.raises(HacmError, match="masking.mask_ratio"):
        train.pretrain(changed, tmp_path / "run", resume=True)
    longer = config_replace(cfg, train={"epochs": 2})        # extending a run is allowed
    assert train.pretrain(longer, tmp_path / "run", resume=True)["epochs"] == 2


def test_non_finite_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(toy_store, tmp_path, monkeypatch):
    cfg = toy_config(toy_store.path, train={"epochs": 3, "max_steps_per_epoch": 2, "batch_size": 8})
    real_forward = hacm_model.HACM.forward
    calls = {"n": 0}

    def forward(self, x, generator=None):
        out = real_forward(self, x, generator)
        calls["n"] += 1
        if calls["n"] == 4:                        # epoch 1, second step (global step 3)
            out.loss = out.loss * math.nan
        return out
    monkeypatch.setattr(hacm_model.HACM, "forward", forward)
    with pytest.raises(HacmError, match=r"non-finite loss \(nan\) at epoch 1, step 3"):
        train.pretrain(cfg, tmp_path / "nan")
    last = ckpt.load_checkpoint(tmp_path / "nan" / "checkpoints" / "last.pt")
    assert last["epoch"] == 1 and last["step"] == 2
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    # a bad first step: the message must not promise a checkpoint that was never written
    calls["n"] = 3
    with pytest.raises(HacmError, match=r"at epoch 0, step 0 .*no epoch finished, so there is no checkpoint"):
        train.pretrain(cfg, tmp_path / "nan_first")
    assert not (tmp_path / "nan_first" / "checkpoints").exists()


def test_checkpoint_write_is_atomic(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "version": ckpt.VERSION, "w": torch.ones(3)})
    with pytest.raises(Exception):
        # a lambda cannot be pickled: torch.save fails half-way through writing
        ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "version": ckpt.VERSION, "w": torch.zeros(3),
                                    "bad": lambda: None})
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]   # no temporary file left behind
    assert torch.equal(ckpt.load_checkpoint(path)["w"], torch.ones(3))  # the old checkpoint is intact


class Arbitrary:
    """A class that weights_only unpickling must refuse."""


def test_checkpoints_load_weights_only(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "obj": Arbitrary()}, bad)
    with pytest.raises(HacmError, match="bad.pt: holds Python objects that a weights-only load refuses"):
        ckpt.load_checkpoint(bad)
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(HacmError, match="trunc.pt: not a readable checkpoint \\(truncated, corrupt"):
        ckpt.load_checkpoint(tmp_path / "trunc.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")   # torch reports it as an unpickling error too
    with pytest.raises(HacmError, match="garbage.pt: not a readable checkpoint"):
        ckpt.load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(HacmError, match="not a hacm checkpoint"):
        ckpt.load_checkpoint(tmp_path / "foreign.pt")


def test_rng_state_round_trips(tmp_path):
    import random

    import numpy as np
    state = ckpt.rng_state()
    path = ckpt.save_checkpoint(tmp_path / "rng.pt", {"rng": state})
    a = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.set_rng_state(torch.load(path, weights_only=True)["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
