import zipfile

import numpy as np
import pytest

import hacm.data.legacy_npz as legacy
from hacm.data.legacy_npz import export_npz, import_npz, legacy_to_frames
from hacm.data.store import SampleRecord, Store, StoreWriter
from hacm.errors import HacmError

NUM_CLASSES = 4


def make_store(path, n=10, seed=0) -> Store:
    """Clips that survive the legacy format unchanged: random (so the last frame is non-zero and
    actor 2 differs from actor 1), one- and two-actor clips alternating, lengths 3..49."""
    rng = np.random.default_rng(seed)
    with StoreWriter(path, dataset="ntu120", class_names=[f"A{k + 1:03d}" for k in range(NUM_CLASSES)]) as w:
        for i in range(n):
            frames = rng.normal(size=(1 + i % 2, int(rng.integers(3, 50)), 25, 3)).astype(np.float32)
            if frames.shape[0] == 2:
                frames[1, :2] = 0.0  # actor 2 absent in the first frames
            w.add(SampleRecord(f"s{i}", i % NUM_CLASSES, frames))
        train = np.arange(0, n, 2)
        return w.finish({"ntu120-xsub": {"train": train, "test": np.arange(1, n, 2)},
                         "ntu60-xsub": {"train": np.arange(n // 2), "test": np.arange(n // 2, n)}})


def assert_same_clips(a: Store, a_idx, b: Store, b_idx):
    assert len(a_idx) == len(b_idx)
    for i, j in zip(a_idx, b_idx):
        np.testing.assert_array_equal(a.frames(i), b.frames(j))
        assert a.labels[i] == b.labels[j]


@pytest.mark.parametrize("benchmark, copies", [("ntu120-xsub", True), ("ntu60-xsub", False)])
def test_store_npz_store_round_trip(tmp_path, benchmark, copies):
    store = make_store(tmp_path / "a")
    report = export_npz(store, benchmark, tmp_path / "x.npz", progress=False)
    assert report.copied_single_actor is copies and report.truncated == 0
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert z["x_train"].shape == (5, 300, 150) and z["x_train"].dtype == np.float32
        np.testing.assert_array_equal(z["y_test"].argmax(1), store.labels[store.split(benchmark, "test")])
        # the single-actor convention of the original code
        single = store.split(benchmark, "train")[0]
        t = store.lengths[single]
        assert store.num_actors[single] == 1
        x = z["x_train"][0]
        np.testing.assert_array_equal(x[:t, 75:], x[:t, :75] if copies else 0.0)
        assert not x[t:].any()
    back = import_npz(tmp_path / "x.npz", tmp_path / "b", benchmark, progress=False)
    assert back.dataset == benchmark.split("-")[0] and back.benchmarks() == [benchmark]
    assert back.class_names == store.class_names
    for part in ("train", "test"):
        assert_same_clips(store, store.split(benchmark, part), back, back.split(benchmark, part))
    assert back.names[0] == "train_00000" and back.names[-1] == f"test_{len(back.split(benchmark, 'test')) - 1:05d}"
    back.verify()


def test_npz_store_npz_round_trip_compressed_and_small_chunks(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    x = np.zeros((6, 300, 150), np.float32)
    lengths = [300, 17, 1, 120, 64, 5]
    for i, t in enumerate(lengths):
        x[i, :t, :75] = rng.normal(size=(t, 75))
        if i == 1:
            x[i, :t, 75:] = rng.normal(size=(t, 75))        # a real second actor
        if i == 3:
            x[i, :t, 75:] = x[i, :t, :75]                   # NTU-120 copy of actor 1
    y = np.eye(3, dtype=np.float64)[[0, 1, 2, 0, 1, 2]]
    np.savez_compressed(tmp_path / "in.npz", x_train=x[:4], y_train=y[:4], x_test=x[4:], y_test=y[4:])
    monkeypatch.setattr(legacy, "_CHUNK_BYTES", 2 * 300 * 150 * 4)  # two clips per chunk
    store = import_npz(tmp_path / "in.npz", tmp_path / "s", progress=False)
    assert store.benchmarks() == ["legacy"]
    assert store.lengths.tolist() == lengths
    assert store.num_actors.tolist() == [1, 2, 1, 1, 1, 1]  # the copy in clip 3 is dropped
    export_npz(store, "legacy", tmp_path / "out.npz", copy_single_actor=False, progress=False)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as z:
        expect = x.copy()
        expect[3, :, 75:] = 0.0
        np.testing.assert_array_equal(np.concatenate([z["x_train"], z["x_test"]]), expect)
        np.testing.assert_array_equal(np.concatenate([z["y_train"], z["y_test"]]), y)
    export_npz(store, "legacy", tmp_path / "copy.npz", copy_single_actor=True, progress=False)
    with np.load(tmp_path / "copy.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(z["x_train"][3], x[3])


def test_export_pads_and_truncates(tmp_path):
    store = make_store(tmp_path / "a")
    report = export_npz(store, "ntu60-xsub", tmp_path / "x.npz", pad_to=20, progress=False)
    idx = store.split("ntu60-xsub", "train")
    assert report.truncated == int((store.lengths[np.concatenate([idx, store.split("ntu60-xsub", "test")])] > 20).sum())
    with np.load(tmp_path / "x.npz", allow_pickle=False) as z:
        assert z["x_train"].shape == (5, 20, 150)
        for j, i in enumerate(idx):
            f = store.frames(i)[:, :20]
            np.testing.assert_array_equal(z["x_train"][j, :f.shape[1], :75], f[0].reshape(-1, 75))


def test_legacy_to_frames_rules():
    x = np.zeros((10, 150), np.float32)
    assert legacy_to_frames(x) is None
    x[:4, :75] = 1.0
    x[2, 75:] = 2.0
    f = legacy_to_frames(x)
    assert f.shape == (2, 4, 25, 3) and f[1, 2].max() == 2.0
    x[:, 75:] = x[:, :75]
    assert legacy_to_frames(x).shape == (1, 4, 25, 3)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_bad_npz_messages(tmp_path):
    x = np.zeros((2, 300, 150), np.float32)
    x[:, 0, 0] = 1.0
    y = np.eye(2, dtype=np.float32)
    p = write_npz(tmp_path / "nokey.npz", x_train=x, y_train=y, x_test=x)
    with pytest.raises(HacmError, match=r"nokey.npz: missing key 'y_test'"):
        import_npz(p, tmp_path / "s1", progress=False)
    p = write_npz(tmp_path / "shape.npz", x_train=x[:, :, :75], y_train=y, x_test=x, y_test=y)
    with pytest.raises(HacmError, match=r"key 'x_train' has shape \[2, 300, 75\].*expected float \[N, T, 150\]"):
        import_npz(p, tmp_path / "s2", progress=False)
    p = write_npz(tmp_path / "y.npz", x_train=x, y_train=y[:1], x_test=x, y_test=y)
    with pytest.raises(HacmError, match=r"key 'y_train' has shape \[1, 2\], expected one-hot \[2, C\]"):
        import_npz(p, tmp_path / "s3", progress=False)
    p = write_npz(tmp_path / "c.npz", x_train=x, y_train=y, x_test=x, y_test=np.eye(2, 3))
    with pytest.raises(HacmError, match=r"key 'y_test' has shape \[2, 3\], expected one-hot \[2, 2\]"):
        import_npz(p, tmp_path / "s4", progress=False)
    p = write_npz(tmp_path / "hot.npz", x_train=x, y_train=np.ones((2, 2)), x_test=x, y_test=y)
    with pytest.raises(HacmError, match=r"key 'y_train' row 0 is not one-hot"):
        import_npz(p, tmp_path / "s5", progress=False)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(HacmError, match="cannot open as .npz"):
        import_npz(tmp_path / "junk.npz", tmp_path / "s6", progress=False)
    with pytest.raises(HacmError, match="unknown benchmark 'ntu99'"):
        import_npz(p, tmp_path / "s7", "ntu99", progress=False)
    for d in ("s1", "s2", "s3", "s4", "s5"):
        assert not list((tmp_path / d).glob("*")), d  # nothing half-written


def test_truncated_member_is_reported(tmp_path):
    x = np.ones((3, 300, 150), np.float32)
    y = np.eye(3, dtype=np.float32)
    src = write_npz(tmp_path / "t.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "x_test.npy":  # the header still promises 3 clips
                data = data[: len(data) - 300 * 150 * 4]
            zout.writestr(name, data)
    with pytest.raises(HacmError, match=r"key 'x_test' ends after 2 of 3 samples"):
        import_npz(bad, tmp_path / "s", progress=False)
    # the aborted writer removed its temporary files, and the directory it created (hacm.lock)
    assert not (tmp_path / "s").exists()
