"""The device plan of `hacm pretrain|linprobe|finetune --dry-run` and the measurements it projects from."""
from __future__ import annotations

import json

import pytest
import torch
from test_train import make_toy_store, toy_config

from hacm import distributed, plan
from hacm.cli import main
from hacm.config import to_yaml
from hacm.errors import FormatError

H100 = "NVIDIA H100 80GB HBM3"


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=6)   # 24 training clips


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(plan.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return tmp_path / "cache" / plan.THROUGHPUT_FILE


def _dry_run(capsys, cfg, tmp_path) -> list[str]:
    (tmp_path / "cfg.yaml").write_text(to_yaml(cfg))
    assert main([cfg.protocol, "--config", str(tmp_path / "cfg.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    return out[out.index("# device plan"):].splitlines()


def _measure(cfg, device: str, precision: str, clips_per_s: float, batch: int = 8, loader: float = 1e6):
    plan.record_measurement({"device": device, "work": plan.work_key(cfg), "precision": precision,
                             "batch": batch, "clips_per_s": clips_per_s, "loader_clips_per_s": loader})


def test_cpu_plan_says_when_nothing_was_measured_and_projects_once_measured(toy_store, tmp_path, capsys, cache):
    cfg = toy_config(toy_store.path, "pretrain", train={"epochs": 10, "warmup_epochs": 0, "batch_size": 8})
    lines = _dry_run(capsys, cfg, tmp_path)
    assert "cpu x 1" in lines[1] and "no autocast (train.amp auto -> off), IEEE float32 products" in lines[2]
    assert "8 global = 8 per device x 1" in lines[4] and "0 worker process(es)" in lines[5]
    assert lines[6].startswith("#   epoch:      3 steps of 8 clips (24 training clips); time not projected")
    assert "nothing measured for this device and model" in lines[6] and len(lines) == 7

    _measure(cfg, plan.device_key(torch.device("cpu")), "fp32", clips_per_s=4.0)
    # 3 steps x 8 clips at 4 clips/s: 6 s an epoch, 60 s for 10 epochs
    epoch = _dry_run(capsys, cfg, tmp_path)[6]
    assert "about 6.0 s per epoch, 60.0 s for 10 epochs" in epoch and "4 clips/s: fp32" in epoch
    # a slower loader bounds the rate; another model's measurement does not answer this one
    _measure(cfg, plan.device_key(torch.device("cpu")), "fp32", clips_per_s=4.0, loader=2.0)
    assert "about 12.0 s per epoch" in _dry_run(capsys, cfg, tmp_path)[6]
    wider = toy_config(toy_store.path, "pretrain", model={"dim": 64, "decoder_dim": 64})
    assert plan.device_plan(wider).measurement is None


def test_gpu_plan_resolves_amp_and_tf32_and_scales_over_ranks(toy_store, cache, monkeypatch):
    # an H100 (faked): auto -> bf16, TF32 on, loader workers with pinned memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: H100)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    monkeypatch.setattr(distributed, "resolve_device", lambda pref, local_rank=0: torch.device("cuda", local_rank))
    cfg = toy_config(toy_store.path, "linprobe", data={"num_workers": None},
                     train={"epochs": 4, "warmup_epochs": 0, "batch_size": 8, "device": "auto"})
    _measure(cfg, f"cuda: {H100}", "bf16", clips_per_s=2.0, batch=4)
    p = plan.device_plan(cfg, world_size=2)
    assert (p.amp, p.tf32, p.precision, p.batch_per_device, p.pinned) == ("bf16", True, "bf16", 4, True)
    assert p.workers >= 1 and p.workers_chosen and p.device_name == f"cuda: {H100}"
    assert p.lines[0] == f"device:     cuda x 2 ({H100}; 8 visible)"
    assert "bf16 autocast (train.amp auto -> bf16), TF32 for float32 matmuls and convolutions" in p.lines[1]
    # 3 steps x 8 clips at 2 clips/s on each of 2 devices: 6 s an epoch
    assert "about 6.0 s per epoch, 24.0 s for 4 epochs" in p.lines[-1] and "x 2 devices assumed linear" in p.lines[-1]
    # parity settings: IEEE float32, measured separately (no fp32 record: not projected, says what is)
    parity = toy_config(toy_store.path, "linprobe", train={"batch_size": 8, "device": "auto", "amp": "off",
                                                           "tf32": False})
    p = plan.device_plan(parity)
    assert (p.amp, p.tf32, p.precision) == ("off", False, "fp32")
    assert "measured here only in bf16" in p.lines[-1]


def test_measurements_file_keeps_one_record_per_key_and_names_itself_when_broken(toy_store, cache):
    cfg = toy_config(toy_store.path, "pretrain")
    _measure(cfg, "cpu: x", "fp32", 1.0)
    _measure(cfg, "cpu: x", "bf16", 2.0)
    _measure(cfg, "cpu: x", "fp32", 3.0)                    # measured again: replaces the first
    records = plan.read_measurements()
    assert sorted((r["precision"], r["clips_per_s"]) for r in records) == [("bf16", 2.0), ("fp32", 3.0)]
    assert all(r["measured_at"] for r in records)
    cache.write_text(json.dumps({"measurements": []}))
    with pytest.raises(FormatError, match=f"{cache}: expected"):
        plan.read_measurements()
    cache.write_text("{")
    with pytest.raises(FormatError, match=f"{cache}:1: not a hacm throughput file"):
        plan.read_measurements()
