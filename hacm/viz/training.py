"""Static (matplotlib) figures and tables of training runs and evaluations.

Inputs are plain data: clip lengths, metrics rows as written to a run's metrics.jsonl (dicts with epoch, step,
loss, lr, accuracy, ...), confusion matrices [C, C] (rows = true class, columns = predicted),
class names. Nothing here reads checkpoints or imports the model.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hacm.errors import HacmError


def _subplots(*args, figsize, **kwargs):
    """A figure outside pyplot's registry: no global state, no leak in long batches, and notebooks
    show the returned figure once (pyplot's would be shown a second time at the end of the cell)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)


def length_histogram_figure(lengths: Mapping[str, Sequence[int]], *, bins: int = 20,
                            title: str = "Clip lengths") -> Figure:
    """Histogram of clip lengths in frames, one overlaid series per split part (e.g. train / test)."""
    series = {name: np.asarray(v, dtype=float) for name, v in lengths.items() if len(v)}
    if not series:
        raise HacmError("length_histogram_figure: no clip lengths given")
    edges = np.histogram_bin_edges(np.concatenate(list(series.values())), bins=bins)
    fig, ax = _subplots(figsize=(7, 3.5))
    for name, values in series.items():
        ax.hist(values, bins=edges, alpha=0.6, label=f"{name} ({len(values)} clips, median {np.median(values):.0f})")
    ax.set_xlabel("frames per clip")
    ax.set_ylabel("clips")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return fig


def _series(rows: Sequence[Mapping], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    pts = [(r[x_key], r[key]) for r in rows if r.get(key) is not None and r.get(x_key) is not None]
    if not pts:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pts)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _x_key(rows: Sequence[Mapping]) -> str:
    return "step" if any("step" in r for r in rows) else "epoch"


def loss_lr_figure(rows: Sequence[Mapping], *, title: str = "Training loss and learning rate") -> Figure:
    """Loss curves (loss and, when logged, loss_rec / loss_cc) with the learning rate on a second axis."""
    x_key = _x_key(rows)
    fig, ax = _subplots(figsize=(7, 4))
    plotted = False
    for key in ("loss", "loss_rec", "loss_cc"):
        x, y = _series(rows, key, x_key)
        if len(x):
            ax.plot(x, y, label=key, lw=1.5 if key == "loss" else 1.0)
            plotted = True
    if not plotted:
        raise HacmError("loss_lr_figure: no row has a 'loss' value")
    ax.set_xlabel(x_key)
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    x, y = _series(rows, "lr", x_key)
    handles, labels = ax.get_legend_handles_labels()
    if len(x):
        ax2 = ax.twinx()
        (line,) = ax2.plot(x, y, color="tab:gray", ls="--", lw=1.0, label="learning rate")
        ax2.set_ylabel("learning rate")
        handles.append(line)
        labels.append("learning rate")
    ax.legend(handles, labels, loc="upper right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def accuracy_figure(rows: Sequence[Mapping], keys: Sequence[str] | None = None, *,
                    title: str = "Accuracy per epoch") -> Figure:
    """Accuracy (%) against epoch for `keys` (default: every logged key containing 'acc')."""
    if keys is None:
        keys = sorted({k for r in rows for k, v in r.items() if "acc" in k and isinstance(v, (int, float))})
    if not keys:
        raise HacmError("accuracy_figure: no accuracy values in the metrics rows")
    fig, ax = _subplots(figsize=(7, 4))
    for key in keys:
        x, y = _series(rows, key, "epoch")
        scale = 100.0 if len(y) and y.max() <= 1.0 else 1.0   # fractions are shown as percent
        ax.plot(x, y * scale, marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def _check_cm(cm, names: Sequence[str]) -> np.ndarray:
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] != len(names):
        raise HacmError(f"confusion matrix: expected [C, C] with C = {len(names)} class names, got {cm.shape}")
    return cm


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    return cm / np.maximum(cm.sum(1, keepdims=True), 1)


def per_class_accuracy(cm, class_names: Sequence[str]) -> dict[str, float]:
    """Recall of each class (diagonal / row sum), in percent; NaN for a class with no sample."""
    cm = _check_cm(cm, class_names)
    totals = cm.sum(1)
    acc = np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1) * 100.0, np.nan)
    return dict(zip(class_names, acc.tolist()))


