"""The mask explorer: which tokens HA-CM keeps, where they sit in the Poincaré ball, and why.

`MaskExplorer(store, checkpoints)` shows, for one clip, one actor and one time patch:
  - the Poincaré disk (token points, trunk joints and the parent point, distances from the origin
    faithful; kinematic tree as geodesics),
  - the 3-D skeleton of that patch's middle frame, joints coloured the same way,
  - the token grid of every criterion (current strategy, hierarchy, attention, motion, random),
    coloured by each token's keep probability relative to random masking,
  - the distance from the origin (depth) of every point of the clip, with the radii beyond which
    float32 or the release's projection would put points on one sphere,
  - the keep-probability spread max p / min p of each criterion against tau under both
    normalisations: the release's s / (tau max|s|) keeps masks close to random whatever tau is.

Interactive use (JupyterLab): `display(explorer.widget)`; the controls update the plotly
FigureWidgets in place. Batch use (papermill, reports): `explorer.static_figures(**params)`.

Cost: a model is built (and its checkpoint loaded) once per (checkpoint, geometry); a clip is
embedded and laid out on the disk once per (sample, checkpoint, geometry). A control change only
re-samples the masks (a Gumbel top-k over a few hundred scores) and redraws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import plotly.graph_objects as go
import torch

from hacm.checkpoint import load_for_masks
from hacm.config import DataConfig
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import Store
from hacm.errors import HacmError
from hacm.geometry import GEOMETRIES, RELEASE_BALL_EPS
from hacm.masking import NORMALISATIONS, STRATEGIES, MaskInfo, MaskingConfig, keep_log_probs, keep_spread
from hacm.model import HACM, ModelConfig, split_actors
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, TRUNK_JOINTS, joint_set
from hacm.viz.poincare import disk_layout, pca_basis, poincare_disk_figure, radius_figure
from hacm.viz.skeleton import skeleton_figure
from hacm.viz.tokens import TokenPanel, keep_spread_figure, token_grid_figure

# One token-grid panel per criterion, as the single-criterion strategy that uses it.
CRITERION_PANELS = (("spatial_only", "hierarchy (spatial criterion)"), ("temporal_only", "attention (temporal criterion)"),
                    ("motion", "motion (MAMP)"), ("random", "random (MAE)"))
TRUNK_STATUS, PARENT_STATUS = "trunk joint (not a token)", "trunk parent point"


@dataclass
class ExplorerParams:
    sample: int = 0            # index into the explorer's dataset (benchmark/part)
    time_patch: int = 0
    mask_ratio: float = 0.9
    tau: float = 0.9
    seed: int = 0
    strategy: str = "hacm"
    normalise: str = ""        # keep-probability normalisation; "" = the strategy's own (standard for HA-CM)
    geometry: str = "poincare"
    checkpoint: str = ""       # a key of `checkpoints` ("" = the first)


@dataclass
class _Encoded:
    """One actor of one clip, embedded by one model: everything the views need that masks do not change."""
    x: torch.Tensor            # [1, C, T, 25, M] model input
    frames: np.ndarray         # [T, 25, 3] the analysed actor's window
    nodes: list[int]           # joint index per disk node (-1: the parent point)
    layout: np.ndarray         # [TP, n, 2] disk positions (one PCA basis for the whole clip)
    dist0: np.ndarray          # [TP, n] distance from the origin in the model's geometry


TAU_GRID = np.logspace(-1.5, 1.0, 26)   # the taus of the keep-spread curves
FLOAT32_BALL_EPS = 4e-3                  # geoopt's projection margin in float32


def _log_ratio(info: MaskInfo, a: int) -> np.ndarray:
    """[TP, V] log10 of each token's keep probability relative to random masking within its branch."""
    out = info.log_p[a].clone()                                                    # [TP, V]
    for p in info.patches:
        out[p] += math.log(len(p) * out.shape[1])
    return (out / math.log(10)).numpy()


def _spread_curve(info: MaskInfo, a: int, normalise: str) -> np.ndarray:
    """Keep-probability spread [len(TAU_GRID)] of actor a's scores, mean over branches."""
    branches = [info.scores[a, p].reshape(1, -1) for p in info.patches]            # [1, L_b] each
    return np.array([np.mean([keep_spread(keep_log_probs(s, tau, normalise)).item() for s in branches])
                     for tau in TAU_GRID])


