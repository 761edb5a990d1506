"""Read and write the legacy MAMP / HA-CM / CTR-GCN interchange `.npz` (docs/data.md,
"The legacy .npz interchange format").

Layout: x_train [N, 300, 150] float32 (150 = 2 actors x 25 joints x xyz, actor-major), y_train
[N, C] one-hot, x_test, y_test; clips right-padded with zeros to 300 frames. The NTU-120 version
of the original preprocessing copies actor 1 into actor 2's slot for single-actor clips; the
NTU-60 version leaves zeros there.

Memory: `np.load` on an `.npz` decompresses a whole array on access (about 20 GB for NTU-120
X-sub's x_train). Both directions here stream instead: `import_npz` reads the x arrays row chunks
at a time straight from the zip members (stored or deflated), and `export_npz` writes an
uncompressed zip (what `np.savez` writes) chunk by chunk. Only the y arrays (N x C) are loaded
whole. Peak memory is about `_CHUNK_BYTES` plus the store index.
"""
from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from hacm import lock
from hacm.data.store import BENCHMARKS, PARTS, SampleRecord, Store, StoreWriter
from hacm.errors import HacmError
from hacm.fileio import make_dir, write_atomic
from hacm.progress import progress_bar
from hacm.skeleton import NUM_JOINTS

LEGACY_FRAMES = 300
LEGACY_ACTORS = 2
ROW_WIDTH = LEGACY_ACTORS * NUM_JOINTS * 3  # 150
_CHUNK_BYTES = 64 << 20
KEYS = tuple(f"{xy}_{part}" for part in PARTS for xy in ("x", "y"))  # x_train, y_train, x_test, y_test


@dataclass
class ExportReport:
    path: Path
    counts: dict[str, int]   # samples per part
    truncated: int           # clips longer than pad_to, cut to their first pad_to frames
    copied_single_actor: bool


def _member_header(zf: zipfile.ZipFile, path: Path, key: str):
    """Open `key`.npy inside the archive and parse its header -> (stream, shape, dtype)."""
    name = key + ".npy"
    if name not in zf.namelist():
        found = sorted(n.removesuffix(".npy") for n in zf.namelist())
        raise HacmError(f"{path}: missing key {key!r} (a legacy file has {', '.join(KEYS)}; found {found})")
    fp = zf.open(name)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise HacmError(f"{path}: key {key!r} uses .npy format version {version}; expected 1.0 or 2.0")
    except ValueError as e:
        fp.close()
        raise HacmError(f"{path}: key {key!r} is not a valid .npy array: {e}") from None
    if fortran_order or dtype.hasobject:
        fp.close()
        raise HacmError(f"{path}: key {key!r} must be a C-ordered numeric array (got dtype {dtype}, "
                        f"fortran_order={fortran_order})")
    return fp, shape, dtype


def _read_labels(zf: zipfile.ZipFile, path: Path, key: str, n: int,
                 num_classes: int | None) -> tuple[np.ndarray, int]:
    """y [n, C] one-hot -> (labels [n], C); C must equal `num_classes` when that is given."""
    fp, shape, dtype = _member_header(zf, path, key)
    with fp:
        if len(shape) != 2 or shape[0] != n or (num_classes is not None and shape[1] != num_classes):
            c = "C" if num_classes is None else num_classes
            raise HacmError(f"{path}: key {key!r} has shape {list(shape)}, expected one-hot [{n}, {c}]")
        y = np.frombuffer(fp.read(), dtype=dtype).reshape(shape)
    hot = (y != 0).sum(axis=1)
    bad = np.flatnonzero((hot != 1) | (y.max(axis=1, initial=0) != 1))
    if bad.size:
        raise HacmError(f"{path}: key {key!r} row {bad[0]} is not one-hot ({bad.size} such rows)")
    return y.argmax(axis=1), shape[1]


