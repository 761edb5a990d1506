"""Static (matplotlib) figures of evaluations: confusion matrices and their differences, the most
confused class pairs, per-class accuracy, methods compared over seeds, accuracy against tau.

Confusion matrices are [C, C] counts (rows = true class, columns = predicted) with their class
names; accuracies are in percent. Nothing here reads checkpoints or imports the model.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hacm.errors import HacmError
from hacm.viz.mpl import subplots


def _check_cm(cm, names: Sequence[str]) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise HacmError(f"confusion matrix: expected [C, C] with C = {len(names)} class names, got {cm.shape}")
    return cm


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    return cm / np.maximum(cm.sum(1, keepdims=True), 1)


def per_class_accuracy(cm, class_names: Sequence[str]) -> dict[str, float]:
    """Recall of each class (diagonal / row sum) by class name, in percent; NaN for a class with no
    sample. hacm's one per-class accuracy: the figures and tables here and the notebooks use it."""
    cm = _check_cm(cm, class_names)
    totals = cm.sum(1)
    acc = np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1) * 100.0, np.nan)
    return dict(zip(class_names, acc.tolist()))


def per_class_accuracy_figure(cm, class_names: Sequence[str], *, compare=None, labels: Sequence[str] = ("run", "other"),
                              title: str = "Per-class accuracy") -> Figure:
    """Horizontal bars of per-class accuracy (sorted, worst at the bottom); `compare` adds a second run's cm.

    Each class is labelled with its number of test clips (the row sum of `cm`), and the title says
    how many that is per class; the legend sits above the bars, never over them."""
    acc = np.array(list(per_class_accuracy(cm, class_names).values()))
    clips = _check_cm(cm, class_names).sum(1).astype(int)
    order = np.argsort(np.nan_to_num(acc, nan=-1.0))
    fig, ax = subplots(figsize=(7, max(3.0, 0.22 * len(class_names) + 1.4)), layout="constrained")
    y = np.arange(len(class_names))
    h = 0.4 if compare is not None else 0.8
    ax.barh(y + (h / 2 if compare is not None else 0), acc[order], height=h, label=labels[0])
    if compare is not None:
        other = np.array(list(per_class_accuracy(compare, class_names).values()))
        ax.barh(y - h / 2, other[order], height=h, label=labels[1])
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2, fontsize=8, frameon=False)
    ax.set_yticks(y, [f"{class_names[i]} ({clips[i]})" for i in order], fontsize=7)
    ax.set_xlabel("accuracy (%)")
    ax.set_ylabel("class (test clips)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    per_class = f"{clips.min()}" if clips.min() == clips.max() else f"{clips.min()}-{clips.max()}"
    ax.set_title(f"{title}\n{per_class} test clips per class, {clips.sum()} in all", fontsize=10,
                 pad=18 if compare is not None else 6)
    return fig


def _confusion_heatmap(values: np.ndarray, class_names: Sequence[str], *, cmap: str, vmin, vmax,
                       label: str) -> tuple[Figure, Axes]:
    """A [C, C] heatmap with a colour bar, class names on both axes (rows true, columns predicted)."""
    n = len(class_names)
    size = max(4.0, 0.18 * n + 2)
    fig, ax = subplots(figsize=(size + 1, size))
    im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    fs = 7 if n <= 30 else 5
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), class_names, fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    return fig, ax


