"""The mask explorer on a tiny store with tiny models: each checkpoint is shown as it was trained, the
widget's controls follow the checkpoint and the clip, the disk view's transforms do what they say,
and the mask-overlap numbers agree with their definition."""
from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from hacm import checkpoint as ckpt
from hacm.config import DataConfig, RunConfig, to_dict
from hacm.data.store import SampleRecord, StoreWriter
from hacm.geometry import make_geometry
from hacm.masking import MaskingConfig
from hacm.model import HACM, ModelConfig
from hacm.viz import poincare
from hacm.viz.explorer import MaskExplorer
from hacm.viz.explorer_widget import ExplorerWidget
from hacm.viz.overlap import mask_overlap

TINY = ModelConfig(num_frames=12, t_patch=3, dim=16, depth=1, heads=2, decoder_dim=16, decoder_depth=1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    out = tmp_path_factory.mktemp("store")
    with StoreWriter(out, dataset="synth", class_names=["wave", "jump"]) as w:
        for i in range(4):
            frames = rng.normal(scale=0.3, size=(1 + i % 2, 20 + i, 25, 3)).astype(np.float32)
            w.add(SampleRecord(name=f"S001C001P00{i + 1}R001A00{i % 2 + 1}", label=i % 2, frames=frames))
        return w.finish({"synth-xsub": {"train": np.array([0, 1]), "test": np.array([2, 3])}})


def _run(tmp_path_factory, model: ModelConfig, masking: MaskingConfig, seed: int):
    """A hacm run directory holding a pre-training checkpoint of `model` / `masking`."""
    cfg = RunConfig(data=DataConfig(window_size=model.num_frames), model=model, masking=masking)
    torch.manual_seed(seed)
    run = tmp_path_factory.mktemp("run")
    ckpt.save_checkpoint(run / ckpt.CHECKPOINT_DIR / "last.pt",
                         {"format": ckpt.FORMAT, "version": ckpt.VERSION, "protocol": "pretrain",
                          "config": to_dict(cfg), "model": HACM(cfg.model, cfg.masking).state_dict()})
    return run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An HA-CM run (Poincaré, 12 frames, t_patch 3: 4 time patches, width 24) whose weights differ
    from the seed-0 untrained model, with a config the explorer is NOT given (dim 24 would not load
    into a dim-16 model): the run's own config must be used."""
    return _run(tmp_path_factory, ModelConfig(num_frames=12, t_patch=3, dim=24, depth=1, heads=2, decoder_dim=24,
                                              decoder_depth=1), MaskingConfig(), seed=123)


@pytest.fixture(scope="module")
def mamp_checkpoint(tmp_path_factory):
    """A MAMP-style run: Euclidean, motion masking (one branch), 16 frames, t_patch 2: 8 time patches."""
    return _run(tmp_path_factory, ModelConfig(num_frames=16, t_patch=2, dim=16, depth=1, heads=2, decoder_dim=16,
                                              decoder_depth=1, geometry="euclidean", cc_weight=0.0,
                                              motion_expmap=False), MaskingConfig(strategy="motion"), seed=5)


def _disk_points(fw) -> np.ndarray:
    """Every token, trunk joint and parent point drawn on a disk FigureWidget, as one [n, 2] array."""
    pts = [np.stack([np.asarray(t.x, float), np.asarray(t.y, float)], -1) for t in fw.data
           if t.type == "scatter" and t.mode == "markers+text" and t.x is not None and len(t.x)]
    return np.concatenate(pts)


def _kept_x(fw):
    return [np.asarray(t.x).copy() for t in fw.data if t.type == "scatter"]


def test_controls_update_figure_widgets(store, checkpoint):
    ex = MaskExplorer(store, {"untrained": None, "trained": checkpoint}, model_config=TINY)
    ui = ExplorerWidget(ex)
    assert ui.box.children, "the box holds the controls and figures"
    disk, grid = ui.figure_widgets["disk"], ui.figure_widgets["tokens"]
    assert isinstance(disk, go.FigureWidget) and isinstance(grid, go.FigureWidget)
    ui.width.value = 1400                    # a wider notebook: wider figures, nothing recomputed
    assert (disk.layout.width, grid.layout.width) == (1400 - 310, 1400)
    kept_before = _kept_x(grid)
    points_before = _disk_points(disk)   # move with the embedding

    ui.controls["seed"].value = 7            # a new Gumbel draw: other kept tokens
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(kept_before, _kept_x(grid)))
    assert "drawn in" in ui.busy.value and ui.latency_s > 0

    ui.controls["checkpoint"].value = "trained"   # other weights: other points on the disk
    after = _disk_points(disk)
    assert after.shape != points_before.shape or not np.allclose(after, points_before)
    assert ex.model("trained").cfg.dim == 24
    saved = ckpt.load_checkpoint(checkpoint / "checkpoints" / "last.pt")["model"]
    assert torch.equal(ex.model("trained").encoder.state_dict()["pos_embed"], saved["encoder.pos_embed"])

    ui.controls["time_patch"].value = 1
    assert "time patch 1" in disk.layout.title.text
    assert "spread" in ui.texts["spread"].value and ui.status.value == ""


