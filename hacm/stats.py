"""Statistics behind every method comparison hacm prints: spread over seeds, paired tests, Holm.

One seed on one test set is not evidence: at 80 % accuracy on 126 clips one binomial standard
error is already 3.6 points. A comparison therefore reports, per method, the mean and spread of
accuracy over >= 3 seeds with a confidence interval, and for each method against one reference
method the difference, its interval and a paired significance test, saying "not significant" when
it is not.

Units: accuracies, differences and their intervals are fractions in [0, 1] (0.786, not 78.6); the
report layer formats percent.

Input: per-clip correctness, `correct[s, i]` (bool, [S, n]) is True when seed s's prediction on test
clip i was right. Every method is evaluated on the same n clips in the same order.

What is tested, and why:
- Paired by clip. All methods see the same clips and most of the per-clip variation (hard clips are
  hard for everyone) is shared, so differences are resampled clip by clip with the same clip
  indices for both methods; an unpaired test would bury a real difference under clip difficulty.
- Seeds are independent replicates. Seed s of one method and seed s of another are unrelated
  training runs, so the seeds of each method are resampled independently.
- How clips and seeds are combined. Resampling whole seed rows on resampled clips (the textbook
  two-level bootstrap) counts the per-clip coin flips twice: they already make per-seed accuracies
  differ by about sqrt(p(1-p)/n), and clip resampling covers them again. In simulation with 3 seeds
  and little run-to-run variance that rejected a true null 0.5-1 % of the time at alpha = 5 %
  (intervals about 1.5x too wide). Here each method's matrix is split into per-clip means (averaged
  over seeds) and per-seed effects (seed accuracy minus the mean accuracy); clips are resampled on
  the per-clip means, seeds on the seed effects, shrunk to the run-to-run variance left after
  subtracting that coin-flip part (a method-of-moments two-way ANOVA estimate).
- Few seeds. The run-to-run part rests on S - 1 degrees of freedom per method. When it dominates
  the per-clip noise, no resampling of 3 numbers can know the tails of a t distribution with 4
  degrees of freedom: in simulation a true null was rejected about 12 % of the time at nominal
  5 % with 3 seeds, 7 % with 5 and 6 % with 10. When per-clip noise dominates (run-to-run
  differences no larger than the binomial standard error) it was about 4 %. With one seed for both
  methods the seed part is zero and the exact McNemar test on the two runs' per-clip predictions is
  the one reported.
- Holm across comparisons. Each method is compared with one reference; Holm-Bonferroni adjusts the
  p-values of those comparisons together, so adding methods does not manufacture a "win".
- Never feed the best test-set epoch here. MAMP-style "best epoch on test" selects on the test set;
  its accuracy is biased upwards and can only be a labelled extra for comparison with published
  tables, never the primary number compared here. Use the last epoch or one chosen on validation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as sps

from hacm.errors import HacmError

MIN_SEEDS = 3                  # the project's floor for a claim; fewer is flagged in the verdict
_BLOCK_ELEMENTS = 1 << 22      # clip indices drawn per block: bounds memory for large test sets


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n independent clips: sqrt(p(1-p)/n)."""
    if not 0.0 <= p <= 1.0:
        raise HacmError(f"binomial_se: accuracy {p} is not a fraction in [0, 1]")
    if n < 1:
        raise HacmError(f"binomial_se: needs at least one clip, got n = {n}")
    return math.sqrt(p * (1.0 - p) / n)


@dataclass(frozen=True)
class SeedSummary:
    mean: float
    std: float                 # ddof=1; nan with one seed (a spread of one run is unknown, not 0)
    min: float
    max: float
    n_seeds: int


def seed_summary(acc_per_seed: Sequence[float] | np.ndarray) -> SeedSummary:
    """Mean, sample standard deviation, range and count of per-seed accuracies."""
    acc = np.asarray(acc_per_seed, dtype=float)  # [S]
    if acc.ndim != 1 or acc.size == 0:
        raise HacmError(f"seed_summary: expected a non-empty list of per-seed accuracies, got shape {acc.shape}")
    std = float(acc.std(ddof=1)) if acc.size > 1 else math.nan
    return SeedSummary(float(acc.mean()), std, float(acc.min()), float(acc.max()), int(acc.size))


