"""Data pipeline benchmark: raw NTU-format files -> store (files/s per core, peak memory).

    python benchmarks/bench_data.py [--files N] [--keep DIR]
    python benchmarks/bench_data.py --store STORE [--workers 0 1 16]     # the loader only, on a store

Generates N synthetic raw files (hacm.data.synth.write_synthetic, real NTU format), converts them
with workers=1 and workers=2, and prints files/s per core against the spec's reference (the
original scripts: 120 files/s, parsing alone 160 files/s) and target (500 files/s per core),
plus a same-run baseline: the original scripts' line-by-line parse loop on the same files, and
the training loader's throughput on the converted store: clips/s per core through the
pre-training augmentation, and the cores needed to feed a GPU at 1,900 clips/s; and what the
store's integrity checks cost (per-chunk CRC-32 on first read against --verify's sha256).
Each section is a function; main() runs them all.
"""
from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REFERENCE_FILES_PER_S = 120.0   # docs/benchmarks.md: original parse + denoise + transform, one process
TARGET_FILES_PER_S = 500.0      # docs/benchmarks.md: per core
# NTU-60 pre-training, 40,320 clips x 500 epochs in 3 hours on one GPU (docs/benchmarks.md)
GPU_CLIPS_PER_S = 1_900
TARGET_LOADER_PER_CORE = 150    # 1,900 clips/s from a 16-core machine, with room for the main process


