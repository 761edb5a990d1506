"""The mask explorer: which tokens a checkpoint's masking keeps, where they sit in its space, and why.

`MaskExplorer(store, checkpoints)` shows, for one clip, one actor and one time patch:
  - the token points in the checkpoint's own geometry: a Poincaré disk for a hyperbolic checkpoint
    (distances from the origin faithful, the kinematic tree as geodesics), a plane for a Euclidean
    one (a MAMP-style checkpoint is never drawn in a disk), with a fixed orientation (the parent
    point down, the left side left), optional re-centring and radial rescale (geoopt's Möbius
    addition and scalar multiplication on the drawn disk), and labels that do not collide,
  - the 3-D skeleton of that patch's middle frame, joints coloured the same way,
  - the token grid of every criterion (current strategy, hierarchy, attention, motion, random),
    coloured by each token's keep probability relative to random masking,
  - how much the current mask agrees with the random and the MAMP (motion) mask of the same seed,
    as numbers with their chance levels (the eye cannot tell at mask ratio 0.9),
  - the distance from the origin (depth) of every point of the clip, with the radii beyond which
    float32 or the release's projection would put points on one sphere,
  - the keep-probability spread max p / min p of each criterion against tau under both
    normalisations: the release's s / (tau max|s|) keeps masks close to random whatever tau is.

Over many clips (`over_clips_figures`, hacm.viz.clipviews): how often each criterion keeps each
(time patch, joint) token, with a uniformity test, and each joint's hyperbolic depth against its
depth in the skeleton tree, with Spearman's rank correlation and a clip-bootstrap interval.

The first view is centred at the parent point and scaled from the data (the clip's median point at
radius 0.5); `demo_inputs()` gives the demo report's store and trained checkpoints, which the
notebook opens on when they exist.

Each checkpoint is shown as it was trained: its geometry, masking strategy (hence its branches),
frame count and time patches come from its run config; a view can override geometry and strategy.
The untrained model (checkpoint None) is built from the compared config: the first hacm checkpoint's
run config, unless `model_config` is given.

Interactive use (JupyterLab): `display(ExplorerWidget(explorer).box)` (hacm.viz.explorer_widget);
the controls update the plotly FigureWidgets in place. Batch use (papermill, reports): `explorer.static_figures(**params)`,
or `explorer.figures(explorer.resolve(**params))` for the figures and the text lines.

Cost: a model is built (and its checkpoint loaded) once per (checkpoint, geometry); a clip is
embedded and laid out once per (sample, actor, checkpoint, geometry). A control change only
re-samples the masks (a Gumbel top-k over a few hundred scores) and redraws.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Mapping

import numpy as np
import plotly.graph_objects as go
import torch

from hacm.checkpoint import load_for_masks, run_config_of
from hacm.config import DataConfig
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import META_FILE, Store
from hacm.errors import HacmError
from hacm.geometry import GEOMETRIES, RELEASE_BALL_EPS
from hacm.masking import (NORMALISATIONS, STRATEGIES, MaskInfo, MaskingConfig, branch_positions, draw_masks,
                           gumbel_topk, keep_log_probs, keep_spread, masked_grid, num_keep)
from hacm.model import HACM, ModelConfig, split_actors
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, TRUNK_JOINTS, joint_set
from hacm.viz.clipviews import (DepthCorrelation, KeepFrequency, depth_correlation, depth_figure,
                                keep_frequency, keep_frequency_figure)
from hacm.viz.fit import fit_layout
from hacm.viz.overlap import mask_overlap
from hacm.viz.poincare import (disk_dist0, disk_layout, disk_midpoint, orient_layout, pca_basis,
                               poincare_disk_figure, radius_figure, recentre, rescale)
from hacm.viz.skeleton import skeleton_figure
from hacm.viz.tokens import TokenPanel, keep_spread_figure, token_grid_figure

# One token-grid panel per criterion, as the single-criterion strategy that uses it.
CRITERION_PANELS = (("spatial_only", "hierarchy (spatial criterion)"), ("temporal_only", "attention (temporal criterion)"),
                    ("motion", "motion (MAMP)"), ("random", "random (MAE)"))
# The masks the current one is compared with, drawn with the same seed.
OVERLAP_WITH = (("random", "the random mask (MAE)"), ("motion", "the MAMP mask (motion)"))
TRUNK_STATUS, PARENT_STATUS = "trunk joint (not a token)", "trunk parent point"
PARENT_LABEL = "parent point (trunk mean)"
# Disk labels printed first; the others only where they do not collide (all are on hover).
KEY_JOINTS = ("head", "left_hand", "right_hand", "left_foot", "right_foot", "left_elbow", "right_elbow",
              "left_knee", "right_knee")
CENTRES = ("origin", "parent point", "midpoint")   # what the disk view puts at its centre


@dataclass
class ExplorerParams:
    sample: int = 0            # index into the explorer's dataset (benchmark/part)
    actor: int = 0             # which present actor of the clip (0 or 1 for a two-person clip)
    time_patch: int = 0
    mask_ratio: float = 0.9
    tau: float = 0.9
    seed: int = 0
    strategy: str = ""         # "" = the checkpoint's own (its run's masking strategy)
    normalise: str = ""        # keep-probability normalisation; "" = the strategy's own
    geometry: str = ""         # "" = the checkpoint's own
    checkpoint: str = ""       # a key of `checkpoints` ("" = the first)
    centre: str = "parent point"   # disk view centre: origin | parent point | midpoint (of the time patch)
    # Poincaré disk view: distances from the centre times this (1 = faithful); None = from the data,
    # so that the clip's median point sits at radius AUTO_MEDIAN_RADIUS
    radial_scale: float | None = None


@dataclass
class _Clips:
    """Many clips embedded by one model: what the many-clip views need that masks do not change."""
    clips: int
    seqs: torch.Tensor         # [S, T, V, C] the token joints' input of every present actor
    tokens: torch.Tensor       # [S, TP, V, D]
    trunk: torch.Tensor        # [S, TP, 7, D]
    labels: np.ndarray         # [S] class index of each sequence's clip
    clip_of: np.ndarray        # [S] which clip each sequence is an actor of (its cluster in a bootstrap)


@dataclass
class _Encoded:
    """One actor of one clip, embedded by one model: everything the views need that masks do not change."""
    x: torch.Tensor            # [1, C, T, 25, M] model input
    embedded: MaskInfo         # the model's masks of x: its token and trunk embeddings are reused
    frames: np.ndarray         # [T, 25, 3] the analysed actor's window
    nodes: list[int]           # joint index per disk node (-1: the parent point, the last node)
    layout: np.ndarray         # [TP, n, 2] positions (one PCA basis for the clip, fixed orientation)
    dist0: np.ndarray          # [TP, n] distance from the origin in the model's geometry


TAU_GRID = np.logspace(-1.5, 1.0, 26)   # the taus of the keep-spread curves
AUTO_MEDIAN_RADIUS = 0.5                 # the automatic radial scale puts the median point here on the disk
DEFAULT_WIDTH = 920                      # px: JupyterLab's output area at 1366 px with the file browser open
HEIGHTS = {"disk": 600, "skeleton": 460, "radii": 420, "spread": 420, "frequency": 800, "depth": 480}
CONTROLS_WIDTH = 300                     # px, the widget's control column beside the disk
OVER_CLIPS = 200                         # clips of the many-clip views (evenly spaced over the dataset)
FREQUENCY_DRAWS = 4                      # Gumbel draws per sequence in the keep-frequency map
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


def branch_labels(strategy: str, criteria: tuple[str, ...]) -> list[str]:
    """What to call each branch of a draw: HA-CM's temporal and spatial branch; two branches of one
    criterion (spatial_only, temporal_only) by their time patches; else the one branch."""
    if strategy == "hacm":
        return [f"{_branch_name(strategy, c)} branch ({c})" for c in criteria]
    if len(criteria) == 2:
        return [f"even time patches ({criteria[0]})", f"odd time patches ({criteria[1]})"]
    return [f"one branch ({c})" for c in criteria]


def figure_sizes(width: int = DEFAULT_WIDTH) -> dict[str, tuple[int, int | None]]:
    """(width, height) px of each view for a notebook `width` px wide: the disk shares its row with
    the widget's controls, the skeleton and the histogram share theirs (None: the figure's own height,
    which follows its number of panel rows)."""
    half = width // 2 - 5
    return {"disk": (width - CONTROLS_WIDTH - 10, HEIGHTS["disk"]), "tokens": (width, None),
            "skeleton": (half, HEIGHTS["skeleton"]), "radii": (half, HEIGHTS["radii"]),
            "spread": (width, HEIGHTS["spread"]), "frequency": (width, HEIGHTS["frequency"]),
            "depth": (width, HEIGHTS["depth"])}


def _sides(nodes: list[int]) -> tuple[list[int], list[int]]:
    """Disk node indices of the left-side and right-side joints (the orientation's mirror reference)."""
    return ([i for i, j in enumerate(nodes) if j >= 0 and JOINT_NAMES[j].startswith("left_")],
            [i for i, j in enumerate(nodes) if j >= 0 and JOINT_NAMES[j].startswith("right_")])


def _label_priority(nodes: list[int]) -> list[int]:
    """Disk node indices, most important label first: parent point, key joints, the rest."""
    rank = {JOINT_NAMES.index(name): r for r, name in enumerate(KEY_JOINTS)}
    return sorted(range(len(nodes)), key=lambda i: -1 if nodes[i] < 0 else rank.get(nodes[i], len(rank)))


def demo_inputs(batch: str | Path | None = None) -> tuple[str, dict[str, str | None]] | None:
    """(store, checkpoints) of the demo batch's explorer job (reports/batches/demo.yaml), resolved to
    the report it writes, when `hacm demo` has written that store and at least one of those
    checkpoints; else None. The explorer notebook opens on these: trained checkpoints teach what
    the masks do, an untrained encoder does not."""
    from hacm.report.batch import DEMO_BATCH, default_out_dir, load_batch
    from hacm.report.runner import resolved_parameters

    loaded = load_batch(batch or DEMO_BATCH)
    job = next((j for j in loaded.jobs if j.notebook.stem == "explorer"), None)
    if job is None:
        return None
    params = resolved_parameters(job, default_out_dir(loaded))
    store, checkpoints = params.get("store"), params.get("checkpoints") or {}
    present = {name: path for name, path in checkpoints.items() if path is None or Path(path).is_file()}
    if not store or not (Path(store) / META_FILE).is_file() or not any(present.values()):
        return None
    return store, present


class MaskExplorer:
    """Interactive and batch views of the masks of checkpoints on clips of `store`.

    checkpoints: name -> a hacm run directory or checkpoint file (pre-training, linear probe or
    fine-tune: the encoder is used), an original MAMP / HA-CM release `.pth`, or None for a randomly
    initialised model (seed 0). A hacm checkpoint brings its run's model and masking configs;
    release files and None use the compared config: `model_config` if given, else the first hacm
    checkpoint's (else ModelConfig()), with that run's masking.
    """

    def __init__(self, store: Store | str | Path, checkpoints: Mapping[str, str | Path | None] | None = None, *,
                 benchmark: str | None = None, part: str = "test", model_config: ModelConfig | None = None):
        self.store = store if isinstance(store, Store) else Store.open(store)
        self.checkpoints = dict(checkpoints or {"untrained": None})
        if not self.checkpoints:
            raise HacmError("MaskExplorer: checkpoints is empty; pass e.g. {'untrained': None}")
        benchmarks = self.store.benchmarks()
        self.benchmark = benchmark or (benchmarks[0] if benchmarks else None)
        if self.benchmark is None:
            raise HacmError(f"MaskExplorer: store {self.store.path} has no benchmark splits")
        self.part = part
        compared = next((cfg for cfg in map(run_config_of, filter(None, self.checkpoints.values()))
                         if cfg is not None), None)
        self.model_config = model_config or (compared.model if compared else ModelConfig())
        self.compared_masking = compared.masking if compared else MaskingConfig()
        self._datasets: dict[int, SkeletonDataset] = {}
        self._models: dict[tuple[str, str], HACM] = {}
        self._own_geometry: dict[str, str] = {}
        self._encoded: dict[tuple[int, int, str, str], _Encoded] = {}
        self._many: dict[tuple[str, str, int], _Clips] = {}
        self._dataset(self.model_config.num_frames)     # validates benchmark/part now, not on first draw

    # -- cached building blocks --------------------------------------------------------------

    def _dataset(self, num_frames: int) -> SkeletonDataset:
        if num_frames not in self._datasets:
            self._datasets[num_frames] = SkeletonDataset(self.store, self.benchmark, self.part, window_size=num_frames,
                                                         p_interval=DataConfig().p_interval_test)
        return self._datasets[num_frames]

    @property
    def num_samples(self) -> int:
        return len(self._dataset(self.model_config.num_frames))

    def clips_by_class(self) -> dict[str, list[tuple[str, int]]]:
        """Class name -> [(clip name, sample index)] of the explorer's dataset, in dataset order."""
        ds = self._dataset(self.model_config.num_frames)
        out: dict[str, list[tuple[str, int]]] = {}
        for sample, i in enumerate(ds.sample_indices):
            i = int(i)
            two = " (2 actors)" if int(self.store.num_actors[i]) > 1 else ""
            name = self.store.class_names[self.store.labels[i]]
            out.setdefault(name, []).append((f"{self.store.names[i]}{two}", sample))
        return out

    def model(self, checkpoint: str, geometry: str = "") -> HACM:
        """The model for (checkpoint, geometry) ("" = the checkpoint's own), built and loaded once."""
        if checkpoint not in self.checkpoints:
            raise HacmError(f"MaskExplorer: unknown checkpoint {checkpoint!r}; choose from {list(self.checkpoints)}")
        if not geometry:
            if checkpoint not in self._own_geometry:
                model = load_for_masks(self.checkpoints[checkpoint], self.model_config, masking=self.compared_masking)
                self._own_geometry[checkpoint] = model.cfg.geometry
                self._models[(checkpoint, model.cfg.geometry)] = model
            geometry = self._own_geometry[checkpoint]
        key = (checkpoint, geometry)
        if key not in self._models:
            self._models[key] = load_for_masks(self.checkpoints[checkpoint], self.model_config, geometry=geometry,
                                               masking=self.compared_masking)
        return self._models[key]

    def clip(self, sample: int, num_frames: int) -> tuple[torch.Tensor, int]:
        ds = self._dataset(num_frames)
        if not 0 <= sample < len(ds):
            raise HacmError(f"MaskExplorer: sample {sample} out of range (0..{len(ds) - 1})")
        return torch.from_numpy(ds.clip(sample, epoch=0)).unsqueeze(0), int(ds.sample_indices[sample])

    def num_actors(self, sample: int) -> int:
        """Present (non-zero) actors of a clip."""
        return int(split_actors(self.clip(sample, self.model_config.num_frames)[0])[1].sum())

    @torch.no_grad()
    def encoded(self, sample: int, actor: int, checkpoint: str, geometry: str) -> _Encoded:
        key = (sample, actor, checkpoint, geometry)
        if key in self._encoded:
            return self._encoded[key]
        model = self.model(checkpoint, geometry)
        cfg = model.cfg
        x, _ = self.clip(sample, cfg.num_frames)
        seqs, _ = split_actors(x)                                                    # [S, T, 25, C]
        if not 0 <= actor < seqs.shape[0]:
            raise HacmError(f"MaskExplorer: actor {actor} out of range: sample {sample} has {seqs.shape[0]} actor(s)")
        info = model.masks(x)                          # the embeddings the masks are drawn from
        tokens, trunk = info.tokens[actor], info.trunk[actor]                        # [TP, V, D], [TP, 7, D]
        token_joints = list(joint_set(cfg.prune))
        extra = [j for j in TRUNK_JOINTS if j not in token_joints]
        extra_emb = trunk[:, [TRUNK_JOINTS.index(j) for j in extra]]                # [TP, E, D]
        nodes_emb = torch.cat([tokens, extra_emb, trunk.mean(1, keepdim=True)], 1)  # [TP, n, D]
        TP, n, D = nodes_emb.shape
        flat = nodes_emb.reshape(TP * n, D)
        space = model.encoder.geometry
        dist0 = space.dist0(space.points(flat))                                     # [TP*n] float64, exact
        basis = pca_basis(flat)                           # one basis: the view does not spin between patches
        nodes = token_joints + extra + [-1]
        left, right = _sides(nodes)
        layout = orient_layout(disk_layout(flat, dist0, geometry=space.name, basis=basis).reshape(TP, n, 2),
                               down=[n - 1], left=left, right=right)
        self._encoded[key] = _Encoded(x, info, seqs[actor].numpy(), nodes, layout, dist0.numpy().reshape(TP, n))
        return self._encoded[key]

    def masking_config(self, params: ExplorerParams, strategy: str | None = None) -> MaskingConfig:
        """params' masking under `strategy` (default params'): the checkpoint's own config for its own
        strategy, else that strategy's defaults (motion masks high-motion tokens, as MAMP)."""
        strategy = strategy or params.strategy
        own = self.model(params.checkpoint, params.geometry).masking
        if strategy == own.strategy:
            return dataclasses.replace(own, mask_ratio=params.mask_ratio, tau=params.tau,
                                       normalise=params.normalise or own.normalise)
        return MaskingConfig(strategy=strategy, mask_ratio=params.mask_ratio, tau=params.tau,
                             normalise=params.normalise or None)

    def masks(self, params: ExplorerParams, strategy: str | None = None) -> MaskInfo:
        """MaskInfo of the model for resolved params' checkpoint/geometry under `strategy` (default
        params'): what `model.masks` draws, from the clip's cached embeddings (no encoder call)."""
        model = self.model(params.checkpoint, params.geometry)
        emb = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry).embedded
        seqs, _ = split_actors(self.encoded(params.sample, params.actor, params.checkpoint, params.geometry).x)
        return draw_masks(seqs[:, :, model.encoder.joints], emb.tokens, emb.trunk, emb.actor_mask,
                          self.masking_config(params, strategy), geometry=model.encoder.geometry,
                          temporal=model.temporal, t_patch=model.cfg.t_patch,
                          generator=torch.Generator().manual_seed(params.seed))

    # -- views -------------------------------------------------------------------------------

    def resolve(self, **params) -> ExplorerParams:
        """ExplorerParams with every "" filled in (checkpoint, its own geometry and strategy), checked."""
        unknown = set(params) - {f.name for f in fields(ExplorerParams)}
        if unknown:
            raise HacmError(f"MaskExplorer: unknown parameters {sorted(unknown)}; "
                            f"expected {[f.name for f in fields(ExplorerParams)]}")
        p = ExplorerParams(**params)
        p.checkpoint = p.checkpoint or next(iter(self.checkpoints))
        if p.geometry and p.geometry not in GEOMETRIES:
            raise HacmError(f"MaskExplorer: geometry must be one of {GEOMETRIES} (or empty), got {p.geometry!r}")
        model = self.model(p.checkpoint, p.geometry)
        p.geometry, p.strategy = model.cfg.geometry, p.strategy or model.masking.strategy
        if p.strategy not in STRATEGIES:
            raise HacmError(f"MaskExplorer: strategy must be one of {STRATEGIES} (or empty), got {p.strategy!r}")
        if p.normalise and p.normalise not in NORMALISATIONS:
            raise HacmError(f"MaskExplorer: normalise must be one of {NORMALISATIONS} (or empty), got {p.normalise!r}")
        if p.centre not in CENTRES:
            raise HacmError(f"MaskExplorer: centre must be one of {CENTRES}, got {p.centre!r}")
        if p.radial_scale is not None and not p.radial_scale > 0:
            raise HacmError(f"MaskExplorer: radial_scale must be positive (or None: from the data), "
                            f"got {p.radial_scale!r}")
        TP = model.cfg.num_patches
        if not 0 <= p.time_patch < TP:
            raise HacmError(f"MaskExplorer: time_patch {p.time_patch} out of range (0..{TP - 1}) for checkpoint "
                            f"{p.checkpoint!r} ({model.cfg.num_frames} frames, t_patch {model.cfg.t_patch})")
        actors = self.num_actors(p.sample)
        if not 0 <= p.actor < actors:
            raise HacmError(f"MaskExplorer: actor {p.actor} out of range: sample {p.sample} has {actors} actor(s)")
        if p.radial_scale is None:
            p.radial_scale = self.auto_radial_scale(p) if p.geometry == "poincare" else 1.0
        return p

    def auto_radial_scale(self, params: ExplorerParams) -> float:
        """The radial scale that puts the median drawn point of the clip (every time patch, about
        params' centre, the centre itself left out) at radius AUTO_MEDIAN_RADIUS of the disk: points
        spread over the disk instead of a thin arc on the rim. One scale for the whole clip, so the
        picture does not breathe when the time patch changes."""
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        dists = []
        for t in range(clip.layout.shape[0]):
            xy = self._centred(clip.layout[t], params.centre, poincare=True)
            d = disk_dist0(xy)
            dists.append(d[d > 1e-9])          # the centre itself is at distance 0
        median = float(np.median(np.concatenate(dists))) if any(len(d) for d in dists) else 0.0
        return 2 * math.atanh(AUTO_MEDIAN_RADIUS) / median if median > 0 else 1.0

    def checkpoint_text(self, params: ExplorerParams) -> str:
        """What the checkpoint is: geometry, strategy and branches, frames and time patches, width."""
        model = self.model(params.checkpoint, params.geometry)
        cfg, own = model.cfg, model.masking
        criteria = ", ".join(dict.fromkeys(own.branch_criteria()))
        branches = ("two branches (temporal: attention, spatial: hierarchy)" if own.strategy == "hacm" else
                    f"{'two branches' if own.cross_grouping else 'one branch'} ({criteria})")
        override = "" if params.geometry == self._own_geometry[params.checkpoint] else \
            f" (viewed as {params.geometry}; trained {self._own_geometry[params.checkpoint]})"
        return (f"{params.checkpoint}: {cfg.geometry} geometry{override}, masking {own.strategy} with {branches}, "
                f"{cfg.num_frames} frames, t_patch {cfg.t_patch} ({cfg.num_patches} time patches), "
                f"{cfg.num_tokens_joints} token joints, width {cfg.dim}")

    def overlap_text(self, params: ExplorerParams, info: MaskInfo, others: Mapping[str, MaskInfo]) -> str:
        """The current mask against the random and the MAMP mask of the same seed, with chance levels,
        one line each."""
        a = params.actor
        return "\n".join(f"{params.strategy} mask " + mask_overlap(
            info.mask[a].numpy(), info.patches, others[s].mask[a].numpy(), others[s].patches).describe(
            f"{name}, seed {params.seed}") for s, name in OVERLAP_WITH if s != params.strategy)

    def spread_text(self, params: ExplorerParams, info: MaskInfo) -> str:
        """Keep-probability spread of each branch of the current draw, as one line of text."""
        parts = [f"{label} {float(spread[params.actor]):.2f}x"
                 for label, spread in zip(branch_labels(params.strategy, info.criteria), info.spread())]
        normalise = self.masking_config(params).normalise
        return (f"keep-probability spread max p / min p at tau={params.tau:.2f} ({normalise} normalisation): "
                + ", ".join(parts) + "  (1x = random masking)")

    def clip_name(self, params: ExplorerParams) -> str:
        ds = self._dataset(self.model(params.checkpoint, params.geometry).cfg.num_frames)
        i = int(ds.sample_indices[params.sample])
        actor = f", actor {params.actor + 1}" if int(self.store.num_actors[i]) > 1 else ""
        return f"{self.store.names[i]} ({self.store.class_names[self.store.labels[i]]}{actor})"

    def figures(self, params: ExplorerParams, width: int = DEFAULT_WIDTH) -> tuple[dict[str, go.Figure], dict[str, str]]:
        """The views for resolved params, sized for a notebook `width` px wide (`figure_sizes`), and
        their texts {"checkpoint", "overlap", "spread"}."""
        model = self.model(params.checkpoint, params.geometry)
        info = self.masks(params)
        others = {s: info if s == params.strategy else self.masks(params, s)
                  for s in dict.fromkeys([s for s, _ in CRITERION_PANELS] + [s for s, _ in OVERLAP_WITH])}
        status, order = self._node_status(params, info)
        clip_name = self.clip_name(params)
        spread = self.spread_text(params, info)
        texts = {"checkpoint": self.checkpoint_text(params), "overlap": self.overlap_text(params, info, others),
                 "spread": spread}
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        index = {j: i for i, j in enumerate(clip.nodes)}
        t_patch, t = model.cfg.t_patch, params.time_patch
        frame = t * t_patch + t_patch // 2
        skel = skeleton_figure(clip.frames, [status[index[j]] for j in range(NUM_JOINTS)], animate=False,
                               frame=frame, status_order=order,
                               title=f"{clip_name}<br><sup>frame {frame} (middle of time patch {t})</sup>")
        a = params.actor
        current = f"{params.strategy} (current: {', '.join(dict.fromkeys(info.criteria))})"
        panels = [TokenPanel(current, ~info.mask[a].numpy(),
                             None if params.strategy == "random" else info.scores[a].numpy(), _log_ratio(info, a))]
        panels += [TokenPanel(title, ~others[s].mask[a].numpy(), None if s == "random" else others[s].scores[a].numpy(),
                              _log_ratio(others[s], a)) for s, title in CRITERION_PANELS]
        grid = token_grid_figure(panels, [JOINT_NAMES[j] for j in joint_set(model.cfg.prune)], t_patch=t_patch,
                                 title=f"Kept tokens, mask ratio {params.mask_ratio:.2f}, tau {params.tau:.2f}, "
                                       f"seed {params.seed}: {clip_name}<br><sup>{spread}</sup>")
        curves = {f"{other.criteria[0]} ({normalise})": (TAU_GRID, _spread_curve(other, a, normalise))
                  for s, other in others.items() if s != "random" for normalise in NORMALISATIONS}
        spread_fig = keep_spread_figure(curves, tau=params.tau,
                                        title=f"How far each criterion's masks are from random: {clip_name}")
        sizes = figure_sizes(width)
        figs = {"disk": self.disk_view(params, info, status, order, size=sizes["disk"]), "skeleton": skel,
                "tokens": grid, "radii": self.radius_view(params), "spread": spread_fig}
        return {k: fit_layout(f, sizes[k][0], sizes[k][1] or f.layout.height) for k, f in figs.items()}, texts

    def _node_status(self, params: ExplorerParams, info: MaskInfo) -> tuple[list[str], list[str]]:
        """Status of every disk node at params' time patch ("<branch> kept|masked", trunk ...), and
        the fixed order of the status traces."""
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        tokens = list(joint_set(self.model(params.checkpoint, params.geometry).cfg.prune))
        t, mask = params.time_patch, info.mask[params.actor].numpy()
        branch = _branch_name(params.strategy, info.criteria[int(info.patch_branch[t])])
        status = [f"{branch} {'masked' if mask[t, tokens.index(j)] else 'kept'}" if j in tokens
                  else PARENT_STATUS if j < 0 else TRUNK_STATUS for j in clip.nodes]
        return status, [f"{branch} kept", f"{branch} masked", TRUNK_STATUS, PARENT_STATUS]

    @staticmethod
    def _centred(xy: np.ndarray, centre: str, *, poincare: bool) -> np.ndarray:
        """Positions [n, 2] moved so that `centre` (a CENTRES entry; the parent point is the last
        node) is at the origin: Möbius addition on the disk, a translation on the plane."""
        if centre == "origin":
            return xy
        point = xy[-1] if centre == "parent point" else disk_midpoint(xy) if poincare else xy.mean(0)
        return recentre(xy, point, geometry="poincare" if poincare else "euclidean")

    def view_layout(self, params: ExplorerParams) -> np.ndarray:
        """[n, 2] positions of resolved params' time patch as drawn: re-centred (`_centred`), then
        radially rescaled (Möbius scalar multiplication, disk only)."""
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        poincare = params.geometry == "poincare"
        xy = self._centred(clip.layout[params.time_patch], params.centre, poincare=poincare)
        return rescale(xy, params.radial_scale) if poincare and params.radial_scale != 1.0 else xy

    def _view_note(self, params: ExplorerParams) -> str:
        moved = {"origin": "", "parent point": "re-centred at the parent point",
                 "midpoint": "re-centred at the patch midpoint"}[params.centre]
        scaled = f"distances from the centre x {params.radial_scale:.2f}" \
            if params.geometry == "poincare" and params.radial_scale != 1.0 else ""
        note = ", ".join(x for x in (moved, scaled) if x)
        return note or ("distances from the origin faithful" if params.geometry == "poincare" else "|x| = L2 norm")

    def disk_view(self, params: ExplorerParams, info: MaskInfo, status: list[str], order: list[str], *,
                  size: tuple[int, int] = (DEFAULT_WIDTH - CONTROLS_WIDTH - 10, HEIGHTS["disk"])) -> go.Figure:
        """The token points of params' time patch in the checkpoint's geometry (disk or plane),
        labels placed for a figure of `size` (width, height) px."""
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        tokens = list(joint_set(self.model(params.checkpoint, params.geometry).cfg.prune))
        t, a = params.time_patch, params.actor
        scores = [info.scores[a, t, tokens.index(j)].item() if j in tokens else np.nan for j in clip.nodes]
        index = {j: i for i, j in enumerate(clip.nodes)}
        edges = [(index[j], index[PARENTS[j]]) for j in range(NUM_JOINTS) if PARENTS[j] >= 0]
        labels = [JOINT_NAMES[j] if j >= 0 else PARENT_LABEL for j in clip.nodes]
        crit = info.criteria[int(info.patch_branch[t])]
        where = "Poincaré disk" if params.geometry == "poincare" else "Euclidean plane (PCA, no disk)"
        return poincare_disk_figure(
            self.view_layout(params), labels, status=status, status_order=order, edges=edges, dist0=clip.dist0[t],
            scores=scores, geometry=params.geometry, label_priority=_label_priority(clip.nodes),
            axis_note="", size=size,   # the subtitle says how the plane was made
            title=f"{where}: {self.clip_name(params)}<br><sup>time patch {t}, "
                  f"{_branch_name(params.strategy, crit)} branch ({crit}), model: {params.checkpoint}<br>"
                  f"PCA plane, parent point down; {self._view_note(params)}</sup>")

    def radius_view(self, params: ExplorerParams) -> go.Figure:
        """dist0 of every token, trunk joint and parent point of the clip (all time patches)."""
        clip = self.encoded(params.sample, params.actor, params.checkpoint, params.geometry)
        model = self.model(params.checkpoint, params.geometry)
        tokens = set(joint_set(model.cfg.prune))
        kinds = {"tokens": [j in tokens for j in clip.nodes],
                 "trunk joints": [j >= 0 and j not in tokens for j in clip.nodes], "parent point": [j < 0 for j in clip.nodes]}
        dist0 = {name: clip.dist0[:, np.array(sel)] for name, sel in kinds.items() if any(sel)}
        lines = {}
        if params.geometry == "poincare":
            c = model.cfg.curvature
            lines = {f"float32 projection (eps {eps:g}) clips beyond": 2 / math.sqrt(c) * math.atanh(1 - eps)
                     for eps in (FLOAT32_BALL_EPS, RELEASE_BALL_EPS)}
        note = ("depth in the hierarchy; a float32 projection puts every point beyond its line on one sphere"
                if lines else "Euclidean norm: no ball, nothing is projected")
        return radius_figure(dist0, clip_lines=lines,
                             title=f"Distance from the origin ({params.geometry}), model {params.checkpoint}, "
                                   f"clip {params.sample}<br><sup>{note}</sup>")

    # -- views over many clips ----------------------------------------------------------------

    @torch.no_grad()
    def _over_clips(self, checkpoint: str, geometry: str, clips: int) -> _Clips:
        """`clips` clips evenly spaced over the dataset, every present actor embedded once."""
        key = (checkpoint, geometry, clips)
        if key not in self._many:
            model = self.model(checkpoint, geometry)
            ds = self._dataset(model.cfg.num_frames)
            samples = np.unique(np.linspace(0, len(ds) - 1, min(clips, len(ds))).round().astype(int))
            seqs, tokens, trunk, labels, clip_of = [], [], [], [], []
            for start in range(0, len(samples), 64):                  # batches bound the memory
                x = torch.stack([self.clip(int(i), model.cfg.num_frames)[0][0] for i in samples[start:start + 64]])
                info = model.masks(x)
                s, actor_mask = split_actors(x)
                seqs.append(s[:, :, model.encoder.joints])
                tokens.append(info.tokens)
                trunk.append(info.trunk)
                clip_labels = self.store.labels[ds.sample_indices[samples[start:start + 64]]]
                labels.append(np.repeat(clip_labels, actor_mask.sum(1).numpy()))
                clip_of.append(np.repeat(samples[start:start + 64], actor_mask.sum(1).numpy()))
            self._many[key] = _Clips(len(samples), torch.cat(seqs), torch.cat(tokens), torch.cat(trunk),
                                     np.concatenate(labels), np.concatenate(clip_of))
        return self._many[key]

    def _clip_selection(self, params: ExplorerParams, clips: int, class_name: str | None) -> tuple[_Clips, np.ndarray]:
        many = self._over_clips(params.checkpoint, params.geometry, clips)
        if class_name is None:
            return many, np.arange(len(many.labels))
        if class_name not in self.store.class_names:
            raise HacmError(f"MaskExplorer: class_name {class_name!r} is not a class of {self.store.path}; "
                            f"expected one of {list(self.store.class_names)}")
        chosen = np.flatnonzero(many.labels == self.store.class_names.index(class_name))
        if not len(chosen):
            raise HacmError(f"MaskExplorer: no clip of class {class_name!r} among the {many.clips} clips drawn; "
                            f"raise `clips`")
        return many, chosen

    def keep_frequencies(self, params: ExplorerParams, *, clips: int = OVER_CLIPS, class_name: str | None = None,
                         draws: int = FREQUENCY_DRAWS) -> list[KeepFrequency]:
        """How often the current strategy and each criterion keep each token, over `clips` clips
        (every present actor, `draws` Gumbel draws each, from params.seed), optionally of one class."""
        many, chosen = self._clip_selection(params, clips, class_name)
        model = self.model(params.checkpoint, params.geometry)
        sel = torch.as_tensor(chosen)
        actors = torch.ones(len(chosen), 1, dtype=torch.bool)      # each sequence its own "clip"
        out = []
        for strategy, title in [(params.strategy, f"{params.strategy} (current)"), *CRITERION_PANELS]:
            cfg = self.masking_config(params, strategy)
            generator = torch.Generator().manual_seed(params.seed)
            info = draw_masks(many.seqs[sel], many.tokens[sel], many.trunk[sel], actors, cfg,
                              geometry=model.encoder.geometry, temporal=model.temporal, t_patch=model.cfg.t_patch,
                              generator=generator)
            # further draws from the same keep probabilities: the scores do not change between draws
            S, TP, V = info.mask.shape
            positions = [branch_positions(p, V) for p in info.patches]
            masks = [info.mask] + [masked_grid(torch.cat([
                pos[gumbel_topk(info.log_p.flatten(1)[:, pos], num_keep(len(pos), cfg.mask_ratio), generator,
                                cfg.keep_high)] for pos in positions], 1), TP * V).view(S, TP, V)
                for _ in range(draws - 1)]
            out.append(keep_frequency(masks, info.patches, title))
        return out

    def depth(self, params: ExplorerParams, *, clips: int = OVER_CLIPS, class_name: str | None = None) -> DepthCorrelation:
        """Every joint's distance from the origin and from its parent point against its kinematic depth."""
        many, chosen = self._clip_selection(params, clips, class_name)
        model = self.model(params.checkpoint, params.geometry)
        sel = torch.as_tensor(chosen)
        return depth_correlation(many.tokens[sel], many.trunk[sel], joint_set(model.cfg.prune), model.encoder.geometry,
                                 clips=many.clip_of[chosen])

    def over_clips_figures(self, params: ExplorerParams, *, clips: int = OVER_CLIPS, class_name: str | None = None,
                           width: int = DEFAULT_WIDTH) -> tuple[dict[str, go.Figure], dict[str, str]]:
        """{"frequency", "depth"} figures over many clips and their captions."""
        model = self.model(params.checkpoint, params.geometry)
        freqs = self.keep_frequencies(params, clips=clips, class_name=class_name)
        depth = self.depth(params, clips=clips, class_name=class_name)
        which = f"class {class_name}" if class_name else "all classes"
        n_seq = freqs[0].draws // FREQUENCY_DRAWS
        where = (f"model {params.checkpoint} ({params.geometry}), {n_seq} sequences of {which} "
                 f"({self.benchmark} {self.part})")
        freq_fig = keep_frequency_figure(
            freqs, [JOINT_NAMES[j] for j in joint_set(model.cfg.prune)],
            title=f"How often each criterion keeps each token: {where}<br><sup>mask ratio {params.mask_ratio:.2f}, "
                  f"tau {params.tau:.2f}, {FREQUENCY_DRAWS} draws per sequence from seed {params.seed}; "
                  f"red: kept more often than uniform masking, blue: less</sup>")
        depth_fig = depth_figure(depth, geometry=params.geometry,
                                 title=f"Depth in the embedding against depth in the skeleton tree: {where}")
        texts = {"frequency": (f"Keep frequency of every (time patch, joint) token relative to uniform masking with "
                               f"the same kept count per branch, {where}, mask ratio {params.mask_ratio:.2f}, tau "
                               f"{params.tau:.2f}, {FREQUENCY_DRAWS} draws each. Uniformity (chi-square): "
                               + "; ".join(f.describe() for f in freqs) + "."),
                 "depth": (f"Each joint's distance from the origin and from its time patch's parent point (mean over "
                           f"time patches) against its depth in the kinematic tree, {where}. From the origin: "
                           f"{depth.origin.describe()}. From the parent point: {depth.parent.describe()}.")}
        sizes = figure_sizes(width)
        return {"frequency": fit_layout(freq_fig, *sizes["frequency"]), "depth": fit_layout(depth_fig, *sizes["depth"])}, texts

    def static_figures(self, **params) -> dict[str, go.Figure]:
        """{"disk", "skeleton", "tokens", "radii", "spread"} as plain go.Figure for batch mode
        (ExplorerParams fields)."""
        return self.figures(self.resolve(**params))[0]
