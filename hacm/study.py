"""Studies: methods or ablation variants x seeds, pre-trained and evaluated under one recipe and
compared with paired statistics (hacm.stats).

A study has a base pre-training config, a base evaluation config and variants. A variant is a set
of overrides (dotted keys, like `--set`) on the pre-training config, or None for a randomly
initialised encoder: the floor pre-training has to beat, evaluated by the same recipe. Each
(variant, seed) runs in a directory named by what it is:

    <root>/<variant>/seed<k>/pretrain     the pre-training run (absent for a random encoder)
    <root>/<variant>/seed<k>/knn          kNN on frozen features (predictions.npz: knn<k> per clip)
    <root>/<variant>/seed<k>/linprobe     linear probe; its LAST epoch is the number (predictions.npz)
    <root>/<variant>/seed<k>/finetune     fine-tuning, and semi/ for fine-tuning on a labelled subset

A directory that already holds a finished run with the same resolved config is read, not run
again; one with another config is an error naming the key that differs. Two variants whose
resolved configs are identical (a tau-curve point at the base tau) share the first one's runs.
The variant's model settings carry over to its evaluation: the encoder is evaluated as built.

Nothing here selects on the test set: accuracies are those of the final model; the linear
probe's best epoch on the test set (MAMP's number) is read as a labelled extra only.
"""
from __future__ import annotations

import multiprocessing
import re
import threading
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from hacm import evaluate, stats, train
from hacm.config import RunConfig, load_config, to_dict
from hacm.errors import HacmError
from hacm.progress import progress_bar, publish
from hacm.rundir import CONFIG_FILE, SUMMARY_FILE, finished, load_run, read_metrics

# "semi" is fine-tuning on a labelled subset: its config sets data.subset_fraction
EVAL_PROTOCOLS = ("knn", "linprobe", "finetune", "semi")
# Every method's linear probe at the epoch that scored best on the test set: how MAMP's paper reports,
# optimistic (selected on test), so kept apart from the last-epoch numbers hacm compares.
BEST_ON_TEST = "linear probe, best test epoch (selected on the test set; optimistic)"
# when the probe was evaluated once (train.eval_every >= epochs) there was nothing to select from
ONE_EVALUATION = "only the last epoch was evaluated, so it equals the last epoch"


# The demo's baselines: MAMP's and MAE's masking with HA-CM's tokenisation (hence "-style"; MAMP and MAE
# as published are hacm/configs/mamp_*.yaml and mae_*.yaml), and the floor every method must beat.
BASELINES: dict[str, dict[str, Any]] = {
    "MAMP-style (motion masking, HA-CM tokens)": {
        "masking.strategy": "motion", "model.geometry": "euclidean", "model.cc_weight": 0.0,
        "model.motion_expmap": False},
    "MAE-style (random masking, HA-CM tokens)": {
        "masking.strategy": "random", "model.geometry": "euclidean", "model.cc_weight": 0.0,
        "model.motion_expmap": False},
}
RANDOM_ENCODER = "random encoder (no pre-training)"

_LABELS = {"linprobe": "linear probe, last epoch", "finetune": "fine-tune, last epoch",
           "semi": "semi-supervised fine-tune, last epoch"}


def table_caption(reference: str, chance: Mapping[str, float] | None = None) -> str:
    """What the columns of StudyResult.table mean, for the caption under it; with the chance level
    (StudyResult.chance) when given."""
    text = (f"± is the spread over seeds: the standard deviation of the per-seed accuracies. 95 % CI: bootstrap "
            f"interval over test clips and seeds. vs {reference}: the difference in points, its 95 % interval "
            f"and a paired test (Holm-adjusted); \"not significant\" means this budget cannot tell them apart.")
    if chance:
        text += (f" Chance level: {chance['majority']:.1f} % (always the most frequent of the {chance['classes']} "
                 f"test classes), {chance['uniform']:.1f} % (uniform guessing).")
    return text


def metric_label(metric: str) -> str:
    """"linprobe" -> "linear probe, last epoch"; "knn20" -> "kNN-20"."""
    return _LABELS.get(metric) or f"kNN-{metric.removeprefix('knn')}"


