"""Raw NTU RGB+D `.skeleton` files -> hacm store, streaming, parallel and restartable.

The sorted file list is cut into fixed chunks. Worker processes turn one chunk at a time into
`STORE/.parts/part-NNNNN.npz` (the chunk's kept samples plus one manifest row per input file),
written atomically, so a killed conversion resumes where it stopped: a part whose key (dataset,
file names and sizes, missing-list entries) still matches is reused. The parent then replays the
parts in order into a StoreWriter, so sample order and content never depend on the number of
workers or on interruptions, and memory stays bounded by one chunk per process.

Every input file gets one manifest row (`manifest.jsonl`): kept (with its sample index), or
dropped for one of DROP_REASONS. Files dropped for an error (ERROR_REASONS) make the conversion
fail unless `allow_errors`; the parts stay, so a rerun with `allow_errors` is immediate.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hacm import lock
from hacm.data.classes import DATASET_CLASSES
from hacm.data.denoise import centre, denoise
from hacm.data.raw_ntu import parse_sample_name, parse_skeleton_file
from hacm.errors import FormatError, HacmError
from hacm.fileio import make_dir, write_atomic, write_text_atomic
from hacm.progress import progress_bar
from hacm.skeleton import NUM_JOINTS

CHUNK_FILES = 256          # files per part: bounds memory per worker and the work lost to a kill
MIN_FRAMES = 2             # a sample needs at least two frames to show any motion
NTU60_MAX_SETUP = 17       # NTU-60 is setups S001-S017; NTU-120 adds S018-S032
PART_VERSION = 1           # bump when the per-file processing changes, to invalidate old parts

DROP_REASONS = ("listed_missing", "not_in_dataset", "unreadable", "format_error",
                "no_bodies", "denoise_empty", "too_short")
ERROR_REASONS = ("unreadable", "format_error")
MANIFEST, MANIFEST_SUMMARY, PARTS_DIR = "manifest.jsonl", "manifest_summary.json", ".parts"
META_FIELDS = ("setup", "camera", "performer", "replication")


@dataclass
class ConversionReport:
    store_path: Path
    dataset: str
    inputs: int                              # input files (NTU) or labelled intervals (PKU)
    kept: int
    dropped: dict[str, int]                  # reason -> count
    errors: list[str] = field(default_factory=list)   # messages of the files dropped for an error
    seconds: float = 0.0
    workers: int = 1
    reused_parts: int = 0

    @classmethod
    def from_rows(cls, store_path: Path, dataset: str, rows: list[dict], errors: list[str], t0: float,
                  workers: int, reused_parts: int = 0) -> "ConversionReport":
        """The report of a conversion whose manifest is `rows`, started at perf_counter() `t0`."""
        kept = sum(r["status"] == "kept" for r in rows)
        dropped = dict(Counter(r["reason"] for r in rows if r["status"] == "dropped"))
        return cls(store_path, dataset, len(rows), kept, dropped, errors, time.perf_counter() - t0, workers,
                   reused_parts)

    @property
    def items_per_second(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------- one file

def ntu_class_names(raw_dir: Path, dataset: str | None) -> tuple[str, list[str]]:
    """(dataset, class names): from raw_dir/synth.json when the generator wrote one."""
    synth = raw_dir / "synth.json"
    if synth.is_file():
        try:
            info = json.loads(synth.read_text())
            return str(info["dataset"]), [str(c) for c in info["class_names"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise HacmError(f"{synth}: expected a JSON object with 'dataset' and 'class_names': {e}") from None
    if dataset not in ("ntu60", "ntu120"):
        got = "none given" if dataset is None else f"got {dataset!r}"
        raise HacmError(f"--dataset: expected 'ntu60' or 'ntu120' ({got}; {raw_dir} has no synth.json "
                        f"naming the dataset)")
    return dataset, list(DATASET_CLASSES[dataset])


def _in_dataset(dataset: str, num_classes: int, ids: dict) -> bool:
    if dataset == "ntu60" and ids["setup"] > NTU60_MAX_SETUP:
        return False
    return 1 <= ids["action"] <= num_classes


def convert_file(path: Path, dataset: str, num_classes: int) -> tuple[dict | None, dict]:
    """One raw file -> (sample dict with centred frames, or None; its manifest row)."""
    row: dict = {"file": path.name}
    try:
        ids = parse_sample_name(path.name)
    except FormatError as e:
        return None, row | {"status": "dropped", "reason": "format_error", "message": str(e)}
    if not _in_dataset(dataset, num_classes, ids):
        return None, row | {"status": "dropped", "reason": "not_in_dataset"}
    try:
        raw = parse_skeleton_file(path)
    except FormatError as e:
        return None, row | {"status": "dropped", "reason": "format_error", "message": str(e)}
    except OSError as e:
        return None, row | {"status": "dropped", "reason": "unreadable", "message": f"{path}: {e}"}
    if raw.empty_frames:
        row["empty_frames"] = raw.empty_frames         # 0-based frame numbers with 0 bodies, dropped
    if not raw.bodies:
        return None, row | {"status": "dropped", "reason": "no_bodies"}
    result = denoise(raw)
    if result.dropped_bodies:
        row["dropped_bodies"] = [list(b) for b in result.dropped_bodies]
    if result.dropped_frames:
        row["frames_without_actors"] = len(result.dropped_frames)
    frames = result.frames                                          # [A, T, 25, 3]
    if frames.shape[0] == 0:
        return None, row | {"status": "dropped", "reason": "denoise_empty"}
    if frames.shape[1] < MIN_FRAMES:
        return None, row | {"status": "dropped", "reason": "too_short", "frames": int(frames.shape[1])}
    sample = {"name": ids["name"], "label": ids["action"] - 1, "frames": centre(frames),
              **{k: ids[k] for k in META_FIELDS}}
    row |= {"status": "kept", "name": ids["name"], "label": ids["action"] - 1,
            "frames": int(frames.shape[1]), "actors": int(frames.shape[0])}
    return sample, row


# ---------------------------------------------------------------- one chunk -> one part file

@dataclass
class _Chunk:
    index: int
    paths: list[Path]
    listed_missing: list[bool]
    part: Path
    key: str


def _write_part(chunk: _Chunk, dataset: str, num_classes: int) -> int:
    """Convert one chunk and publish its part file atomically; returns the number of files."""
    samples, rows = [], []
    for path, missing in zip(chunk.paths, chunk.listed_missing):
        if missing:
            rows.append({"file": path.name, "status": "dropped", "reason": "listed_missing"})
            continue
        sample, row = convert_file(path, dataset, num_classes)
        rows.append(row)
        if sample is not None:
            samples.append(sample)
    frames = [s["frames"].reshape(-1, NUM_JOINTS, 3) for s in samples]
    arrays = {
        "key": np.array(chunk.key),
        "manifest": np.array(json.dumps(rows)),
        "frames": np.concatenate(frames) if frames else np.zeros((0, NUM_JOINTS, 3), np.float32),
        "num_actors": np.array([s["frames"].shape[0] for s in samples], dtype=np.int64),
        "lengths": np.array([s["frames"].shape[1] for s in samples], dtype=np.int64),
        "names": np.array([s["name"] for s in samples], dtype=str),
        "labels": np.array([s["label"] for s in samples], dtype=np.int64),
        **{k: np.array([s[k] for s in samples], dtype=np.int64) for k in META_FIELDS},
    }
    # regenerable, and checked by key before reuse: no fsync
    write_atomic(chunk.part, lambda f: np.savez(f, **arrays), fsync=False)
    return len(chunk.paths)


def _part_worker(args) -> int:
    return _write_part(*args)


def _part_key(part: Path) -> str | None:
    try:
        with np.load(part, allow_pickle=False) as z:
            return str(z["key"])
    except (OSError, ValueError, KeyError):
        return None            # unreadable or foreign: convert the chunk again


def _chunk_key(dataset: str, num_classes: int, paths: list[Path], missing: list[bool]) -> str:
    ident = [PART_VERSION, dataset, num_classes, MIN_FRAMES,
             [[p.name, p.stat().st_size, m] for p, m in zip(paths, missing)]]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()


def _iter_part_samples(part: Path) -> tuple[list[dict], list[dict]]:
    """(sample dicts with frames [A, T, 25, 3], manifest rows) of one part."""
    with np.load(part, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    rows = json.loads(str(arrays["manifest"]))
    samples = []
    offset = 0
    for i, (a, t) in enumerate(zip(arrays["num_actors"].tolist(), arrays["lengths"].tolist())):
        frames = arrays["frames"][offset:offset + a * t].reshape(a, t, NUM_JOINTS, 3)
        offset += a * t
        samples.append({"name": str(arrays["names"][i]), "label": int(arrays["labels"][i]), "frames": frames,
                        **{k: int(arrays[k][i]) for k in META_FIELDS}})
    return samples, rows


# ---------------------------------------------------------------- manifest

def read_missing_list(path) -> set[str]:
    """Sample names (one per line, '.skeleton' optional, '#' comments and blanks ignored)."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise HacmError(f"{path}: cannot read the missing-skeleton list: {e}") from None
    names = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(line.removesuffix(".skeleton"))
    return names


