"""3-D skeleton views (plotly): one clip, animated or a single frame, and a one-sample-per-class gallery.

NTU camera coordinates are x (right), y (up), z (depth, metres). Plotly's 3-D scenes put z up, so
the data's y is drawn on the scene's z axis; axes are labelled with the data's names.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from hacm.errors import HacmError
from hacm.skeleton import BONES, JOINT_NAMES, NUM_JOINTS
from hacm.viz.poincare import status_style

MAX_ANIMATION_FRAMES = 60   # longer clips are subsampled: the HTML grows with every frame


def _as_actors(frames) -> np.ndarray:
    a = np.asarray(frames, dtype=np.float32)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[2:] != (NUM_JOINTS, 3):
        raise HacmError(f"skeleton_figure: expected frames [T, 25, 3] or [A, T, 25, 3], got {np.shape(frames)}")
    present = np.abs(a).reshape(a.shape[0], -1).sum(-1) > 0    # drop an all-zero second actor
    return a[present] if present.any() else a[:1]


def _bone_xyz(actors: np.ndarray, t: int):
    """Bones of all actors at frame t as one polyline with None gaps (plotly x, y, z lists)."""
    xs, ys, zs = [], [], []
    for skel in actors[:, t]:                                                     # [25, 3]
        for child, parent in BONES:
            xs += [skel[child, 0], skel[parent, 0], None]
            ys += [skel[child, 2], skel[parent, 2], None]   # depth on the scene's y
            zs += [skel[child, 1], skel[parent, 1], None]   # up on the scene's z
    return xs, ys, zs


def _frame_traces(actors: np.ndarray, t: int, status: Sequence[str], order: Sequence[str]) -> list:
    xs, ys, zs = _bone_xyz(actors, t)
    traces = [go.Scatter3d(x=xs, y=ys, z=zs, mode="lines", name="bones",
                           line={"color": "#555555", "width": 4}, hoverinfo="skip")]
    for st in order:
        idx = [j for j in range(NUM_JOINTS) if status[j] == st]
        pts = actors[:, t][:, idx]                                                 # [A, n, 3]
        names = [JOINT_NAMES[j] for j in idx] * len(actors)
        style = status_style(st)
        traces.append(go.Scatter3d(
            x=pts[..., 0].ravel(), y=pts[..., 2].ravel(), z=pts[..., 1].ravel(), mode="markers", name=st,
            text=names, hovertemplate="<b>%{text}</b><br>x=%{x:.3f} y=%{z:.3f} z=%{y:.3f} m<extra>" + st + "</extra>",
            marker={"size": 5, "color": style["color"], "symbol": "circle-open" if "masked" in st else "circle",
                    "line": {"color": style["color"], "width": 2}}))
    return traces


def _scene(actors: np.ndarray) -> dict:
    # One cube around the whole clip: equal aspect, and the camera does not jump between frames.
    lo, hi = actors.reshape(-1, 3).min(0), actors.reshape(-1, 3).max(0)
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 0.05) * 1.1
    rng = lambda d: [float(centre[d] - half), float(centre[d] + half)]  # noqa: E731
    return {"xaxis": {"title": "x (m)", "range": rng(0)}, "yaxis": {"title": "z, depth (m)", "range": rng(2)},
            "zaxis": {"title": "y, up (m)", "range": rng(1)}, "aspectmode": "cube",
            "camera": {"eye": {"x": 0.0, "y": -2.0, "z": 0.4}, "up": {"x": 0, "y": 0, "z": 1}}}


def skeleton_figure(frames, status: Sequence[str] | None = None, *, animate: bool = True, frame: int = 0,
                    title: str = "Skeleton", fps: float = 30.0, status_order: Sequence[str] | None = None) -> go.Figure:
    """3-D skeleton of a clip: frames [T, 25, 3] or [A, T, 25, 3] (metres).

    status: one label per joint (25), coloured as in the Poincaré disk ("temporal kept", ...);
    default: all "joint". animate=True adds play/pause and a frame slider (clips longer than
    60 frames are subsampled); animate=False draws frame `frame` only. status_order: joint traces
    to draw, empty ones included (default: the statuses present), for stable FigureWidget updates.
    """
    actors = _as_actors(frames)                                                     # [A, T, 25, 3]
    T = actors.shape[1]
    status = ["joint"] * NUM_JOINTS if status is None else list(status)
    order = list(dict.fromkeys(status)) if status_order is None else list(status_order)
    if len(status) != NUM_JOINTS:
        raise HacmError(f"skeleton_figure: status needs one label per joint (25), got {len(status)}")
    if not 0 <= frame < T:
        raise HacmError(f"skeleton_figure: frame {frame} out of range for a clip of {T} frames")

    shown = np.unique(np.linspace(0, T - 1, min(T, MAX_ANIMATION_FRAMES)).round().astype(int)) if animate else [frame]
    fig = go.Figure(data=_frame_traces(actors, int(shown[0]), status, order))
    fig.update_layout(title=title, scene=_scene(actors), width=640, height=600, template="plotly_white",
                      legend={"title": "joints"}, margin={"l": 0, "r": 0, "t": 50, "b": 0})
    if animate and len(shown) > 1:
        fig.frames = [go.Frame(data=_frame_traces(actors, int(t), status, order), name=str(t)) for t in shown]
        step_ms = 1000.0 / fps * (shown[1] - shown[0])
        play = {"frame": {"duration": step_ms, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
        fig.update_layout(
            updatemenus=[{"type": "buttons", "showactive": False, "x": 0.0, "y": 0.0, "xanchor": "left",
                          "buttons": [{"label": "play", "method": "animate", "args": [None, play]},
                                      {"label": "pause", "method": "animate",
                                       "args": [[None], {"mode": "immediate", "frame": {"duration": 0}}]}]}],
            sliders=[{"currentvalue": {"prefix": "frame "}, "x": 0.15, "len": 0.85, "y": 0.0,
                      "steps": [{"label": str(t), "method": "animate",
                                 "args": [[str(t)], {"mode": "immediate", "frame": {"duration": 0, "redraw": True}}]}
                                for t in shown]}])
    return fig


def classes_gallery(store, classes: Sequence[int] | None = None, *, indices: Sequence[int] | None = None,
                    cols: int = 6, title: str = "One sample per class (front view, middle frame)") -> go.Figure:
    """Front view (x right, y up) of the middle frame of one sample per class, titled by class name.

    store: a hacm.data.store.Store. classes: class indices to show (default all). indices: the
    store sample to show per class (default the first sample of each class).
    """
    classes = list(range(store.num_classes)) if classes is None else list(classes)
    if indices is None:
        labels = np.asarray(store.labels)
        missing = [c for c in classes if not (labels == c).any()]
        if missing:
            raise HacmError(f"classes_gallery: store {store.path} has no sample of classes {missing}")
        indices = [int(np.flatnonzero(labels == c)[0]) for c in classes]
    if len(indices) != len(classes):
        raise HacmError(f"classes_gallery: {len(indices)} indices for {len(classes)} classes")
    cols = max(1, min(cols, len(classes)))
    rows = -(-len(classes) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[store.class_names[c] for c in classes],
                        horizontal_spacing=0.02, vertical_spacing=0.08 / max(rows, 1) * 2)
    for k, i in enumerate(indices):
        actors = _as_actors(store.frames(i))
        mid = actors.shape[1] // 2
        for a, skel in enumerate(actors[:, mid]):
            xs, ys = [], []
            for child, parent in BONES:
                xs += [skel[child, 0], skel[parent, 0], None]
                ys += [skel[child, 1], skel[parent, 1], None]
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"width": 2, "color": ["#1f77b4", "#ff7f0e"][a % 2]},
                                     name=f"actor {a + 1}", showlegend=(k == 0), legendgroup=f"actor {a + 1}",
                                     hovertext=f"{store.names[i]} ({store.class_names[store.labels[i]]})",
                                     hoverinfo="text"),
                          row=k // cols + 1, col=k % cols + 1)
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, scaleanchor="x", scaleratio=1)
    # Each subplot keeps equal aspect against its own x axis.
    for k in range(len(classes)):
        suffix = "" if k == 0 else str(k + 1)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_layout(title=title, height=220 * rows + 80, width=160 * cols + 100, template="plotly_white")
    fig.update_annotations(font_size=10)
    return fig