def generate(raw_dir: Path, files: int) -> int:
    from hacm.data.synth import write_synthetic

    per_performer = 21 * 3      # default synthetic classes x cameras
    performers = max(1, -(-files // per_performer))
    summary = write_synthetic(raw_dir, seed=0, performers=performers, replications=1, progress=False)
    print(f"generated {summary.num_files} files, {summary.bytes / 1e6:.0f} MB "
          f"({summary.bytes / summary.num_files / 1e3:.0f} KB/file) in {summary.seconds:.1f} s")
    return summary.num_files


def original_style_parse(path: Path) -> list:
    """The original scripts' parse loop (split each line, float each field), as a same-run baseline."""
    with open(path) as f:
        lines = f.readlines()
    n, line, out = int(lines[0]), 1, []
    for _ in range(n):
        bodies = int(lines[line]); line += 1
        for _ in range(bodies):
            line += 2
            out.append(np.array([lines[line + j].split()[:3] for j in range(25)], dtype=np.float32))
            line += 25
    return out


def bench_parse(raw_dir: Path, sample: int = 200) -> None:
    from hacm.data.raw_ntu import parse_skeleton_file

    paths = sorted(raw_dir.glob("*.skeleton"))[:sample]
    for name, fn in (("original-style parse loop", original_style_parse), ("hacm parse_skeleton_file", parse_skeleton_file)):
        rates = []
        for _ in range(3):
            t = time.perf_counter()
            for p in paths:
                fn(p)
            rates.append(len(paths) / (time.perf_counter() - t))
        print(f"  {name:<28} median {statistics.median(rates):7.0f} files/s "
              f"(spread {min(rates):.0f}-{max(rates):.0f}, {len(paths)} files, 3 runs)")


def bench_convert(raw_dir: Path, out_root: Path, workers_list=(1, 2)) -> None:
    from hacm.data.convert import convert_ntu

    for workers in workers_list:
        out = out_root / f"store-w{workers}"
        report = convert_ntu(raw_dir, out, workers=workers, progress=False)
        per_core = report.inputs / report.seconds / workers
        print(f"  workers={workers}: {report.inputs} files in {report.seconds:.1f} s = "
              f"{report.inputs / report.seconds:.0f} files/s, {per_core:.0f} files/s per core "
              f"(x{per_core / REFERENCE_FILES_PER_S:.2f} of the 120 files/s reference, "
              f"{per_core / TARGET_FILES_PER_S:.0%} of the 500 files/s target)")
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"  peak RSS: parent {self_kb / 1024:.0f} MB, largest worker {child_kb / 1024:.0f} MB "
          f"(bounded by one chunk of files, independent of the number of files)")


def bench_loader(store_path: Path, batch_size: int = 64, min_clips: int = 2000, workers_list=None) -> None:
    """The training loader (SkeletonDataset + make_loader) with the pre-training augmentation (random
    crop p in [0.5, 1], bilinear resize, rotation) on a store: clips/s and clips/s per core for windows
    72 (HA-CM) and 120 (MAMP), in-process and with 1 and N DataLoader workers, and the cores a GPU at
    GPU_CLIPS_PER_S would need. The first pass (worker start-up, cold page cache) is reported apart
    from the median of the rest, which together hold at least min_clips clips (and 3 passes)."""
    from hacm.data.dataset import SkeletonDataset
    from hacm.data.loader import make_loader
    from hacm.data.store import Store

    store = Store.open(store_path)
    benchmark = store.benchmarks()[0]
    workers_list = workers_list or sorted({0, 1, os.cpu_count() or 1})
    passes = 1 + max(3, -(-min_clips // len(store.split(benchmark, "train"))))
    for window in (72, 120):
        for workers in workers_list:
            ds = SkeletonDataset(store, benchmark, "train", window_size=window, random_rot=True)
            loader = make_loader(ds, batch_size, train=True, num_workers=workers, drop_last=False)
            rates = []
            for epoch in range(passes):
                ds.set_epoch(epoch)
                loader.sampler.set_epoch(epoch)
                t = time.perf_counter()
                clips = sum(x.shape[0] for x, _ in loader)
                rates.append(clips / (time.perf_counter() - t))
            del loader  # stops its persistent workers
            steady = statistics.median(rates[1:])
            # in-process, the main process augments; with workers, the workers do (the main
            # process only receives batches)
            per_core = steady / max(1, workers)
            print(f"  window {window:>3}, workers {workers}: first pass {rates[0]:6.0f} clips/s, then median "
                  f"{steady:6.0f} clips/s (spread {min(rates[1:]):.0f}-{max(rates[1:]):.0f}) = {per_core:5.0f} "
                  f"clips/s per core -> {GPU_CLIPS_PER_S / per_core:4.1f} cores for {GPU_CLIPS_PER_S:,} clips/s "
                  f"(target >= {TARGET_LOADER_PER_CORE} per core: x{per_core / TARGET_LOADER_PER_CORE:.2f}); "
                  f"{len(ds)} clips of {benchmark} train, batch {batch_size}, {passes - 1} passes")


def bench_integrity(store_path: Path, repeats: int = 3) -> None:
    """What the store's integrity checks cost: opening (reads meta, index, splits; no frame data),
    the first read of every clip with the per-chunk CRC-32 checks against the same reads without
    them, and the full check (`--verify`: sha256 over everything). Files are in the page cache
    after the first repeat, so the figures are CPU cost, the part the checks add to a read."""
    from hacm.data.store import Store

    size = (store_path / "frames.bin").stat().st_size
    timings = {"open": [], "read all, chunks checked": [], "read all, unchecked": [], "verify (sha256)": []}
    for _ in range(repeats):
        t = time.perf_counter()
        store = Store.open(store_path)
        timings["open"].append(time.perf_counter() - t)
        for name, checked in (("read all, chunks checked", True), ("read all, unchecked", False)):
            store = Store.open(store_path)
            if not checked:
                store.chunk_crc32 = []
            t = time.perf_counter()
            for i in range(len(store)):
                store.frames(i)[0, 0, 0, 0]      # first read of each clip (its pages are mapped in)
            timings[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.verify()
        timings["verify (sha256)"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in timings.items()}
    print(f"  frames.bin {size / 1e6:.0f} MB in {len(Store.open(store_path).chunk_crc32)} chunks, {len(store)} clips "
          f"(median of {repeats}):")
    for name, seconds in med.items():
        print(f"    {name:<26} {seconds * 1e3:8.1f} ms  ({size / 1e6 / seconds:8.0f} MB/s of frames.bin)")
    added = med["read all, chunks checked"] - med["read all, unchecked"]
    print(f"  per-chunk checks add {added * 1e3:.1f} ms per process per pass over the store "
          f"({added / size * 1e9:.2f} s per GB; x{med['verify (sha256)'] / max(added, 1e-9):.1f} less than --verify)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="synthetic raw files to generate (default 2000)")
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep it")
    parser.add_argument("--store", type=Path, default=None,
                        help="measure only the training loader, on this store (e.g. a real NTU-60 one)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader workers to measure the loader with (default: 0, 1 and all cores)")
    args = parser.parse_args(argv)
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    if args.store is not None:
        print(f"integrity checks of {args.store}:")
        bench_integrity(args.store)
        print(f"loading for training (SkeletonDataset + make_loader) from {args.store}:")
        bench_loader(args.store, workers_list=args.workers)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        raw = root / "raw"
        if not any(raw.glob("*.skeleton")):
            generate(raw, args.files)
        print("parsing, one process:")
        bench_parse(raw)
        print("conversion to a store (parse + denoise + centre + write):")
        bench_convert(raw, root)
        print("integrity checks of the store:")
        bench_integrity(root / "store-w1")
        print("loading for training (SkeletonDataset + make_loader):")
        bench_loader(root / "store-w1", workers_list=args.workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