def test_each_checkpoint_is_shown_as_trained(store, checkpoint, mamp_checkpoint):
    ex = MaskExplorer(store, {"HA-CM": checkpoint, "MAMP-style": mamp_checkpoint, "untrained": None})
    # the untrained model is built from the compared (first hacm) config, not ModelConfig()'s defaults
    assert ex.model("untrained").cfg == ex.model("HA-CM").cfg
    mamp = ex.resolve(checkpoint="MAMP-style")
    assert (mamp.geometry, mamp.strategy) == ("euclidean", "motion")
    figs, texts = ex.figures(mamp)
    names = {t.name for t in figs["disk"].data}
    assert "boundary |x| = 1" not in names and "Poincaré" not in figs["disk"].layout.title.text
    assert not any(n.startswith(("temporal", "spatial")) for n in names), "no HA-CM branches on a MAMP checkpoint"
    assert "euclidean geometry, masking motion with one branch" in texts["checkpoint"]
    assert "8 time patches" in texts["checkpoint"]
    assert not any(t.name.startswith("float32") for t in figs["radii"].data)
    hacm = ex.resolve(checkpoint="HA-CM")
    figs, texts = ex.figures(hacm)
    names = {t.name for t in figs["disk"].data}
    assert "boundary |x| = 1" in names and {"temporal kept", "temporal masked"} <= names
    assert "two branches" in texts["checkpoint"] and "4 time patches" in texts["checkpoint"]
    # a geometry override is said, not hidden
    assert "trained euclidean" in ex.figures(ex.resolve(checkpoint="MAMP-style", geometry="poincare"))[1]["checkpoint"]


def test_time_patch_range_follows_the_checkpoint(store, checkpoint, mamp_checkpoint):
    ui = ExplorerWidget(MaskExplorer(store, {"HA-CM": checkpoint, "MAMP-style": mamp_checkpoint}))
    tp = ui.controls["time_patch"]
    assert tp.max == 3
    traces = len(ui.figure_widgets["disk"].data)
    ui.controls["checkpoint"].value = "MAMP-style"
    assert tp.max == 7
    assert len(ui.figure_widgets["disk"].data) == traces, "disk and plane share their traces: updated in place"
    tp.value = 7
    assert "time patch 7" in ui.figure_widgets["disk"].layout.title.text
    ui.controls["checkpoint"].value = "HA-CM"        # fewer time patches: the slider shrinks, no error
    assert (tp.max, tp.value) == (3, 3) and ui.status.value == ""
    assert "time patch 3" in ui.figure_widgets["disk"].layout.title.text
    assert ui.controls["radial_scale"].disabled is False
    ui.controls["checkpoint"].value = "MAMP-style"
    assert ui.controls["radial_scale"].disabled is True   # no disk to rescale on a plane


