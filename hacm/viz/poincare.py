"""The Poincaré disk view: token points of one time patch drawn so that distances from the origin stay true.

The model's points live in a D-dimensional Poincaré ball (D = 256). The disk keeps exactly one
quantity faithful: each point's geodesic distance from the origin (`dist0`), which is what the
hierarchy criterion reads as depth in the skeleton tree. The direction comes from a 2-D PCA of
the tangent vectors at the origin (`logmap0`); the radius is chosen so that the 2-D point, a
point of the unit disk (curvature 1), has the same `dist0` as the D-dimensional point. With
geoopt's conventions `dist0(expmap0(v)) = 2 |v|` for every curvature, so the 2-D point is
`expmap0` of a tangent vector of norm `dist0 / 2`. Bones are drawn as hyperbolic geodesics of the
disk (geoopt's `PoincareBall.geodesic`), i.e. circle arcs orthogonal to the boundary.

For the Euclidean ablation there is no disk: the same construction on the plane places each point
at its L2 norm, and bones are straight segments.
"""
from __future__ import annotations

import math
from typing import Sequence

import geoopt
import numpy as np
import plotly.graph_objects as go
import torch

from hacm.errors import HacmError
from hacm.viz.fit import title_margin, wrap_title

GEODESIC_SAMPLES = 32   # points per drawn geodesic arc
LABEL_PX = 9            # label font size (px)
# Label boxes, in px: a character is at most 0.62 em wide in the sans-serif fonts Chromium uses
# (DejaVu Sans, the widest, averages 0.55 em on joint names); the text starts 3 px past the marker.
LABEL_CHAR_EM, LABEL_GAP_PX, MARKER_PX = 0.62, 3, 11
# Room (px) the disk figure keeps around its plot area for the y tick labels and axis title (left)
# and the x axis title and the three-row legend below (bottom); the title's is
# hacm.viz.fit.title_margin. The label boxes are sized for the plot area this leaves, so the room is
# generous: were plotly's automargin to grow it, the disk would be drawn smaller and labels sized
# for the larger disk could touch (tests/test_browser_explorer.py measures them in Chromium).
LEFT_PX, RIGHT_PX, BOTTOM_PX = 70, 20, 150
# Deeper points are drawn at this distance from the origin (radius 1 - 6.7e-4: on the rim at any
# screen resolution), so that two drawn points are at most 16 apart and geoopt's disk geodesics stay
# exact (its artanh clamps at distance 16.8); hover texts give the true dist0.
MAX_DRAWN_DIST0 = 8.0
# the drawn disk: unit circle, curvature 1, exact in float64 (a float c goes through a float32 softplus)
_DISK = geoopt.PoincareBall(c=torch.tensor(1.0, dtype=torch.float64))

# Colours by branch (hue) and kept/masked (filled/open marker); shared with the 3-D skeleton view.
BRANCH_COLOURS = {
    "temporal": "#1f77b4",   # even time patches, attention criterion
    "spatial": "#d62728",    # odd time patches, hierarchy criterion
    "single": "#2ca02c",     # one branch over all patches (no cross grouping)
    "trunk": "#7f7f7f",      # trunk joints and their mean, the parent point (not tokens)
    "joint": "#1f3b73",      # plain skeleton views without masking
}


def status_style(status: str) -> dict:
    """Marker style for a status label "<branch> kept" / "<branch> masked" / "trunk ..."."""
    branch = status.split()[0]
    colour = BRANCH_COLOURS.get(branch, "#9467bd")
    masked = status.endswith("masked")
    symbol = "diamond" if "parent" in status else "circle-open" if masked else "circle"
    return {"color": colour, "symbol": symbol,
            "line": {"color": colour, "width": 2}}


def _as_float64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, torch.Tensor) else a),
                           dtype=torch.float64)


def pca_basis(tangents) -> np.ndarray:
    """Two principal directions [D, 2] of tangent vectors [N, D] at the origin (uncentred PCA).

    Uncentred because the origin is meaningful (the root of the hierarchy): the plane is the one
    through the origin that keeps most of the vectors' energy. Signs are fixed (largest loading
    positive) so the picture does not flip between time patches that share one basis.
    """
    t = _as_float64(tangents).reshape(-1, np.shape(tangents)[-1])
    if t.shape[-1] < 2:
        raise HacmError(f"pca_basis: need at least 2 dimensions, got {t.shape[-1]}")
    _, _, vh = torch.linalg.svd(t, full_matrices=False)
    basis = vh[:2].T.clone()                                                       # [D, 2]
    largest = basis.abs().argmax(0)
    basis *= torch.sign(basis[largest, torch.arange(2)])
    return basis.numpy()


