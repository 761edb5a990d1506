"""Does centring PKU-MMD samples pay? hacm's default of `hacm data pku --centre` measured on
PKU-format files made from the synthetic generator (no real PKU-MMD data is here).

    .venv/bin/python benchmarks/bench_pku_centring.py [--out DIR] [--seeds 0 1 2] [--replications 3]

The synthetic takes (hacm/data/synth.py: Kinect-like cameras about 3 m away, in camera
coordinates) are parsed and denoised as NTU files, NOT centred, and written as PKU-MMD Phase I
files: one video per take (`<take>-L|M|R` by camera), one labelled interval covering it, and split
files from the synthetic cross-subject / cross-view rule. `hacm data pku` then converts them twice,
with --centre (hacm) and --no-centre (MAMP's pku_gendata.py). On each store the synth_pretrain /
synth_linprobe recipe (the demo's model and budget) pre-trains HA-CM and evaluates it and a random
encoder by linear probe (last epoch) and kNN, over --seeds. Printed: per store, variant and metric
the mean, the spread over seeds and a paired comparison (bootstrap interval, Holm-adjusted p, over
the same test clips in the same order) of the centred store against the camera-coordinate one.

What it can stand for: the effect of leaving the camera offset (metres, mostly depth) in the
encoder's input, at this width and budget, on clips that are whole actions. What it cannot: real
PKU-MMD subjects, its camera placements, Kinect v2 noise, or the intervals cut out of long videos;
the numbers are not PKU-MMD accuracies.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hacm import stats
from hacm.data.convert import convert_ntu
from hacm.data.denoise import denoise
from hacm.data.pku import CAMERAS, convert_pku
from hacm.data.raw_ntu import parse_sample_name, parse_skeleton_file
from hacm.data.store import Store
from hacm.data.synth import write_synthetic
from hacm.machine import describe
from hacm.study import run_study

VIEW_LETTER = {c: v for v, c in CAMERAS.items()}            # camera 1 -> "L" ...


def write_pku_raw(ntu_raw: Path, ntu_store: Path, out: Path) -> int:
    """Synthetic NTU takes -> PKU-MMD Phase I layout in camera coordinates; returns the video count."""
    (out / "skeleton").mkdir(parents=True, exist_ok=True)
    (out / "label").mkdir(exist_ok=True)
    video_of = {}
    for path in sorted(ntu_raw.glob("*.skeleton")):
        ids = parse_sample_name(path.name)
        frames = denoise(parse_skeleton_file(path)).frames                      # [A, T, 25, 3], not centred
        if frames.shape[0] == 0:
            continue
        two = np.zeros((frames.shape[1], 2, 25, 3), np.float32)
        two[:, :frames.shape[0]] = frames[:2].transpose(1, 0, 2, 3)
        video = f"{ids['name']}-{VIEW_LETTER[ids['camera']]}"
        video_of[ids["name"]] = video
        np.savetxt(out / "skeleton" / f"{video}.txt", two.reshape(len(two), -1), fmt="%.6f")
        (out / "label" / f"{video}.txt").write_text(f"{ids['action']},0,{len(two)},1\n")
    store = Store.open(ntu_store)
    for proto, stem in (("xsub", "cross_subject"), ("xview", "cross_view")):
        lists = [", ".join(video_of[n] for n in store.names[store.split(f"synth-{proto}", part)] if n in video_of)
                 for part in ("train", "test")]
        (out / f"{stem}.txt").write_text(f"Training videos:\n{lists[0]}\nValidation videos:\n{lists[1]}\n")
    return len(video_of)


VARIANTS = {"random encoder": None, "HA-CM": {}}    # the cheap floor first: its numbers print first


def report(metric_rows: dict[str, dict[str, np.ndarray]], variant: str, seeds: list[int]) -> None:
    """Per metric: each store's mean +- spread over seeds, and centred vs camera coordinates (paired)."""
    for metric, per in metric_rows.items():
        print(f"\n{variant}, {metric}: accuracy % (seeds {seeds})")
        for name, c in per.items():
            s = stats.seed_summary(c.mean(1))
            print(f"  {name:15s} {100 * s.mean:5.1f} +- {100 * s.std:4.1f}   "
                  f"[{', '.join(f'{100 * v:.1f}' for v in c.mean(1))}]")
        centred = stats.compare_methods(per, "camera coords")[0]
        lo, hi = centred.difference_ci
        print(f"  centred - camera coords {100 * centred.difference:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}], "
              f"p (Holm) {centred.p_holm:.3g}: {centred.verdict}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="work directory (default: a temporary one)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--replications", type=int, default=3, help="synthetic replications per performer")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = ap.parse_args(argv)
    print(describe())
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_pku_"))
    t0 = time.perf_counter()
    if not (work / "pku_raw" / "cross_view.txt").is_file():
        write_synthetic(work / "ntu_raw", replications=args.replications)
        convert_ntu(work / "ntu_raw", work / "ntu_store", "synth")
        print(f"{write_pku_raw(work / 'ntu_raw', work / 'ntu_store', work / 'pku_raw')} PKU-format videos "
              f"({time.perf_counter() - t0:.0f} s)")
    stores = {"centred": work / "pku_centred", "camera coords": work / "pku_camera"}
    for label, store in stores.items():
        if not (store / "manifest_summary.json").is_file():
            convert_pku(work / "pku_raw", store, 1, centre=label == "centred")
    for variant in args.variants:
        per_metric: dict[str, dict[str, np.ndarray]] = {}
        for label, store in stores.items():
            data = {"data.store": str(store), "data.benchmark": "pku1-xsub"}
            result = run_study({variant: VARIANTS[variant]}, args.seeds, work / f"runs_{store.name}",
                               pretrain_config="synth_pretrain", eval_config="synth_linprobe", overrides=data,
                               eval_overrides=data, protocols=("linprobe", "knn"))
            for metric in result.metrics():
                per_metric.setdefault(metric, {})[label] = result.correct(metric)[variant]
        report(per_metric, variant, args.seeds)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; runs in {work}")


if __name__ == "__main__":
    main()
