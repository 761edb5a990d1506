"""Precision defaults: train.amp "auto" and TF32, resolved per device and recorded in the run.

No GPU is needed: the device's answers (torch.cuda.is_bf16_supported, hacm.distributed.bf16_native)
are faked where a rule depends on them. tests/test_cuda.py runs the same paths on a real GPU.
"""
from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
from test_train import make_toy_store, toy_config

from hacm import checkpoint as ckpt
from hacm import distributed, rundir, train
from hacm.config import PACKAGE_CONFIG_DIR, load_config, replace
from hacm.errors import HacmError
from hacm.rundir import load_run

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=6)


def _fake_gpu(monkeypatch, native_bf16: bool):
    """torch.cuda.is_bf16_supported as a GPU with (A100, H100) or without (V100: emulated) native bf16."""
    asked = []

    def is_bf16_supported(including_emulation: bool = True):
        asked.append(including_emulation)
        return native_bf16 or including_emulation
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    return asked


@pytest.mark.parametrize("native, dtype, expected", [(True, "float32", "bf16"), (False, "float32", "off"),
                                                     (True, "float64", "off")])
def test_auto_amp_is_bf16_only_on_a_gpu_with_native_bf16_and_float32(monkeypatch, native, dtype, expected):
    asked = _fake_gpu(monkeypatch, native)
    assert distributed.resolve_amp("auto", dtype, GPU) == expected
    assert distributed.resolve_amp("auto", torch.float32, GPU) == ("bf16" if native else "off")
    assert all(e is False for e in asked)          # an emulated bf16 (slower than float32) does not count
    # the CPU: off whatever the GPU says; explicit choices stay as given everywhere
    assert distributed.resolve_amp("auto", "float32", CPU) == "off"
    for device in (CPU, GPU):
        assert distributed.resolve_amp("off", "float32", device) == "off"
        assert distributed.resolve_amp("bf16", "float32", device) == "bf16"


def test_auto_amp_must_be_resolved_before_autocast():
    with pytest.raises(HacmError, match="resolve_amp"):
        distributed.autocast("auto", CPU)
    with distributed.autocast("bf16", CPU):
        assert torch.is_autocast_enabled("cpu")
    with distributed.autocast("off", CPU):
        assert not torch.is_autocast_enabled("cpu")


def test_tf32_only_for_float32_on_cuda_when_asked():
    assert distributed.tf32_active(True, "float32", GPU)
    assert not distributed.tf32_active(False, "float32", GPU)      # parity runs
    assert not distributed.tf32_active(True, "float64", GPU)       # exactness checks
    assert not distributed.tf32_active(True, "float32", CPU)


def _tf32_flags():
    return torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32


@pytest.mark.parametrize("before", [("highest", True), ("high", False)])
def test_float32_products_sets_tf32_and_restores_the_previous_settings(before):
    torch.set_float32_matmul_precision(before[0])
    torch.backends.cudnn.allow_tf32 = before[1]
    try:
        with distributed.float32_products(True):
            assert _tf32_flags() == ("high", True)
            assert torch.backends.cuda.matmul.allow_tf32
        with distributed.float32_products(False):
            assert _tf32_flags() == ("highest", False)
            assert not torch.backends.cuda.matmul.allow_tf32
        assert _tf32_flags() == before
    finally:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cudnn.allow_tf32 = True


def test_defaults_and_parity_configs():
    cfg = load_config("ntu60_xsub_pretrain")
    assert (cfg.train.amp, cfg.train.tf32) == ("auto", True)
    # `off` is a YAML 1.1 boolean: --set train.amp=off still means "off"
    assert load_config("ntu60_xsub_pretrain", ["train.amp=off"]).train.amp == "off"
    parity = sorted(glob.glob(str(PACKAGE_CONFIG_DIR / "mamp_*.yaml")) + glob.glob(str(PACKAGE_CONFIG_DIR / "mae_*.yaml")))
    assert len(parity) >= 28                           # 22 mamp_* and 6 mae_* when written
    for path in parity:
        t = load_config(path).train
        assert (t.amp, t.tf32) == ("off", False), Path(path).name
    # the authors' own YAML, read as a hacm config, is float32 as they ran it
    notes = []
    upstream = load_config(Path(__file__).parent / "data/upstream/hacm/ntu60_xsub_joint/pretrain_hacm.yaml",
                           notes=notes)
    assert (upstream.train.amp, upstream.train.tf32) == ("off", False)
    assert any("--enable_amp" in n for n in notes)


def _tiny(store, **train_keys):
    return toy_config(store.path, "pretrain", train={"epochs": 2, "warmup_epochs": 0, "batch_size": 8,
                                                     "max_steps_per_epoch": 1, "log_every": 1, **train_keys})


def test_run_records_what_auto_resolved_to_and_unsets_tf32_on_the_cpu(toy_store, tmp_path, monkeypatch):
    seen = []
    real_epoch = train.train_one_epoch

    def epoch_seeing_flags(*args, **kwargs):
        seen.append(_tf32_flags())
        return real_epoch(*args, **kwargs)
    monkeypatch.setattr(train, "train_one_epoch", epoch_seeing_flags)
    torch.set_float32_matmul_precision("high")             # a notebook asked for TF32 earlier
    try:
        train.run(_tiny(toy_store, epochs=1), tmp_path / "cpu")
        assert _tf32_flags() == ("high", True)             # given back after the run
    finally:
        torch.set_float32_matmul_precision("highest")
    assert seen == [("highest", False)]                    # a CPU run: IEEE float32 throughout
    run = load_run(tmp_path / "cpu")
    assert run.config.train.amp == "off"
    assert {k: run.rows("start")[0][k] for k in ("amp", "tf32")} == {"amp": "off", "tf32": False}

    # a device with native bf16 (faked): auto runs and records bf16, in config.yaml and the checkpoint
    monkeypatch.setattr(distributed, "bf16_native", lambda device: True)
    train.run(_tiny(toy_store, epochs=1), tmp_path / "bf16")
    assert load_run(tmp_path / "bf16").config.train.amp == "bf16"
    assert ckpt.load_checkpoint(tmp_path / "bf16" / "checkpoints" / "last.pt")["config"]["train"]["amp"] == "bf16"


def test_resume_keeps_the_precision_auto_resolved_to_at_the_start(toy_store, tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "bf16_native", lambda device: True)
    train.run(_tiny(toy_store, epochs=1), tmp_path / "run")
    monkeypatch.undo()                                     # resumed where auto would mean off
    assert distributed.resolve_amp("auto", "float32", CPU) == "off"
    train.run(_tiny(toy_store, epochs=2), tmp_path / "run", resume=True)
    run = load_run(tmp_path / "run")
    assert run.config.train.amp == "bf16" and [r["epoch"] for r in run.rows("epoch")] == [0, 1]
    assert ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["config"]["train"]["amp"] == "bf16"
    # an explicit other precision is a different run: refused, naming the key
    with pytest.raises(HacmError, match="train.amp"):
        train.run(_tiny(toy_store, epochs=3, amp="off"), tmp_path / "run", resume=True)


def test_a_finished_run_matches_auto_whatever_it_resolved_to(toy_store, tmp_path):
    cfg = _tiny(toy_store, epochs=1)
    train.run(cfg, tmp_path / "run")                       # recorded: off (a CPU)
    assert rundir.finished(tmp_path / "run", cfg)
    assert rundir.finished(tmp_path / "run", replace(cfg, train={"amp": "off"}))
    with pytest.raises(HacmError, match="train.amp"):
        rundir.finished(tmp_path / "run", replace(cfg, train={"amp": "bf16"}))