def write_manifest(out_dir: Path, rows: list[dict], summary: dict) -> None:
    """manifest.jsonl (one row per input) and manifest_summary.json; counts must add up."""
    statuses = Counter(r["status"] for r in rows)
    reasons = Counter(r["reason"] for r in rows if r["status"] == "dropped")
    if statuses["kept"] + statuses["dropped"] != len(rows) or sum(reasons.values()) != statuses["dropped"]:
        raise AssertionError(f"manifest does not account for every input: {statuses}, {reasons}")
    summary = summary | {"inputs": len(rows), "kept": statuses["kept"], "dropped": dict(sorted(reasons.items()))}
    write_text_atomic(out_dir / MANIFEST, "".join(json.dumps(r) + "\n" for r in rows))
    write_text_atomic(out_dir / MANIFEST_SUMMARY, json.dumps(summary, indent=1) + "\n")


def error_messages(rows: list[dict]) -> list[str]:
    return [r.get("message", r["reason"]) for r in rows
            if r["status"] == "dropped" and r["reason"] in ERROR_REASONS]


def fail_on_errors(errors: list[str], out_dir: Path, advice: str) -> None:
    if errors:
        raise HacmError(f"{len(errors)} input(s) could not be converted (first: {errors[0]}); every one is "
                        f"listed in {out_dir / MANIFEST}. {advice}")


