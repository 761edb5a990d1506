"""hacm on a CUDA GPU: precisions, torch.compile, NCCL, resume, the loader's workers and pinned memory.

Skipped as a whole, with the reason in the summary (`-ra`), where torch sees no GPU; `-m "not cuda"`
deselects it. Every comparison is against the same computation on the CPU in float32 (or float64),
with the tolerance its precision allows (stated at each constant).
"""
from __future__ import annotations

import copy
import math
import socket

import pytest
import torch

pytestmark = pytest.mark.cuda
if not torch.cuda.is_available():
    pytest.skip(f"no CUDA GPU visible to torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'})",
                allow_module_level=True)

import torch._dynamo               # noqa: E402
import torch.distributed as dist   # noqa: E402
import torch.nn.functional as F    # noqa: E402
from test_resume import Killed, _kill_after   # noqa: E402
from test_train import make_toy_store, toy_config   # noqa: E402
from torch.nn.parallel import DistributedDataParallel   # noqa: E402

from hacm import checkpoint as ckpt   # noqa: E402
from hacm import distributed, train   # noqa: E402
from hacm.data.loader import default_num_workers, make_loader   # noqa: E402
from hacm.data.store import Store   # noqa: E402
from hacm.datasets import make_dataset   # noqa: E402
from hacm.rundir import load_run   # noqa: E402

GPU = torch.device("cuda", 0)
# train.amp / train.tf32 of each precision.
PRECISIONS = {"fp32": {"amp": "off", "tf32": False}, "tf32": {"amp": "off", "tf32": True},
              "bf16": {"amp": "bf16", "tf32": True}}
# Relative tolerance of the first step's loss against the CPU float32 step (the same weights, batch
# and masks: only the arithmetic differs; masks are drawn from a CPU generator in float64).
# fp32: other kernels sum in another order, ~1e-6 relative over the toy model's 32-wide products.
# tf32: matmul inputs keep 10 mantissa bits (2^-11 = 5e-4 relative each), errors partly cancel in
# the sums and the loss's means: ~1e-3. bf16: 8 bits (2^-9 = 2e-3 each) in every autocast op: ~1e-2
# (measured with the CPU's bf16 autocast on these toy runs: 3e-3 pre-training, 7e-5 linear probe).
# Each is 5-10x above the expected error and far below what a broken path gives (a wrong mask, a
# dropped term, a NaN: O(1)).
LOSS_REL = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2}
# float64 on the GPU against itself after a resume: reordered float64 sums (atomic adds in index
# backward kernels are not deterministic) differ by ~1e-16; the bounds of tests/test_ddp.py apply.
F64_LOSS_REL, F64_PARAM_TOL = 1e-9, 1e-7


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


def _cfg(store, protocol: str, **train_keys):
    return toy_config(store.path, protocol, train={"epochs": 1, "warmup_epochs": 0, "batch_size": 16,
                                                   "max_steps_per_epoch": 2, "log_every": 1, **train_keys})


def _step_losses(run_dir) -> list[float]:
    return [r["loss"] for r in load_run(run_dir).rows("step")]


@pytest.fixture(scope="module")
def cpu_losses(toy_store, tmp_path_factory):
    """Step losses of each protocol's short run on the CPU in float32 (IEEE, no autocast)."""
    out = {}
    for protocol in ("pretrain", "linprobe"):
        run_dir = tmp_path_factory.mktemp(f"cpu_{protocol}")
        train.run(_cfg(toy_store, protocol, device="cpu", amp="off"), run_dir)
        out[protocol] = _step_losses(run_dir)
    return out


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("protocol", ["pretrain", "linprobe"])
def test_step_on_the_gpu_matches_the_cpu_float32_step(toy_store, cpu_losses, tmp_path, protocol, precision,
                                                      compiled):
    if precision == "bf16" and not distributed.bf16_native(GPU):
        pytest.skip(f"{torch.cuda.get_device_name(GPU)} has no native bf16")
    cfg = _cfg(toy_store, protocol, device="cuda", compile=compiled, **PRECISIONS[precision])
    torch._dynamo.reset()
    train.run(cfg, tmp_path / "gpu")
    losses = _step_losses(tmp_path / "gpu")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    # the first step: the same initial weights on both devices (built on the CPU from the seed)
    assert losses[0] == pytest.approx(cpu_losses[protocol][0], rel=LOSS_REL[precision])
    start = load_run(tmp_path / "gpu").rows("start")[0]
    assert start["device"] == "cuda:0"
    assert (start["amp"], start["tf32"]) == (PRECISIONS[precision]["amp"], PRECISIONS[precision]["tf32"])


def test_auto_precision_on_this_gpu(toy_store, tmp_path):
    native = torch.cuda.get_device_capability(GPU) >= (8, 0)
    assert distributed.bf16_native(GPU) == native
    train.run(_cfg(toy_store, "pretrain", device="cuda"), tmp_path / "auto")   # amp auto, tf32 on: the defaults
    run = load_run(tmp_path / "auto")
    assert run.config.train.amp == ("bf16" if native else "off")
    assert run.rows("start")[0]["tf32"] is True
    # bf16 autocast acts: the encoder's linear layers compute in bf16
    with distributed.autocast("bf16", GPU):
        assert torch.nn.Linear(4, 4).to(GPU)(torch.ones(2, 4, device=GPU)).dtype == torch.bfloat16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_nccl_available(), reason="torch was built without NCCL")
