"""hacm's skeleton store: every sample's real frames in one memory-mapped file.

The legacy interchange format pads every clip to 300 frames and two actors in memory (about 20 GB
for NTU-120 X-sub). The store keeps only what was recorded and never needs the dataset in memory:

    frames.bin   raw little-endian float32 rows [rows, 25, 3]; sample i occupies rows
                 offsets[i] : offsets[i] + num_actors[i] * lengths[i], reshaped [A, T, 25, 3]
                 (actor-major). A second actor is stored only when the sample has one.
    index.npz    per-sample arrays: offsets, lengths, num_actors, labels, setup, camera,
                 performer, replication (integers) and names (unicode)
    splits.npz   "<benchmark>/<part>" -> int64 sample indices, part in {"train", "test"}
    meta.json    format_version, dataset, class_names, num_samples, rows, checksum, created;
                 chunk_bytes, chunk_crc32 (stores written since per-chunk checks)

The checksum is a sha256 over frames.bin followed by the index and split arrays (name, dtype,
shape and bytes of each, in a fixed order), so it does not depend on zip timestamps; `verify`
(`hacm data info --verify`) recomputes it, reading the whole store. The cheap check runs always:
frames.bin is cut into CHUNK_BYTES chunks whose CRC-32s are in meta.json, and each chunk is
checked the first time a process reads from it, so a flipped byte raises an error naming the
chunk before the clip holding it reaches training (one CRC pass over the data per process; docs/data.md
gives the measured cost). Stores written before it lack the two fields and are read without it:
the format version is unchanged, since older hacm ignore the fields.
StoreWriter streams: frames go to disk as they are added, only the small per-sample index stays
in memory, and the finished files appear by atomic renames with meta.json last, so a reader never
sees a half-written store.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from hacm.errors import HacmError
from hacm.fileio import make_dir
from hacm.skeleton import NUM_JOINTS

FORMAT_VERSION = 1

BENCHMARKS: tuple[str, ...] = (
    "ntu60-xsub", "ntu60-xview", "ntu120-xsub", "ntu120-xset",
    "pku1-xsub", "pku1-xview", "pku2-xsub", "pku2-xview",
    "synth-xsub", "synth-xview",
)
PARTS: tuple[str, ...] = ("train", "test")

FRAMES_FILE, INDEX_FILE, SPLITS_FILE, META_FILE = "frames.bin", "index.npz", "splits.npz", "meta.json"

ROW_SHAPE = (NUM_JOINTS, 3)
ROW_DTYPE = np.dtype("<f4")
ROW_BYTES = NUM_JOINTS * 3 * ROW_DTYPE.itemsize  # 300 bytes per (actor, frame)

# Integer per-sample fields of index.npz, in checksum order (names come last).
INDEX_INT_FIELDS: tuple[str, ...] = (
    "offsets", "lengths", "num_actors", "labels", "setup", "camera", "performer", "replication",
)
META_FIELDS: tuple[str, ...] = (
    "format_version", "dataset", "class_names", "num_samples", "rows", "checksum", "created",
)
_HASH_CHUNK = 16 << 20
CHUNK_BYTES = 4 << 20      # frames.bin bytes per CRC-32: the most a first read of one clip checks
logger = logging.getLogger("hacm.store")


@dataclass
class SampleRecord:
    name: str            # "S001C002P003R002A013" (NTU) or PKU "<video>_<k>"
    label: int           # 0-based class index
    frames: np.ndarray   # [A, T, 25, 3] float32, A in (1, 2); only real frames; zeros where actor 2 is absent
    setup: int = 0       # 1-based, 0 = unknown (same for the three below)
    camera: int = 0
    performer: int = 0
    replication: int = 0


def split_key(benchmark: str, part: str) -> str:
    return f"{benchmark}/{part}"


def _hash_arrays(h, arrays: Sequence[tuple[str, np.ndarray]]) -> None:
    for name, a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())


def _checksum_tail(h, index: dict[str, np.ndarray], splits: dict[str, np.ndarray]) -> str:
    """Finish a sha256 that has already consumed frames.bin with the index and split arrays."""
    _hash_arrays(h, [(k, index[k]) for k in (*INDEX_INT_FIELDS, "names")])
    _hash_arrays(h, sorted(splits.items()))
    return h.hexdigest()


def _validate_splits(splits: dict[str, dict[str, np.ndarray]], num_samples: int) -> dict[str, np.ndarray]:
    """{"bench": {"train": idx, "test": idx}} -> flat {"bench/train": int64 idx}, checked."""
    flat = {}
    for bench, parts in splits.items():
        if not isinstance(bench, str) or not bench or "/" in bench:
            raise HacmError(f"split name {bench!r}: expected a non-empty benchmark name without '/'")
        if set(parts) != set(PARTS):
            raise HacmError(f"split {bench!r}: expected parts {list(PARTS)}, got {sorted(parts)}")
        for part in PARTS:
            idx = np.asarray(parts[part])
            if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
                raise HacmError(f"split {bench}/{part}: expected a 1-D integer index array, got "
                                f"dtype {idx.dtype} shape {idx.shape}")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= num_samples):
                raise HacmError(f"split {bench}/{part}: indices must lie in [0, {num_samples}), "
                                f"got [{idx.min()}, {idx.max()}]")
            if np.unique(idx).size != idx.size:
                raise HacmError(f"split {bench}/{part}: duplicate sample indices")
            flat[split_key(bench, part)] = idx
    return flat


class StoreWriter:
    """Streams samples into a new store at `out_dir`; `finish` publishes it.

    Memory holds only the per-sample index (a few dozen bytes a sample). An existing store in
    `out_dir` is replaced when `finish` succeeds. Use as a context manager (or call `abort`) so
    that a failed conversion leaves no temporary files behind.
    """

    def __init__(self, out_dir, *, dataset: str, class_names: Sequence[str]):
        if not dataset:
            raise HacmError("StoreWriter: dataset name must not be empty")
        if len(class_names) == 0:
            raise HacmError("StoreWriter: class_names must not be empty")
        self.path = Path(out_dir)
        make_dir(self.path, "store directory")
        self.dataset = dataset
        self.class_names = [str(c) for c in class_names]
        self._tmp = self.path / (FRAMES_FILE + ".tmp")
        self._file = open(self._tmp, "wb")
        self._hash = hashlib.sha256()  # frames.bin is written sequentially, so it is hashed as it is written
        self._chunk_crc32: list[int] = []
        self._crc, self._crc_fill = 0, 0   # the CRC-32 of the chunk being written, and its bytes so far
        self._rows = 0
        self._names: list[str] = []
        self._seen: set[str] = set()
        self._ints: dict[str, list[int]] = {k: [] for k in INDEX_INT_FIELDS}

    def __len__(self) -> int:
        return len(self._names)

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

    def add(self, rec: SampleRecord) -> int:
        """Append one sample; returns its index. A second actor that is all zeros is not stored."""
        if self._file is None:
            raise HacmError(f"{self.path}: StoreWriter is already finished or aborted")
        where = f"{self.path}: sample {len(self._names)} ({rec.name!r})"
        if not isinstance(rec.name, str) or not rec.name:
            raise HacmError(f"{where}: name must be a non-empty string")
        if rec.name in self._seen:
            raise HacmError(f"{where}: duplicate sample name")
        if not 0 <= int(rec.label) < len(self.class_names):
            raise HacmError(f"{where}: label {rec.label} outside [0, {len(self.class_names)})")
        frames = np.asarray(rec.frames)
        if frames.ndim != 4 or frames.shape[0] not in (1, 2) or frames.shape[2:] != ROW_SHAPE \
                or frames.shape[1] < 1:
            raise HacmError(f"{where}: frames must have shape [A in (1, 2), T >= 1, 25, 3], got {frames.shape}")
        if not np.isfinite(frames).all():
            raise HacmError(f"{where}: frames contain NaN or infinite values")
        frames = np.ascontiguousarray(frames, dtype=ROW_DTYPE)
        if frames.shape[0] == 2 and not frames[1].any():
            frames = frames[:1]
        meta = {"setup": rec.setup, "camera": rec.camera, "performer": rec.performer,
                "replication": rec.replication}
        for k, v in meta.items():
            if int(v) < 0:
                raise HacmError(f"{where}: {k} must be >= 0 (0 = unknown), got {v}")

        buf = memoryview(frames).cast("B")
        self._file.write(buf)
        self._hash.update(buf)
        self._crc_chunks(buf)
        num_actors, length = frames.shape[:2]
        for k, v in (("offsets", self._rows), ("lengths", length), ("num_actors", num_actors),
                     ("labels", int(rec.label)), *meta.items()):
            self._ints[k].append(int(v))
        self._rows += num_actors * length
        self._names.append(rec.name)
        self._seen.add(rec.name)
        return len(self._names) - 1

    def _crc_chunks(self, buf: memoryview) -> None:
        """Carry the per-chunk CRC-32s over bytes appended to frames.bin."""
        pos = 0
        while pos < len(buf):
            take = min(CHUNK_BYTES - self._crc_fill, len(buf) - pos)
            self._crc = zlib.crc32(buf[pos:pos + take], self._crc)
            self._crc_fill += take
            pos += take
            if self._crc_fill == CHUNK_BYTES:
                self._chunk_crc32.append(self._crc)
                self._crc, self._crc_fill = 0, 0

    def finish(self, splits: dict[str, dict[str, np.ndarray]]) -> "Store":
        """Write index, splits and meta.json (with the checksum), publish atomically, reopen."""
        if self._file is None:
            raise HacmError(f"{self.path}: StoreWriter is already finished or aborted")
        n = len(self._names)
        flat_splits = _validate_splits(splits, n)
        self._file.close()
        self._file = None
        index = {k: np.asarray(v, dtype=np.int64) for k, v in self._ints.items()}
        index["names"] = np.asarray(self._names, dtype=str) if n else np.zeros(0, dtype="<U1")
        meta = {
            "format_version": FORMAT_VERSION,
            "dataset": self.dataset,
            "class_names": self.class_names,
            "num_samples": n,
            "rows": self._rows,
            "checksum": _checksum_tail(self._hash, index, flat_splits),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "chunk_bytes": CHUNK_BYTES,
            "chunk_crc32": self._chunk_crc32 + ([self._crc] if self._crc_fill else []),
        }
        tmp = {name: self.path / (name + ".tmp") for name in (INDEX_FILE, SPLITS_FILE, META_FILE)}
        # np.savez on an open file object keeps the exact name (a path would get ".npz" appended).
        with open(tmp[INDEX_FILE], "wb") as f:
            np.savez(f, **index)
        with open(tmp[SPLITS_FILE], "wb") as f:
            np.savez(f, **flat_splits)
        tmp[META_FILE].write_text(json.dumps(meta, indent=1) + "\n")
        # meta.json goes first and comes back last: a store without it is never opened.
        (self.path / META_FILE).unlink(missing_ok=True)
        os.replace(self._tmp, self.path / FRAMES_FILE)
        os.replace(tmp[INDEX_FILE], self.path / INDEX_FILE)
        os.replace(tmp[SPLITS_FILE], self.path / SPLITS_FILE)
        os.replace(tmp[META_FILE], self.path / META_FILE)
        return Store.open(self.path)

    def abort(self) -> None:
        """Drop everything written so far (an existing published store is left untouched)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        for name in (FRAMES_FILE, INDEX_FILE, SPLITS_FILE, META_FILE):
            (self.path / (name + ".tmp")).unlink(missing_ok=True)


