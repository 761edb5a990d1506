"""The token grid: one (time patch x joint) heatmap per masking criterion, kept tokens marked.

Colour is each token's score divided by the largest |score| of its branch, the exact quantity the
Gumbel-Max sampler divides by tau (method.md 6), so panels of different criteria share one scale
and the colour spread says how far from uniform the sampling can be. Hover shows the raw score.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hacm.errors import HacmError


@dataclass
class TokenPanel:
    title: str                       # e.g. "hierarchy (spatial)"
    kept: np.ndarray                 # [TP, V] bool, True = token kept (visible to the encoder)
    scores: np.ndarray | None        # [TP, V] raw criterion scores; None = uniform (random masking)
    branch: np.ndarray | None = None  # [TP] branch id of each time patch (normalisation groups); None = one


def normalised_scores(scores: np.ndarray, branch: np.ndarray | None) -> np.ndarray:
    """scores [TP, V] / max |score| of each branch's patches -> values in [-1, 1] (0 for all-zero)."""
    s = np.asarray(scores, dtype=np.float64)
    branch = np.zeros(len(s), dtype=int) if branch is None else np.asarray(branch)
    out = np.zeros_like(s)
    for b in np.unique(branch):
        rows = branch == b
        scale = np.abs(s[rows]).max()
        out[rows] = s[rows] / scale if scale > 0 else 0.0
    return out


def token_grid_figure(panels: Sequence[TokenPanel], joint_names: Sequence[str], *, t_patch: int | None = None,
                      cols: int = 3, title: str = "Kept tokens per masking criterion") -> go.Figure:
    """Heatmaps (x: time patch, y: joint) of normalised scores, kept tokens as black squares."""
    if not panels:
        raise HacmError("token_grid_figure: no panels given")
    V = len(joint_names)
    for p in panels:
        if np.shape(p.kept)[1:] != (V,) or (p.scores is not None and np.shape(p.scores) != np.shape(p.kept)):
            raise HacmError(f"token_grid_figure: panel {p.title!r} needs kept/scores [TP, {V}], got "
                            f"{np.shape(p.kept)} / {None if p.scores is None else np.shape(p.scores)}")
    cols = max(1, min(cols, len(panels)))
    rows = math.ceil(len(panels) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[p.title for p in panels], shared_yaxes=True,
                        horizontal_spacing=0.03, vertical_spacing=0.12 if rows > 1 else 0.0)
    names = np.array(joint_names, dtype=object)
    frames_txt = "" if t_patch is None else f" (frames {t_patch} each)"
    for k, p in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        kept = np.asarray(p.kept, dtype=bool)
        TP = kept.shape[0]
        raw = np.zeros(kept.shape) if p.scores is None else np.asarray(p.scores, dtype=np.float64)
        z = normalised_scores(raw, p.branch).T                                      # [V, TP]
        hover_score = np.full(kept.shape, "uniform", dtype=object) if p.scores is None else \
            np.vectorize(lambda v: f"{v:.4g}", otypes=[object])(raw)
        status = np.where(kept, "kept", "masked")
        custom = np.stack([hover_score.T, status.T], axis=-1)                       # [V, TP, 2]
        fig.add_trace(go.Heatmap(
            z=z, x=np.arange(TP), y=names, coloraxis="coloraxis", customdata=custom, name=p.title,
            hovertemplate="time patch %{x}<br>%{y}<br>score %{customdata[0]}<br>%{customdata[1]}<extra>"
                          + p.title + "</extra>"), row=r, col=c)
        t_idx, v_idx = np.nonzero(kept)
        fig.add_trace(go.Scatter(
            x=t_idx, y=names[v_idx], mode="markers", name="kept token", legendgroup="kept", showlegend=(k == 0),
            # Magenta open squares: visible on both ends of Viridis (and in the legend).
            marker={"symbol": "square-open", "color": "#ff1493", "size": 9, "line": {"width": 2.5}},
            hoverinfo="skip"), row=r, col=c)
        fig.update_xaxes(title_text="time patch" + frames_txt, range=[-0.5, TP - 0.5], row=r, col=c)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(names), tickfont={"size": 10})
    fig.update_yaxes(title_text="joint", col=1)
    fig.update_layout(title=title, template="plotly_white", height=max(420, 380 * rows), width=max(700, 430 * cols),
                      coloraxis={"colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0,
                                 "colorbar": {"title": "score / max|score|<br>(per branch)"}},
                      legend={"orientation": "h", "y": -0.12})
    return fig
