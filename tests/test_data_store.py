import json

import numpy as np
import pytest

from hacm.data.splits import NTU120_XSUB_TRAIN_PERFORMERS, NTU60_XSUB_TRAIN_PERFORMERS, ntu_splits
from hacm.data.store import FORMAT_VERSION, SampleRecord, Store, StoreWriter
from hacm.errors import HacmError


def random_records(n: int, seed: int = 0, num_classes: int = 3) -> list[SampleRecord]:
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(n):
        actors, length = 1 + i % 2, int(rng.integers(5, 40))
        recs.append(SampleRecord(
            name=f"S{i % 4 + 1:03d}C{i % 3 + 1:03d}P{i % 7 + 1:03d}R001A{i % num_classes + 1:03d}",
            label=i % num_classes,
            frames=rng.normal(size=(actors, length, 25, 3)).astype(np.float32),
            setup=i % 4 + 1, camera=i % 3 + 1, performer=i % 7 + 1, replication=1))
    return recs


def write_store(path, recs, num_classes=3) -> Store:
    with StoreWriter(path, dataset="synth", class_names=[f"c{k}" for k in range(num_classes)]) as w:
        for r in recs:
            w.add(r)
        return w.finish(ntu_splits("synth", [r.performer for r in recs], [r.camera for r in recs],
                                   [r.setup for r in recs]))


@pytest.fixture
def store_and_records(tmp_path):
    recs = random_records(12)
    return write_store(tmp_path / "store", recs), recs


def test_reload_equals_every_record(store_and_records):
    store, recs = store_and_records
    reopened = Store.open(store.path, verify=True)
    assert len(reopened) == len(recs)
    for i, r in enumerate(recs):
        np.testing.assert_array_equal(reopened.frames(i), r.frames)
        assert reopened.names[i] == r.name and reopened.labels[i] == r.label
        assert (reopened.setup[i], reopened.camera[i], reopened.performer[i], reopened.replication[i]) == \
            (r.setup, r.camera, r.performer, r.replication)
        assert reopened.num_actors[i] == r.frames.shape[0] and reopened.lengths[i] == r.frames.shape[1]
    assert reopened.benchmarks() == ["synth-xsub", "synth-xview"]
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["num_samples"] == 12
    assert meta["rows"] == sum(r.frames.shape[0] * r.frames.shape[1] for r in recs)
    assert not list(store.path.glob("*.tmp"))


def test_all_zero_second_actor_is_not_stored(tmp_path):
    frames = np.zeros((2, 6, 25, 3), np.float32)
    frames[0] = 1.0
    with StoreWriter(tmp_path, dataset="x", class_names=["a"]) as w:
        w.add(SampleRecord("s", 0, frames))
        store = w.finish({})
    assert store.num_actors[0] == 1 and store.frames(0).shape == (1, 6, 25, 3)


def test_writer_rejects_bad_records(tmp_path):
    w = StoreWriter(tmp_path, dataset="x", class_names=["a", "b"])
    good = np.zeros((1, 3, 25, 3), np.float32)
    with pytest.raises(HacmError, match=r"shape \[A in \(1, 2\)"):
        w.add(SampleRecord("s", 0, np.zeros((3, 3, 25, 3), np.float32)))
    with pytest.raises(HacmError, match="label 2 outside"):
        w.add(SampleRecord("s", 2, good))
    bad = good.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(HacmError, match="NaN"):
        w.add(SampleRecord("s", 0, bad))
    w.add(SampleRecord("s", 0, good))
    with pytest.raises(HacmError, match="duplicate sample name"):
        w.add(SampleRecord("s", 1, good))
    with pytest.raises(HacmError, match=r"indices must lie in \[0, 1\)"):
        w.finish({"synth-xsub": {"train": [0], "test": [1]}})
    w.abort()
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_conversion_leaves_no_temporary_files(tmp_path):
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path, dataset="x", class_names=["a"]) as w:
            w.add(SampleRecord("s", 0, np.ones((1, 3, 25, 3), np.float32)))
            raise RuntimeError("conversion failed")
    assert list(tmp_path.iterdir()) == []