# ---------------------------------------------------------------- samples -> store and manifest

def write_store(out_dir: Path, dataset: str, class_names, batches, *, columns: tuple[str, ...],
                splits, summary: dict, allow_errors: bool, advice: str) -> tuple[list[dict], list[str]]:
    """The end of every conversion: the converted samples in order into a new store at `out_dir`.

    batches: (sample dicts, manifest rows) pairs, in store order; each kept row gets its sample's
    store index. Then manifest.jsonl and its summary are written, the conversion fails if an input
    was dropped for an error (unless `allow_errors`; `advice` ends the message) and the store is
    published with `splits(values)`, values = {column: per-sample list} of the sample fields
    `columns`. Returns (manifest rows, error messages).
    """
    from hacm.data.store import SampleRecord, StoreWriter

    rows: list[dict] = []
    values: dict[str, list] = {k: [] for k in columns}
    with StoreWriter(out_dir, dataset=dataset, class_names=class_names) as writer:
        for samples, batch_rows in batches:
            index = {}
            for s in samples:
                index[s["name"]] = writer.add(SampleRecord(**s))
                for k in columns:
                    values[k].append(s[k])
            for r in batch_rows:
                if r["status"] == "kept":
                    r["index"] = index[r["name"]]
            rows.extend(batch_rows)
        errors = error_messages(rows)
        write_manifest(out_dir, rows, summary)
        if not allow_errors:
            fail_on_errors(errors, out_dir, advice)
        writer.finish(splits(values))
    return rows, errors


# ---------------------------------------------------------------- the conversion