def per_class_accuracy_figure(cm, class_names: Sequence[str], *, compare=None, labels: Sequence[str] = ("run", "other"),
                              title: str = "Per-class accuracy") -> Figure:
    """Horizontal bars of per-class accuracy (sorted, worst at the bottom); `compare` adds a second run's cm."""
    acc = np.array(list(per_class_accuracy(cm, class_names).values()))
    order = np.argsort(np.nan_to_num(acc, nan=-1.0))
    fig, ax = _subplots(figsize=(7, max(3.0, 0.22 * len(class_names) + 1)))
    y = np.arange(len(class_names))
    h = 0.4 if compare is not None else 0.8
    ax.barh(y + (h / 2 if compare is not None else 0), acc[order], height=h, label=labels[0])
    if compare is not None:
        other = np.array(list(per_class_accuracy(compare, class_names).values()))
        ax.barh(y - h / 2, other[order], height=h, label=labels[1])
        ax.legend(loc="lower right")
    ax.set_yticks(y, [class_names[i] for i in order], fontsize=7)
    ax.set_xlabel("accuracy (%)")
    ax.set_xlim(0, 100)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def confusion_matrix_figure(cm, class_names: Sequence[str], *, normalise: bool = True,
                            title: str = "Confusion matrix") -> Figure:
    """Confusion matrix heatmap; normalise=True shows each true class's row in percent."""
    cm = _check_cm(cm, class_names)
    values = _row_normalise(cm) * 100.0 if normalise else cm
    n = len(class_names)
    size = max(4.0, 0.18 * n + 2)
    fig, ax = _subplots(figsize=(size + 1, size))
    im = ax.imshow(values, cmap="Blues", vmin=0, vmax=100 if normalise else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalise else "count")
    fs = 7 if n <= 30 else 5
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), class_names, fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
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
    n = len(class_names)
    size = max(4.0, 0.18 * n + 2)
    fig, ax = _subplots(figsize=(size + 1, size))
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=f"{labels[0]} - {labels[1]} (percentage points)")
    fs = 7 if n <= 30 else 5
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=fs)
    ax.set_yticks(range(n), class_names, fontsize=fs)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
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


@dataclass
class Table:
    """A small table that renders in notebooks (HTML) and in text (markdown)."""
    columns: list[str]
    rows: list[dict]
    float_format: str = "{:.2f}"

    def _cell(self, v) -> str:
        return self.float_format.format(v) if isinstance(v, float) else "" if v is None else str(v)

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._cell(r.get(c)))}</td>" for c in self.columns)
                       + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self._cell(r.get(c)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_html()


def ablation_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, *,
                   sort_by: str | None = None, descending: bool = True) -> Table:
    """Rows (one per run) as a Table; columns default to every key in first-seen order."""
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if sort_by is not None:
        if sort_by not in columns:
            raise HacmError(f"ablation_table: sort_by {sort_by!r} is not a column ({columns})")
        rows.sort(key=lambda r: (r.get(sort_by) is None, r.get(sort_by)), reverse=descending)
        if descending:   # keep rows without a value last
            rows.sort(key=lambda r: r.get(sort_by) is None)
    return Table(list(columns), rows)


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
    fig, ax = _subplots(figsize=(7, 4))
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
    """Per method: the seeds as dots, their mean as a bar, the 95 % CI (clips x seeds) as an error bar.

    methods: name -> {"values": per-seed accuracies, "mean", "ci": (lo, hi)} in percent, in display order.
    """
    if not methods:
        raise HacmError("method_comparison_figure: no methods given")
    names = list(methods)
    fig, ax = _subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 4))
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
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reconstruction_figure(pred, target, mask, joint_names: Sequence[str], *,
                          title: str = "Masked motion reconstruction") -> Figure:
    """Target, prediction (L2 norm of each token's t_patch*3 values) and per-token MSE on masked tokens.

    pred, target [TP, V, P] (or [TP*V, P] with V = len(joint_names)); mask [TP, V] bool, True = masked.
    """
    V = len(joint_names)
    pred, target = (np.asarray(a, dtype=np.float64) for a in (pred, target))
    if pred.ndim == 2:
        pred, target = pred.reshape(-1, V, pred.shape[-1]), target.reshape(-1, V, target.shape[-1])
    mask = np.asarray(mask, dtype=bool).reshape(pred.shape[:2])
    if pred.shape != target.shape or pred.shape[1] != V:
        raise HacmError(f"reconstruction_figure: pred {pred.shape} and target {target.shape} must be [TP, {V}, P]")
    err = np.where(mask, ((pred - target) ** 2).mean(-1), np.nan)
    panels = [(np.linalg.norm(target, axis=-1), "target |motion| (normalised)", "viridis"),
              (np.linalg.norm(pred, axis=-1), "prediction |motion|", "viridis"),
              (err, f"MSE on masked tokens (mean {np.nanmean(err):.3f})", "magma")]
    fig, axes = _subplots(1, 3, figsize=(14, 0.22 * V + 2), sharey=True)
    for ax, (values, name, cmap) in zip(axes, panels):
        im = ax.imshow(values.T, aspect="auto", cmap=cmap, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time patch")
    axes[0].set_yticks(range(V), joint_names, fontsize=6)
    axes[0].set_ylabel("joint")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
