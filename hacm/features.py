"""The feature spaces of several encoders side by side: pooled test-clip features of each checkpoint
(and of an untrained encoder) with the kNN accuracy those very clips get against the training
clips' features. hacm.viz.features draws them (t-SNE).

    spaces = feature_spaces({"HA-CM": "runs/hacm/seed0/pretrain", "random encoder": None},
                            test_clips=300, train_clips=None, seed=0)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import Subset

from hacm import checkpoint
from hacm.config import RunConfig
from hacm.data.store import Store
from hacm.datasets import make_dataset
from hacm.errors import HacmError
from hacm.evaluate import extract_features, knn_accuracy


@dataclass
class FeatureSpace:
    name: str
    features: np.ndarray        # [n, D] pooled encoder features of the test clips shown
    labels: np.ndarray          # [n] their classes
    class_names: list[str]
    k: int
    knn_accuracy: float         # kNN-k accuracy of these n clips against the training clips' features
    train_clips: int            # how many training clips the kNN compared with


def checkpoint_config(source: str | Path) -> RunConfig:
    """The run config stored in a hacm checkpoint or run directory; an original-code file has none."""
    cfg = checkpoint.run_config_of(source)
    if cfg is None:
        raise HacmError(f"{source}: not a hacm checkpoint; feature maps read the data and model settings of a "
                        "hacm run (a run directory or its checkpoints/*.pt)")
    return cfg


def untrained_encoder(cfg: RunConfig, num_classes: int, seed: int) -> torch.nn.Module:
    """The randomly initialised encoder of cfg (the floor pre-training has to beat), seeded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return checkpoint.build_model(cfg, num_classes).encoder.eval()


def sample_indices(n: int, size: int | None, seed: int) -> np.ndarray:
    """`size` of range(n) drawn without replacement under `seed`, in increasing order (all when None
    or n <= size)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def sample_clips(dataset, size: int | None, seed: int, what: str):
    """A seeded sample of `size` clips of dataset (all when None), in dataset order; `what` names the
    parameter in the error for a size below 1."""
    if size is not None and size < 1:
        raise HacmError(f"{what}: expected a positive number of clips or None (all), got {size}")
    return Subset(dataset, sample_indices(len(dataset), size, seed).tolist())


def feature_space(name: str, source: str | Path | torch.nn.Module, cfg: RunConfig, *, test_clips: int | None = None,
                  train_clips: int | None = None, k: int = 20, seed: int = 0, batch_size: int = 256) -> FeatureSpace:
    """Features of `test_clips` test clips of cfg's data under the encoder of `source` (run dir,
    checkpoint or module), and their kNN-k accuracy against the features of `train_clips` training
    clips (un-augmented, as the kNN protocol takes them). Both are seeded samples; None: all."""
    if isinstance(source, (str, Path)):   # read the checkpoint once for both parts
        source = checkpoint.load_model(source)
    store = Store.open(cfg.data.store)
    train_set = sample_clips(make_dataset(cfg, store, "train", augment=False), train_clips, seed, "train_clips")
    test_set = sample_clips(make_dataset(cfg, store, "test", augment=False), test_clips, seed, "test_clips")
    train_f, train_y = extract_features(source, train_set, batch_size=batch_size, num_workers=cfg.data.num_workers)
    test_f, test_y = extract_features(source, test_set, batch_size=batch_size, num_workers=cfg.data.num_workers)
    acc = knn_accuracy(train_f, train_y, test_f, test_y, k=(k,), temperature=cfg.knn.temperature,
                       num_classes=store.num_classes)[k]
    return FeatureSpace(name, test_f, test_y, list(store.class_names), k, acc, len(train_y))


def feature_spaces(sources: Mapping[str, str | Path | None], *, test_clips: int | None = None,
                   train_clips: int | None = None, k: int = 20, seed: int = 0,
                   batch_size: int = 256) -> list[FeatureSpace]:
    """`feature_space` of each named checkpoint / run directory; None stands for an untrained encoder
    built from the config of the first checkpoint named (so it is compared on the same data). All
    panels show the same test clips when the checkpoints share their data settings."""
    for name, source in sources.items():
        if source is not None and not str(source):
            raise HacmError(f"checkpoints[{name!r}]: set a run directory or checkpoint file "
                            "(or None for an untrained encoder)")
    given = [s for s in sources.values() if s is not None]
    if not given:
        raise HacmError("checkpoints: name at least one checkpoint or run directory (None alone gives "
                        "an untrained encoder without a config to build it from)")
    reference = checkpoint_config(given[0])
    spaces = []
    for name, source in sources.items():
        cfg = reference if source is None else checkpoint_config(source)
        encoder = (untrained_encoder(reference, Store.open(reference.data.store).num_classes, seed)
                   if source is None else source)
        spaces.append(feature_space(name, encoder, cfg, test_clips=test_clips, train_clips=train_clips, k=k,
                                    seed=seed, batch_size=batch_size))
    return spaces
