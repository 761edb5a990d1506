"""Multi-stream ensembles: the "3s" numbers papers print, from saved per-clip scores.

Each evaluation run (linear probe or fine-tune) saves the softmax scores of every test clip in
predictions.npz. A run's stream is its input modality, read from its config as MAMP's feeders
define it: joint (positions), bone (`data.bone`), motion (`data.vel`: frame differences) and
bone motion (both). Runs are grouped by stream and by `train.seed`; for each seed the streams'
scores are fused as a weighted sum sum_s w_s softmax_s, and the fused prediction is its argmax.

Every stream must have run at the same seeds on the same test clips (the same labels in the same
order), so the comparison is paired. The result is reported like every comparison in hacm
(hacm.stats.compare_methods): per stream and for the fusion the mean over seeds, the spread, the
bootstrap interval, and the paired difference to the joint stream (or the first stream given)
with a Holm-adjusted p. The reference is fixed in advance, never the best stream on the test set.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hacm import stats
from hacm.errors import HacmError
from hacm.rundir import load_run, read_predictions

STREAMS = ("joint", "bone", "motion", "bone motion")     # order of the rows, as papers list them


def stream_of(data_cfg) -> str:
    """The input stream of a run's data config, named as MAMP's feeders' modalities."""
    return {(False, False): "joint", (True, False): "bone", (False, True): "motion",
            (True, True): "bone motion"}[(bool(data_cfg.bone), bool(data_cfg.vel))]


@dataclass
class EnsembleResult:
    weights: dict[str, float]               # stream -> weight of its softmax scores
    seeds: list[int]
    labels: np.ndarray                      # [n] test labels
    correct: dict[str, np.ndarray]          # stream (and "ensemble") -> [S, n] per-clip correctness
    rows: list[stats.ComparisonRow]         # per stream, then the ensemble; vs `reference`
    reference: str
    runs: dict[str, list[Path]]             # stream -> its run directories, seed order

    @property
    def fused_name(self) -> str:
        return "ensemble (" + " + ".join(f"{w:g} {s}" for s, w in self.weights.items()) + ")"


def _scores(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    pred = read_predictions(run_dir)
    if "scores" not in pred:
        raise HacmError(f"{run_dir}: predictions.npz has no per-clip class scores (a kNN run, or written "
                        f"before hacm saved them); re-run its linear probe or fine-tune")
    return pred["labels"], pred["scores"]


def ensemble(run_dirs: Sequence[str | Path], weights: Mapping[str, float] | None = None, *,
             reps: int = 10_000, seed: int = 0) -> EnsembleResult:
    """Fuse the saved scores of evaluation runs of several streams (and seeds); see the module docstring.
    `weights`: stream -> weight (default 1 for every stream present)."""
    if not run_dirs:
        raise HacmError("ensemble: no run directories given")
    grouped: dict[str, dict[int, Path]] = {}
    protocols = {}
    for d in map(Path, run_dirs):
        cfg = load_run(d).config
        if cfg.protocol not in ("linprobe", "finetune"):
            raise HacmError(f"{d}: a {cfg.protocol} run; the ensemble fuses linear-probe or fine-tune scores")
        protocols[d] = cfg.protocol
        stream, s = stream_of(cfg.data), cfg.train.seed
        if s in grouped.setdefault(stream, {}):
            raise HacmError(f"{d}: a second {stream} run at seed {s} (the other is {grouped[stream][s]})")
        grouped[stream][s] = d
    if len(grouped) < 2:
        raise HacmError(f"ensemble: every run is of the {next(iter(grouped))} stream; give runs of two or more "
                        f"streams (data.bone / data.vel)")
    if len(set(protocols.values())) > 1:
        raise HacmError("ensemble: mixes linear-probe and fine-tune runs: "
                        + ", ".join(f"{d} ({p})" for d, p in protocols.items()))
    streams = [s for s in STREAMS if s in grouped]
    seeds = sorted(grouped[streams[0]])
    for s in streams[1:]:
        if sorted(grouped[s]) != seeds:
            raise HacmError(f"ensemble: the {streams[0]} runs have seeds {seeds}, the {s} runs "
                            f"{sorted(grouped[s])}; every stream needs the same seeds")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - set(streams))
    if unknown:
        raise HacmError(f"ensemble: weights for {', '.join(unknown)}, which no run is (streams: {', '.join(streams)})")
    weights = {s: float(weights.get(s, 1.0)) for s in streams}
    if any(w < 0 for w in weights.values()) or not any(weights.values()):
        raise HacmError(f"ensemble: weights must be >= 0 and not all 0, got {weights}")

    labels = None
    correct = {s: [] for s in streams}
    fused_correct = []
    for k in seeds:
        fused = None
        for s in streams:
            y, p = _scores(grouped[s][k])
            if labels is None:
                labels, first = y, grouped[s][k]
            elif y.shape != labels.shape or not np.array_equal(y, labels):
                raise HacmError(f"{grouped[s][k]}: its test clips differ from those of {first} "
                                f"({len(y)} vs {len(labels)} labels, or another order); fuse runs of one benchmark")
            correct[s].append(p.argmax(1) == y)
            fused = weights[s] * p.astype(np.float64) + (0.0 if fused is None else fused)
        fused_correct.append(fused.argmax(1) == labels)
    result = EnsembleResult(weights, seeds, labels, {s: np.stack(c) for s, c in correct.items()}, [],
                            streams[0], {s: [grouped[s][k] for k in seeds] for s in streams})
    result.correct[result.fused_name] = np.stack(fused_correct)
    result.rows = stats.compare_methods(result.correct, result.reference, reps=reps, seed=seed)
    return result


def format_result(result: EnsembleResult) -> str:
    """The table `hacm ensemble` prints: one row per stream and the fusion."""
    lines = [f"weights (sum of softmax scores): {', '.join(f'{s} {w:g}' for s, w in result.weights.items())}",
             f"seeds {result.seeds}, {len(result.labels)} test clips; reference: the {result.reference} stream "
             f"(fixed in advance)", ""]
    width = max(len(r.method) for r in result.rows)
    lines.append(f"{'':{width}}  {'mean %':>7} {'± seeds':>8} {'95 % CI':>15} {'vs ' + result.reference:>24} "
                 f"{'p (Holm)':>9}")
    for r in result.rows:
        ci = f"[{100 * r.ci[0]:.1f}, {100 * r.ci[1]:.1f}]"
        if r.difference is None:
            diff, p = "reference", ""
        else:
            diff = (f"{100 * r.difference:+.1f} [{100 * r.difference_ci[0]:+.1f}, "
                    f"{100 * r.difference_ci[1]:+.1f}]")
            p = f"{r.p_holm:.3g}"
        std = "n/a" if np.isnan(r.std) else f"{100 * r.std:.1f}"
        lines.append(f"{r.method:{width}}  {100 * r.accuracy:7.1f} {std:>8} {ci:>15} {diff:>24} {p:>9}")
    lines += [""] + [f"{r.method}: {r.verdict}" for r in result.rows if r.difference is not None]
    return "\n".join(lines)
