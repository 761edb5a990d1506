"""Explorer views over many clips: where each criterion keeps tokens, and whether the embedding's depth
follows the skeleton tree.

One clip's mask is one Gumbel draw; what a criterion prefers only shows over many clips:
  - keep frequency: for every (time patch, joint) token, how often the criterion kept it, over the
    sequences (actors of clips) and a few draws each, relative to uniform masking with the same
    number of kept tokens per branch. A uniformity test says whether the map is flat within noise:
    under uniform masking a branch of L tokens keeping k per draw keeps each token with q = k / L,
    the counts O of n draws have covariance n q (1 - q) L / (L - 1) (I - 11'/L), so
    (L - 1) / L * sum (O - n q)^2 / (n q (1 - q)) is chi-square with L - 1 degrees of freedom;
    branches add.
  - depth: HA-CM's hierarchy criterion reads a token's place in the skeleton hierarchy from its
    hyperbolic distances. Here each joint's distance from the origin and from its time patch's
    parent point (the trunk mean), averaged over time patches, is set against its kinematic depth
    (bones from the spine base, hacm.skeleton.DEPTH), with Spearman's rank correlation and an
    interval that resamples whole clips (hacm.stats.spearman_by_cluster).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from scipy import stats as sps

from hacm.errors import HacmError
from hacm.skeleton import DEPTH, JOINT_NAMES, TRUNK_JOINTS
from hacm.stats import RankCorrelation, spearman_by_cluster
from hacm.viz.overlap import keep_chance


@dataclass(frozen=True)
class KeepFrequency:
    title: str                 # the panel: criterion and strategy
    kept: np.ndarray           # [TP, V] draws that kept each token
    draws: int                 # sequences x draws per sequence
    chance: np.ndarray         # [TP, V] keep probability of uniform masking with the same per-branch counts
    chi2: float                # uniformity statistic (module docstring)
    df: int
    p: float

    @property
    def ratio(self) -> np.ndarray:
        """[TP, V] keep frequency / uniform masking's (1 = as often as random)."""
        return self.kept / (self.draws * self.chance)

    def describe(self) -> str:
        p = "p < 1e-10" if self.p < 1e-10 else f"p = {self.p:.2g}"
        verdict = "flat within noise" if self.p >= 0.05 else "not uniform"
        return f"{self.title}: chi2 {self.chi2:.0f} on {self.df} df, {p} ({verdict})"


def keep_frequency(masks: Sequence[torch.Tensor | np.ndarray], patches: Sequence, title: str) -> KeepFrequency:
    """Keep counts of masks ([S, TP, V] bool each, True = masked; every draw of one masking config,
    branches `patches` as MaskInfo.patches) and their uniformity test."""
    mask = np.concatenate([np.asarray(m, dtype=bool) for m in masks])            # [n, TP, V]
    if mask.ndim != 3 or not len(mask):
        raise HacmError(f"keep_frequency: expected masks [S, TP, V] of at least one sequence, got {mask.shape}")
    n = mask.shape[0]
    kept = (~mask).sum(0).astype(float)                                            # [TP, V]
    chance = keep_chance(mask[0], patches)
    chi2, df = 0.0, 0
    for p in patches:
        p = np.asarray(p)
        observed, q = kept[p].ravel(), float(chance[p].ravel()[0])
        if 0.0 < q < 1.0:
            length = observed.size
            chi2 += (length - 1) / length * float(((observed - n * q) ** 2).sum()) / (n * q * (1 - q))
            df += length - 1
    return KeepFrequency(title, kept, n, chance, chi2, df, float(sps.chi2.sf(chi2, df)) if df else 1.0)


@dataclass(frozen=True)
class DepthCorrelation:
    joints: np.ndarray         # [S, J] joint index of each point
    dist0: np.ndarray          # [S, J] distance from the origin, mean over time patches
    to_parent: np.ndarray      # [S, J] distance from the time patch's parent point, mean over time patches
    origin: RankCorrelation    # kinematic depth against dist0
    parent: RankCorrelation    # kinematic depth against to_parent


@torch.no_grad()
def depth_correlation(tokens: torch.Tensor, trunk: torch.Tensor, token_joints: Sequence[int], geometry, *,
                      clips: np.ndarray | None = None, reps: int = 2_000, seed: int = 0) -> DepthCorrelation:
    """tokens [S, TP, V, D] and trunk [S, TP, 7, D] embeddings (MaskInfo's) of S sequences -> every
    joint's distances in `geometry` against its kinematic depth. Joints: the tokens, then the trunk
    joints that are not tokens (every joint once). clips [S]: the clip of each sequence (the two
    actors of a clip are resampled together; default: every sequence its own clip)."""
    extra = [j for j in TRUNK_JOINTS if j not in token_joints]
    emb = torch.cat([tokens, trunk[:, :, [TRUNK_JOINTS.index(j) for j in extra]]], 2)   # [S, TP, J, D]
    points = geometry.points(emb)
    parent = geometry.points(trunk.mean(-2)).unsqueeze(-2)                          # [S, TP, 1, D']
    dist0 = geometry.dist0(points).mean(1).numpy()                                   # [S, J]
    to_parent = geometry.dist(points, parent).mean(1).numpy()                        # [S, J]
    joints = np.broadcast_to(np.array([*token_joints, *extra]), dist0.shape)
    depth = np.array(DEPTH)[joints]
    clip = np.arange(len(dist0)) if clips is None else np.asarray(clips)
    if clip.shape != (len(dist0),):
        raise HacmError(f"depth_correlation: clips must name the clip of each of the {len(dist0)} sequences, "
                        f"got shape {clip.shape}")
    sequence = np.broadcast_to(clip[:, None], dist0.shape)
    return DepthCorrelation(joints, dist0, to_parent,
                            spearman_by_cluster(depth, dist0, sequence, reps=reps, seed=seed),
                            spearman_by_cluster(depth, to_parent, sequence, reps=reps, seed=seed))