def _x_chunks(fp, path: Path, key: str, shape, dtype) -> Iterator[np.ndarray]:
    """Yield consecutive [n, T, 150] float32 chunks of x from the open member stream."""
    n, t = shape[0], shape[1]
    row_bytes = t * ROW_WIDTH * dtype.itemsize
    per_chunk = max(1, _CHUNK_BYTES // max(1, row_bytes))
    for start in range(0, n, per_chunk):
        count = min(per_chunk, n - start)
        buf = fp.read(count * row_bytes)
        if len(buf) != count * row_bytes:
            raise HacmError(f"{path}: key {key!r} ends after {start + len(buf) // row_bytes} of {n} samples (truncated file)")
        yield np.frombuffer(buf, dtype=dtype).reshape(count, t, ROW_WIDTH).astype(np.float32, copy=False)


def legacy_to_frames(x: np.ndarray) -> np.ndarray | None:
    """One legacy clip [T, 150] -> [A, T_valid, 25, 3], or None if it is all zeros.

    T_valid ends at the last frame with any non-zero value. Actor 2 is kept only if it is
    non-zero and not an exact copy of actor 1 (the NTU-120 convention for single-actor clips).
    """
    frames = x.reshape(x.shape[0], LEGACY_ACTORS, NUM_JOINTS, 3).transpose(1, 0, 2, 3)  # [2, T, 25, 3]
    nonzero = np.flatnonzero(frames.any(axis=(0, 2, 3)))
    if nonzero.size == 0:
        return None
    frames = frames[:, :nonzero[-1] + 1]
    if not frames[1].any() or np.array_equal(frames[1], frames[0]):
        frames = frames[:1]
    return np.ascontiguousarray(frames)


@lock.writer_of("out_dir", "store directory")
def import_npz(path, out_dir, benchmark: str | None = None, *, progress: bool = True) -> Store:
    """Convert a legacy file into a store whose split `<benchmark or 'legacy'>` is its train/test.

    Samples are named "train_00000", "test_00000", ... (the file records no names or setup,
    camera, performer ids, which stay 0 = unknown); class k is named "A{k+1:03d}".
    """
    path = Path(path)
    if benchmark is not None and benchmark not in BENCHMARKS:
        raise HacmError(f"import_npz: unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    split_name = benchmark or "legacy"
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise HacmError(f"{path}: cannot open as .npz: {e}") from None
    with zf:
        streams, labels = {}, {}
        num_classes = None
        try:
            for part in PARTS:
                key = f"x_{part}"
                fp, shape, dtype = _member_header(zf, path, key)
                streams[part] = (fp, shape, dtype)
                if len(shape) != 3 or shape[2] != ROW_WIDTH or shape[1] < 1 or dtype.kind != "f":
                    raise HacmError(f"{path}: key {key!r} has shape {list(shape)} dtype {dtype}, "
                                    f"expected float [N, T, {ROW_WIDTH}] (T = {LEGACY_FRAMES} in the original files)")
                labels[part], num_classes = _read_labels(zf, path, f"y_{part}", shape[0], num_classes)

            dataset = split_name.split("-")[0]
            class_names = [f"A{k + 1:03d}" for k in range(num_classes)]
            indices = {part: [] for part in PARTS}
            empty = 0
            with StoreWriter(out_dir, dataset=dataset, class_names=class_names) as writer:
                for part in PARTS:
                    fp, shape, dtype = streams[part]
                    bar = progress_bar(total=shape[0], desc=f"import {part}", unit="clip", disable=not progress)
                    i = 0
                    for chunk in _x_chunks(fp, path, f"x_{part}", shape, dtype):
                        for x in chunk:
                            frames = legacy_to_frames(x)
                            if frames is None:  # keep the sample (indices stay aligned): one zero frame
                                empty += 1
                                frames = np.zeros((1, 1, NUM_JOINTS, 3), dtype=np.float32)
                            indices[part].append(writer.add(SampleRecord(
                                name=f"{part}_{i:05d}", label=int(labels[part][i]), frames=frames)))
                            i += 1
                        bar.update(len(chunk))
                    bar.close()
                store = writer.finish({split_name: {p: np.asarray(v, dtype=np.int64) for p, v in indices.items()}})
        finally:
            for fp, _, _ in streams.values():
                fp.close()
    if empty:
        warnings.warn(f"{path}: {empty} all-zero clips kept as a single zero frame", stacklevel=2)
    return store


def export_npz(store: Store, benchmark: str, out_path, pad_to: int = LEGACY_FRAMES,
               copy_single_actor: bool | None = None, *, progress: bool = True) -> ExportReport:
    """Write `benchmark`'s train/test parts in the legacy format (uncompressed, streamed).

    Clips are padded or truncated to `pad_to` frames. `copy_single_actor` (default: True for
    ntu120 benchmarks, False otherwise, as the original code) fills actor 2's slot of
    single-actor clips with actor 1.
    """
    if pad_to < 1:
        raise HacmError(f"export_npz: pad_to must be >= 1, got {pad_to}")
    if copy_single_actor is None:
        copy_single_actor = benchmark.startswith("ntu120")
    parts = {part: store.split(benchmark, part) for part in PARTS}
    out_path = Path(out_path)
    if out_path.is_dir():
        raise HacmError(f"{out_path}: is a directory (expected the path of the .npz file to write)")
    make_dir(out_path.parent, "directory of the .npz file")
    truncated = 0

    def write(f) -> None:
        nonlocal truncated
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for part, idx in parts.items():
                truncated += _write_x(zf, store, idx, f"x_{part}", pad_to, copy_single_actor, progress)
                y = np.zeros((idx.size, store.num_classes), dtype=np.float32)
                y[np.arange(idx.size), store.labels[idx]] = 1.0
                with zf.open(f"y_{part}.npy", "w", force_zip64=True) as fp:
                    np.lib.format.write_array(fp, y, allow_pickle=False)

    write_atomic(out_path, write, fsync=False)     # bulk and regenerable from the store: no fsync
    return ExportReport(out_path, {p: int(i.size) for p, i in parts.items()}, truncated, copy_single_actor)


def _write_x(zf, store: Store, idx: np.ndarray, key: str, pad_to: int, copy_single_actor: bool,
             progress: bool) -> int:
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
              "shape": (int(idx.size), pad_to, ROW_WIDTH)}
    per_chunk = max(1, _CHUNK_BYTES // (pad_to * ROW_WIDTH * 4))
    half = NUM_JOINTS * 3
    truncated = 0
    with zf.open(key + ".npy", "w", force_zip64=True) as fp:
        np.lib.format.write_array_header_1_0(fp, header)
        for start in progress_bar(range(0, idx.size, per_chunk), desc=f"export {key}", unit="chunk",
                          disable=not progress):
            sel = idx[start:start + per_chunk]
            buf = np.zeros((sel.size, pad_to, ROW_WIDTH), dtype="<f4")  # [n, T, 150]
            for j, i in enumerate(sel):
                frames = store.frames(i)  # [A, T, 25, 3]
                truncated += frames.shape[1] > pad_to
                frames = frames[:, :pad_to]
                t = frames.shape[1]
                buf[j, :t, :half] = frames[0].reshape(t, half)
                if frames.shape[0] == 2:
                    buf[j, :t, half:] = frames[1].reshape(t, half)
                elif copy_single_actor:
                    buf[j, :t, half:] = frames[0].reshape(t, half)
            fp.write(buf.tobytes())
    return truncated