def _branch_name(strategy: str, criterion: str) -> str:
    if strategy != "hacm":
        return "single"
    return {"attention": "temporal", "hierarchy": "spatial"}[criterion]


class MaskExplorer:
    """Interactive and batch views of HA-CM masks on clips of `store`.

    checkpoints: name -> a hacm run directory or checkpoint file (pre-training, linear probe or
    fine-tune: the encoder is used), an original MAMP / HA-CM release `.pth`, or None for a randomly
    initialised model (seed 0). A hacm checkpoint brings its run's model config; release files and
    None use `model_config` (default ModelConfig()).
    """

    def __init__(self, store: Store | str | Path, checkpoints: Mapping[str, str | Path | None] | None = None, *,
                 benchmark: str | None = None, part: str = "test", model_config: ModelConfig | None = None,
                 actor: int = 0):
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.checkpoints = dict(checkpoints or {"untrained": None})
        if not self.checkpoints:
            raise HacmError("MaskExplorer: checkpoints is empty; pass e.g. {'untrained': None}")
        benchmarks = self.store.benchmarks()
        self.benchmark = benchmark or (benchmarks[0] if benchmarks else None)
        if self.benchmark is None:
            raise HacmError(f"MaskExplorer: store {self.store.path} has no benchmark splits")
        self.part, self.actor = part, actor
        self.model_config = model_config or ModelConfig()
        self._datasets: dict[int, SkeletonDataset] = {}
        self._models: dict[tuple[str, str], HACM] = {}
        self._encoded: dict[tuple[int, str, str], _Encoded] = {}
        self._dataset(self.model_config.num_frames)     # validates benchmark/part now, not on first draw
        self._widget = None

    # -- cached building blocks --------------------------------------------------------------

    def _dataset(self, num_frames: int) -> SkeletonDataset:
        if num_frames not in self._datasets:
            self._datasets[num_frames] = SkeletonDataset(self.store, self.benchmark, self.part, window_size=num_frames,
                                                         p_interval=DataConfig().p_interval_test)
        return self._datasets[num_frames]

    @property
    def num_samples(self) -> int:
        return len(self._dataset(self.model_config.num_frames))

    def model(self, checkpoint: str, geometry: str) -> HACM:
        """The model for (checkpoint, geometry), built and loaded once."""
        key = (checkpoint, geometry)
        if key in self._models:
            return self._models[key]
        if checkpoint not in self.checkpoints:
            raise HacmError(f"MaskExplorer: unknown checkpoint {checkpoint!r}; choose from {list(self.checkpoints)}")
        model = load_for_masks(self.checkpoints[checkpoint], self.model_config, geometry=geometry)
        self._models[key] = model
        return model

    def clip(self, sample: int, num_frames: int) -> tuple[torch.Tensor, int]:
        ds = self._dataset(num_frames)
        if not 0 <= sample < len(ds):
            raise HacmError(f"MaskExplorer: sample {sample} out of range (0..{len(ds) - 1})")
        return torch.from_numpy(ds.clip(sample, epoch=0)).unsqueeze(0), int(ds.sample_indices[sample])

    @torch.no_grad()
    def encoded(self, sample: int, checkpoint: str, geometry: str) -> _Encoded:
        key = (sample, checkpoint, geometry)
        if key in self._encoded:
            return self._encoded[key]
        model = self.model(checkpoint, geometry)
        encoder, cfg = model.encoder, model.cfg
        x, _ = self.clip(sample, cfg.num_frames)
        seqs, _ = split_actors(x)                                                    # [S, T, 25, C]
        if seqs.shape[0] == 0:
            raise HacmError(f"MaskExplorer: sample {sample} has no non-zero actor")
        a = min(self.actor, seqs.shape[0] - 1)
        geometry = encoder.geometry
        info = model.masks(x)                          # the embeddings the masks are drawn from
        tokens, trunk = info.tokens[a], info.trunk[a]                                # [TP, V, D], [TP, 7, D]
        token_joints = list(joint_set(cfg.prune))
        extra = [j for j in TRUNK_JOINTS if j not in token_joints]
        extra_emb = trunk[:, [TRUNK_JOINTS.index(j) for j in extra]]                # [TP, E, D]
        nodes_emb = torch.cat([tokens, extra_emb, trunk.mean(1, keepdim=True)], 1)  # [TP, n, D]
        TP, n, D = nodes_emb.shape
        flat = nodes_emb.reshape(TP * n, D)
        dist0 = geometry.dist0(geometry.points(flat))                               # [TP*n] float64, exact
        basis = pca_basis(flat)                           # one basis: the view does not spin between patches
        layout = disk_layout(flat, dist0, geometry=geometry.name, basis=basis).reshape(TP, n, 2)
        dist0 = dist0.numpy().reshape(TP, n)
        frames = x[0, :, :, :, a].permute(1, 2, 0).numpy()                           # [T, 25, 3]
        self._encoded[key] = _Encoded(x, frames, token_joints + extra + [-1], layout, dist0)
        return self._encoded[key]

    @staticmethod
    def _masking(params: ExplorerParams, strategy: str | None = None) -> MaskingConfig:
        return MaskingConfig(strategy=strategy or params.strategy, mask_ratio=params.mask_ratio, tau=params.tau,
                             normalise=params.normalise or None)

    def masks(self, params: ExplorerParams, strategy: str | None = None) -> MaskInfo:
        """MaskInfo of the model for params' checkpoint/geometry under `strategy` (default params'),
        each strategy with its own defaults (motion masks high-motion tokens, as MAMP)."""
        model = self.model(params.checkpoint, params.geometry)
        x = self.encoded(params.sample, params.checkpoint, params.geometry).x
        return model.masks(x, torch.Generator().manual_seed(params.seed), self._masking(params, strategy))

    # -- views -------------------------------------------------------------------------------

    def resolve(self, **params) -> ExplorerParams:
        unknown = set(params) - {f.name for f in fields(ExplorerParams)}
        if unknown:
            raise HacmError(f"MaskExplorer: unknown parameters {sorted(unknown)}; "
                            f"expected {[f.name for f in fields(ExplorerParams)]}")
        p = ExplorerParams(**params)
        if not p.checkpoint:
            p.checkpoint = next(iter(self.checkpoints))
        if p.strategy not in STRATEGIES:
            raise HacmError(f"MaskExplorer: strategy must be one of {STRATEGIES}, got {p.strategy!r}")
        if p.normalise and p.normalise not in NORMALISATIONS:
            raise HacmError(f"MaskExplorer: normalise must be one of {NORMALISATIONS} (or empty), got {p.normalise!r}")
        if p.geometry not in GEOMETRIES:
            raise HacmError(f"MaskExplorer: geometry must be one of {GEOMETRIES}, got {p.geometry!r}")
        TP = self.model(p.checkpoint, p.geometry).cfg.num_patches
        if not 0 <= p.time_patch < TP:
            raise HacmError(f"MaskExplorer: time_patch {p.time_patch} out of range (0..{TP - 1})")
        return p

    def spread_text(self, params: ExplorerParams, info: MaskInfo) -> str:
        """Keep-probability spread of each branch of the current draw, as one line of text."""
        a = min(self.actor, info.scores.shape[0] - 1)
        parts = [f"{_branch_name(params.strategy, crit)} branch ({crit}) {float(spread[a]):.2f}x"
                 for crit, spread in zip(info.criteria, info.spread())]
        normalise = self._masking(params).normalise
        return (f"keep-probability spread max p / min p at tau={params.tau:.2f} ({normalise} normalisation): "
                + ", ".join(parts) + "  (1x = random masking)")

    def figures(self, params: ExplorerParams) -> tuple[dict[str, go.Figure], str]:
        """The views for resolved params, and the spread text."""
        clip = self.encoded(params.sample, params.checkpoint, params.geometry)
        model = self.model(params.checkpoint, params.geometry)
        t_patch, t = model.cfg.t_patch, params.time_patch
        info = self.masks(params)
        a = min(self.actor, info.scores.shape[0] - 1)
        mask, scores = info.mask[a].numpy(), info.scores[a].numpy()                 # [TP, V]
        tokens = list(joint_set(model.cfg.prune))
        patch_branch = info.patch_branch.numpy()                                     # [TP]
        branch = _branch_name(params.strategy, info.criteria[patch_branch[t]])

        # Status of every node of the disk and every joint of the skeleton at time patch t.
        status, node_scores = [], []
        for j in clip.nodes:
            if j in tokens:
                v = tokens.index(j)
                status.append(f"{branch} {'masked' if mask[t, v] else 'kept'}")
                node_scores.append(scores[t, v])
            else:
                status.append(PARENT_STATUS if j < 0 else TRUNK_STATUS)
                node_scores.append(np.nan)
        order = [f"{branch} kept", f"{branch} masked", TRUNK_STATUS, PARENT_STATUS]
        index = {j: i for i, j in enumerate(clip.nodes)}
        edges = [(index[j], index[PARENTS[j]]) for j in range(NUM_JOINTS) if PARENTS[j] >= 0]
        labels = [JOINT_NAMES[j] if j >= 0 else "parent point (trunk mean)" for j in clip.nodes]
        ds = self._dataset(model.cfg.num_frames)
        store_index = int(ds.sample_indices[params.sample])
        clip_name = f"{self.store.names[store_index]} ({self.store.class_names[self.store.labels[store_index]]})"
        crit = info.criteria[patch_branch[t]]
        where = "Poincaré disk" if params.geometry == "poincare" else "Euclidean plane"
        disk = poincare_disk_figure(
            clip.layout[t], labels, status=status, status_order=order, edges=edges, dist0=clip.dist0[t],
            scores=node_scores, geometry=params.geometry,
            title=f"{where}: {clip_name}<br><sup>time patch {t}, {branch} branch ({crit}), model: {params.checkpoint}</sup>")

        joint_status = [status[index[j]] for j in range(NUM_JOINTS)]
        frame = t * t_patch + t_patch // 2
        skel = skeleton_figure(clip.frames, joint_status, animate=False, frame=frame, status_order=order,
                               title=f"{clip_name}<br><sup>frame {frame} (middle of time patch {t})</sup>")

        panels = [TokenPanel(f"{params.strategy} (current: {', '.join(dict.fromkeys(info.criteria))})",
                             ~mask, None if params.strategy == "random" else scores, _log_ratio(info, a))]
        by_criterion = {}
        for strategy, title in CRITERION_PANELS:
            other = info if strategy == params.strategy else self.masks(params, strategy)
            by_criterion[other.criteria[0]] = other
            panels.append(TokenPanel(title, ~other.mask[a].numpy(),
                                     None if strategy == "random" else other.scores[a].numpy(), _log_ratio(other, a)))
        spread = self.spread_text(params, info)
        grid = token_grid_figure(panels, [JOINT_NAMES[j] for j in tokens], t_patch=t_patch,
                                 title=f"Kept tokens, mask ratio {params.mask_ratio:.2f}, tau {params.tau:.2f}, "
                                       f"seed {params.seed}: {clip_name}<br><sup>{spread}</sup>")
        curves = {f"{crit} ({normalise})": (TAU_GRID, _spread_curve(other, a, normalise))
                  for crit, other in by_criterion.items() if crit != "random" for normalise in NORMALISATIONS}
        spread_fig = keep_spread_figure(curves, tau=params.tau,
                                        title=f"How far each criterion's masks are from random: {clip_name}")
        return {"disk": disk, "skeleton": skel, "tokens": grid, "radii": self.radius_view(params),
                "spread": spread_fig}, spread

    def radius_view(self, params: ExplorerParams) -> go.Figure:
        """dist0 of every token, trunk joint and parent point of the clip (all time patches)."""
        clip = self.encoded(params.sample, params.checkpoint, params.geometry)
        model = self.model(params.checkpoint, params.geometry)
        tokens = set(joint_set(model.cfg.prune))
        kinds = {"tokens": [j in tokens for j in clip.nodes], "trunk joints": [j >= 0 and j not in tokens for j in clip.nodes],
                 "parent point": [j < 0 for j in clip.nodes]}
        dist0 = {name: clip.dist0[:, np.array(sel)] for name, sel in kinds.items() if any(sel)}
        lines = {}
        if params.geometry == "poincare":
            c = model.cfg.curvature
            lines = {f"float32 projection (eps {eps:g}) clips beyond": 2 / math.sqrt(c) * math.atanh(1 - eps)
                     for eps in (FLOAT32_BALL_EPS, RELEASE_BALL_EPS)}
        return radius_figure(dist0, clip_lines=lines,
                             title=f"Distance from the origin, model {params.checkpoint}, "
                                   f"clip {params.sample}<br><sup>depth in the hierarchy; a projection "
                                   f"puts every point beyond its line on one sphere</sup>")

    def static_figures(self, **params) -> dict[str, go.Figure]:
        """{"disk", "skeleton", "tokens", "radii", "spread"} as plain go.Figure for batch mode
        (ExplorerParams fields)."""
        return self.figures(self.resolve(**params))[0]

    # -- the widget --------------------------------------------------------------------------

    @property
    def widget(self):
        """The ipywidgets.VBox to `display` in a notebook (built on first access)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self):
        import ipywidgets as w

        p = self.resolve()
        TP = self.model(p.checkpoint, p.geometry).cfg.num_patches
        slider = dict(continuous_update=False, style={"description_width": "initial"})
        self.controls = {
            "sample": w.IntSlider(value=p.sample, min=0, max=self.num_samples - 1, description="sample", **slider),
            "time_patch": w.IntSlider(value=p.time_patch, min=0, max=TP - 1, description="time patch", **slider),
            "mask_ratio": w.FloatSlider(value=p.mask_ratio, min=0.5, max=0.98, step=0.01, description="mask ratio",
                                        **slider),
            "tau": w.FloatLogSlider(value=p.tau, base=10, min=-1.5, max=1.0, step=0.05, description="tau", **slider),
            "seed": w.IntSlider(value=p.seed, min=0, max=99, description="seed", **slider),
            "strategy": w.Dropdown(options=list(STRATEGIES), value=p.strategy, description="strategy"),
            "normalise": w.Dropdown(options=[("strategy default", ""), *[(n, n) for n in NORMALISATIONS]],
                                    value=p.normalise, description="normalise"),
            "geometry": w.Dropdown(options=list(GEOMETRIES), value=p.geometry, description="geometry"),
            "checkpoint": w.Dropdown(options=list(self.checkpoints), value=p.checkpoint, description="checkpoint"),
        }
        self.spread_label = w.HTML()
        self.status_label = w.HTML()
        figs, spread = self.figures(p)
        self.figure_widgets = {k: go.FigureWidget(f) for k, f in figs.items()}
        self.spread_label.value = f"<b>{spread}</b>"
        for c in self.controls.values():
            c.observe(self._on_change, names="value")
        c = self.controls
        return w.VBox([
            w.HBox([c["sample"], c["time_patch"], c["checkpoint"], c["geometry"]]),
            w.HBox([c["strategy"], c["normalise"], c["mask_ratio"], c["tau"], c["seed"]]),
            self.spread_label, self.status_label,
            w.HBox([self.figure_widgets["disk"], self.figure_widgets["skeleton"]]),
            self.figure_widgets["tokens"],
            w.HBox([self.figure_widgets["radii"], self.figure_widgets["spread"]]),
        ])

    def _on_change(self, _change) -> None:
        try:
            params = self.resolve(**{k: c.value for k, c in self.controls.items()})
            figs, spread = self.figures(params)
        except HacmError as e:   # shown in the widget: an exception in a callback would vanish
            self.status_label.value = f"<span style='color:#b00'>{e}</span>"
            return
        self.status_label.value = ""
        self.spread_label.value = f"<b>{spread}</b>"
        for key, fig in figs.items():
            _update_in_place(self.figure_widgets[key], fig)


def _update_in_place(fw: go.FigureWidget, fig: go.Figure) -> None:
    """Make FigureWidget `fw` show `fig`: restyle/relayout in one message when the traces line up."""
    same = len(fw.data) == len(fig.data) and all(a.type == b.type for a, b in zip(fw.data, fig.data))
    if same:
        with fw.batch_update():
            for old, new in zip(fw.data, fig.data):
                props = new.to_plotly_json()
                props.pop("type", None)
                props.pop("uid", None)
                old.update(props, overwrite=True)
            fw.layout.update(fig.layout.to_plotly_json(), overwrite=True)
    else:
        fw.data = []
        fw.add_traces(list(fig.data))
        fw.layout.update(fig.layout.to_plotly_json(), overwrite=True)