def keep_frequency_figure(freqs: Sequence[KeepFrequency], joint_names: Sequence[str], *, cols: int = 3,
                          title: str = "How often each criterion keeps each token") -> go.Figure:
    """Heat maps (x: time patch, y: joint) of keep frequency relative to uniform masking, log2 scale."""
    if not freqs:
        raise HacmError("keep_frequency_figure: no panels given")
    cols = max(1, min(cols, len(freqs)))
    rows = math.ceil(len(freqs) / cols)
    fig = make_subplots(rows=rows, cols=cols, shared_yaxes=True, horizontal_spacing=0.03,
                        vertical_spacing=0.16 if rows > 1 else 0.0,
                        subplot_titles=[f"{f.title}<br><sup>{'p < 1e-10' if f.p < 1e-10 else f'p = {f.p:.2g}'}"
                                        f" (uniformity, chi2 {f.chi2:.0f} / {f.df} df)</sup>" for f in freqs])
    names = np.array(joint_names, dtype=object)
    lim = 1.0
    for k, f in enumerate(freqs):
        ratio = f.ratio
        lim = max(lim, float(np.abs(np.log2(np.clip(ratio, 1e-3, None))).max()))
        custom = np.stack([100 * f.kept / f.draws, 100 * f.chance], -1).transpose(1, 0, 2)   # [V, TP, 2]
        fig.add_trace(go.Heatmap(
            z=np.log2(np.clip(ratio, 1e-3, None)).T, x=np.arange(ratio.shape[0]), y=names, coloraxis="coloraxis",
            customdata=custom, name=f.title,
            hovertemplate="time patch %{x}<br>%{y}<br>kept in %{customdata[0]:.1f} % of draws"
                          "<br>uniform masking: %{customdata[1]:.1f} %<extra>" + f.title + "</extra>"),
            row=k // cols + 1, col=k % cols + 1)
        fig.update_xaxes(title_text="time patch", row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed", tickfont={"size": 10})
    fig.update_yaxes(title_text="joint", col=1)
    fig.update_layout(title=title, template="plotly_white", width=max(700, 430 * cols), height=max(460, 420 * rows),
                      coloraxis={"colorscale": "RdBu_r", "cmin": -lim, "cmax": lim,
                                 "colorbar": {"title": "kept vs<br>uniform<br>(log2)"}})
    return fig


def depth_figure(result: DepthCorrelation, *, geometry: str,
                 title: str = "Depth in the embedding against depth in the skeleton tree") -> go.Figure:
    """Two panels (distance from the origin, from the parent point) against kinematic depth: one box
    per depth over every (sequence, joint), each joint's median as a marker (its name on hover)."""
    what = "geodesic distance" if geometry == "poincare" else "Euclidean distance"
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=[f"from the origin<br><sup>{result.origin.describe()}</sup>",
                                        f"from the parent point (trunk mean)<br><sup>{result.parent.describe()}</sup>"])
    depth = np.array(DEPTH)[result.joints]
    for col, values in ((1, result.dist0), (2, result.to_parent)):
        fig.add_trace(go.Box(x=depth.ravel(), y=values.ravel(), name="every (clip, joint)", marker_color="#1f77b4",
                             boxpoints=False, showlegend=col == 1, legendgroup="box"), row=1, col=col)
        joints = result.joints[0]
        medians = np.median(values, 0)
        fig.add_trace(go.Scatter(x=np.array(DEPTH)[joints], y=medians, mode="markers", name="joint median",
                                 marker={"color": "#d62728", "size": 7}, showlegend=col == 1, legendgroup="median",
                                 text=[JOINT_NAMES[j] for j in joints],
                                 hovertemplate="%{text}<br>depth %{x}<br>median %{y:.3f}<extra></extra>"),
                      row=1, col=col)
        fig.update_xaxes(title_text="kinematic depth (bones from the spine base)", dtick=1, row=1, col=col)
        fig.update_yaxes(title_text=what, row=1, col=col)
    fig.update_layout(title=title, template="plotly_white", width=920, height=460,
                      legend={"orientation": "h", "y": -0.2})
    return fig
