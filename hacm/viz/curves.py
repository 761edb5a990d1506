"""Static (matplotlib) figures of data and training runs: clip lengths, loss and learning rate,
accuracy per epoch, masked-motion reconstruction, the curves of several runs overlaid.

Inputs are plain data: clip lengths, metrics rows as written to a run's metrics.jsonl (dicts with
epoch, step, loss, lr, accuracy, ...), reconstruction arrays. Nothing here reads checkpoints or
imports the model.
"""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from hacm.errors import HacmError
from hacm.viz.mpl import subplots


def length_histogram_figure(lengths: Mapping[str, Sequence[int]], *, bins: int = 20,
                            title: str = "Clip lengths") -> Figure:
    """Histogram of clip lengths in frames, one overlaid series per split part (e.g. train / test)."""
    series = {name: np.asarray(v, dtype=float) for name, v in lengths.items() if len(v)}
    if not series:
        raise HacmError("length_histogram_figure: no clip lengths given")
    edges = np.histogram_bin_edges(np.concatenate(list(series.values())), bins=bins)
    fig, ax = subplots(figsize=(7, 3.5))
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
    fig, ax = subplots(figsize=(7, 4))
    plotted = False
    for key in ("loss", "loss_rec", "loss_cc"):
        x, y = _series(rows, key, x_key)
        if len(x):   # markers when there are few points: a single logged step still shows
            ax.plot(x, y, label=key, lw=1.5 if key == "loss" else 1.0, marker="o" if len(x) <= 20 else None, ms=3)
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
    fig, ax = subplots(figsize=(7, 4))
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