def disk_layout(tangents, dist0, *, geometry: str = "poincare", basis=None) -> np.ndarray:
    """Tokens -> 2-D positions [V, 2] with the same distance from the origin.

    tangents [V, D]: the tokens' Euclidean embeddings, i.e. tangent vectors at the origin (their
    direction is the point's direction); dist0 [V]: their distance from the origin in the model's
    geometry (`geometry.dist0(geometry.points(e))`, exact in float64). Poincaré: positions in the
    unit disk (curvature 1) with that dist0 (up to MAX_DRAWN_DIST0). Euclidean: plane positions
    with that norm. `basis`
    [D, 2] fixes the projection (default: `pca_basis` of `tangents`).
    """
    tangent = _as_float64(tangents)
    if tangent.ndim != 2:
        raise HacmError(f"disk_layout: expected tangents [V, D], got shape {tuple(tangent.shape)}")
    d0 = _as_float64(dist0).reshape(-1)                                            # [V]
    if d0.shape[0] != tangent.shape[0]:
        raise HacmError(f"disk_layout: {tangent.shape[0]} tangents but {d0.shape[0]} distances")
    basis = _as_float64(pca_basis(tangent) if basis is None else basis)            # [D, 2]
    proj = tangent @ basis                                                         # [V, 2]
    norm = proj.norm(dim=-1, keepdim=True)
    # A point whose tangent is orthogonal to the plane (or the origin itself) has no direction;
    # any direction is faithful for its distance, so use the first axis.
    direction = torch.where(norm > 1e-12, proj / norm.clamp_min(1e-12), torch.tensor([1.0, 0.0], dtype=torch.float64))
    if geometry == "poincare":
        return _DISK.expmap0(direction * (d0.clamp_max(MAX_DRAWN_DIST0) / 2).unsqueeze(-1), project=False).numpy()
    return (direction * d0.unsqueeze(-1)).numpy()


def orient_layout(layout, *, down: Sequence[int], left: Sequence[int] = (), right: Sequence[int] = ()) -> np.ndarray:
    """Rotate (and mirror) a layout [..., n, 2] about the origin into one fixed orientation.

    PCA fixes a plane, not its orientation: the sign convention of `pca_basis` follows the largest
    loading, which changes from clip to clip, so the same skeleton could appear mirrored or turned.
    Here the mean position of the nodes `down` (e.g. the parent point of every time patch) is turned
    to point straight down, and the picture is mirrored so that the nodes `left` lie left of the
    nodes `right` on average. Rotations and reflections about the origin are isometries of the
    disk and of the plane: every distance, dist0 included, is unchanged.
    """
    xy = np.asarray(layout, dtype=np.float64)
    nodes = xy.reshape(-1, xy.shape[-2], 2)                                         # [B, n, 2]
    ref = nodes[:, list(down)].reshape(-1, 2).mean(0)
    angle = math.atan2(ref[1], ref[0]) if np.hypot(*ref) > 1e-12 else -math.pi / 2
    turn = -math.pi / 2 - angle                                                     # ref -> straight down
    rot = np.array([[math.cos(turn), -math.sin(turn)], [math.sin(turn), math.cos(turn)]])
    out = xy @ rot.T
    if left and right:
        flat = out.reshape(-1, xy.shape[-2], 2)
        if flat[:, list(left), 0].mean() > flat[:, list(right), 0].mean():
            out = out * np.array([-1.0, 1.0])
    return out


def recentre(layout, centre, *, geometry: str = "poincare") -> np.ndarray:
    """Move `centre` [2] to the origin: layout [..., 2] -> (-centre) (+) layout, geoopt's Möbius
    addition on the drawn disk (curvature 1), an isometry of the disk; a translation on the plane."""
    xy, c = _as_float64(layout), _as_float64(centre)
    if geometry != "poincare":
        return (xy - c).numpy()
    return _DISK.mobius_add(-c.expand_as(xy), xy, project=False).numpy()


def rescale(layout, factor: float) -> np.ndarray:
    """Radial rescale of disk positions [..., 2]: factor (x) layout, geoopt's Möbius scalar
    multiplication, which multiplies every point's distance from the origin by `factor` and keeps
    its direction (factor < 1 pulls points off the rim)."""
    if not factor > 0:
        raise HacmError(f"rescale: factor must be positive, got {factor!r}")
    xy = _as_float64(layout)
    return _DISK.mobius_scalar_mul(torch.tensor(float(factor), dtype=torch.float64), xy, project=False).numpy()


def disk_midpoint(points) -> np.ndarray:
    """geoopt's weighted (Einstein) midpoint [2] of disk points [n, 2]: a Fréchet-mean-like centre."""
    return _DISK.weighted_midpoint(_as_float64(points), reducedim=[0], project=False).numpy()


