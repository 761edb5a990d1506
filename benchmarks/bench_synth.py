"""Calibration of the synthetic world: does it reward what real skeletons reward?

On real recordings (PKU-MMD I, the demo's model and budget) pre-training is worth about 20 points
of linear probe over an untrained encoder and every pre-trained method beats it clearly. This
benchmark generates the synthetic dataset at the demo's size, runs the demo's methods (HA-CM, the
MAMP-style and MAE-style baselines, a random encoder) at the demo's budget over several seeds with
the workbench's own statistics, adds a classifier on clip-level pose statistics (what a
representation must add to), and prints a calibration table: each target, the measured figure and
whether it is met.

    python benchmarks/bench_synth.py                    # the calibration table (3 seeds, ~10 min on 2 idle cores)
    python benchmarks/bench_synth.py --quick            # HA-CM, MAE-style and the random encoder, one seed
    python benchmarks/bench_synth.py --out /tmp/calib   # keep the data and runs (re-running reads them)

Targets (issue: "a synthetic world that behaves like real skeletons"):
  * the random encoder at least 15 points below HA-CM on the linear probe and on kNN-20, significant;
  * HA-CM, MAMP-style and MAE-style each significantly above the random encoder on both;
  * HA-CM's linear probe between 40 and 90 % (no ceiling, no floor);
  * the low-level statistics of the clips beside their real reference values.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from hacm import machine, notebook
from hacm.config import parse_overrides
from hacm.data.skeleton_stats import compute_stats, read_store, stats_table
from hacm.data.store import Store
from hacm.evaluate import pose_statistics_accuracy
from hacm.stats import binomial_se
from hacm.study import BASELINES, RANDOM_ENCODER, metric_label, run_study

REFERENCE = "HA-CM"
MIN_GAP = 15.0                   # points HA-CM must lead the random encoder by
PROBE_RANGE = (40.0, 90.0)       # HA-CM's linear probe: room above and below


def calibration(result, methods: list[str]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) rows from a study that holds REFERENCE and RANDOM_ENCODER."""
    rows = []
    for metric in ("linprobe", "knn20"):
        label = metric_label(metric)
        against_random = {r.method: r for r in result.compare(metric, RANDOM_ENCODER)}
        ref = against_random[REFERENCE]
        rows.append((f"{label}: HA-CM - random encoder >= {MIN_GAP:.0f} pts, significant",
                     f"{100 * ref.difference:+.1f} pts [{100 * ref.difference_ci[0]:+.1f}, "
                     f"{100 * ref.difference_ci[1]:+.1f}], p_holm {ref.p_holm:.3g}",
                     ref.difference * 100 >= MIN_GAP and bool(ref.significant)))
        for method in methods:
            if method in (REFERENCE, RANDOM_ENCODER):
                continue
            r = against_random[method]
            rows.append((f"{label}: {method} above the random encoder, significant",
                         f"{100 * r.difference:+.1f} pts, p_holm {r.p_holm:.3g}",
                         r.difference > 0 and bool(r.significant)))
    probe = {r.method: r for r in result.compare("linprobe", RANDOM_ENCODER)}[REFERENCE]
    rows.append((f"HA-CM linear probe in [{PROBE_RANGE[0]:.0f}, {PROBE_RANGE[1]:.0f}] %",
                 f"{100 * probe.accuracy:.1f} ± {100 * probe.std:.1f} %",
                 PROBE_RANGE[0] <= 100 * probe.accuracy <= PROBE_RANGE[1]))
    return rows


def study_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of a study at the demo's budget (this benchmark's and study_defaults.py's)."""
    p.add_argument("--out", type=Path, help="keep data and runs here (default: a temporary directory)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--workers", type=int, default=2, help="(variant, seed) pipelines at once")


def synthetic_data(root: Path, world: dict | None = None, seed: int = 0) -> Path:
    """root/store: the default synthetic world's store (with `world`'s knobs), generated when missing."""
    store_dir = root / "store"
    if not notebook.is_store(store_dir):
        notebook.synthetic_store(store_dir, world, seed=seed)
    return store_dir


def demo_study(variants: dict, seeds, root: Path, store_dir: Path, workers: int):
    """`variants` pre-trained and evaluated (linear probe, kNN) at the demo's budget on `store_dir`."""
    data = {"data.store": str(store_dir)}
    return run_study(variants, seeds, root / "runs", pretrain_config="synth_pretrain", eval_config="synth_linprobe",
                     overrides=data, eval_overrides={**data, "train.eval_every": 10}, protocols=["linprobe", "knn"],
                     workers=workers)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    study_arguments(p)
    p.add_argument("--quick", action="store_true", help="HA-CM, MAE-style and the random encoder only, seed 0")
    p.add_argument("--synth-seed", type=int, default=0)
    p.add_argument("--set", dest="world", action="append", default=[], metavar="KNOB=VALUE",
                   help="a knob of the synthetic world (as `hacm data synth --set`), to see what it changes")
    args = p.parse_args(argv)

    print(f"bench_synth: {' '.join(sys.argv)}")
    print(machine.describe())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        t0 = time.perf_counter()
        store_dir = synthetic_data(root, parse_overrides(args.world), args.synth_seed)
        store = Store.open(store_dir)
        benchmark = "synth-xsub"
        print(f"data: {len(store)} clips, {store.num_classes} classes, {len(store.split(benchmark, 'train'))} train / "
              f"{len(store.split(benchmark, 'test'))} test ({benchmark}), {time.perf_counter() - t0:.0f} s")

        print("\nlow-level statistics beside real recordings (hacm.data.skeleton_stats):")
        print(stats_table([compute_stats(read_store(store_dir, progress=False))], names=["synthetic"]))
        print()
        acc, n = pose_statistics_accuracy(store, benchmark)
        half = 196 * binomial_se(acc, n)
        print(f"pose statistics + logistic regression (what a representation must add to): {100 * acc:.1f} % "
              f"of {n} test clips (95 % binomial interval ± {half:.1f})")

        mae_style = {k: v for k, v in BASELINES.items() if k.startswith("MAE")}
        methods = {REFERENCE: {}, **(mae_style if args.quick else BASELINES), RANDOM_ENCODER: None}
        seeds = [args.seeds[0]] if args.quick else args.seeds
        t0 = time.perf_counter()
        result = demo_study(methods, seeds, root, store_dir, args.workers)
        print(f"study: {len(methods)} methods x {len(seeds)} seeds in {time.perf_counter() - t0:.0f} s")
        for metric in result.metrics():
            print(f"\n{metric_label(metric)} ({len(seeds)} seeds, {result.test_clips} test clips):")
            for r in result.compare(metric, RANDOM_ENCODER):
                spread = f" ± {100 * r.std:.1f}" if r.seeds > 1 else ""
                versus = "" if r.difference is None else \
                    f"   vs random encoder {100 * r.difference:+.1f} pts (p_holm {r.p_holm:.3g}, {r.verdict})"
                print(f"  {r.method:48s} {100 * r.accuracy:5.1f}{spread} %{versus}")
        print("\ncalibration targets:")
        rows = calibration(result, list(methods))
        for target, measured, met in rows:
            print(f"  [{'met' if met else 'NOT MET':7s}] {target}: {measured}")
        return 0 if all(met for _, _, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