def test_verify_detects_a_flipped_byte(store_and_records):
    store, _ = store_and_records
    store.verify()
    frames_bin = store.path / "frames.bin"
    data = bytearray(frames_bin.read_bytes())
    data[len(data) // 2] ^= 0x01
    frames_bin.write_bytes(bytes(data))
    reopened = Store.open(store.path)  # sizes still agree: only the checksum can tell
    with pytest.raises(HacmError, match="checksum mismatch"):
        reopened.verify()
    with pytest.raises(HacmError, match="checksum mismatch"):
        Store.open(store.path, verify=True)


@pytest.mark.parametrize("name", ["meta.json", "frames.bin", "index.npz", "splits.npz"])
def test_open_names_a_missing_file(store_and_records, name):
    store, _ = store_and_records
    (store.path / name).unlink()
    with pytest.raises(HacmError, match=rf"{store.path / name}: missing"):
        Store.open(store.path)


def test_open_rejects_bad_version_and_size(store_and_records):
    store, _ = store_and_records
    meta_path = store.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(meta | {"format_version": 99}))
    with pytest.raises(HacmError, match=rf"{meta_path}: field 'format_version' is 99"):
        Store.open(store.path)
    meta_path.write_text(json.dumps(meta))
    frames_bin = store.path / "frames.bin"
    frames_bin.write_bytes(frames_bin.read_bytes()[:-300])
    with pytest.raises(HacmError, match=rf"{frames_bin}: size .* expected rows \* 25 \* 3 \* 4"):
        Store.open(store.path)
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if k != "checksum"}))
    with pytest.raises(HacmError, match="missing field 'checksum'"):
        Store.open(store.path)
    with pytest.raises(HacmError, match="no such store directory"):
        Store.open(store.path / "nope")


def test_split_lookup_lists_valid_names(store_and_records):
    store, _ = store_and_records
    with pytest.raises(HacmError, match="synth-xsub/test, synth-xsub/train, synth-xview/test"):
        store.split("ntu60-xsub", "train")


def test_summary_counts(store_and_records):
    store, recs = store_and_records
    s = store.summary()
    assert s["num_samples"] == 12 and s["classes"] == {"c0": 4, "c1": 4, "c2": 4}
    assert s["actors"] == {"1": 6, "2": 6}
    lengths = [r.frames.shape[1] for r in recs]
    assert s["length"] == {"min": min(lengths), "median": float(np.median(lengths)), "max": max(lengths)}
    assert s["total_frames"] == sum(lengths)
    assert s["bytes"]["frames.bin"] == s["rows"] * 300
    xview = s["splits"]["synth-xview"]
    assert xview["train"]["count"] == sum(r.camera in (2, 3) for r in recs)
    assert xview["train"]["count"] + xview["test"]["count"] == 12
    assert sum(xview["test"]["per_class"]) == xview["test"]["count"]
    json.dumps(s)


def test_store_pickles_without_frames(store_and_records):
    import pickle
    store, recs = store_and_records
    store.frames(0)  # opens the memory map
    blob = pickle.dumps(store)
    assert len(blob) < store.rows * 300  # the frames are not copied into the pickle
    np.testing.assert_array_equal(pickle.loads(blob).frames(3), recs[3].frames)