@dataclass(frozen=True)
class McNemar:
    a_only: int                # clips a got right and b got wrong (b in McNemar's table)
    b_only: int                # clips b got right and a got wrong (c in McNemar's table)
    p: float                   # exact two-sided: binomial(a_only; a_only + b_only, 1/2)


def mcnemar_exact(correct_a, correct_b) -> McNemar:
    """Exact McNemar test for one run of each method on the same clips ([n] each)."""
    a = _correctness("correct_a", correct_a, ndim=1)  # [n]
    b = _correctness("correct_b", correct_b, ndim=1)  # [n]
    _same_clips("correct_b", b.shape[-1], "correct_a", a.shape[-1])
    a_only, b_only = int(np.sum(a & ~b)), int(np.sum(~a & b))
    # with no discordant clip the data say nothing against equality
    p = sps.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return McNemar(a_only, b_only, float(p))


@dataclass(frozen=True)
class BootstrapCI:
    mean: float                # observed mean accuracy over seeds and clips
    ci: tuple[float, float]    # percentile interval at `level`
    level: float


@dataclass(frozen=True)
class PairedBootstrap:
    difference: float          # observed mean accuracy of a minus that of b
    ci: tuple[float, float]    # percentile interval of the difference at `level`
    p: float                   # two-sided bootstrap p-value for "no difference", in [1/reps, 1]
    level: float


def bootstrap_ci(correct, *, reps: int = 10_000, seed: int = 0, level: float = 0.95) -> BootstrapCI:
    """Interval for one method's mean accuracy, resampling clips and seeds as described above."""
    x = _correctness("correct", correct, ndim=2)  # [S, n]
    _check_reps_level(reps, level)
    clip_means, seed_effects = _components(x)
    stars = _replicates(clip_means, [seed_effects], reps, seed)  # [reps]
    return BootstrapCI(float(x.mean()), _percentile(stars, level), level)