def label_boxes(xy, labels: Sequence[str], *, char_width: float, height: float,
                offset: float = 0.0) -> list[tuple[float, float, float, float]]:
    """(x0, x1, y0, y1) of each point's label box (data units), on the side away from the origin
    (`label_sides`): from the point to the end of its text, which starts `offset` from the point and
    is `len(label) * char_width` wide; `height` high."""
    xy = np.asarray(xy, dtype=np.float64)
    boxes = []
    for (x, y), side, label in zip(xy, label_sides(xy), labels):
        w = offset + len(label) * char_width
        x0 = x if side == "middle right" else x - w
        boxes.append((x0, x0 + w, y - height / 2, y + height / 2))
    return boxes


def visible_labels(xy, labels: Sequence[str], priority: Sequence[int], *, char_width: float,
                   height: float, offset: float = 0.0) -> list[bool]:
    """Which labels to print so that no two printed labels overlap (the others stay on hover).

    Boxes as `label_boxes`; labels are placed greedily in `priority` order (a permutation of the
    indices, most important first).
    """
    all_boxes = label_boxes(xy, labels, char_width=char_width, height=height, offset=offset)
    boxes: list[tuple[float, float, float, float]] = []
    shown = [False] * len(all_boxes)
    for i in priority:
        box = all_boxes[i]
        if all(box[1] <= b[0] or b[1] <= box[0] or box[3] <= b[2] or b[3] <= box[2] for b in boxes):
            boxes.append(box)
            shown[i] = True
    return shown


def label_sides(xy) -> list[str]:
    """Plotly textposition of each point's label: outwards, to the right of points right of the origin."""
    return ["middle right" if x >= 0 else "middle left" for x in np.asarray(xy, dtype=np.float64)[:, 0]]


def disk_dist0(layout) -> np.ndarray:
    """dist0 of 2-D disk positions [V, 2] (curvature 1): the number the layout keeps faithful."""
    return _DISK.dist0(_as_float64(layout)).numpy()


def geodesic_arc(a, b, samples: int = GEODESIC_SAMPLES) -> np.ndarray:
    """Points [samples, 2] of the disk geodesic from a [2] to b [2] (geoopt), endpoints included,
    evenly spaced along it."""
    t = torch.linspace(0.0, 1.0, samples, dtype=torch.float64).unsqueeze(-1)      # [S, 1]
    return _DISK.geodesic(t, _as_float64(a), _as_float64(b)).numpy()


