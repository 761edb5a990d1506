"""The studies behind HA-CM's defaults, re-run on the calibrated synthetic world.

Each default that was chosen by measurement (the cross-contrast similarity, temperature and weight;
feature clipping before the map; the Gumbel temperature tau and the keep-probability normalisation)
is held against its alternatives at the demo's model and budget, over several seeds, with the
workbench's paired statistics (Holm-adjusted over all comparisons). The rule: a default stays unless
an alternative is significantly better on the linear probe (last epoch); a significant loss of the
default on kNN-20 alone is reported, not acted on. Nothing is selected on the test set: every
variant is evaluated at its last epoch, and the rule names no winner where the budget cannot.

    python benchmarks/study_defaults.py --out /tmp/calib      # ~30 min on 2 idle cores (3 seeds)

With the same --out as benchmarks/bench_synth.py the HA-CM runs are shared (same configs, same
directories), so the two together cost the studies' variants only.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench_synth import demo_study, study_arguments, synthetic_data
from hacm import machine
from hacm.data.store import Store
from hacm.study import metric_label

REFERENCE = "HA-CM"      # the shipped defaults (synth_pretrain), named as in bench_synth.py

# study -> {variant: overrides on the defaults}; each default's own setting is the reference.
STUDIES: dict[str, dict[str, dict]] = {
    "cross-contrast": {
        "cc: release similarity (raw dot products)": {"model.cc_similarity": "release"},
        "cc: cosine, temperature 0.5": {"model.cc_temperature": 0.5},
        "cc: weight 0.25": {"model.cc_weight": 0.25},
        "cc: none (weight 0)": {"model.cc_weight": 0.0},
    },
    "feature clipping": {
        "clip_radius 2": {"model.clip_radius": 2.0},
    },
    "tau and normalisation": {
        "tau 0.3 (standard)": {"masking.tau": 0.3},
        "tau 3 (standard)": {"masking.tau": 3.0},
        "tau 0.9, release normalisation": {"masking.normalise": "release"},
    },
}
DEFAULTS = {"cross-contrast": "cosine similarity, temperature 0.1, weight 0.5",
            "feature clipping": "off", "tau and normalisation": "tau 0.9, standard normalisation"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    study_arguments(p)
    p.add_argument("--studies", nargs="+", choices=list(STUDIES), default=list(STUDIES))
    args = p.parse_args(argv)

    print(f"study_defaults: {' '.join(sys.argv)}")
    print(machine.describe())
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        store_dir = synthetic_data(root)
        store = Store.open(store_dir)
        print(f"data: {len(store)} synthetic clips, {store.num_classes} classes, "
              f"{len(store.split('synth-xsub', 'test'))} test clips (synth-xsub)")
        variants = {REFERENCE: {}}
        for name in args.studies:
            variants |= STUDIES[name]
        t0 = time.perf_counter()
        result = demo_study(variants, args.seeds, root, store_dir, args.workers)
        print(f"{len(variants)} variants x {len(args.seeds)} seeds in {time.perf_counter() - t0:.0f} s, "
              f"{result.test_clips} test clips")
        rows = {m: {r.method: r for r in result.compare(m, REFERENCE)} for m in ("linprobe", "knn20")}
        for name in args.studies:
            print(f"\n{name} (default: {DEFAULTS[name]}):")
            better = []
            for variant in (REFERENCE, *STUDIES[name]):
                cells = []
                for metric, by_method in rows.items():
                    r = by_method[variant]
                    cell = f"{metric_label(metric)} {100 * r.accuracy:.1f} ± {100 * r.std:.1f}"
                    if r.difference is not None:
                        cell += (f" ({100 * r.difference:+.1f} [{100 * r.difference_ci[0]:+.1f}, "
                                 f"{100 * r.difference_ci[1]:+.1f}], p_holm {r.p_holm:.3g}, "
                                 f"{'significant' if r.significant else 'not significant'})")
                        if metric == "linprobe" and r.significant and r.difference > 0:
                            better.append(variant)
                    cells.append(cell)
                print(f"  {variant:44s} " + "; ".join(cells))
            print("  -> " + (f"change the default: {', '.join(better)} significantly better on the linear probe"
                             if better else "keep the default: no alternative is significantly better on the linear probe"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