def _list_skeletons(raw_dir: Path) -> list[Path]:
    with os.scandir(raw_dir) as it:
        names = sorted(e.name for e in it if e.name.endswith(".skeleton") and e.is_file())
    return [raw_dir / n for n in names]


def _plan_chunks(paths: list[Path], missing: set[str], parts_dir: Path, dataset: str, num_classes: int,
                 chunk_size: int) -> tuple[list[_Chunk], list[_Chunk]]:
    """(every chunk, the chunks whose part file is missing or stale); removes foreign part files."""
    chunks, todo = [], []
    for c, start in enumerate(range(0, len(paths), chunk_size)):
        chunk_paths = paths[start:start + chunk_size]
        listed = [p.stem in missing for p in chunk_paths]
        chunk = _Chunk(c, chunk_paths, listed, parts_dir / f"part-{c:05d}.npz",
                       _chunk_key(dataset, num_classes, chunk_paths, listed))
        chunks.append(chunk)
        if _part_key(chunk.part) != chunk.key:
            todo.append(chunk)
    for stale in set(parts_dir.iterdir()) - {c.part for c in chunks}:
        stale.unlink()        # parts of an earlier, different file list, or temp files of a killed run
    return chunks, todo


def _write_parts(todo: list[_Chunk], total: int, dataset: str, num_classes: int, workers: int,
                 progress: bool) -> None:
    """Convert the chunks in `todo` into part files, on `workers` processes, with a progress bar."""
    done = total - sum(len(c.paths) for c in todo)
    with progress_bar(total=total, initial=done, unit="file", desc=f"convert {dataset}", disable=not progress) as bar:
        jobs = [(c, dataset, num_classes) for c in todo]
        if workers == 1 or len(todo) <= 1:
            for job in jobs:
                bar.update(_part_worker(job))
        else:
            with multiprocessing.get_context().Pool(min(workers, len(todo))) as pool:
                for n in pool.imap_unordered(_part_worker, jobs):
                    bar.update(n)


@lock.writer_of("out_dir", "store directory")
def convert_ntu(raw_dir, out_dir, dataset: str | None = None, *, workers: int | None = None,
                allow_errors: bool = False, missing_list=None, progress: bool = True,
                chunk_size: int = CHUNK_FILES) -> ConversionReport:
    """Convert a directory of raw NTU `.skeleton` files into a store at `out_dir`.

    dataset: "ntu60" or "ntu120" (ignored when raw_dir/synth.json names the dataset).
    missing_list: text file of sample names dropped without parsing (NTU's missing-skeleton lists).
    """
    from hacm.data.splits import ntu_splits

    t0 = time.perf_counter()
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise HacmError(f"{raw_dir}: no such directory of raw .skeleton files")
    dataset, class_names = ntu_class_names(raw_dir, dataset)
    paths = _list_skeletons(raw_dir)
    if not paths:
        raise HacmError(f"{raw_dir}: no .skeleton files found")
    missing = read_missing_list(missing_list) if missing_list is not None else set()
    workers = max(1, int(workers or os.cpu_count() or 1))

    parts_dir = out_dir / PARTS_DIR
    make_dir(parts_dir, "store directory")
    chunks, todo = _plan_chunks(paths, missing, parts_dir, dataset, len(class_names), chunk_size)
    _write_parts(todo, len(paths), dataset, len(class_names), workers, progress)

    # Replay the parts in order: one chunk in memory at a time.
    rows, errors = write_store(
        out_dir, dataset, class_names, (_iter_part_samples(c.part) for c in chunks), columns=META_FIELDS,
        splits=lambda v: ntu_splits(dataset, v["performer"], v["camera"], v["setup"]),
        summary={"dataset": dataset, "raw_dir": str(raw_dir), "missing_list": str(missing_list or ""),
                 "min_frames": MIN_FRAMES},
        allow_errors=allow_errors,
        advice="Fix or remove those files, or rerun with --allow-errors (the converted parts are reused).")
    shutil.rmtree(parts_dir)
    return ConversionReport.from_rows(out_dir, dataset, rows, errors, t0, workers, len(chunks) - len(todo))
