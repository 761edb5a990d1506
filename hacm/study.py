"""Studies: methods or ablation variants x seeds, pre-trained and evaluated under one recipe and
compared with paired statistics (hacm.stats).

A study has a base pre-training config, a base evaluation config and variants. A variant is a set
of overrides (dotted keys, like `--set`) on the pre-training config, or None for a randomly
initialised encoder: the floor pre-training has to beat, evaluated by the same recipe. Each
(variant, seed) runs in a directory named by what it is:

    <root>/<variant>/seed<k>/pretrain     the pre-training run (absent for a random encoder)
    <root>/<variant>/seed<k>/knn          kNN on frozen features (predictions.npz: knn<k> per clip)
    <root>/<variant>/seed<k>/linprobe     linear probe; its LAST epoch is the number (predictions.npz)

A directory that already holds a finished run with the same resolved config is read, not run
again; one with another config is an error naming the key that differs. Two variants whose
resolved configs are identical (a tau-curve point at the base tau) share the first one's runs.
The variant's model settings carry over to its evaluation: the encoder is evaluated as built.

Nothing here selects on the test set: accuracies are those of the final model; the linear
probe's best epoch on the test set (MAMP's number) is read as a labelled extra only.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from hacm import stats, train
from hacm.config import RunConfig, load_config, to_dict
from hacm.errors import HacmError
from hacm.evaluate import finished_run, load_run

EVAL_PROTOCOLS = ("knn", "linprobe")
# metric -> (protocol, key in predictions.npz), in the order tables show them
METRICS = {"linprobe": ("linprobe", "pred"), "knn20": ("knn", "knn20"), "knn1": ("knn", "knn1")}
METRIC_LABELS = {"linprobe": "linear probe, last epoch", "knn20": "kNN-20", "knn1": "kNN-1",
                 "linprobe_best_on_test": "linear probe, best epoch on test (MAMP-style, selected on test)"}


def slug(name: str) -> str:
    """A directory name for a variant: "no cross-contrast" -> "no-cross-contrast"."""
    s = re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-").lower()
    if not s:
        raise HacmError(f"study: variant name {name!r} has no letters or digits for a directory name")
    return s


@dataclass
class StudyRun:
    variant: str
    seed: int
    dirs: dict[str, Path]                       # "pretrain" (if any) and each evaluation protocol
    accuracy: dict[str, float]                  # metric -> accuracy of the final model
    correct: dict[str, np.ndarray]              # metric -> [n] bool per test clip
    extras: dict[str, float] = field(default_factory=dict)   # labelled extras (best epoch on test, losses)


@dataclass
class StudyResult:
    runs: list[StudyRun]
    variants: list[str]
    seeds: list[int]
    test_clips: int

    def correct(self, metric: str) -> dict[str, np.ndarray]:
        """variant -> [S, n] per-clip correctness under `metric`, seeds in order."""
        return {v: np.stack([r.correct[metric] for r in self.runs if r.variant == v]) for v in self.variants}

    def per_variant(self, metric: str, *, reps: int = 10_000, seed: int = 0) -> dict[str, dict]:
        """variant -> {"values": per-seed accuracies, "mean", "ci": 95 % CI over clips and seeds}, in percent."""
        out = {}
        for variant, correct in self.correct(metric).items():
            ci = stats.bootstrap_ci(correct, reps=reps, seed=seed)
            out[variant] = {"values": (100 * correct.mean(1)).tolist(), "mean": 100 * ci.mean,
                            "ci": (100 * ci.ci[0], 100 * ci.ci[1])}
        return out

    def metrics(self) -> list[str]:
        return [m for m in METRICS if all(m in r.correct for r in self.runs)]

    def compare(self, metric: str, reference: str, *, reps: int = 10_000, seed: int = 0) -> list[stats.ComparisonRow]:
        """Every variant against `reference` under `metric` (hacm.stats.compare_methods)."""
        if metric not in self.metrics():
            raise HacmError(f"study: no metric {metric!r}; this study measured {', '.join(self.metrics())}")
        return stats.compare_methods(self.correct(metric), reference, reps=reps, seed=seed)

    def table(self, reference: str, metrics: Sequence[str] | None = None) -> list[dict]:
        """One row per variant: for each metric the mean +- std over seeds (%), the 95 % CI, the
        difference to the reference and the verdict of the paired test; plus seeds and test clips."""
        rows = {v: {"method": v, "seeds": len(self.seeds), "test clips": self.test_clips} for v in self.variants}
        best = METRIC_LABELS["linprobe_best_on_test"]
        for v in self.variants:
            values = [r.extras["linprobe_best_on_test"] for r in self.runs
                      if r.variant == v and "linprobe_best_on_test" in r.extras]
            if values:
                rows[v][f"{best} (%)"] = f"{100 * np.mean(values):.1f}"
        for metric in metrics or self.metrics():
            label = METRIC_LABELS[metric]
            for r in self.compare(metric, reference):
                row = rows[r.method]
                row[f"{label} (%)"] = f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}" if r.seeds > 1 \
                    else f"{100 * r.accuracy:.1f}"
                row[f"{label}: 95 % CI"] = f"{100 * r.ci[0]:.1f} – {100 * r.ci[1]:.1f}"
                if r.method != reference:
                    row[f"{label}: vs {reference}"] = (f"{100 * r.difference:+.1f} pts "
                                                       f"[{100 * r.difference_ci[0]:+.1f}, {100 * r.difference_ci[1]:+.1f}]: "
                                                       f"{r.verdict}")
        return list(rows.values())


def _resolve(base: str | Path, *layers: Mapping[str, Any]) -> RunConfig:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return load_config(base, merged)


def run_study(variants: Mapping[str, Mapping[str, Any] | None], seeds: Sequence[int], root: str | Path, *,
              pretrain_config: str | Path, eval_config: str | Path, overrides: Mapping[str, Any] = {},
              eval_overrides: Mapping[str, Any] = {}, protocols: Sequence[str] = ("knn",),
              progress: bool = True) -> StudyResult:
    """Pre-train (unless the variant is None) and evaluate every variant at every seed; see the module
    docstring. `overrides` apply to every pre-training, `eval_overrides` to every evaluation."""
    if not variants or not seeds:
        raise HacmError("study: needs at least one variant and one seed")
    unknown = [p for p in protocols if p not in EVAL_PROTOCOLS]
    if unknown or not protocols:
        raise HacmError(f"study: protocols must be some of {', '.join(EVAL_PROTOCOLS)}, got {list(protocols)}")
    root = Path(root)
    slugs = {name: slug(name) for name in variants}
    if len(set(slugs.values())) != len(slugs):
        raise HacmError(f"study: variant names {list(variants)} give clashing directory names")
    runs, shared = [], {}
    jobs = [(name, seed) for name in variants for seed in seeds]
    for name, seed in tqdm(jobs, desc="study", unit="run", disable=not progress):
        sets = variants[name]
        seeded = {"train.seed": seed}
        pre_cfg = None if sets is None else _resolve(pretrain_config, overrides, sets, seeded)
        key = None if pre_cfg is None else repr(to_dict(pre_cfg))
        where = shared.setdefault(key, root / slugs[name] / f"seed{seed}") if key else root / slugs[name] / f"seed{seed}"
        dirs = {}
        if pre_cfg is not None:
            dirs["pretrain"] = where / "pretrain"
            if not finished_run(dirs["pretrain"], pre_cfg):
                train.run(pre_cfg, dirs["pretrain"], resume=(dirs["pretrain"] / "checkpoints" / "last.pt").is_file())
        model_sets = {k: v for k, v in (sets or {}).items() if k.startswith("model.")}
        accuracy, correct, extras = {}, {}, {}
        for protocol in protocols:
            ev_cfg = _resolve(eval_config, {"protocol": protocol}, model_sets, eval_overrides, seeded,
                              {"train.pretrained": str(dirs["pretrain"]) if "pretrain" in dirs else None})
            dirs[protocol] = where / protocol
            if not finished_run(dirs[protocol], ev_cfg):
                train.run(ev_cfg, dirs[protocol], resume=(dirs[protocol] / "checkpoints" / "last.pt").is_file())
            run = load_run(dirs[protocol])
            pred = run.predictions()
            for metric, (p, key_) in METRICS.items():
                if p == protocol and key_ in pred:
                    correct[metric] = pred[key_] == pred["labels"]
                    accuracy[metric] = float(correct[metric].mean())
            if protocol == "linprobe":
                extras["linprobe_best_on_test"] = run.summary["best_test_acc"]
        if "pretrain" in dirs:
            summary = load_run(dirs["pretrain"]).summary
            extras.update({k: summary[k] for k in ("loss_rec", "loss_cc") if k in summary})
        runs.append(StudyRun(name, seed, dirs, accuracy, correct, extras))
    sizes = {len(c) for r in runs for c in r.correct.values()}
    if len(sizes) != 1:
        raise HacmError(f"study: evaluations saw different numbers of test clips ({sorted(sizes)}); "
                        "every run must use the same store and benchmark")
    return StudyResult(runs, list(variants), list(seeds), sizes.pop())