def reconstruction_figure(pred, target, mask, joint_names: Sequence[str], *, channels: int = 3,
                          units: str = "m / frame", title: str = "Masked motion reconstruction") -> Figure:
    """Target motion, predicted motion and their distance per token, in the motion's own units.

    pred and target are motion patches in the data's units ([TP, V, t_patch*channels], or
    [TP*V, t_patch*channels] with V = len(joint_names)): a model's normalised predictions go back
    through hacm.model.denormalise_tokens first, so that a token's colour is how fast its joint
    moves, not its deviation from its own mean. Each cell shows the joint's mean speed over the
    token's frames (the length of its per-frame motion vector); the third panel the mean length of
    the difference between predicted and true motion vectors. Target and prediction share one
    colour scale and one colour bar. Kept (visible) tokens are not predicted: grey and hatched in
    the prediction and error panels. mask [TP, V] bool, True = masked.
    """
    V = len(joint_names)
    pred, target = (np.asarray(a, dtype=np.float64) for a in (pred, target))
    if pred.ndim == 2:
        pred, target = pred.reshape(-1, V, pred.shape[-1]), target.reshape(-1, V, target.shape[-1])
    if pred.shape != target.shape or pred.shape[1] != V or pred.shape[-1] % channels:
        raise HacmError(f"reconstruction_figure: pred {pred.shape} and target {target.shape} must be "
                        f"[TP, {V}, t_patch*{channels}]")
    mask = np.asarray(mask, dtype=bool).reshape(pred.shape[:2])

    def speed(patches):   # [TP, V, t_patch*C] -> mean over the token's frames of |per-frame vector|
        return np.linalg.norm(patches.reshape(*patches.shape[:2], -1, channels), axis=-1).mean(-1)

    target_speed = speed(target)
    pred_speed = np.where(mask, speed(pred), np.nan)
    err = np.where(mask, speed(pred - target), np.nan)
    shown = np.concatenate([target_speed.ravel(), pred_speed[mask]])
    scale = {"vmin": float(shown.min()), "vmax": float(shown.max())}
    panels = [(target_speed, f"target: joint speed ({units})", "viridis", scale),
              (pred_speed, f"prediction on masked tokens ({units})", "viridis", scale),
              (err, f"|prediction - target| (mean {np.nanmean(err):.3g} {units})", "magma", {"vmin": 0.0})]
    fig, axes = subplots(1, 3, figsize=(14, 0.22 * V + 2.4), sharey=True, layout="constrained")
    images = []
    for ax, (values, name, cmap, limits) in zip(axes, panels):
        images.append(ax.imshow(values.T, aspect="auto", cmap=cmap, interpolation="nearest", **limits))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("time patch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_facecolor("#d9d9d9")   # NaN cells (kept tokens) show the axes background
    for ax in axes[1:]:
        _hatch_kept(ax, ~mask)
    fig.colorbar(images[0], ax=list(axes[:2]), fraction=0.03, pad=0.02, label=f"joint speed ({units}), both panels")
    fig.colorbar(images[2], ax=axes[2], fraction=0.046, pad=0.02, label=f"error ({units})")
    axes[0].set_yticks(range(V), joint_names, fontsize=6)
    axes[0].set_ylabel("joint")
    fig.legend(handles=[Patch(facecolor="#d9d9d9", hatch="///", edgecolor="#737373",
                              label="kept (visible) token: not predicted")], loc="upper right", fontsize=8)
    fig.suptitle(f"{title}: {int(mask.sum())} of {mask.size} tokens masked")
    return fig


def _hatch_kept(ax, kept: np.ndarray) -> None:
    """Hatch the cells of kept tokens ([TP, V] bool) on an image drawn as values.T."""
    for t, v in zip(*np.nonzero(kept)):
        ax.add_patch(Rectangle((t - 0.5, v - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#737373", lw=0))
_LINESTYLES = ("-", "--", ":", "-.")
# Panel titles of the metrics whose key alone does not say what they are.
METRIC_TITLES = {"loss": "loss: the weighted total (legend: its formula)",
                 "loss_rec": "L_rec: masked-motion reconstruction (MSE)",
                 "loss_cc": "L_cc: cross-contrast (runs that train it)"}


def _colour_group(name: str) -> str:
    """Runs that differ only in their seed share a colour: the name without its seed<k> part."""
    return re.sub(r"(^|/)seed\d+(?=/|$)", "", name) or name


def run_curves_figure(curves: Mapping[str, Sequence[Mapping]], metrics: Sequence[str], *,
                      title: str = "Runs compared", notes: Mapping[str, str | None] | None = None) -> Figure:
    """One panel per metric (shared epoch axis), one line per run: {run name: its epoch records}.

    Accuracies (keys with "acc", fractions) are shown in %. Runs that differ only in their seed
    share a colour and differ in line style. Metrics no run logged are left out. `notes` adds a
    run's note to its legend entry (hacm.compare.loss_formula: what its `loss` is)."""
    shown = [m for m in metrics if any(len(_series(rows, m, "epoch")[0]) for rows in curves.values())]
    if not shown:
        raise HacmError(f"run_curves_figure: no run logged any of {list(metrics)} per epoch")
    groups = list(dict.fromkeys(_colour_group(n) for n in curves))
    colours = matplotlib.colormaps["tab10" if len(groups) <= 10 else "tab20"]
    fig, axes = subplots(1, len(shown), figsize=(4.2 * len(shown) + 2.8, 3.8), sharex=True, squeeze=False)
    seen: dict[str, int] = {}
    handles = {}
    for name, rows in curves.items():
        group = _colour_group(name)
        style = _LINESTYLES[seen.get(group, 0) % len(_LINESTYLES)]
        seen[group] = seen.get(group, 0) + 1
        for ax, metric in zip(axes[0], shown):
            x, y = _series(rows, metric, "epoch")
            if len(x):
                (handles[name],) = ax.plot(x, 100 * y if "acc" in metric else y, ls=style, lw=1.2, marker="o",
                                           ms=2.5, color=colours(groups.index(group) % colours.N))
    for ax, metric in zip(axes[0], shown):
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{metric} (%)" if "acc" in metric else metric)
        ax.grid(alpha=0.3)
    labels = [f"{name}: {notes[name]}" if notes and notes.get(name) else name for name in handles]
    fig.legend(list(handles.values()), labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