def _metrics_of(protocol: str, predictions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """metric -> predictions [n] of one evaluation run (classifiers: "pred"; knn: one per k)."""
    if protocol != "knn":
        return {protocol: predictions["pred"]}
    return {k: v for k, v in predictions.items() if re.fullmatch(r"knn\d+", k)}


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
    labels: np.ndarray | None = None            # [n] the test clips' true classes


def _settings(cfg: RunConfig) -> dict[str, Any]:
    """Dotted key -> value of a config's sections (the keys of `--set`), without the seed."""
    return {f"{section}.{key}": value for section, values in to_dict(cfg).items() if isinstance(values, dict)
            for key, value in values.items() if f"{section}.{key}" != "train.seed"}


def _percent(r: stats.ComparisonRow) -> dict[str, Any]:
    """A comparison row in percent and plain types (summary.json); None where it does not apply."""
    def pct(x):
        return None if x is None or np.isnan(x) else round(100 * float(x), 2)
    return {"mean": pct(r.accuracy), "std": pct(r.std), "ci": [pct(x) for x in r.ci],
            "difference": pct(r.difference), "difference ci": [pct(x) for x in r.difference_ci or ()] or None,
            "p holm": r.p_holm, "significant": r.significant, "verdict": r.verdict}


def _below(rows: Sequence[stats.ComparisonRow], untrained: str | None) -> set[str]:
    """The methods whose mean accuracy is below the untrained encoder's (none without one)."""
    floor = next((r.accuracy for r in rows if r.method == untrained), None)
    return {r.method for r in rows if floor is not None and r.method != untrained and r.accuracy < floor}


@dataclass
class StudyResult:
    runs: list[StudyRun]
    variants: list[str]
    seeds: list[int]
    test_clips: int
    # variant -> its pre-training settings (dotted keys, seed left out); None: a random encoder
    configs: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def chance(self) -> dict[str, float] | None:
        """What guessing scores on these test clips, in percent: "majority" always answers the most
        frequent test class, "uniform" picks one of the test set's classes at random; with "classes".
        None when no run recorded the test labels."""
        labels = next((r.labels for r in self.runs if r.labels is not None), None)
        if labels is None:
            return None
        levels = evaluate.chance_levels(labels)
        return {"majority": round(100 * levels["majority"], 2), "uniform": round(100 * levels["uniform"], 2),
                "classes": levels["classes"]}

    def untrained(self) -> str | None:
        """The variant that is not pre-trained (a random encoder), the floor every method should clear."""
        return next((v for v, c in self.configs.items() if c is None), None)

    def benchmark(self) -> str | None:
        """The benchmark (data.benchmark) the pre-trained variants were trained on."""
        return next((c["data.benchmark"] for c in self.configs.values() if c and "data.benchmark" in c), None)

    def config_differences(self) -> dict[str, dict[str, Any]]:
        """variant -> the pre-training settings in which the pre-trained variants differ; a random
        encoder is listed as not pre-trained."""
        trained = [c for c in self.configs.values() if c is not None]
        keys = sorted({k for c in trained for k in c})
        differing = [k for k in keys if len({repr(c.get(k)) for c in trained}) > 1]
        return {v: {k: c.get(k) for k in differing} if c is not None else {"pre-training": "none (random weights)"}
                for v, c in self.configs.items()}

    def headline(self, reference: str, metrics: Sequence[str] | None = None) -> dict[str, Any]:
        """The comparison as plain data in percent, for summary.json and the report's headline table:
        per method and metric the mean, std over seeds, 95 % CI, difference to `reference` with its
        interval, Holm-adjusted p and verdict, and whether it is below the untrained encoder; the
        labelled best-epoch-on-test extra; the chance level; the benchmark; the config differences
        between the methods."""
        metrics = list(metrics or self.metrics())
        rows = {v: {"method": v, "seeds": len(self.seeds), "test clips": self.test_clips, "metrics": {}}
                for v in self.variants}
        for metric in metrics:
            compared = self.compare(metric, reference)
            below = _below(compared, self.untrained())
            for r in compared:
                rows[r.method]["metrics"][metric_label(metric)] = {**_percent(r), "below untrained": r.method in below}
        for run in self.runs:
            if "linprobe_best_on_test" in run.extras:
                rows[run.variant].setdefault("best on test", []).append(100 * run.extras["linprobe_best_on_test"])
        for row in rows.values():
            if "best on test" in row:
                row["best on test"] = round(float(np.mean(row["best on test"])), 2)
        return {"reference": reference, "metrics": [metric_label(m) for m in metrics],
                "best on test": self._best_on_test_label(), "rows": list(rows.values()),
                "config differences": self.config_differences(),
                "chance": self.chance(), "untrained": self.untrained(), "benchmark": self.benchmark()}

    def _best_on_test_label(self) -> str:
        """BEST_ON_TEST, saying so when every probe was evaluated once (it then repeats the last epoch)."""
        counts = [r.extras["linprobe_evaluations"] for r in self.runs if "linprobe_evaluations" in r.extras]
        return f"{BEST_ON_TEST}; {ONE_EVALUATION}" if counts and max(counts) == 1 else BEST_ON_TEST

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
        """Metrics every run measured: the linear probe first, then kNN by decreasing k."""
        common = set.intersection(*(set(r.correct) for r in self.runs))
        order = list(_LABELS)
        return sorted(common, key=lambda m: (order.index(m) if m in order else len(order),
                                             -int(m[3:]) if m.startswith("knn") else 0))

    def compare(self, metric: str, reference: str, *, reps: int = 10_000, seed: int = 0) -> list[stats.ComparisonRow]:
        """Every variant against `reference` under `metric` (hacm.stats.compare_methods)."""
        if metric not in self.metrics():
            raise HacmError(f"study: no metric {metric!r}; this study measured {', '.join(self.metrics())}")
        return stats.compare_methods(self.correct(metric), reference, reps=reps, seed=seed)

    def best(self, metric: str, candidates: Sequence[str], *, alpha: float = 0.05) -> str | None:
        """The candidate that is significantly better than every other candidate under `metric`
        (paired tests with it as the reference, Holm-adjusted), or None: within the noise there is
        no best one."""
        if len(candidates) < 2:
            raise HacmError(f"study: a best one needs at least two candidates, got {list(candidates)}")
        correct = self.correct(metric)
        for name in candidates:
            rows = stats.compare_methods({v: correct[v] for v in candidates}, name, alpha=alpha)
            if all(r.significant and r.difference < 0 for r in rows if r.method != name):
                return name
        return None

    def best_verdict(self, metric: str, candidates: Sequence[str], what: str) -> str:
        """A sentence for a figure or summary: which of `candidates` (e.g. what="tau setting") is
        significantly better than all the others, or that none is."""
        if len(candidates) < 2:
            return f"Only one {what}: nothing to compare."
        best = self.best(metric, candidates)
        if best is None:
            return f"No significant difference between the {what}s at this budget: none is named best."
        return f"{best} is significantly better than every other {what} (paired tests, Holm-adjusted)."

    def table(self, reference: str, metrics: Sequence[str] | None = None) -> list[dict]:
        """One row per variant: for each metric the mean +- std over seeds (%), the 95 % CI, the
        difference to the reference and the verdict of the paired test; plus seeds and test clips."""
        rows = {v: {"method": v, "seeds": len(self.seeds), "test clips": self.test_clips} for v in self.variants}
        for v in self.variants:
            values = [r.extras["linprobe_best_on_test"] for r in self.runs
                      if r.variant == v and "linprobe_best_on_test" in r.extras]
            if values:
                rows[v][f"{self._best_on_test_label()} (%)"] = f"{100 * np.mean(values):.1f}"
        for metric in metrics or self.metrics():
            label = metric_label(metric)
            compared = self.compare(metric, reference)
            below = _below(compared, self.untrained())
            for r in compared:
                row = rows[r.method]
                row[f"{label} (%)"] = f"{100 * r.accuracy:.1f} ± {100 * r.std:.1f}" if r.seeds > 1 \
                    else f"{100 * r.accuracy:.1f}"
                if r.method in below:
                    row[f"{label} (%)"] += " (below the untrained encoder)"
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


def _eval_base(eval_config: str | Path | Mapping[str, str | Path], protocol: str) -> str | Path:
    """The evaluation config of one protocol: one file for all, or a mapping protocol -> file."""
    if not isinstance(eval_config, Mapping):
        return eval_config
    if protocol not in eval_config:
        raise HacmError(f"study: eval_config names no config for protocol {protocol!r} "
                        f"(it has {', '.join(eval_config)})")
    return eval_config[protocol]


@dataclass
class _Plan:
    """One (variant, seed): its resolved configs and where its runs live."""
    variant: str
    seed: int
    where: Path
    pretrain: RunConfig | None                    # None: a randomly initialised encoder
    evals: dict[str, RunConfig]                   # protocol -> config
    owner: bool = True                            # False: identical settings, the runs of another plan


def _train_if_needed(cfg: RunConfig, run_dir: Path) -> None:
    if not finished(run_dir, cfg):
        train.run(cfg, run_dir, resume=(run_dir / "checkpoints" / "last.pt").is_file())


def _execute(plan: _Plan) -> None:
    """Train what a plan needs (finished runs are kept); runs in a worker process when workers > 1."""
    if plan.pretrain is not None:
        _train_if_needed(plan.pretrain, plan.where / "pretrain")
    for protocol, cfg in plan.evals.items():
        if protocol == "semi" and cfg.data.subset_fraction is None:
            raise HacmError(f"study: the semi protocol's config must set data.subset_fraction "
                            f"({plan.where / protocol})")
        _train_if_needed(cfg, plan.where / protocol)


def _collect(plan: _Plan) -> StudyRun:
    """A plan's finished runs -> per-clip correctness, accuracies and extras."""
    run = StudyRun(plan.variant, plan.seed, {}, {}, {})
    if plan.pretrain is not None:
        run.dirs["pretrain"] = plan.where / "pretrain"
        summary = load_run(run.dirs["pretrain"]).summary
        run.extras.update({k: summary[k] for k in ("loss_rec", "loss_cc") if k in summary})
    for protocol in plan.evals:
        run.dirs[protocol] = plan.where / protocol
        evaluated = load_run(run.dirs[protocol])
        pred = evaluated.predictions()
        run.labels = pred["labels"]
        for metric, predicted in _metrics_of(protocol, pred).items():
            run.correct[metric] = predicted == pred["labels"]
            run.accuracy[metric] = float(run.correct[metric].mean())
        if protocol == "linprobe":
            run.extras["linprobe_best_on_test"] = evaluated.summary["best_test_acc"]
            run.extras["linprobe_evaluations"] = sum("test_acc" in r for r in evaluated.rows("epoch"))
    return run


def phase_of(plan: _Plan) -> str:
    """Where a (variant, seed) pipeline stands, read from its run directories (so it is the same
    whether it trains in this process or a worker): "pretrain epoch 3/10", "knn", "done"."""
    phases = ([("pretrain", plan.pretrain)] if plan.pretrain is not None else []) + list(plan.evals.items())
    for name, cfg in phases:
        run_dir = plan.where / name
        if (run_dir / SUMMARY_FILE).is_file():
            continue
        if not (run_dir / CONFIG_FILE).is_file():
            return f"{name} starting"
        if cfg.protocol == "knn":
            return name
        epochs = sum(r.get("kind") == "epoch" for r in read_metrics(run_dir))
        return f"{name} epoch {epochs}/{cfg.train.epochs}"
    return "done"


class _StudyProgress:
    """The study's bar over its (variant, seed) pipelines, whose postfix names the phase and epoch of
    each running one; a thread refreshes it every POLL_S seconds while training blocks this one, and
    publishes the same line for a report batch's job line (hacm.progress.publish)."""

    POLL_S = 2.0

    def __init__(self, total: int, enabled: bool):
        self.bar = progress_bar(total=total, desc="study", unit="pipeline", disable=not enabled)
        self.total, self.done = total, 0          # counted here too: a disabled bar counts nothing
        self.running: dict[tuple[str, int], _Plan] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def start(self, plan: _Plan) -> None:
        with self._lock:
            self.running[(plan.variant, plan.seed)] = plan
        self.show()

    def finish(self, plan: _Plan) -> None:
        with self._lock:
            self.running.pop((plan.variant, plan.seed), None)
            self.done += 1
        self.bar.update(1)
        self.show()

    def line(self) -> str:
        with self._lock:
            plans = list(self.running.values())
        return "; ".join(f"{p.variant} seed {p.seed}: {phase_of(p)}" for p in plans)

    def show(self) -> None:
        try:
            line = self.line()
        except (OSError, HacmError):   # a run directory changing under us: the next poll sees it
            return
        self.bar.set_postfix_str(line, refresh=True)
        publish(f"study {self.done}/{self.total} pipelines" + (f": {line}" if line else ""))

    def _poll(self) -> None:
        while not self._stop.wait(self.POLL_S):
            self.show()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.bar.close()


def _worker_threads(threads: int) -> None:
    torch.set_num_threads(threads)


def run_study(variants: Mapping[str, Mapping[str, Any] | None], seeds: Sequence[int], root: str | Path, *,
              pretrain_config: str | Path, eval_config: str | Path | Mapping[str, str | Path],
              overrides: Mapping[str, Any] = {},
              eval_overrides: Mapping[str, Any] = {}, protocols: Sequence[str] = ("knn",),
              workers: int = 1, progress: bool = True) -> StudyResult:
    """Pre-train (unless the variant is None) and evaluate every variant at every seed; see the module
    docstring. `eval_config` is one config file for every protocol or a mapping protocol -> file.
    `overrides` apply to every pre-training, `eval_overrides` to every evaluation. A variant may
    name its own base configs with the keys "config" and "eval_config" (a true MAMP with MAMP's
    tokenisation and downstream settings); its other keys override them. `workers` > 1 runs that
    many (variant, seed) pipelines at once in their own processes, sharing this process's threads
    out among them (a CPU-bound study on several cores; the numbers change only by float rounding)."""
    if not variants or not seeds:
        raise HacmError("study: needs at least one variant and one seed")
    unknown = [p for p in protocols if p not in EVAL_PROTOCOLS]
    if unknown or not protocols:
        raise HacmError(f"study: protocols must be some of {', '.join(EVAL_PROTOCOLS)}, got {list(protocols)}")
    if workers < 1:
        raise HacmError(f"study: workers must be at least 1, got {workers}")
    root = Path(root)
    slugs = {name: slug(name) for name in variants}
    if len(set(slugs.values())) != len(slugs):
        raise HacmError(f"study: variant names {list(variants)} give clashing directory names")
    plans, owners = [], {}
    for name in variants:
        for seed in seeds:
            sets = dict(variants[name] or {})
            pre_base, ev_base = sets.pop("config", pretrain_config), sets.pop("eval_config", eval_config)
            seeded = {"train.seed": seed}
            plan = _Plan(name, seed, root / slugs[name] / f"seed{seed}", None, {})
            if variants[name] is not None:
                plan.pretrain = _resolve(pre_base, overrides, sets, seeded)
                # identical settings (a tau-curve point at the base tau) share the first variant's runs
                key = repr(to_dict(plan.pretrain))
                plan.owner = key not in owners
                plan.where = owners.setdefault(key, plan.where)
            pretrained = None if plan.pretrain is None else str(plan.where / "pretrain")
            model_sets = {k: v for k, v in sets.items() if k.startswith("model.")}   # evaluated as built
            for protocol in protocols:
                plan.evals[protocol] = _resolve(
                    _eval_base(ev_base, protocol), {"protocol": "finetune" if protocol == "semi" else protocol},
                    model_sets, eval_overrides, seeded, {"train.pretrained": pretrained})
            plans.append(plan)
    todo = [p for p in plans if p.owner]
    workers = max(1, min(workers, len(todo)))
    shown = _StudyProgress(len(todo), progress)
    try:
        if workers == 1:
            for plan in todo:
                shown.start(plan)
                _execute(plan)
                shown.finish(plan)
        else:
            # one process per (variant, seed) at a time: the cores are shared out, not oversubscribed
            threads = max(1, torch.get_num_threads() // workers)
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_worker_threads, initargs=(threads,)) as pool:
                futures = {pool.submit(_execute, plan): plan for plan in todo}
                for plan in todo[:workers]:       # the pool starts the first `workers` at once, in order
                    shown.start(plan)
                waiting = todo[workers:]
                for future in as_completed(futures):
                    future.result()               # a failed run stops the study with its error
                    shown.finish(futures[future])
                    if waiting:
                        shown.start(waiting.pop(0))
    finally:
        shown.close()
    runs = [_collect(plan) for plan in plans]
    sizes = {len(c) for r in runs for c in r.correct.values()}
    if len(sizes) != 1:
        raise HacmError(f"study: evaluations saw different numbers of test clips ({sorted(sizes)}); "
                        "every run must use the same store and benchmark")
    configs = {p.variant: None if p.pretrain is None else _settings(p.pretrain) for p in plans if p.seed == seeds[0]}
    return StudyResult(runs, list(variants), list(seeds), sizes.pop(), configs)