def test_ntu_splits_on_hand_made_metadata():
    performer = np.array([1, 3, 2, 45, 44, 103, 38, 39])
    camera = np.array([1, 2, 3, 1, 2, 3, 1, 2])
    setup = np.array([1, 2, 3, 18, 19, 32, 31, 4])
    s60 = ntu_splits("ntu60", performer, camera, setup)
    np.testing.assert_array_equal(s60["ntu60-xsub"]["train"], [0, 2, 6])   # performers 1, 2, 38
    np.testing.assert_array_equal(s60["ntu60-xsub"]["test"], [1, 3, 4, 5, 7])
    np.testing.assert_array_equal(s60["ntu60-xview"]["train"], [1, 2, 4, 5, 7])
    np.testing.assert_array_equal(s60["ntu60-xview"]["test"], [0, 3, 6])
    s120 = ntu_splits("ntu120", performer, camera, setup)
    np.testing.assert_array_equal(s120["ntu120-xsub"]["train"], [0, 2, 3, 5, 6])  # + 45, 103
    np.testing.assert_array_equal(s120["ntu120-xset"]["train"], [1, 3, 5, 7])     # even setups
    np.testing.assert_array_equal(s120["ntu120-xset"]["test"], [0, 2, 4, 6])
    synth = ntu_splits("synth", performer, camera, setup)
    assert set(synth) == {"synth-xsub", "synth-xview"}
    np.testing.assert_array_equal(synth["synth-xsub"]["train"], s60["ntu60-xsub"]["train"])
    np.testing.assert_array_equal(synth["synth-xview"]["test"], s60["ntu60-xview"]["test"])


def test_performer_sets_match_data_md():
    assert len(NTU60_XSUB_TRAIN_PERFORMERS) == 20 and len(NTU120_XSUB_TRAIN_PERFORMERS) == 53
    assert NTU60_XSUB_TRAIN_PERFORMERS < NTU120_XSUB_TRAIN_PERFORMERS


def test_ntu_splits_errors():
    with pytest.raises(HacmError, match="unknown dataset 'pku1'"):
        ntu_splits("pku1", [1], [1], [1])
    with pytest.raises(HacmError, match="performer is unknown"):
        ntu_splits("ntu60", [0, 1], [1, 1], [1, 1])
    with pytest.raises(HacmError, match="different lengths"):
        ntu_splits("ntu60", [1, 2], [1], [1])


def test_a_flipped_byte_is_caught_when_its_chunk_is_first_read(tmp_path, monkeypatch):
    import zlib

    from hacm.data import store as store_module

    monkeypatch.setattr(store_module, "CHUNK_BYTES", 1000)   # many chunks, samples across their edges
    recs = random_records(12)
    store = write_store(tmp_path / "store", recs)
    data = (store.path / "frames.bin").read_bytes()
    meta = json.loads((store.path / "meta.json").read_text())
    assert meta["chunk_bytes"] == 1000 and len(meta["chunk_crc32"]) == -(-len(data) // 1000)
    assert meta["chunk_crc32"] == [zlib.crc32(data[i:i + 1000]) for i in range(0, len(data), 1000)]
    assert store.summary()["chunk_checksums"] == len(meta["chunk_crc32"])

    victim = 7                                          # flip one bit of one float in sample 7
    at = int(store.offsets[victim]) * 300 + 123
    flipped = bytearray(data)
    flipped[at] ^= 0x10
    (store.path / "frames.bin").write_bytes(bytes(flipped))
    reopened = Store.open(store.path)                   # opening stays cheap: nothing read yet
    np.testing.assert_array_equal(reopened.frames(0), recs[0].frames)
    with pytest.raises(HacmError, match=rf"frames.bin: bytes {at // 1000 * 1000}-\d+ \(chunk {at // 1000}\) "
                                        r"do not match their checksum"):
        reopened.frames(victim)
    with pytest.raises(HacmError, match="checksum mismatch"):
        Store.open(store.path, verify=True)


def test_a_store_without_chunk_checksums_still_opens(store_and_records, caplog):
    store, recs = store_and_records
    meta_path = store.path / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({k: v for k, v in meta.items() if not k.startswith("chunk_")}))
    with caplog.at_level("INFO", logger="hacm.store"):
        old = Store.open(store.path, verify=True)        # the full check still holds
    np.testing.assert_array_equal(old.frames(3), recs[3].frames)
    assert old.summary()["chunk_checksums"] == 0
    meta_path.write_text(json.dumps(meta | {"chunk_crc32": meta["chunk_crc32"][:-1] + [-1]}))
    with pytest.raises(HacmError, match="field 'chunk_crc32' must list"):
        Store.open(store.path)
