"""DataLoader construction for SkeletonDataset: seeded shuffling, optional DDP sharding."""
from __future__ import annotations

import os

import torch
from torch.utils.data import DataLoader, DistributedSampler, SequentialSampler

from hacm.errors import HacmError
from hacm.machine import usable_cores


def default_num_workers() -> int:
    """Loader processes: enough to feed a GPU; none when the model itself runs on the CPU.

    On the CPU, torch's intra-op threads already keep every core busy with the model, and the
    in-process loader delivers hundreds of clips/s (benchmarks/bench_data.py), far above the
    step rate: worker processes would only oversubscribe the cores (measured: epochs of the
    same run swinging from 0.7 s to 24 s on 2 cores with 2 workers).

    On a GPU, every core this process may use (its CPU affinity: a Slurm allocation, not the whole
    node) shared among the node's ranks (torchrun's LOCAL_WORLD_SIZE), less one for the rank's own
    process, at most 8: at the 300-500 clips/s per core bench_data.py measures, the 4 workers of a
    fixed default would cap a pre-training near the 1,900 clips/s an H100 can take.
    """
    if not torch.cuda.is_available():
        return 0
    cores = usable_cores()
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, min(8, cores // ranks_here - 1))


def make_loader(dataset, batch_size: int, *, train: bool, seed: int = 0, num_workers: int | None = None,
                distributed: bool = False, drop_last: bool | None = None) -> DataLoader:
    """Batches of (x [B, 3, T, 25, M], labels [B]).

    train: shuffle (seeded) and, unless told otherwise, drop the last partial batch. The order is
    a function of (seed, epoch) alone: a single process uses a one-replica DistributedSampler, so
    a resumed run needs no sampler state and the global batches of N ranks are those of one
    process. The caller calls `loader.sampler.set_epoch(epoch)` as well as
    `dataset.set_epoch(epoch)` each epoch.
    """
    if batch_size < 1:
        raise HacmError(f"batch_size must be >= 1, got {batch_size}")
    num_workers = default_num_workers() if num_workers is None else num_workers
    if num_workers < 0:
        raise HacmError(f"num_workers must be >= 0, got {num_workers}")
    drop_last = train if drop_last is None else drop_last
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=train, seed=seed)
    elif train:
        sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=seed)
    else:
        sampler = SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=num_workers > 0,
    )