@pytest.mark.parametrize("protocol", ["linprobe", "pretrain"])
def test_one_process_nccl_ddp_step_matches_the_plain_model(toy_store, monkeypatch, protocol):
    # One rank of an NCCL group: DDP's gradient all-reduce and the global batch norm's autograd
    # all-reduce run through NCCL; with one rank they must compute what the plain model computes.
    # float64 (NCCL reduces it natively), so only the order of float64 sums may differ.
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    torch.cuda.set_device(GPU)
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=GPU)
    try:
        cfg = _cfg(toy_store, protocol, device="cuda", dtype="float64")
        dataset = make_dataset(cfg, Store.open(cfg.data.store), "train", augment=False)
        x = torch.stack([dataset[i][0] for i in range(8)]).to(GPU, torch.float64)
        y = torch.tensor([dataset[i][1] for i in range(8)], device=GPU)
        torch.manual_seed(0)
        plain = ckpt.build_model(cfg, num_classes=6).to(GPU, torch.float64).train()
        ddp = DistributedDataParallel(distributed.globalise_batchnorm(copy.deepcopy(plain)), device_ids=[0])
        losses = []
        for model in (plain, ddp):
            if protocol == "pretrain":
                loss = model(x, generator=torch.Generator().manual_seed(1)).loss
            else:
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            losses.append(loss.item())
        assert math.isfinite(losses[0]) and losses[1] == pytest.approx(losses[0], rel=F64_LOSS_REL)
        grads = {n: p.grad for n, p in ddp.module.named_parameters() if p.grad is not None}
        assert grads
        for name, p in plain.named_parameters():
            if p.grad is not None:
                torch.testing.assert_close(grads[name], p.grad, rtol=F64_LOSS_REL, atol=1e-12, msg=name)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("precision", ["float64", "bf16"])
def test_resumed_gpu_pretraining_equals_the_uninterrupted_one(toy_store, tmp_path, monkeypatch, precision):
    # drop path draws from the CUDA generator: its state must come back with the checkpoint
    keys = {"dtype": "float64"} if precision == "float64" else {"amp": "bf16"}
    if precision == "bf16" and not distributed.bf16_native(GPU):
        pytest.skip(f"{torch.cuda.get_device_name(GPU)} has no native bf16")
    cfg = toy_config(toy_store.path, "pretrain", model={"drop_path": 0.2},
                     train={"epochs": 3, "warmup_epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8,
                            "log_every": 1, "device": "cuda", **keys})
    train.run(cfg, tmp_path / "straight")
    _kill_after(monkeypatch, "last.pt", epoch=1)
    with pytest.raises(Killed):
        train.run(cfg, tmp_path / "resumed")
    monkeypatch.undo()
    torch.manual_seed(12345)                       # a restarted process has fresh generators
    torch.cuda.manual_seed_all(12345)
    train.run(cfg, tmp_path / "resumed", resume=True)
    straight, resumed = _step_losses(tmp_path / "straight"), _step_losses(tmp_path / "resumed")
    assert len(straight) == len(resumed) == 6
    if precision == "float64":
        assert resumed == pytest.approx(straight, rel=F64_LOSS_REL)
        a = ckpt.load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")["model"]
        b = ckpt.load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=F64_LOSS_REL, atol=F64_PARAM_TOL, msg=k)
    else:
        # bf16: the same weights at the resume; the GPU's unordered reductions in bf16 then make the
        # two runs drift by bf16 roundings (2e-3 relative each) that AdamW steps turn into lr-sized
        # moves of near-zero-gradient parameters. The losses stay within the bf16 step tolerance.
        assert resumed == pytest.approx(straight, rel=LOSS_REL["bf16"])


def test_loader_workers_and_pinned_memory(toy_store):
    cfg = _cfg(toy_store, "pretrain", device="cuda")
    dataset = make_dataset(cfg, Store.open(cfg.data.store), "train", augment=True)
    assert default_num_workers() >= 1             # on a GPU machine the loader runs worker processes
    batches = {}
    for workers in (0, 2):
        loader = make_loader(dataset, 8, train=True, seed=0, num_workers=workers)
        assert loader.pin_memory
        dataset.set_epoch(1)
        loader.sampler.set_epoch(1)
        batches[workers] = list(loader)
        assert all(x.is_pinned() and y.is_pinned() for x, y in batches[workers])
        del loader
    # workers change where a clip is augmented, not what it becomes: (seed, epoch, sample)
    assert len(batches[0]) == len(batches[2]) == len(dataset) // 8
    for (x0, y0), (x2, y2) in zip(batches[0], batches[2]):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
        on_gpu = x2.to(GPU, non_blocking=True)     # an asynchronous copy from pinned memory
        torch.cuda.synchronize(GPU)
        assert torch.equal(on_gpu.cpu(), x0)