def test_clip_by_class_and_actor(store, checkpoint):
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    clips = ex.clips_by_class()
    assert clips == {"wave": [("S001C001P003R001A001", 0)], "jump": [("S001C001P004R001A002 (2 actors)", 1)]}
    ui = ExplorerWidget(ex)
    assert ui.controls["actor"].disabled
    ui.controls["class"].value = "jump"
    assert ui.controls["sample"].value == 1 and len(ui.controls["actor"].options) == 2
    disk = ui.figure_widgets["disk"]
    first = _disk_points(disk)
    ui.controls["actor"].value = 1
    assert "jump, actor 2" in disk.layout.title.text
    assert not np.allclose(_disk_points(disk), first), "the second actor has its own embedding"
    with pytest.raises(Exception, match="actor"):
        ex.resolve(sample=0, actor=1)


def test_overlap_numbers(store, checkpoint):
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    params = ex.resolve(sample=1, mask_ratio=0.8, tau=0.9, seed=3)
    text = ex.figures(params)[1]["overlap"]
    assert text.splitlines()[0].startswith("hacm mask vs the random mask (MAE), seed 3: ")
    assert text.splitlines()[1].startswith("hacm mask vs the MAMP mask (motion), seed 3: ")
    info = ex.masks(params)
    same = mask_overlap(info.mask[0], info.patches, info.mask[0], info.patches)
    assert same.kept_common == same.kept and same.jaccard == 1.0
    # the strategy compared with itself is not listed
    assert "the random mask" not in ex.figures(ex.resolve(sample=1, strategy="random"))[1]["overlap"]


def test_overlap_chance_is_the_mean_of_independent_random_masks():
    """Chance levels against the average over many independent uniform draws (fixed seed)."""
    rng = np.random.default_rng(0)
    TP, V = 8, 18
    two = (np.arange(0, TP, 2), np.arange(1, TP, 2))
    one = (np.arange(TP),)

    def draw(patches, keep_per_branch):
        mask = np.ones((TP, V), dtype=bool)
        for p, k in zip(patches, keep_per_branch):
            flat = np.ones(len(p) * V, dtype=bool)
            flat[rng.choice(flat.size, k, replace=False)] = False
            mask[p] = flat.reshape(len(p), V)
        return mask

    draws = [(draw(two, (5, 9)), draw(one, (20,))) for _ in range(4000)]
    stats = [mask_overlap(a, two, b, one) for a, b in draws]
    expected = stats[0]
    observed_kept = np.mean([s.kept_common for s in stats])
    se = np.std([s.kept_common for s in stats]) / np.sqrt(len(stats))
    assert abs(observed_kept - expected.chance_kept_common) < 4 * se
    assert expected.chance_kept_common == pytest.approx((5 * 20 + 9 * 20) / (TP * V))
    assert abs(np.mean([s.jaccard for s in stats]) - expected.chance_jaccard) < 0.01


def _tangents(seed: int, n: int = 19, dim: int = 12) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64) * torch.linspace(0.3, 1.6, n, dtype=torch.float64)[:, None]