class Store:
    """A finished store, opened read-only. `frames(i)` is a view into the memory map."""

    path: Path
    dataset: str
    class_names: list[str]
    num_classes: int
    names: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    num_actors: np.ndarray
    labels: np.ndarray
    setup: np.ndarray
    camera: np.ndarray
    performer: np.ndarray
    replication: np.ndarray

    def __init__(self, path: Path, meta: dict, index: dict[str, np.ndarray], splits: dict[str, np.ndarray]):
        self.path = path
        self.meta = meta
        self.dataset = meta["dataset"]
        self.class_names = list(meta["class_names"])
        self.num_classes = len(self.class_names)
        self.rows = int(meta["rows"])
        for k in INDEX_INT_FIELDS:
            setattr(self, k, index[k])
        self.names = index["names"]
        self._splits = splits
        self._memmap: np.ndarray | None = None
        self.chunk_bytes = int(meta.get("chunk_bytes", 0))
        self.chunk_crc32: list[int] = list(meta.get("chunk_crc32", []))
        self._checked = np.zeros(len(self.chunk_crc32), dtype=bool)   # chunks this process has checked

    @classmethod
    def open(cls, path, verify: bool = False) -> "Store":
        path = Path(path)
        if not path.is_dir():
            raise HacmError(f"{path}: no such store directory")
        for name in (META_FILE, FRAMES_FILE, INDEX_FILE, SPLITS_FILE):
            if not (path / name).is_file():
                raise HacmError(f"{path / name}: missing (not a finished hacm store)")
        meta = _read_meta(path / META_FILE)
        index = _read_index(path / INDEX_FILE, meta)
        splits = _read_splits(path / SPLITS_FILE, meta["num_samples"])
        size = (path / FRAMES_FILE).stat().st_size
        if size != meta["rows"] * ROW_BYTES:
            raise HacmError(f"{path / FRAMES_FILE}: size {size} bytes, expected rows * 25 * 3 * 4 = "
                            f"{meta['rows']} * {ROW_BYTES} = {meta['rows'] * ROW_BYTES} (truncated or corrupt)")
        store = cls(path, meta, index, splits)
        if verify:
            store.verify()
        elif not store.chunk_crc32 and store.rows:
            logger.info("%s: written before per-chunk checksums, so reads are not checked; "
                        "`hacm data info --verify` checks it whole, rebuilding it adds the checks", path)
        return store

    # The memory map is opened lazily and not pickled, so DataLoader workers started with
    # "spawn" reopen the file instead of receiving a copy of the whole dataset.
    @property
    def _frames_map(self) -> np.ndarray:
        if self._memmap is None:
            if self.rows == 0:
                self._memmap = np.zeros((0, *ROW_SHAPE), dtype=ROW_DTYPE)
            else:
                self._memmap = np.memmap(self.path / FRAMES_FILE, dtype=ROW_DTYPE, mode="r",
                                         shape=(self.rows, *ROW_SHAPE))
        return self._memmap

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_memmap"] = None
        return state

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (f"Store({str(self.path)!r}, dataset={self.dataset!r}, samples={len(self)}, "
                f"classes={self.num_classes}, benchmarks={self.benchmarks()})")

    def frames(self, i: int) -> np.ndarray:
        """Sample i as [A, T, 25, 3] float32 (a read-only view into frames.bin)."""
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"sample index {i} out of range for a store of {len(self)} samples")
        start, a, t = int(self.offsets[i]), int(self.num_actors[i]), int(self.lengths[i])
        if self.chunk_crc32:
            self._check_chunks(start * ROW_BYTES, (start + a * t) * ROW_BYTES)
        return self._frames_map[start:start + a * t].reshape(a, t, *ROW_SHAPE)

    def _check_chunks(self, lo: int, hi: int) -> None:
        """Check the CRC-32 of every chunk of frames.bin bytes [lo, hi) not yet checked here."""
        if hi <= lo:
            return
        raw = self._frames_map.reshape(-1).view(np.uint8)
        for c in range(lo // self.chunk_bytes, (hi - 1) // self.chunk_bytes + 1):
            if self._checked[c]:
                continue
            begin, end = c * self.chunk_bytes, min((c + 1) * self.chunk_bytes, raw.size)
            if zlib.crc32(raw[begin:end]) != self.chunk_crc32[c]:
                raise HacmError(f"{self.path / FRAMES_FILE}: bytes {begin}-{end - 1} (chunk {c}) do not match their "
                                f"checksum in meta.json: the store is corrupt; rebuild it or restore it from a copy "
                                f"(hacm data info --verify checks it whole)")
            self._checked[c] = True

    def benchmarks(self) -> list[str]:
        return sorted({k.split("/")[0] for k in self._splits})

    def split(self, benchmark: str, part: str) -> np.ndarray:
        key = split_key(benchmark, part)
        if key not in self._splits:
            valid = ", ".join(sorted(self._splits)) or "none"
            raise HacmError(f"{self.path}: no split {key!r}; this store has: {valid}")
        return self._splits[key]

    def checksum(self) -> str:
        """Recompute the checksum from the files (streaming over frames.bin)."""
        h = hashlib.sha256()
        with open(self.path / FRAMES_FILE, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
        index = {k: getattr(self, k) for k in INDEX_INT_FIELDS}
        index["names"] = self.names
        return _checksum_tail(h, index, self._splits)

    def verify(self) -> None:
        actual = self.checksum()
        if actual != self.meta["checksum"]:
            raise HacmError(f"{self.path}: checksum mismatch (meta.json says {self.meta['checksum'][:16]}..., "
                            f"files give {actual[:16]}...): the store is corrupt")

    def summary(self) -> dict:
        """Counts per split and class, length statistics and sizes, as JSON-ready Python values."""
        files = (FRAMES_FILE, INDEX_FILE, SPLITS_FILE, META_FILE)
        per_class = np.bincount(self.labels, minlength=self.num_classes)
        splits = {}
        for bench in self.benchmarks():
            splits[bench] = {}
            for part in PARTS:
                idx = self.split(bench, part)
                splits[bench][part] = {
                    "count": int(idx.size),
                    "per_class": np.bincount(self.labels[idx], minlength=self.num_classes).tolist(),
                }
        lengths = self.lengths if len(self) else np.zeros(1, dtype=np.int64)
        return {
            "path": str(self.path),
            "dataset": self.dataset,
            "format_version": int(self.meta["format_version"]),
            "created": self.meta["created"],
            "num_samples": len(self),
            "num_classes": self.num_classes,
            "actors": {"1": int((self.num_actors == 1).sum()), "2": int((self.num_actors == 2).sum())},
            "length": {"min": int(lengths.min()), "median": float(np.median(lengths)),
                       "max": int(lengths.max())},
            "total_frames": int(self.lengths.sum()),
            "chunk_checksums": len(self.chunk_crc32),
            "rows": self.rows,
            "bytes": {name: (self.path / name).stat().st_size for name in files}
                     | {"total": sum((self.path / name).stat().st_size for name in files)},
            "splits": splits,
            "classes": {name: int(c) for name, c in zip(self.class_names, per_class)},
        }


def _read_meta(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HacmError(f"{path}: cannot read store metadata: {e}") from None
    if not isinstance(meta, dict):
        raise HacmError(f"{path}: expected a JSON object")
    for field in META_FIELDS:
        if field not in meta:
            raise HacmError(f"{path}: missing field {field!r}")
    if meta["format_version"] != FORMAT_VERSION:
        raise HacmError(f"{path}: field 'format_version' is {meta['format_version']!r}, this hacm reads "
                        f"version {FORMAT_VERSION} (rebuild the store with this hacm)")
    expected = {"dataset": str, "class_names": list, "num_samples": int, "rows": int, "checksum": str}
    for field, typ in expected.items():
        if not isinstance(meta[field], typ) or isinstance(meta[field], bool):
            raise HacmError(f"{path}: field {field!r} must be a {typ.__name__}, got {meta[field]!r}")
    if meta["num_samples"] < 0 or meta["rows"] < 0 or not meta["class_names"]:
        raise HacmError(f"{path}: fields 'num_samples'/'rows' must be >= 0 and 'class_names' non-empty")
    if "chunk_crc32" in meta:
        size, step, crcs = meta["rows"] * ROW_BYTES, meta.get("chunk_bytes"), meta["chunk_crc32"]
        if not isinstance(step, int) or isinstance(step, bool) or step <= 0:
            raise HacmError(f"{path}: field 'chunk_bytes' must be a positive integer, got {step!r}")
        if not isinstance(crcs, list) or len(crcs) != -(-size // step) or \
                not all(isinstance(c, int) and 0 <= c < 1 << 32 for c in crcs):
            raise HacmError(f"{path}: field 'chunk_crc32' must list {-(-size // step)} CRC-32 values "
                            f"(one per {step} bytes of frames.bin)")
    return meta


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):   # else np.load guesses a pickle and says so, which misleads
        raise HacmError(f"{path}: not a .npz archive (truncated or corrupt; expected a zip of .npy arrays)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise HacmError(f"{path}: cannot read: {e}") from None


def _read_index(path: Path, meta: dict) -> dict[str, np.ndarray]:
    index = _load_npz(path)
    n = meta["num_samples"]
    for field in (*INDEX_INT_FIELDS, "names"):
        if field not in index:
            raise HacmError(f"{path}: missing field {field!r}")
        a = index[field]
        if a.shape != (n,):
            raise HacmError(f"{path}: field {field!r} has shape {a.shape}, expected ({n},) from meta.json num_samples")
        kind_ok = a.dtype.kind == "U" if field == "names" else np.issubdtype(a.dtype, np.integer)
        if n and not kind_ok:
            raise HacmError(f"{path}: field {field!r} has dtype {a.dtype}")
    if n:
        if index["num_actors"].min() < 1 or index["num_actors"].max() > 2:
            raise HacmError(f"{path}: field 'num_actors' must be 1 or 2")
        if index["lengths"].min() < 1:
            raise HacmError(f"{path}: field 'lengths' must be >= 1")
        if index["labels"].min() < 0 or index["labels"].max() >= len(meta["class_names"]):
            raise HacmError(f"{path}: field 'labels' outside [0, {len(meta['class_names'])})")
    rows = index["num_actors"].astype(np.int64) * index["lengths"]
    ends = np.cumsum(rows)
    if not np.array_equal(index["offsets"], ends - rows):
        raise HacmError(f"{path}: field 'offsets' is not the running sum of num_actors * lengths")
    total = int(ends[-1]) if n else 0
    if total != meta["rows"]:
        raise HacmError(f"{path}: num_actors * lengths sum to {total} rows, meta.json field 'rows' says {meta['rows']}")
    return index


def _read_splits(path: Path, num_samples: int) -> dict[str, np.ndarray]:
    flat = _load_npz(path)
    nested: dict[str, dict[str, np.ndarray]] = {}
    for key, idx in flat.items():
        bench, _, part = key.partition("/")
        nested.setdefault(bench, {})[part] = idx
    try:
        return _validate_splits(nested, num_samples)
    except HacmError as e:
        raise HacmError(f"{path}: {e}") from None
