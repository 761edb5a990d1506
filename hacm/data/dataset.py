"""Clips from a store, with the MAMP / HA-CM feeder augmentations, deterministic per item.

Per item (as the MAMP `Feeder` and `tools.py`): crop a window of the recorded frames, resize it
linearly in time to `window_size`, optionally rotate the whole clip about x, y and z, optionally
turn joints into bones and/or positions into velocities. The crop and rotation are drawn from
`np.random.default_rng([seed, epoch, store_index])`, so a clip depends only on (seed, epoch,
sample) and not on which worker or DDP rank loads it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from hacm.data.store import Store
from hacm.errors import HacmError
from hacm.skeleton import MAMP_BONE_PAIRS, NUM_JOINTS

# MAMP's lower bound on a random crop, in frames, whatever the window size.
MIN_CROP = 64


def semi_supervised_subset(labels: np.ndarray, fraction: float, seed: int, balanced: bool = False) -> np.ndarray:
    """Sorted positions of a labelled subset of the clips with these labels.

    Uniform (MAMP's `random_select_data`): int(n * fraction) clips drawn at random from all n, so
    a class can be missing at 1 %. Balanced: round(fraction * n_c) of each class, at least one.
    Either way the subset depends only on (labels, fraction, seed), so every DDP rank draws the
    same one (MAMP seeded numpy with seed + rank and drew a different subset on each rank).
    """
    if not 0.0 < fraction <= 1.0:
        raise HacmError(f"subset fraction must lie in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if not balanced:
        k = int(labels.size * fraction)          # MAMP's rounding: down, in floating point
        if k == 0 and labels.size:
            raise HacmError(f"subset fraction {fraction} of {labels.size} clips keeps int({labels.size} * "
                            f"{fraction}) = 0 clips; use a larger fraction or the class-balanced subset")
        return np.sort(rng.permutation(labels.size)[:k])
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(members.size, max(1, int(fraction * members.size + 0.5)))
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=np.int64)


def crop_bounds(valid: int, p_interval: Sequence[float], rng: np.random.Generator) -> tuple[int, int]:
    """[start, end) of the frames to keep out of `valid` recorded ones.

    Two values (p0, p1): a random ratio p ~ U(p0, p1), length max(MIN_CROP, round(p * valid))
    clipped to `valid`, random offset. One value p: the centred crop of MAMP's test feeder.
    """
    if len(p_interval) == 1:
        bias = int((1.0 - p_interval[0]) * valid / 2)
        return bias, valid - bias
    p = rng.uniform(p_interval[0], p_interval[1])
    length = min(max(MIN_CROP, int(round(p * valid))), valid)
    start = int(rng.integers(0, valid - length + 1))
    return start, start + length


def resize_time(x: np.ndarray, size: int) -> np.ndarray:
    """Linear resize along axis 1 of [A, T, ...] to `size` frames.

    Same sampling as MAMP's `F.interpolate(mode="bilinear", align_corners=False)` on [C*V*M, T]:
    half-pixel centres, source positions below 0 clamped to 0.
    """
    t = x.shape[1]
    if t == size:
        return x.copy()
    src = np.maximum((np.arange(size) + 0.5) * (t / size) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), t - 1)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (src - i0).astype(np.float32).reshape(1, size, *([1] * (x.ndim - 2)))
    return x[:, i0] * (1.0 - w) + x[:, i1] * w


def rotation_matrix(angles: np.ndarray) -> np.ndarray:
    """R = Rz @ Ry @ Rx for angles (x, y, z), with MAMP's `_rot` sign conventions. [3, 3]"""
    (cx, cy, cz), (sx, sy, sz) = np.cos(angles), np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, sx], [0, -sx, cx]])
    ry = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])
    rz = np.array([[cz, sz, 0], [-sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


_BONE_JOINT = np.array([j for j, _ in MAMP_BONE_PAIRS])
_BONE_REFERENCE = np.array([r for _, r in MAMP_BONE_PAIRS])


def to_bones(x: np.ndarray) -> np.ndarray:
    """MAMP's bone modality on [..., 25, 3]: joint minus its reference joint in MAMP_BONE_PAIRS."""
    bones = np.zeros_like(x)
    bones[..., _BONE_JOINT, :] = x[..., _BONE_JOINT, :] - x[..., _BONE_REFERENCE, :]
    return bones


def to_velocity(x: np.ndarray) -> np.ndarray:
    """Frame differences along axis 1 of [A, T, ...]; the last frame is zero."""
    vel = np.zeros_like(x)
    vel[:, :-1] = x[:, 1:] - x[:, :-1]
    return vel


class SkeletonDataset(torch.utils.data.Dataset):
    """`store`'s `benchmark`/`part` clips as (x [3, T, 25, M] float32, label)."""

    def __init__(self, store: Store | str | Path, benchmark: str, part: str, *, window_size: int = 64,
                 p_interval: Sequence[float] = (0.5, 1.0), random_rot: bool = False, rot_range: float = 0.3,
                 vel: bool = False, bone: bool = False, num_actors: int = 2,
                 subset_fraction: float | None = None, subset_seed: int = 0, subset_balanced: bool = False,
                 seed: int = 0):
        self.store = store if isinstance(store, Store) else Store.open(store)
        if window_size < 1:
            raise HacmError(f"window_size must be >= 1, got {window_size}")
        p_interval = tuple(float(p) for p in p_interval)
        if len(p_interval) not in (1, 2) or not all(0.0 < p <= 1.0 for p in p_interval) \
                or (len(p_interval) == 2 and p_interval[0] > p_interval[1]):
            raise HacmError(f"p_interval must be [p] or [p0, p1] with 0 < p0 <= p1 <= 1, got {list(p_interval)}")
        if num_actors not in (1, 2):
            raise HacmError(f"num_actors must be 1 or 2, got {num_actors}")
        if rot_range < 0:
            raise HacmError(f"rot_range must be >= 0, got {rot_range}")
        self.benchmark, self.part = benchmark, part
        self.window_size = window_size
        self.p_interval = p_interval
        self.random_rot, self.rot_range = random_rot, rot_range
        self.vel, self.bone = vel, bone
        self.num_actors = num_actors
        self.seed = seed

        indices = self.store.split(benchmark, part)
        if subset_fraction is not None:
            indices = indices[semi_supervised_subset(self.store.labels[indices], subset_fraction, subset_seed,
                                                     subset_balanced)]
        self.sample_indices = indices
        self.labels = self.store.labels[indices]
        self.class_names = self.store.class_names
        self.num_classes = self.store.num_classes
        # The epoch lives in shared memory: persistent DataLoader workers hold their own copy of
        # the dataset, and set_epoch in the main process must still reach them.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.sample_indices)

    def clip(self, i: int, epoch: int | None = None) -> np.ndarray:
        """Item i as numpy [3, T, 25, M] float32 for `epoch` (default: the current one)."""
        index = int(self.sample_indices[i])
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        frames = self.store.frames(index)[: self.num_actors]  # [A, T, 25, 3] memmap view
        start, end = crop_bounds(frames.shape[1], self.p_interval, rng)
        x = resize_time(np.asarray(frames[:, start:end], dtype=np.float32), self.window_size)  # [A, W, 25, 3]
        if self.random_rot:
            rot = rotation_matrix(rng.uniform(-self.rot_range, self.rot_range, size=3)).astype(np.float32)
            x = x @ rot.T  # rotate every xyz vector: x' = R x
        if self.bone:
            x = to_bones(x)
        if self.vel:
            x = to_velocity(x)
        out = np.zeros((3, self.window_size, NUM_JOINTS, self.num_actors), dtype=np.float32)
        out[..., : x.shape[0]] = x.transpose(3, 1, 2, 0)  # absent actor 2 stays zero
        return out

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.clip(i)), int(self.labels[i])