def poincare_disk_figure(layout, labels: Sequence[str], *, status: Sequence[str],
                         edges: Sequence[tuple[int, int]] = (), dist0=None, scores=None,
                         status_order: Sequence[str] | None = None, label_priority: Sequence[int] | None = None,
                         geometry: str = "poincare", title: str = "Token points in the Poincaré disk",
                         axis_note: str = "PCA of logmap0", size: tuple[int, int] = (640, 600)) -> go.Figure:
    """Disk figure: points `layout` [V, 2] named `labels`, one legend entry per `status` label.

    status: per point "<branch> kept|masked" (branch: temporal, spatial, single) or "trunk ..."
    (see `status_style`). edges: (child, parent) index pairs drawn as geodesics (Poincaré) or
    segments (Euclidean). dist0 / scores [V]: shown on hover (NaN score -> "n/a").
    status_order: the point traces to draw, in order, empty ones included (default: the statuses
    present); a fixed order keeps the trace count stable, so a FigureWidget updates in place.
    label_priority: point indices, most important label first; a label that would overlap one
    printed before it is left to the hover text (`visible_labels`). axis_note: how the plane was
    made, in the axis titles. size: (width, height) px of the figure, for which the labels are
    placed (at another size, make the figure again).
    """
    xy = np.asarray(layout, dtype=np.float64)
    n = len(xy)
    if xy.shape != (n, 2) or len(labels) != n or len(status) != n:
        raise HacmError(f"poincare_disk_figure: layout [V, 2], labels and status must agree, got "
                        f"{xy.shape}, {len(labels)} labels, {len(status)} status entries")
    dist0 = np.full(n, np.nan) if dist0 is None else np.asarray(dist0, dtype=np.float64)
    scores = np.full(n, np.nan) if scores is None else np.asarray(scores, dtype=np.float64)
    poincare = geometry == "poincare"
    fig = go.Figure()

    # The boundary trace is always there (hidden on the plane): the same traces in both geometries,
    # so a FigureWidget switching between them is restyled in place.
    theta = np.linspace(0, 2 * np.pi, 181)
    fig.add_trace(go.Scatter(x=np.cos(theta) if poincare else [], y=np.sin(theta) if poincare else [],
                             mode="lines", name="boundary |x| = 1" if poincare else "no boundary (plane)",
                             visible=poincare, showlegend=poincare, line={"color": "black", "width": 1.5},
                             hoverinfo="skip"))

    # All bones in one trace, arcs separated by None (one legend entry, cheap to update).
    ex, ey = [], []
    for child, parent in edges:
        seg = geodesic_arc(xy[child], xy[parent]) if poincare else xy[[child, parent]]
        ex += list(seg[:, 0]) + [None]
        ey += list(seg[:, 1]) + [None]
    fig.add_trace(go.Scatter(x=ex, y=ey, mode="lines", hoverinfo="skip", line={"color": "#aaaaaa", "width": 1.5},
                             name="kinematic tree (geodesics)" if poincare else "kinematic tree"))

    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="origin",
                             marker={"symbol": "x", "color": "black", "size": 8}, hoverinfo="name"))

    half = 1.08 if poincare else max(1e-6, float(np.abs(xy).max())) * 1.1      # half the axis span
    width, height = size
    title = wrap_title(title, width)
    top = title_margin(title)
    # equal axis scales: the shorter side of the plot area spans the axis range
    px = min(width - LEFT_PX - RIGHT_PX, height - top - BOTTOM_PX) / (2 * half)     # px per data unit
    printed = visible_labels(xy, labels, range(n) if label_priority is None else label_priority,
                             char_width=LABEL_CHAR_EM * LABEL_PX / px, height=max(MARKER_PX, 1.4 * LABEL_PX) / px,
                             offset=(MARKER_PX / 2 + LABEL_GAP_PX) / px)
    sides = label_sides(xy)
    for st in (dict.fromkeys(status) if status_order is None else status_order):
        idx = [i for i in range(n) if status[i] == st]
        score_txt = ["n/a" if np.isnan(scores[i]) else f"{scores[i]:.4g}" for i in idx]
        fig.add_trace(go.Scatter(
            x=xy[idx, 0], y=xy[idx, 1], mode="markers+text", name=st, cliponaxis=False,
            text=[labels[i] if printed[i] else "" for i in idx], textposition=[sides[i] for i in idx],
            textfont={"size": LABEL_PX}, marker={"size": MARKER_PX, **status_style(st)},
            customdata=np.stack([dist0[idx], np.array(score_txt, dtype=object),
                                 np.array([labels[i] for i in idx], dtype=object)], axis=-1),
            hovertemplate="<b>%{customdata[2]}</b><br>" + st + "<br>dist0 = %{customdata[0]:.3f}"
                          "<br>score = %{customdata[1]}<extra></extra>"))

    where = "disk" if poincare else "plane"
    x_title = f"{where} x ({axis_note})" if axis_note else f"{where} x"
    axis = {"range": [-half, half], "zeroline": not poincare, "title": x_title}
    yaxis = {**axis, "title": f"{where} y", "scaleanchor": "x", "scaleratio": 1}
    fig.update_layout(title=title, xaxis=axis, yaxis=yaxis, width=width, height=height, template="plotly_white",
                      # the legend's title above its entries: beside them it pushed the last entry out of a
                      # narrow figure
                      legend={"title": {"text": "token (branch, kept/masked)", "side": "top"}, "orientation": "h",
                              "yanchor": "top", "y": -0.12},
                      margin={"t": top, "l": LEFT_PX, "r": RIGHT_PX, "b": BOTTOM_PX})
    return fig


def radius_figure(dist0: dict[str, np.ndarray], *, clip_lines: dict[str, float] | None = None,
                  title: str = "Distance from the origin of every token of the clip") -> go.Figure:
    """Histograms of dist0 (geodesic distance from the origin: depth in the hierarchy) per kind of
    point ("tokens", "trunk joints", ...). clip_lines: label -> dist0 beyond which a projection
    would put points on one sphere (e.g. geoopt's float32 eps), drawn as vertical lines."""
    if not dist0:
        raise HacmError("radius_figure: no distances given")
    fig = go.Figure()
    for name, values in dist0.items():
        v = np.asarray(values, dtype=np.float64).ravel()
        fig.add_trace(go.Histogram(x=v, name=f"{name} ({v.size})", opacity=0.7, nbinsx=40))
    for label, x in (clip_lines or {}).items():
        fig.add_vline(x=x, line={"color": "#b03a2e", "dash": "dash"}, annotation_text=label,
                      annotation_textangle=-90, annotation_position="top left")
    fig.update_layout(title=title, barmode="overlay", template="plotly_white", width=640, height=420,
                      xaxis={"title": "dist0 (geodesic distance from the origin)"}, yaxis={"title": "points"},
                      legend={"title": "point"})
    return fig