def test_orientation_survives_rotations_and_sign_flips():
    """The same clip embedded in a rotated space (another PCA basis, other signs) is drawn the same."""
    e = _tangents(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    g = make_geometry("poincare")
    left, right = [1, 2, 3], [4, 5, 6]

    def drawn(x, flip=(1.0, 1.0)):
        basis = poincare.pca_basis(x) * np.array(flip)
        xy = poincare.disk_layout(x, g.dist0(g.points(x)), basis=basis)
        return poincare.orient_layout(xy, down=[18], left=left, right=right)

    reference = drawn(e)
    for other in (drawn(e @ q.T), drawn(e, (-1.0, 1.0)), drawn(e, (1.0, -1.0)), drawn(-e)):
        np.testing.assert_allclose(other, reference, atol=1e-9)
    assert reference[18, 0] == pytest.approx(0.0, abs=1e-12) and reference[18, 1] < 0, "reference node points down"
    assert reference[left, 0].mean() < reference[right, 0].mean()
    # an isometry of the disk: every distance from the origin unchanged
    unoriented = poincare.disk_layout(e, g.dist0(g.points(e)))
    np.testing.assert_allclose(poincare.disk_dist0(reference), poincare.disk_dist0(unoriented), rtol=1e-12)


def _disk_distances(xy: np.ndarray) -> np.ndarray:
    """All pairwise distances of unit-disk points in closed form, arcosh(1 + 2|x-y|^2 / ((1-|x|^2)(1-|y|^2))),
    float64: an independent check of geoopt's Möbius addition (points a re-centring puts 1e-7 from the
    rim are beyond geoopt's own float64 projection margin, so its `dist` would not do)."""
    sq = ((xy[:, None] - xy[None]) ** 2).sum(-1)
    rim = 1 - (xy ** 2).sum(-1)
    return np.arccosh(1 + 2 * sq / (rim[:, None] * rim[None]))


def test_recentre_moves_the_centre_to_the_origin_and_keeps_distances():
    g = make_geometry("poincare")
    e = _tangents(2)
    xy = poincare.disk_layout(e, g.dist0(g.points(e)))
    for centre in (xy[-1], poincare.disk_midpoint(xy)):
        moved = poincare.recentre(xy, centre)
        np.testing.assert_allclose(_disk_distances(moved), _disk_distances(xy), rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(poincare.recentre(centre[None], centre)[0], 0.0, atol=1e-12)
        assert not np.allclose(moved, xy)
    # on the plane a re-centring is a translation
    np.testing.assert_allclose(poincare.recentre(xy, xy[3], geometry="euclidean"), xy - xy[3])


def test_rescale_multiplies_distances_from_the_origin():
    g = make_geometry("poincare")
    e = _tangents(3)
    xy = poincare.disk_layout(e, g.dist0(g.points(e)))
    half = poincare.rescale(xy, 0.5)
    np.testing.assert_allclose(poincare.disk_dist0(half), 0.5 * poincare.disk_dist0(xy), rtol=1e-9)
    direction = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    np.testing.assert_allclose(direction(half), direction(xy), atol=1e-12)
    assert np.linalg.norm(half, axis=-1).max() < 0.99 < np.linalg.norm(xy, axis=-1).max()


def test_explorer_view_applies_centre_and_scale(store, checkpoint):
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    faithful = ex.view_layout(ex.resolve(time_patch=1, centre="origin", radial_scale=1.0))
    centred = ex.view_layout(ex.resolve(time_patch=1, centre="parent point", radial_scale=1.0))
    np.testing.assert_allclose(centred[-1], 0.0, atol=1e-12)    # the parent point is the last node
    scaled = ex.view_layout(ex.resolve(time_patch=1, centre="origin", radial_scale=0.4))
    np.testing.assert_allclose(poincare.disk_dist0(scaled), 0.4 * poincare.disk_dist0(faithful), rtol=1e-9)
    fig = ex.static_figures(time_patch=1, centre="parent point", radial_scale=0.4)
    title = re.sub("<[^>]+>", " ", fig["disk"].layout.title.text)     # lines wrap to the figure's width
    assert "re-centred at the parent point, distances from the centre x 0.40" in " ".join(title.split())


def test_printed_labels_do_not_collide():
    rng = np.random.default_rng(4)
    xy = rng.uniform(-0.3, 0.3, size=(25, 2))          # crowded: most labels must give way
    labels = [f"joint_{i}" for i in range(25)]
    priority = [7, *[i for i in range(25) if i != 7]]
    shown = poincare.visible_labels(xy, labels, priority, char_width=0.02, height=0.05)
    assert shown[7], "the first label in priority order is always printed"
    assert 1 < sum(shown) < 25
    sides = poincare.label_sides(xy)
    boxes = []
    for i in np.flatnonzero(shown):
        w = len(labels[i]) * 0.02
        x0 = xy[i, 0] if sides[i] == "middle right" else xy[i, 0] - w
        boxes.append((x0, x0 + w, xy[i, 1] - 0.025, xy[i, 1] + 0.025))
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
    fig = poincare.poincare_disk_figure(xy, labels, status=["single kept"] * 25, label_priority=priority)
    printed = [t for tr in fig.data if tr.name == "single kept" for t in tr.text if t]
    assert 1 < len(printed) < 25 and "joint_7" in printed     # crowded: the figure prints some, key first
    assert all(tr.cliponaxis is False for tr in fig.data if tr.name == "single kept")


def test_static_figures_and_spread(store):
    ex = MaskExplorer(store, model_config=TINY)
    figs = ex.static_figures(sample=1, time_patch=2, tau=0.5, seed=3, strategy="hacm")
    assert set(figs) == {"disk", "skeleton", "tokens", "radii", "spread"}
    assert all(type(f) is go.Figure for f in figs.values())
    assert "time patch 2" in figs["disk"].layout.title.text
    # The token grid has one heatmap per panel: current strategy + four criteria.
    assert sum(t.type == "heatmap" for t in figs["tokens"].data) == 5
    assert "spread" in figs["tokens"].layout.title.text
    # Euclidean geometry: no unit circle on the plane view.
    figs_e = ex.static_figures(geometry="euclidean")
    assert not any(t.name == "boundary |x| = 1" for t in figs_e["disk"].data)


def test_motion_panel_is_mamp_and_spreads_follow_the_normalisation(store):
    ex = MaskExplorer(store, model_config=TINY)
    params = ex.resolve(sample=1, tau=0.9, seed=3)
    # the "motion (MAMP)" panel masks the high-motion tokens over all patches, as MAMP
    mamp = ex.masks(params, "motion")
    assert len(mamp.patches) == 1
    a = 0
    kept_motion = mamp.scores[a][~mamp.mask[a]].mean()
    masked_motion = mamp.scores[a][mamp.mask[a]].mean()
    assert kept_motion < masked_motion
    figs = ex.static_figures(sample=1, tau=0.9, seed=3)
    names = {t.name for t in figs["spread"].data}
    assert {"hierarchy (standard)", "hierarchy (release)", "attention (standard)", "motion (release)"} <= names
    # at tau 0.9 the standardised hierarchy criterion spreads far more than the release's
    curve = {t.name: np.asarray(t.y) for t in figs["spread"].data}
    i = int(np.argmin(np.abs(np.asarray(figs["spread"].data[0].x) - 0.9)))
    assert curve["hierarchy (standard)"][i] > 2 * curve["hierarchy (release)"][i]
    # the radius view counts every token of the clip
    token_hist = next(t for t in figs["radii"].data if t.name.startswith("tokens"))
    assert len(token_hist.x) == TINY.num_patches * TINY.num_tokens_joints


def test_masks_match_the_models_own_draw(store, checkpoint):
    """The explorer draws from cached embeddings: the same masks as model.masks on the clip."""
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    params = ex.resolve(sample=1, actor=1, seed=4, mask_ratio=0.7)
    model = ex.model("HA-CM")
    x = ex.encoded(1, 1, "HA-CM", "poincare").x
    for strategy in ("hacm", "motion", "random"):
        own = model.masks(x, torch.Generator().manual_seed(4), ex.masking_config(params, strategy))
        assert torch.equal(ex.masks(params, strategy).mask, own.mask)


def test_bad_parameters_name_the_field(store):
    ex = MaskExplorer(store, model_config=TINY)
    with pytest.raises(Exception, match="time_patch"):
        ex.static_figures(time_patch=99)
    with pytest.raises(Exception, match="strategy"):
        ex.static_figures(strategy="nope")
    with pytest.raises(Exception, match="centre"):
        ex.static_figures(centre="middle")


def test_first_view_is_centred_at_the_parent_and_spread_over_the_disk(store, checkpoint):
    """Defaults: the parent point at the centre, the radial scale from the data so that the clip's
    median point (every time patch) sits at radius 0.5, not on the rim."""
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    p = ex.resolve(sample=1)
    assert p.centre == "parent point" and p.radial_scale != 1.0
    TP = ex.model("HA-CM").cfg.num_patches
    drawn = [ex.view_layout(ex.resolve(sample=1, time_patch=t)) for t in range(TP)]
    radii = np.concatenate([np.linalg.norm(xy[:-1], axis=-1) for xy in drawn])     # the parent point is the centre
    assert np.median(radii) == pytest.approx(0.5, abs=1e-3)   # exact up to the mean of the middle two
    np.testing.assert_allclose([xy[-1] for xy in drawn], 0.0, atol=1e-12)
    # the faithful view (scale 1) has another median: the test would fail if the scale went inert
    faithful = np.concatenate([np.linalg.norm(ex.view_layout(ex.resolve(sample=1, time_patch=t, radial_scale=1.0))[:-1],
                                              axis=-1) for t in range(TP)])
    assert abs(np.median(faithful) - 0.5) > 0.01
    assert f"centre x {p.radial_scale:.2f}" in re.sub("<[^>]+>", " ", ex.static_figures(sample=1)["disk"].layout.title.text)
    # a Euclidean view has no disk to rescale
    assert ex.resolve(sample=1, geometry="euclidean").radial_scale == 1.0


def test_spread_line_names_each_branch_once(store, checkpoint):
    """spatial_only / temporal_only draw two branches of one criterion: each is named by its time patches."""
    ex = MaskExplorer(store, {"HA-CM": checkpoint})
    for strategy, crit in (("spatial_only", "hierarchy"), ("temporal_only", "attention")):
        params = ex.resolve(sample=1, strategy=strategy)
        text = ex.spread_text(params, ex.masks(params))
        assert f"even time patches ({crit})" in text and f"odd time patches ({crit})" in text, text
        assert "single branch" not in text
    text = ex.figures(ex.resolve(sample=1))[1]["spread"]
    assert "temporal branch (attention)" in text and "spatial branch (hierarchy)" in text
    text = ex.figures(ex.resolve(sample=1, strategy="motion"))[1]["spread"]
    assert text.count("one branch (motion)") == 1


def test_projection_lines_leave_with_the_ball(store, checkpoint, mamp_checkpoint):
    """The float32 projection lines belong to the ball: gone from the histogram of a Euclidean
    checkpoint, also when the widget switches to it in place."""
    ui = ExplorerWidget(MaskExplorer(store, {"HA-CM": checkpoint, "MAMP-style": mamp_checkpoint}))
    radii = ui.figure_widgets["radii"]

    def lines():
        return [a.text for a in radii.layout.annotations if "projection" in (a.text or "")], len(radii.layout.shapes)

    assert lines()[1] == 2 and len(lines()[0]) == 2
    ui.controls["checkpoint"].value = "MAMP-style"
    assert lines() == ([], 0) and "no ball" in radii.layout.title.text
    ui.controls["checkpoint"].value = "HA-CM"
    assert lines()[1] == 2


def test_disk_labels_fit_the_drawn_size():
    """Label boxes are sized in pixels for the figure's size: a smaller figure prints fewer labels,
    and the boxes of the printed ones (in data units at that size) never overlap."""
    rng = np.random.default_rng(1)
    xy = rng.uniform(-0.6, 0.6, size=(25, 2))
    labels = [f"joint_number_{i}" for i in range(25)]
    status = ["single kept"] * 25

    def printed(size):
        fig = poincare.poincare_disk_figure(xy, labels, status=status, size=size)
        return [t for tr in fig.data if tr.name == "single kept" for t in tr.text if t]

    assert len(printed((400, 400))) < len(printed((1400, 1400)))
    px = min(1400 - poincare.LEFT_PX - poincare.RIGHT_PX, 1400 - 100 - poincare.BOTTOM_PX) / 2.16
    shown = poincare.visible_labels(xy, labels, range(25), char_width=poincare.LABEL_CHAR_EM * poincare.LABEL_PX / px,
                                    height=poincare.MARKER_PX / px, offset=(poincare.MARKER_PX / 2 + 3) / px)
    boxes = [b for b, s in zip(poincare.label_boxes(xy, labels, char_width=poincare.LABEL_CHAR_EM * poincare.LABEL_PX / px,
                                                     height=poincare.MARKER_PX / px,
                                                     offset=(poincare.MARKER_PX / 2 + 3) / px), shown) if s]
    for k, a in enumerate(boxes):
        for b in boxes[k + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