def confusion_matrix_figure(cm, class_names: Sequence[str], *, normalise: bool = True,
                            title: str = "Confusion matrix") -> Figure:
    """Confusion matrix heatmap; normalise=True shows each true class's row in percent."""
    cm = _check_cm(cm, class_names)
    values = _row_normalise(cm) * 100.0 if normalise else cm
    fig, ax = _confusion_heatmap(values, class_names, cmap="Blues", vmin=0, vmax=100 if normalise else None,
                                 label="% of true class" if normalise else "count")
    n = len(class_names)
    if n <= 15:   # numbers stay legible only on small matrices
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{values[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if values[i, j] > values.max() / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_difference_figure(cm_a, cm_b, class_names: Sequence[str], *, labels: Sequence[str] = ("A", "B"),
                                title: str | None = None) -> Figure:
    """Row-normalised cm_a - cm_b in percentage points (red: A predicts that cell more often)."""
    a = _row_normalise(_check_cm(cm_a, class_names)) * 100.0
    b = _row_normalise(_check_cm(cm_b, class_names)) * 100.0
    diff = a - b
    lim = max(1.0, float(np.abs(diff).max()))
    fig, ax = _confusion_heatmap(diff, class_names, cmap="RdBu_r", vmin=-lim, vmax=lim,
                                 label=f"{labels[0]} - {labels[1]} (percentage points)")
    ax.set_title(title or f"Confusion difference: {labels[0]} - {labels[1]}")
    fig.tight_layout()
    return fig


def most_confused_pairs(cm, class_names: Sequence[str], k: int = 10) -> list[dict]:
    """The k largest off-diagonal cells: [{"true", "predicted", "count", "rate"}], rate = % of the true class."""
    cm = _check_cm(cm, class_names)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rates = _row_normalise(cm) * 100.0
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    pairs = []
    for i, j in zip(*np.unravel_index(flat, cm.shape)):
        if off[i, j] <= 0:
            break
        pairs.append({"true": class_names[i], "predicted": class_names[j], "count": int(cm[i, j]),
                      "rate": float(rates[i, j])})
    return pairs


def tau_curve_figure(points: Sequence[Mapping], *, metric: str = "accuracy (%)", title: str | None = None) -> Figure:
    """Accuracy against tau, one line per series (e.g. the keep-probability normalisation).

    points: {"tau", "series", "mean", "ci": (lo, hi), "values": per-seed values} in percent; the
    band is the 95 % confidence interval over clips and seeds, dots are the seeds.
    """
    groups: dict[str, list[Mapping]] = {}
    for p in points:
        missing = {"tau", "series", "mean", "ci", "values"} - set(p)
        if missing:
            raise HacmError(f"tau_curve_figure: every point needs {sorted(missing)}, got keys {sorted(p)}")
        groups.setdefault(str(p["series"]), []).append(p)
    if not groups:
        raise HacmError("tau_curve_figure: no points given")
    fig, ax = subplots(figsize=(7, 4))
    for name, pts in groups.items():
        pts = sorted(pts, key=lambda p: float(p["tau"]))
        taus = np.array([float(p["tau"]) for p in pts])
        (line,) = ax.plot(taus, [p["mean"] for p in pts], marker="o", label=name)
        ax.fill_between(taus, [p["ci"][0] for p in pts], [p["ci"][1] for p in pts], alpha=0.15,
                        color=line.get_color())
        for p in pts:
            ax.scatter([float(p["tau"])] * len(p["values"]), p["values"], s=10, color=line.get_color(), alpha=0.5)
    n_seeds = max(len(p["values"]) for p in points)
    ax.set_xscale("log")
    ax.set_xlabel("Gumbel temperature tau (log scale)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(title=f"band: 95 % CI (clips x {n_seeds} seeds); dots: seeds", fontsize=8, title_fontsize=8)
    ax.set_title(title or f"{metric} against tau")
    fig.tight_layout()
    return fig


def method_comparison_figure(methods: Mapping[str, Mapping], *, metric: str = "accuracy (%)",
                             title: str = "Methods compared") -> Figure:
    """Per method: the seeds as dots, their mean as a bar, the 95 % CI (clips x seeds) as an error bar;
    the legend sits above the axes, never over a bar.

    methods: name -> {"values": per-seed accuracies, "mean", "ci": (lo, hi)} in percent, in display order.
    """
    if not methods:
        raise HacmError("method_comparison_figure: no methods given")
    names = list(methods)
    fig, ax = subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4.3), layout="constrained")
    x = np.arange(len(names))
    means = np.array([methods[n]["mean"] for n in names], dtype=float)
    lo = np.array([methods[n]["ci"][0] for n in names], dtype=float)
    hi = np.array([methods[n]["ci"][1] for n in names], dtype=float)
    ax.bar(x, means, width=0.6, color="#c6dbef", edgecolor="#2171b5", label="mean over seeds")
    ax.errorbar(x, means, yerr=[means - lo, hi - means], fmt="none", ecolor="black", capsize=5,
                label="95 % CI (clips x seeds)")
    for i, n in enumerate(names):
        v = np.asarray(methods[n]["values"], dtype=float)
        ax.scatter(i + np.linspace(-0.15, 0.15, len(v)) if len(v) > 1 else [i], v, color="#08306b", s=14, zorder=3,
                   label="seeds" if i == 0 else None)
    ax.set_xticks(x, names, rotation=15, ha="right")
    ax.set_ylabel(metric)
    span = max(hi.max() - lo.min(), 1.0)
    ax.set_ylim(max(0.0, lo.min() - 0.6 * span), min(100.0, hi.max() + 0.4 * span))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, frameon=False)   # above the bars
    ax.set_title(title, pad=20)
    return fig