def paired_bootstrap(correct_a, correct_b, *, reps: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> PairedBootstrap:
    """Difference of mean accuracies (a - b) with the same clip resample for both methods and
    independent seed resamples per method."""
    a = _correctness("correct_a", correct_a, ndim=2)  # [S_a, n]
    b = _correctness("correct_b", correct_b, ndim=2)  # [S_b, n]
    _same_clips("correct_b", b.shape[1], "correct_a", a.shape[1])
    _check_reps_level(reps, level)
    clips_a, seeds_a = _components(a)
    clips_b, seeds_b = _components(b)
    stars = _replicates(clips_a - clips_b, [seeds_a, -seeds_b], reps, seed)  # [reps]
    # Percentile-bootstrap p: the smallest alpha at which the (1 - alpha) percentile interval would
    # exclude 0, so p < 1 - level exactly when `ci` excludes 0. Replicates equal to 0 (frequent:
    # they are differences of counts) count on both sides, which favours "no difference". With
    # `reps` replicates none reaching 0 only shows p is below about 1/reps, hence the floor.
    tail = min(np.mean(stars <= 0.0), np.mean(stars >= 0.0))
    p = float(np.clip(2.0 * tail, 1.0 / reps, 1.0))
    return PairedBootstrap(float(a.mean() - b.mean()), _percentile(stars, level), p, level)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values, in input order: monotone in the raw p and capped at 1."""
    p = np.asarray(p_values, dtype=float)  # [m]
    if p.ndim != 1 or np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise HacmError(f"holm: expected a list of p-values in [0, 1], got {p_values!r}")
    order = np.argsort(p, kind="stable")
    # the k-th smallest (from 0) is tested against alpha / (m - k); adjusted p carries the running max
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted


@dataclass(frozen=True)
class ComparisonRow:
    method: str
    seeds: int
    clips: int
    accuracy: float                             # mean over seeds
    std: float                                  # over seeds, ddof=1 (nan with one seed)
    ci: tuple[float, float]                     # bootstrap interval of `accuracy`
    verdict: str
    # Against the reference; None on the reference's own row.
    difference: float | None = None             # this method minus the reference
    difference_ci: tuple[float, float] | None = None
    p_bootstrap: float | None = None
    p_mcnemar: float | None = None              # only when both have exactly one seed
    test: str | None = None                     # "mcnemar" if p_mcnemar is set, else "bootstrap"
    p_holm: float | None = None                 # `test`'s p, Holm-adjusted over all comparisons
    significant: bool | None = None             # p_holm < alpha

    @property
    def p(self) -> float | None:
        """Raw p-value of the test that decides `significant`."""
        return self.p_mcnemar if self.test == "mcnemar" else self.p_bootstrap


def compare_methods(per_clip: Mapping[str, np.ndarray], reference: str, *, reps: int = 10_000,
                    seed: int = 0, alpha: float = 0.05, level: float = 0.95) -> list[ComparisonRow]:
    """One row per method, in input order: accuracy with spread and interval, and for every method
    other than `reference` the paired comparison with it.

    `per_clip[name]` is that method's correctness [S, n]; the test is the paired bootstrap, or the
    exact McNemar test when both the method and the reference have a single seed (the bootstrap
    then knows nothing of run-to-run variance). Holm adjusts over all non-reference comparisons.
    The same `seed` is used for every bootstrap, so they all share the same clip resamples.
    """
    if not per_clip:
        raise HacmError("compare_methods: no methods given")
    if reference not in per_clip:
        raise HacmError(f"compare_methods: reference {reference!r} is not one of the methods {list(per_clip)}")
    if not 0.0 < alpha < 1.0:
        raise HacmError(f"compare_methods: alpha must lie in (0, 1), got {alpha}")
    _check_reps_level(reps, level)
    data = {name: _correctness(name, x, ndim=2) for name, x in per_clip.items()}  # name -> [S, n]
    ref = data[reference]
    for name, x in data.items():
        _same_clips(name, x.shape[1], reference, ref.shape[1])

    others = [name for name in data if name != reference]
    tests = {}
    for name in others:
        boot = paired_bootstrap(data[name], ref, reps=reps, seed=seed, level=level)
        mcnemar = mcnemar_exact(data[name][0], ref[0]) if len(data[name]) == len(ref) == 1 else None
        tests[name] = (boot, mcnemar)
    adjusted = dict(zip(others, holm([(mc or boot).p for boot, mc in tests.values()])))

    rows = []
    for name, x in data.items():
        summary = seed_summary(x.mean(axis=1))
        ci = bootstrap_ci(x, reps=reps, seed=seed, level=level).ci
        if name == reference:
            rows.append(ComparisonRow(name, summary.n_seeds, x.shape[1], summary.mean, summary.std, ci,
                                      verdict="reference"))
            continue
        boot, mcnemar = tests[name]
        p_holm = float(adjusted[name])
        significant = p_holm < alpha
        verdict = _verdict(boot.difference, significant, p_holm, reference, len(others), mcnemar is not None, alpha)
        if min(len(x), len(ref)) < MIN_SEEDS:
            verdict += f" [{len(x)} vs {len(ref)} seeds, fewer than {MIN_SEEDS}]"
        rows.append(ComparisonRow(
            name, summary.n_seeds, x.shape[1], summary.mean, summary.std, ci, verdict,
            difference=boot.difference, difference_ci=boot.ci, p_bootstrap=boot.p,
            p_mcnemar=mcnemar.p if mcnemar else None, test="mcnemar" if mcnemar else "bootstrap",
            p_holm=p_holm, significant=significant))
    return rows


def _verdict(difference: float, significant: bool, p_holm: float, reference: str, comparisons: int,
             mcnemar: bool, alpha: float) -> str:
    label = ("McNemar " if mcnemar else "") + ("p" if comparisons == 1 else "Holm-adjusted p")
    # two significant digits, but never rounded across alpha: 0.0497 must not read "0.05, significant"
    shown = "< 0.001" if p_holm < 0.001 else f"= {p_holm:.2g}" if abs(p_holm - alpha) > 0.005 else f"= {p_holm:.4f}"
    if not significant:
        return f"not significant ({label} {shown})"
    direction = "better than" if difference > 0 else "worse than"
    return f"{direction} {reference}, significant ({label} {shown})"


@dataclass(frozen=True)
class RankCorrelation:
    rho: float                 # Spearman's rank correlation of all points (average ranks for ties)
    ci: tuple[float, float]    # percentile interval at `level`, resampling whole clusters
    p: float                   # two-sided bootstrap p-value for "no correlation", in [1/reps, 1]
    level: float
    points: int
    clusters: int

    def describe(self) -> str:
        low, high = self.ci
        p = f"p < {self.p:.0e}" if self.p <= 1.0 / 1000 else f"p = {self.p:.3f}"   # the floor is 1 / reps
        return (f"Spearman rho {self.rho:+.2f} [{low:+.2f}, {high:+.2f}] ({100 * self.level:.0f} % interval, "
                f"{self.clusters} clips resampled, {p})")


def spearman_by_cluster(x, y, clusters, *, reps: int = 2_000, seed: int = 0, level: float = 0.95) -> RankCorrelation:
    """Spearman's rho of x and y [N] with an interval that resamples clusters (e.g. clips) whole.

    Points of one clip share its pose and its embedding, so they are not independent: resampling
    single points would make the interval far too narrow. Each replicate draws clusters with
    replacement and ranks the drawn points afresh (average ranks for ties, as `scipy.stats.spearmanr`;
    a cluster drawn twice counts twice). The p-value is the percentile bootstrap's, as in
    `paired_bootstrap`: p < 1 - level exactly when `ci` excludes 0.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()   # [N]
    groups = np.asarray(clusters).ravel()                                            # [N]
    if not x.size == y.size == groups.size:
        raise HacmError(f"spearman_by_cluster: x, y and clusters must have one entry per point, got "
                        f"{x.size}, {y.size} and {groups.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise HacmError("spearman_by_cluster: x and y must be finite")
    _check_reps_level(reps, level)
    _, cluster_of = np.unique(groups, return_inverse=True)                           # [N]
    n_clusters = int(cluster_of.max()) + 1 if groups.size else 0
    if n_clusters < 2:
        raise HacmError(f"spearman_by_cluster: {n_clusters} cluster(s); resampling needs at least 2")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise HacmError("spearman_by_cluster: x or y is constant; a rank correlation is undefined")
    rng = np.random.default_rng(seed)
    stars = np.empty(reps)                                                           # [reps]
    block = max(1, _BLOCK_ELEMENTS // (4 * x.size))   # replicates at once (bounds memory)
    for start in range(0, reps, block):
        rows = min(reps, start + block) - start
        picks = rng.integers(0, n_clusters, size=(rows, n_clusters))                 # [B, G]
        times = np.zeros((rows, n_clusters))
        np.add.at(times, (np.arange(rows)[:, None], picks), 1.0)                    # how often each cluster is drawn
        weight = times[:, cluster_of]                                                # [B, N]
        stars[start:start + rows] = _weighted_pearson(_weighted_ranks(x, weight), _weighted_ranks(y, weight), weight)
    tail = min(np.mean(stars <= 0.0), np.mean(stars >= 0.0))
    return RankCorrelation(float(sps.spearmanr(x, y).statistic), _percentile(stars, level),
                           float(np.clip(2.0 * tail, 1.0 / reps, 1.0)), level, int(x.size), n_clusters)


def _weighted_ranks(v: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Average ranks [B, N] of the values v [N] in each resample, where point i appears weight[b, i]
    times: the points below a tie group, plus half the group's size plus 1/2."""
    order = np.argsort(v, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(v[order]) != 0])                    # first of each tie group
    group = np.cumsum(np.r_[True, np.diff(v[order]) != 0]) - 1                      # [N] group of each sorted point
    totals = np.add.reduceat(weight[:, order], starts, axis=1)                     # [B, groups]
    below = np.cumsum(totals, axis=1) - totals
    ranks = np.empty_like(weight)
    ranks[:, order] = (below + (totals + 1.0) / 2.0)[:, group]
    return ranks


def _weighted_pearson(a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Pearson correlation [B] of a, b [B, N] with point weights [B, N] (0 where a side is constant)."""
    total = weight.sum(1, keepdims=True)
    a = a - (weight * a).sum(1, keepdims=True) / total
    b = b - (weight * b).sum(1, keepdims=True) / total
    norm = np.sqrt((weight * a * a).sum(1) * (weight * b * b).sum(1))
    return np.divide((weight * a * b).sum(1), norm, out=np.zeros(len(a)), where=norm > 1e-12 * total[:, 0] ** 2)


def _components(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split correctness [S, n] into per-clip means [n] and per-seed effects [S] whose resampled
    mean has variance equal to the estimated run-to-run variance of the mean over seeds."""
    x = x.astype(float)
    n_seeds, n = x.shape
    clip_means = x.mean(axis=0)                         # [n]
    seed_acc = x.mean(axis=1)                           # [S]
    effects = seed_acc - seed_acc.mean()                # [S]
    if n_seeds == 1:
        return clip_means, effects                      # a single zero: no run-to-run information
    residual = x - clip_means[None, :] - effects[:, None]  # [S, n] seed-by-clip coin flips
    # what the coin flips alone add to the variance of one seed's accuracy
    flip_var = (residual ** 2).sum() / ((n_seeds - 1) * (n - 1)) / n
    between = max(0.0, effects.var(ddof=1) - flip_var)
    spread = effects.var(ddof=0)                        # what resampling S values reproduces
    scale = math.sqrt(between / spread) if spread > 0 else 0.0
    return clip_means, effects * scale


def _replicates(clip_scores: np.ndarray, seed_effects: Sequence[np.ndarray], reps: int, seed: int) -> np.ndarray:
    """Bootstrap replicates [reps]: clip_scores [n] averaged over a clip resample, plus for each
    entry of seed_effects ([S_k]) its mean over an independent seed resample."""
    rng = np.random.default_rng(seed)
    n = clip_scores.shape[0]
    out = np.empty(reps)                                # [reps]
    rows = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, reps, rows):
        stop = min(reps, start + rows)
        # int32 indices draw about 7x faster than the default int64
        clips = rng.integers(0, n, size=(stop - start, n), dtype=np.int32)  # [rows, n]
        out[start:stop] = clip_scores[clips].mean(axis=1)
    for effects in seed_effects:
        picks = rng.integers(0, effects.shape[0], size=(reps, effects.shape[0]))  # [reps, S_k]
        out += effects[picks].mean(axis=1)
    return out


def _percentile(stars: np.ndarray, level: float) -> tuple[float, float]:
    low, high = np.quantile(stars, [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(low), float(high)


def _correctness(name: str, values, *, ndim: int) -> np.ndarray:
    """`values` as a bool array of `ndim` dims ([n] or [S, n]); 0/1 numbers are accepted."""
    shape_text = "[n] (one run, per clip)" if ndim == 1 else "[seeds, clips]"
    x = np.asarray(values)
    if x.ndim != ndim:
        raise HacmError(f"{name}: expected per-clip correctness of shape {shape_text}, got shape {x.shape}")
    if x.size == 0:
        raise HacmError(f"{name}: no results (shape {x.shape}); expected shape {shape_text} with at least one entry")
    if ndim == 2 and x.shape[1] < 2:
        raise HacmError(f"{name}: {x.shape[1]} clip(s); clip resampling needs at least 2")
    if x.dtype != bool:
        if not np.issubdtype(x.dtype, np.number) or not np.all((x == 0) | (x == 1)):
            odd = x[~((x == 0) | (x == 1))] if np.issubdtype(x.dtype, np.number) else x
            raise HacmError(f"{name}: expected per-clip correctness (booleans or 0/1), got values such as "
                            f"{odd.ravel()[:3].tolist()} (dtype {x.dtype})")
        x = x.astype(bool)
    return x


def _same_clips(name: str, n: int, other: str, n_other: int) -> None:
    if n != n_other:
        raise HacmError(f"{name}: {n} clips, but {other} has {n_other}; every method must be evaluated "
                        f"on the same test clips in the same order")


def _check_reps_level(reps: int, level: float) -> None:
    if reps < 1:
        raise HacmError(f"bootstrap: reps must be at least 1, got {reps}")
    if not 0.0 < level < 1.0:
        raise HacmError(f"bootstrap: level must lie in (0, 1), got {level}")
