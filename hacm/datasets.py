"""The clips a run reads: a RunConfig's benchmark part as a SkeletonDataset."""
from __future__ import annotations

from hacm.config import RunConfig
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import Store


def make_dataset(cfg: RunConfig, store: Store | None, part: str, *, augment: bool) -> SkeletonDataset:
    """The train part (augmented, or evaluation-style for kNN features) or the test part of cfg's
    benchmark in `store` (None: open cfg.data.store); semi-supervised subsets apply to train."""
    d = cfg.data
    return SkeletonDataset(
        store or Store.open(d.store), d.benchmark, part, window_size=d.window_size,
        p_interval=d.p_interval_train if augment else d.p_interval_test,
        random_rot=d.random_rot and augment, vel=d.vel, bone=d.bone,
        subset_fraction=d.subset_fraction if part == "train" else None, subset_seed=d.subset_seed,
        subset_balanced=d.subset_balanced, seed=cfg.train.seed)
