"""Processes, devices and precision: one process, or one rank of a torchrun job.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; the process group uses nccl on GPUs and gloo on
CPUs. `train.batch_size` is the global batch: each rank takes an equal share. Batch norms of the
heads and the cross-contrast's similarity matrices span the global batch (all ranks), so a DDP
run computes what one process with the same global batch computes.
"""
from __future__ import annotations

import os
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Subset

from hacm.errors import ConfigError, HacmError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Process:
    """This process's place in the job: its rank, the number of ranks, its device."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool          # this call initialised the process group (and tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise HacmError("train.device: cuda was asked for, but torch sees no GPU")
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def start(device_pref: str) -> Process:
    """One process, or one rank of a torchrun job (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Process(0, 1, 0, resolve_device(device_pref), owns_group=False)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    device = resolve_device(device_pref, local)
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Process(rank, world, local, device, owns_group=owns)


def stop(proc: Process) -> None:
    if proc.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(proc: Process) -> None:
    if proc.distributed:
        dist.barrier()


def all_reduce_sum(values: list[float], proc: Process) -> list[float]:
    """Sum plain numbers over ranks (metrics), float64 on CPU for gloo and exactness."""
    if not proc.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=proc.device if proc.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


def local_batch_size(global_batch: int, proc: Process) -> int:
    if global_batch % proc.world_size:
        raise ConfigError(f"train.batch_size {global_batch} is the global batch and must be "
                          f"divisible by the {proc.world_size} ranks")
    return global_batch // proc.world_size


def shard(dataset, proc: Process):
    """This rank's share of an evaluation set: items rank, rank + W, ...; no padding, no repeats."""
    return Subset(dataset, range(proc.rank, len(dataset), proc.world_size)) if proc.distributed else dataset


def gather_rows(z: Tensor) -> tuple[Tensor, int]:
    """This rank's rows z [n, D] -> the rows of every rank [N, D] in rank order, and where this
    rank's rows start. Gradients flow back to each rank's own rows (torch.distributed.nn);
    ranks may hold different numbers of rows (absent actors are skipped), so rows are padded
    to the largest count for the collective and unpadded after it. Outside a process group: z, 0."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    rank, world = dist.get_rank(), dist.get_world_size()
    counts = [torch.zeros(1, dtype=torch.int64, device=z.device) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([z.shape[0]], device=z.device))
    counts = [int(c) for c in counts]
    padded = F.pad(z, (0, 0, 0, max(counts) - z.shape[0]))
    with warnings.catch_warnings():
        # torch 2.13 points to a private replacement; this is the documented autograd-aware gather
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated",
                                FutureWarning)
        parts = dist_nn.all_gather(padded)
    return torch.cat([p[:n] for p, n in zip(parts, counts)]), sum(counts[:rank])


def world_size() -> int:
    """Ranks of the current process group (1 outside one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span the global batch of all DDP ranks.

    Uses the autograd-aware all_reduce of torch.distributed.nn (gloo and nccl alike), two passes
    (mean, then centred variance) for the same numerics as nn.BatchNorm1d.
    """

    def forward(self, x):                                                           # [B, C]
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        count = torch.full((1,), float(x.shape[0]), dtype=x.dtype, device=x.device)
        sums = dist_nn.all_reduce(torch.cat([x.sum(0), count]))
        n = sums[-1]
        mean = sums[:-1] / n                                                        # [C]
        var = dist_nn.all_reduce(((x - mean) ** 2).sum(0)) / n                      # [C], biased
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


def globalise_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d in `module` by GlobalBatchNorm1d, keeping its state and dtype."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            g = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            g.load_state_dict(child.state_dict())
            like = child.running_mean if child.running_mean is not None else child.weight
            setattr(module, name, g.to(like.device, like.dtype))
        else:
            globalise_batchnorm(child)
    return module


def bf16_native(device: torch.device) -> bool:
    """Whether `device` is a CUDA GPU with native bf16 arithmetic (compute capability 8.0 and up:
    A100, H100, RTX 30xx ...). Older GPUs emulate bf16, slower than float32: auto leaves them off.
    torch asks the current CUDA device: each rank's own (`start` sets it), the same kind on a node."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_amp(amp: str, dtype: str | torch.dtype, device: torch.device) -> str:
    """train.amp as a run on `device` uses it: "auto" is "bf16" on a CUDA GPU with native bf16 when
    the parameters are float32 (train.dtype float64 is for exactness checks), else "off"; "off" and
    "bf16" stay as given."""
    if amp != "auto":
        return amp
    return "bf16" if DTYPES.get(dtype, dtype) == torch.float32 and bf16_native(device) else "off"


def tf32_active(tf32: bool, dtype: str, device: torch.device) -> bool:
    """Whether a run's float32 matmuls and convolutions use TF32 (train.tf32, on CUDA, float32 runs)."""
    return tf32 and dtype == "float32" and device.type == "cuda"


@contextmanager
def float32_products(tf32: bool):
    """TF32 on (or off) for CUDA float32 matmuls and cuDNN convolutions inside the block; the
    previous settings come back after it (a notebook's later work is not changed behind its back).

    Set through torch.set_float32_matmul_precision and torch.backends.cudnn.allow_tf32: torch 2.13
    refuses to read one TF32 API after the other was set, and TorchInductor still reads these."""
    before = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before[0])
        torch.backends.cudnn.allow_tf32 = before[1]


def autocast(amp: str, device: torch.device):
    """bf16 autocast when train.amp is "bf16", else nothing ("auto" is resolved before: resolve_amp)."""
    if amp == "auto":
        raise HacmError("train.amp 'auto' must be resolved for the device first (hacm.distributed.resolve_amp)")
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()


def compute_dtype(name: str) -> torch.dtype:
    """train.dtype as a torch dtype: the parameters', the inputs' and the logits' (under amp too)."""
    return DTYPES[name]
