import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hacm.data.dataset import (MIN_CROP, SkeletonDataset, crop_bounds, resize_time, rotation_matrix,
                               semi_supervised_subset, to_bones, to_velocity)
from hacm.data.loader import make_loader
from hacm.data.store import SampleRecord, StoreWriter
from hacm.errors import HacmError
from hacm.skeleton import bone_lengths

NUM_CLASSES = 3


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """24 clips, lengths 10..200, one or two actors, train = even indices, test = odd."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("store")
    with StoreWriter(path, dataset="synth", class_names=["a", "b", "c"]) as w:
        for i in range(24):
            frames = rng.normal(size=(1 + (i % 3 == 0), int(rng.integers(10, 200)), 25, 3)).astype(np.float32)
            w.add(SampleRecord(f"s{i}", i % NUM_CLASSES, frames))
        return w.finish({"synth-xsub": {"train": np.arange(0, 24, 2), "test": np.arange(1, 24, 2)}})


def test_train_and_test_shapes(store):
    train = SkeletonDataset(store, "synth-xsub", "train", window_size=72, random_rot=True)
    x, y = train[0]
    assert x.shape == (3, 72, 25, 2) and x.dtype == torch.float32 and y == store.labels[0]
    assert len(train) == 12 and train.num_classes == 3 and train.class_names == ["a", "b", "c"]
    test = SkeletonDataset(store.path, "synth-xsub", "test", window_size=120, p_interval=[0.95], num_actors=1)
    x, y = test[1]
    assert x.shape == (3, 120, 25, 1) and y == store.labels[3]
    np.testing.assert_array_equal(test.sample_indices, store.split("synth-xsub", "test"))
    np.testing.assert_array_equal(test.labels, store.labels[test.sample_indices])


def test_single_actor_clip_pads_actor_two_with_zeros(store):
    ds = SkeletonDataset(store, "synth-xsub", "train")
    single = int(np.flatnonzero(store.num_actors[ds.sample_indices] == 1)[0])
    x, _ = ds[single]
    assert x[..., 0].abs().sum() > 0 and not x[..., 1].any()


def test_same_seed_and_epoch_give_identical_clips(store):
    kwargs = dict(window_size=64, random_rot=True, seed=7)
    a = SkeletonDataset(store, "synth-xsub", "train", **kwargs)
    b = SkeletonDataset(store, "synth-xsub", "train", **kwargs)
    a.set_epoch(3)
    b.set_epoch(3)
    for i in range(len(a)):
        torch.testing.assert_close(a[i][0], b[i][0], rtol=0, atol=0)
    b.set_epoch(4)
    assert not torch.equal(a[0][0], b[0][0])
    c = SkeletonDataset(store, "synth-xsub", "train", window_size=64, random_rot=True, seed=8)
    c.set_epoch(3)
    assert not torch.equal(a[0][0], c[0][0])


def test_test_crop_is_deterministic_and_centred(store):
    ds = SkeletonDataset(store, "synth-xsub", "test", window_size=50, p_interval=[0.95])
    ds.set_epoch(0)
    first = ds[2][0]
    ds.set_epoch(5)
    torch.testing.assert_close(ds[2][0], first, rtol=0, atol=0)
    assert crop_bounds(100, [0.5], np.random.default_rng(0)) == (25, 75)
    assert crop_bounds(7, [0.5], np.random.default_rng(0)) == (1, 6)  # int() of the bias, as MAMP


@settings(max_examples=200, deadline=None)
@given(valid=st.integers(1, 400), p0=st.floats(0.05, 1.0), width=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_random_crop_length_bounds(valid, p0, width, seed):
    p1 = min(1.0, p0 + width)
    start, end = crop_bounds(valid, [p0, p1], np.random.default_rng(seed))
    length = end - start
    assert 0 <= start < end <= valid
    assert length >= min(MIN_CROP, valid)
    assert length <= max(MIN_CROP, int(round(p1 * valid))) or length == valid
    assert length >= min(valid, int(round(p0 * valid)))


@pytest.mark.parametrize("t, size", [(37, 64), (200, 64), (64, 64), (1, 10), (5, 3)])
def test_resize_matches_mamp_interpolate(t, size):
    x = np.random.default_rng(t).normal(size=(2, t, 25, 3)).astype(np.float32)
    ours = resize_time(x, size)
    # MAMP: [C*V*M, T] bilinear, align_corners=False
    flat = torch.from_numpy(x).permute(0, 2, 3, 1).reshape(1, 1, -1, t)
    ref = torch.nn.functional.interpolate(flat, size=(flat.shape[2], size), mode="bilinear", align_corners=False)
    ref = ref.reshape(2, 25, 3, size).permute(0, 3, 1, 2).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=100, deadline=None)
@given(angles=st.lists(st.floats(-np.pi, np.pi), min_size=3, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_rotation_preserves_bone_lengths(angles, seed):
    skeleton = np.random.default_rng(seed).normal(size=(4, 25, 3))
    rot = rotation_matrix(np.array(angles))
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.isclose(np.linalg.det(rot), 1.0)
    np.testing.assert_allclose(bone_lengths(skeleton @ rot.T), bone_lengths(skeleton), rtol=1e-9, atol=1e-12)


def test_rotation_is_about_the_named_axes():
    e = np.eye(3)
    # a pure x rotation leaves the x axis alone; MAMP's sign: y -> (0, cos, -sin) column convention
    rx = rotation_matrix(np.array([0.3, 0.0, 0.0]))
    np.testing.assert_allclose(rx @ e[0], e[0], atol=1e-12)
    np.testing.assert_allclose(rx @ e[1], [0, np.cos(0.3), -np.sin(0.3)], atol=1e-12)
    rz = rotation_matrix(np.array([0.0, 0.0, 0.3]))
    np.testing.assert_allclose(rz @ e[2], e[2], atol=1e-12)


def test_dataset_rotation_keeps_bone_lengths_and_stays_within_range(store):
    plain = SkeletonDataset(store, "synth-xsub", "train", window_size=40)
    rotated = SkeletonDataset(store, "synth-xsub", "train", window_size=40, random_rot=True, rot_range=0.3)
    x, xr = plain[0][0].numpy(), rotated[0][0].numpy()
    assert not np.allclose(x, xr)
    to_joints = lambda a: a.transpose(3, 1, 2, 0)  # [3, T, 25, M] -> [M, T, 25, 3]
    np.testing.assert_allclose(bone_lengths(to_joints(xr)), bone_lengths(to_joints(x)), rtol=1e-4, atol=1e-5)
    # the angle between original and rotated vectors cannot exceed the composed rotation's
    rot = np.linalg.lstsq(to_joints(x).reshape(-1, 3), to_joints(xr).reshape(-1, 3), rcond=None)[0].T
    angle = np.arccos(np.clip((np.trace(rot) - 1) / 2, -1, 1))
    assert angle <= 3 * 0.3 + 1e-3  # triangle inequality over the three axis rotations


def test_bone_and_velocity_inputs(store):
    base = SkeletonDataset(store, "synth-xsub", "test", window_size=30, p_interval=[1.0])
    x = base[0][0].numpy()  # [3, T, 25, M]
    bone = SkeletonDataset(store, "synth-xsub", "test", window_size=30, p_interval=[1.0], bone=True)[0][0].numpy()
    np.testing.assert_allclose(bone, mamp_bones(x), atol=1e-6)
    vel = SkeletonDataset(store, "synth-xsub", "test", window_size=30, p_interval=[1.0], vel=True)[0][0].numpy()
    np.testing.assert_allclose(vel[:, :-1], x[:, 1:] - x[:, :-1], atol=1e-6)
    assert not vel[:, -1].any()
    both = SkeletonDataset(store, "synth-xsub", "test", window_size=30, p_interval=[1.0], vel=True, bone=True)
    np.testing.assert_allclose(both[0][0].numpy()[:, :-1], bone[:, 1:] - bone[:, :-1], atol=1e-5)


def test_helpers_on_known_values():
    x = np.arange(2 * 3 * 25 * 3, dtype=np.float32).reshape(2, 3, 25, 3)
    np.testing.assert_array_equal(to_velocity(x)[:, 0], x[:, 1] - x[:, 0])
    b = to_bones(x)
    np.testing.assert_array_equal(b[..., 3, :], x[..., 3, :] - x[..., 2, :])  # head - neck
    np.testing.assert_array_equal(resize_time(x, 3), x)


def test_full_test_crop_of_a_window_sized_clip_returns_the_clip(store):
    t = int(store.lengths[1])
    ds = SkeletonDataset(store, "synth-xsub", "test", window_size=t, p_interval=[1.0])
    np.testing.assert_array_equal(ds.clip(0)[..., : store.num_actors[1]], store.frames(1).transpose(3, 1, 2, 0))


def mamp_bones(data_numpy: np.ndarray) -> np.ndarray:
    """MAMP's feeder_ntu.py bone loop on [C, T, V, M], copied as it stands (1-based pairs)."""
    ntu_pairs = ((1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5),
                 (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
                 (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
                 (19, 18), (20, 19), (22, 23), (21, 21), (23, 8), (24, 25), (25, 12))
    bone_data_numpy = np.zeros_like(data_numpy)
    for v1, v2 in ntu_pairs:
        bone_data_numpy[:, :, v1 - 1] = data_numpy[:, :, v1 - 1] - data_numpy[:, :, v2 - 1]
    return bone_data_numpy


def test_bones_are_mamps_including_its_quirks():
    x = np.random.default_rng(0).normal(size=(3, 7, 25, 2)).astype(np.float32)      # [C, T, V, M]
    b = to_bones(x.transpose(3, 1, 2, 0)).transpose(3, 1, 2, 0)                      # hacm: [M, T, V, C]
    np.testing.assert_array_equal(b, mamp_bones(x))
    assert not b[:, :, 20].any() and b[:, :, 0].any()            # spine shoulder zero, spine base not
    np.testing.assert_array_equal(b[:, :, 21], x[:, :, 21] - x[:, :, 22])   # left hand tip - left thumb


def test_semi_supervised_subset_uniform_is_mamps_draw_and_reproducible():
    labels = np.repeat(np.arange(5), [100, 40, 7, 1, 250])                          # n = 398
    a = semi_supervised_subset(labels, 0.1, seed=3)
    np.testing.assert_array_equal(a, semi_supervised_subset(labels, 0.1, seed=3))
    assert not np.array_equal(a, semi_supervised_subset(labels, 0.1, seed=4))
    assert np.all(np.diff(a) > 0) and a.size == 39                                  # int(39.8)
    # MAMP's int(N * ratio), floating point included: 100 * 0.29 = 28.999999999999996 -> 28
    assert semi_supervised_subset(np.zeros(100), 0.29, seed=0).size == 28
    assert semi_supervised_subset(labels, 0.01, seed=0).size == 3
    # uniform over clips: the big class dominates, not every class has to be there
    counts = np.bincount(labels[semi_supervised_subset(labels, 0.5, seed=1)], minlength=5)
    assert counts.sum() == 199 and counts[4] > 100
    with pytest.raises(HacmError, match=r"keeps int\(398 \* 0.001\) = 0 clips"):
        semi_supervised_subset(labels, 0.001, seed=0)


def test_semi_supervised_subset_balanced_is_per_class_and_reproducible():
    labels = np.repeat(np.arange(5), [100, 40, 7, 1, 250])
    a = semi_supervised_subset(labels, 0.1, seed=3, balanced=True)
    np.testing.assert_array_equal(a, semi_supervised_subset(labels, 0.1, seed=3, balanced=True))
    assert not np.array_equal(a, semi_supervised_subset(labels, 0.1, seed=4, balanced=True))
    assert np.all(np.diff(a) > 0)
    assert np.bincount(labels[a], minlength=5).tolist() == [10, 4, 1, 1, 25]
    one = semi_supervised_subset(labels, 0.01, seed=0, balanced=True)
    assert np.bincount(labels[one], minlength=5).tolist() == [1, 1, 1, 1, 3]  # at least one per class
    for balanced in (False, True):
        np.testing.assert_array_equal(semi_supervised_subset(labels, 1.0, 0, balanced), np.arange(labels.size))
        with pytest.raises(HacmError, match=r"fraction must lie in \(0, 1\]"):
            semi_supervised_subset(labels, 0.0, 0, balanced)


def test_dataset_subset(store):
    full = SkeletonDataset(store, "synth-xsub", "train")
    sub = SkeletonDataset(store, "synth-xsub", "train", subset_fraction=0.25, subset_seed=1)
    assert len(sub) == 3 and set(sub.sample_indices) <= set(full.sample_indices)
    expected = full.sample_indices[semi_supervised_subset(full.labels, 0.25, seed=1)]
    np.testing.assert_array_equal(sub.sample_indices, expected)
    # 12 clips, 4 per class: a sixth keeps int(2.0) = 2 uniformly, round(0.67) = 1 of each class balanced
    assert len(SkeletonDataset(store, "synth-xsub", "train", subset_fraction=1 / 6)) == 2
    balanced = SkeletonDataset(store, "synth-xsub", "train", subset_fraction=1 / 6, subset_balanced=True)
    assert sorted(balanced.labels.tolist()) == [0, 1, 2]


def test_bad_arguments(store):
    with pytest.raises(HacmError, match="no split 'synth-xview/train'; this store has: synth-xsub/test"):
        SkeletonDataset(store, "synth-xview", "train")
    with pytest.raises(HacmError, match="p_interval"):
        SkeletonDataset(store, "synth-xsub", "train", p_interval=[0.9, 0.5])
    with pytest.raises(HacmError, match="num_actors"):
        SkeletonDataset(store, "synth-xsub", "train", num_actors=3)


def test_loader_batches_in_process(store):
    ds = SkeletonDataset(store, "synth-xsub", "train", window_size=32)
    loader = make_loader(ds, 5, train=True, seed=0, num_workers=0)
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (5, 3, 32, 25, 2) and batches[0][1].dtype == torch.int64
    again = [y for _, y in make_loader(ds, 5, train=True, seed=0, num_workers=0)]
    torch.testing.assert_close(again[0], batches[0][1])  # same seed, same order
    test = make_loader(SkeletonDataset(store, "synth-xsub", "test", window_size=32, p_interval=[0.95]), 5,
                       train=False, num_workers=0)
    labels = torch.cat([y for _, y in test])
    torch.testing.assert_close(labels, torch.as_tensor(store.labels[store.split("synth-xsub", "test")]))


def test_persistent_workers_follow_set_epoch(store):
    ds = SkeletonDataset(store, "synth-xsub", "test", window_size=16, random_rot=True)
    loader = make_loader(ds, 4, train=False, num_workers=2)
    assert loader.persistent_workers
    first = [x for x, _ in loader]
    assert first[0].shape == (4, 3, 16, 25, 2)
    ds.set_epoch(1)
    second = [x for x, _ in loader]
    assert not torch.equal(first[0], second[0])
    ds.set_epoch(0)
    torch.testing.assert_close(torch.cat([x for x, _ in loader]), torch.cat(first), rtol=0, atol=0)


def test_distributed_loader_uses_a_seeded_distributed_sampler(store, tmp_path):
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        ds = SkeletonDataset(store, "synth-xsub", "train")
        loader = make_loader(ds, 4, train=True, seed=5, num_workers=0, distributed=True)
        sampler = loader.sampler
        assert isinstance(sampler, torch.utils.data.DistributedSampler)
        assert sampler.shuffle and sampler.seed == 5 and loader.drop_last
        sampler.set_epoch(0)
        order0 = list(sampler)
        sampler.set_epoch(1)
        assert sorted(order0) == list(range(12)) and list(sampler) != order0
        test = make_loader(ds, 4, train=False, num_workers=0, distributed=True)
        assert not test.sampler.shuffle and list(test.sampler) == list(range(12))
    finally:
        dist.destroy_process_group()
