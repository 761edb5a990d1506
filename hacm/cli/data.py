"""`hacm data ...`: convert raw datasets into stores, generate synthetic data, inspect stores.

The converters and the store are imported inside each command so that `hacm --help` stays fast.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hacm import paths


def register(subparsers) -> None:
    p = subparsers.add_parser("data", help="convert, generate and inspect skeleton datasets",
                              description="Convert raw datasets into hacm stores, generate the synthetic "
                                          "dataset, inspect stores, and read/write legacy .npz files.")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    ntu = sub.add_parser("ntu", help="raw NTU RGB+D .skeleton files -> store")
    ntu.add_argument("--raw", type=paths.resolve, required=True, help="directory of .skeleton files")
    ntu.add_argument("--out", type=paths.resolve, required=True, help="store directory to write")
    ntu.add_argument("--dataset", choices=("ntu60", "ntu120"), default=None,
                     help="which dataset (required unless RAW/synth.json names it)")
    ntu.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    ntu.add_argument("--allow-errors", action="store_true",
                     help="publish the store even if some files could not be parsed (listed in the manifest)")
    ntu.add_argument("--missing", type=paths.resolve, default=None,
                     help="text file of sample names to drop without parsing (NTU missing-skeleton list)")
    ntu.set_defaults(func=_ntu)

    pku = sub.add_parser("pku", help="PKU-MMD Phase I/II -> store")
    pku.add_argument("--raw", type=paths.resolve, required=True, help="directory with skeleton/, label/ and split files")
    pku.add_argument("--out", type=paths.resolve, required=True, help="store directory to write")
    pku.add_argument("--phase", type=int, choices=(1, 2), required=True)
    pku.add_argument("--centre", action=argparse.BooleanOptionalAction, default=True,
                     help="centre each sample on actor 1's spine-mid joint in its first frame, as NTU samples "
                          "(default); --no-centre keeps the camera coordinates, as MAMP's pku_gendata.py")
    pku.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    pku.add_argument("--allow-errors", action="store_true",
                     help="publish the store even if some videos could not be parsed")
    pku.set_defaults(func=_pku)

    synth = sub.add_parser("synth", help="generate the synthetic dataset as raw NTU-format files")
    synth.add_argument("--out", type=paths.resolve, required=True, help="directory for the raw files")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--performers", type=int, help="how many people (default: the demo's size)")
    synth.add_argument("--replications", type=int, help="takes per performer and class; odd ones face camera 1, "
                                                         "even ones camera 3 (default: the demo's size)")
    synth.add_argument("--set", dest="world", action="append", default=[], metavar="KNOB=VALUE",
                       help="a knob of the synthetic world, e.g. --set sensor.noise_mm=2 or "
                            "--set variation.idle_seconds=[0.1,1.0] (repeatable; docs/synthetic.md lists them)")
    synth.set_defaults(func=_synth)

    info = sub.add_parser("info", help="summarise a store (counts per split and class, lengths, sizes)")
    info.add_argument("store", type=paths.resolve)
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.add_argument("--verify", action="store_true", help="also recompute the checksum")
    info.set_defaults(func=_info)

    imp = sub.add_parser("import-npz", help="legacy MAMP/CTR-GCN .npz -> store")
    imp.add_argument("file", type=paths.resolve)
    imp.add_argument("--out", type=paths.resolve, required=True, help="store directory to write")
    imp.add_argument("--benchmark", default=None, help="benchmark name for the file's train/test split")
    imp.set_defaults(func=_import_npz)

    exp = sub.add_parser("export-npz", help="store benchmark -> legacy .npz (300 frames, 2 actors)")
    exp.add_argument("store", type=paths.resolve)
    exp.add_argument("--benchmark", required=True)
    exp.add_argument("--out", type=paths.resolve, required=True, help=".npz file to write")
    exp.set_defaults(func=_export_npz)


def _print_report(report) -> None:
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(report.dropped.items())) or "none"
    print(f"{report.dataset}: {report.inputs} inputs -> {report.kept} samples kept; dropped: {dropped}")
    print(f"store: {report.store_path}  ({report.seconds:.1f} s, {report.items_per_second:.0f}/s, "
          f"{report.workers} worker(s))")
    if report.errors:
        print(f"{len(report.errors)} error(s) allowed (see {report.store_path / 'manifest.jsonl'}); first: "
              f"{report.errors[0]}")


def _ntu(args: argparse.Namespace) -> int:
    from hacm.data.convert import convert_ntu

    _print_report(convert_ntu(args.raw, args.out, args.dataset, workers=args.workers,
                              allow_errors=args.allow_errors, missing_list=args.missing))
    return 0


def _pku(args: argparse.Namespace) -> int:
    from hacm.data.pku import convert_pku

    _print_report(convert_pku(args.raw, args.out, args.phase, centre=args.centre, workers=args.workers,
                              allow_errors=args.allow_errors))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from hacm.config import parse_overrides
    from hacm.data.synth import make_world, write_synthetic

    population, variation, sensor = make_world(parse_overrides(args.world))
    size = {k: v for k, v in (("performers", args.performers), ("replications", args.replications)) if v is not None}
    s = write_synthetic(args.out, seed=args.seed, population=population, variation=variation, sensor=sensor, **size)
    print(f"synthetic: {s.num_files} files, {len(s.class_names)} classes, {s.num_frames} frames, "
          f"{s.bytes / 1e6:.1f} MB in {s.out_dir} ({s.seconds:.1f} s)")
    return 0


def format_summary(summary: dict) -> str:
    """Store.summary() as readable text."""
    lines = [f"store     {summary['path']}",
             f"dataset   {summary['dataset']} (format {summary['format_version']}, created {summary['created']})",
             f"samples   {summary['num_samples']} ({summary['actors']['1']} one-actor, "
             f"{summary['actors']['2']} two-actor), {summary['num_classes']} classes",
             f"length    min {summary['length']['min']}, median {summary['length']['median']:g}, "
             f"max {summary['length']['max']} frames; {summary['total_frames']} frames in all",
             f"size      {summary['bytes']['total'] / 1e6:.1f} MB "
             f"(frames.bin {summary['bytes']['frames.bin'] / 1e6:.1f} MB)",
             f"checks    " + (f"{summary['chunk_checksums']} chunk CRC-32s, each checked when first read"
                              if summary["chunk_checksums"] else "none as read (older store): use --verify")]
    names = list(summary["classes"])
    header = ["split", "train", "test"]
    lines.append("")
    lines.append(f"{header[0]:<16} {header[1]:>8} {header[2]:>8}")
    for bench, parts in summary["splits"].items():
        lines.append(f"{bench:<16} {parts['train']['count']:>8} {parts['test']['count']:>8}")
    lines.append("")
    width = max(len(n) for n in names) if names else 5
    benches = list(summary["splits"])
    lines.append(f"{'class':<{width + 5}} {'all':>6}" + "".join(f" {b[:14]:>14}" for b in benches))
    for k, name in enumerate(names):
        per_bench = "".join(f" {summary['splits'][b]['train']['per_class'][k]:>6}/"
                            f"{summary['splits'][b]['test']['per_class'][k]:<7}" for b in benches)
        lines.append(f"{k:>3}  {name:<{width}} {summary['classes'][name]:>6}{per_bench}")
    return "\n".join(lines)


TINY_CLASS = 0.25   # a class with fewer clips than this fraction of the median class (in a split part) is tiny


def class_warnings(summary: dict) -> list[str]:
    """Warnings about classes a benchmark cannot measure well: classes with no clip in the store,
    classes missing from a split part, and tiny ones (fewer clips than TINY_CLASS x the median class
    of that part). Empty classes still get a classifier output, and a class with a handful of test
    clips moves its accuracy in big steps."""
    names, totals = list(summary["classes"]), summary["classes"]
    warnings = []
    empty = [n for n in names if totals[n] == 0]
    if empty:
        warnings.append(f"{len(empty)} of {len(names)} classes have no clips at all: {', '.join(empty)}")
    for bench, parts in summary["splits"].items():
        for part, info in parts.items():
            counts = {n: c for n, c in zip(names, info["per_class"]) if totals[n] > 0}
            missing = [n for n, c in counts.items() if c == 0]
            if missing:
                warnings.append(f"{bench} {part}: {len(missing)} classes have no clips: {', '.join(missing)}")
            present = [c for c in counts.values() if c > 0]
            if not present:
                continue
            median = float(sorted(present)[len(present) // 2])
            tiny = [f"{n} ({c})" for n, c in counts.items() if 0 < c < TINY_CLASS * median]
            if tiny:
                warnings.append(f"{bench} {part}: {len(tiny)} tiny classes (fewer than {TINY_CLASS:g} x the "
                                f"median {median:g} clips): {', '.join(tiny)}")
    return warnings


def _info(args: argparse.Namespace) -> int:
    from hacm.data.store import Store

    store = Store.open(args.store, verify=args.verify)
    summary = store.summary()
    print(json.dumps(summary, indent=1) if args.json else format_summary(summary))
    for warning in class_warnings(summary):
        print(f"warning: {warning}", file=sys.stderr)
    if args.verify:
        print("checksum  ok")
    return 0


def _import_npz(args: argparse.Namespace) -> int:
    from hacm.data.legacy_npz import import_npz

    store = import_npz(args.file, args.out, args.benchmark)
    print(f"imported {len(store)} samples into {store.path} (benchmarks: {', '.join(store.benchmarks())})")
    return 0


def _export_npz(args: argparse.Namespace) -> int:
    from hacm.data.legacy_npz import export_npz
    from hacm.data.store import Store

    report = export_npz(Store.open(args.store), args.benchmark, args.out)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    print(f"wrote {report.path} ({counts}; {report.truncated} clips truncated to 300 frames)")
    return 0
