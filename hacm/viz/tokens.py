"""The token grid: one (time patch x joint) heatmap per masking criterion, kept tokens marked.

Colour is each token's keep probability relative to random masking, log10(p * L_b) for a token of
a branch of L_b tokens: exactly what the Gumbel-Max sampler draws from at the current tau and
normalisation (0 = as likely as under random masking), so panels of different criteria and
normalisations share one scale. Hover shows the raw criterion score too.
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
    scores: np.ndarray | None        # [TP, V] raw criterion scores; None = random masking
    log_ratio: np.ndarray | None = None   # [TP, V] log10(keep probability / random's); None = 0


def token_grid_figure(panels: Sequence[TokenPanel], joint_names: Sequence[str], *, t_patch: int | None = None,
                      cols: int = 3, title: str = "Kept tokens per masking criterion") -> go.Figure:
    """Heatmaps (x: time patch, y: joint) of relative keep probabilities, kept tokens marked."""
    if not panels:
        raise HacmError("token_grid_figure: no panels given")
    V = len(joint_names)
    for p in panels:
        if np.shape(p.kept)[1:] != (V,) or any(a is not None and np.shape(a) != np.shape(p.kept)
                                                   for a in (p.scores, p.log_ratio)):
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
        z = (np.zeros(kept.shape) if p.log_ratio is None else np.asarray(p.log_ratio, dtype=np.float64)).T   # [V, TP]
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
            # Black open squares: visible on both ends of the diverging scale and on its white middle.
            marker={"symbol": "square-open", "color": "black", "size": 9, "line": {"width": 2.5}},
            hoverinfo="skip"), row=r, col=c)
        fig.update_xaxes(title_text="time patch" + frames_txt, range=[-0.5, TP - 0.5], row=r, col=c)
    fig.update_yaxes(autorange="reversed", tickmode="array", tickvals=list(names), tickfont={"size": 10})
    fig.update_yaxes(title_text="joint", col=1)
    # symmetric around "as random"; at least a factor 2 either way so near-random panels look flat
    lim = max([math.log10(2.0)] + [float(np.abs(p.log_ratio).max()) for p in panels if p.log_ratio is not None])
    fig.update_layout(title=title, template="plotly_white", height=max(420, 380 * rows), width=max(700, 430 * cols),
                      coloraxis={"colorscale": "RdBu_r", "cmin": -lim, "cmax": lim,
                                 "colorbar": {"title": "keep probability<br>vs random (log10)"}},
                      legend={"orientation": "h", "y": -0.12})
    return fig


def keep_spread_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], *, tau: float | None = None,
                       title: str = "Keep-probability spread against tau") -> go.Figure:
    """Lines of max p / min p (log y) against tau (log x): how far each criterion's masks are from
    random masking. curves: "criterion (normalisation)" -> (taus [K], spreads [K]); names ending in
    "(release)" are dashed. `tau` marks the current value."""
    if not curves:
        raise HacmError("keep_spread_figure: no curves given")
    fig = go.Figure()
    for name, (taus, spreads) in curves.items():
        fig.add_trace(go.Scatter(x=np.asarray(taus), y=np.asarray(spreads), mode="lines", name=name,
                                 line={"dash": "dash" if name.endswith("(release)") else "solid"},
                                 hovertemplate="tau %{x:.3g}<br>max p / min p %{y:.3g}<extra>" + name + "</extra>"))
    if tau is not None:
        fig.add_vline(x=tau, line={"color": "gray", "dash": "dot"}, annotation_text=f"tau = {tau:.2g}")
    fig.add_hline(y=1.0, line={"color": "black", "width": 1}, annotation_text="random masking",
                  annotation_position="bottom right")
    fig.update_layout(title=title, template="plotly_white", width=640, height=420,
                      xaxis={"type": "log", "title": "Gumbel temperature tau"},
                      yaxis={"type": "log", "title": "max p / min p within a branch"},
                      legend={"title": "criterion (normalisation)"})
    return fig
