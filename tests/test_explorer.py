"""The mask explorer on a tiny store with a tiny model: widgets drive the figures, batch mode works."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from hacm import checkpoint as ckpt
from hacm.config import DataConfig, RunConfig, to_dict
from hacm.data.store import SampleRecord, StoreWriter
from hacm.model import HACM, ModelConfig
from hacm.viz.explorer import MaskExplorer

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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A hacm run directory whose checkpoint differs from the seed-0 untrained model.

    Written with a model config the explorer is NOT given, so the test also proves that the
    run's own config is used (dim 24 would not load into the explorer's dim-16 default)."""
    cfg = RunConfig(data=DataConfig(window_size=12), model=ModelConfig(num_frames=12, t_patch=3, dim=24, depth=1, heads=2, decoder_dim=24,
                                      decoder_depth=1))
    torch.manual_seed(123)
    model = HACM(cfg.model, cfg.masking)
    run = tmp_path_factory.mktemp("run")
    ckpt.save_checkpoint(run / ckpt.CHECKPOINT_DIR / "last.pt",
                         {"format": ckpt.FORMAT, "version": ckpt.VERSION, "protocol": "pretrain",
                          "config": to_dict(cfg), "model": model.state_dict()})
    return run


def _xy(fw, name):
    tr = next(t for t in fw.data if t.name == name)
    return np.asarray(tr.x, dtype=float), np.asarray(tr.y, dtype=float)


def test_controls_update_figure_widgets(store, checkpoint):
    ex = MaskExplorer(store, {"untrained": None, "trained": checkpoint}, model_config=TINY)
    box = ex.widget
    assert box.children, "the VBox holds the controls and figures"
    disk, grid = ex.figure_widgets["disk"], ex.figure_widgets["tokens"]
    assert isinstance(disk, go.FigureWidget) and isinstance(grid, go.FigureWidget)
    kept_before = [np.asarray(t.x).copy() for t in grid.data if t.type == "scatter"]
    layout_before = disk.data[-1].x  # the parent point: moves with the embedding

    ex.controls["seed"].value = 7            # a new Gumbel draw: other kept tokens
    kept_after = [np.asarray(t.x) for t in grid.data if t.type == "scatter"]
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(kept_before, kept_after))

    ex.controls["checkpoint"].value = "trained"   # other weights: other points on the disk
    assert not np.allclose(disk.data[-1].x, layout_before)
    assert ex.model("trained", "poincare").cfg.dim == 24
    trained = ex.model("trained", "poincare").encoder.state_dict()
    saved = ckpt.load_checkpoint(checkpoint / "checkpoints" / "last.pt")["model"]
    assert torch.equal(trained["pos_embed"], saved["encoder.pos_embed"])

    ex.controls["time_patch"].value = 1
    assert "time patch 1" in disk.layout.title.text
    assert "spread" in ex.spread_label.value and ex.status_label.value == ""


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


def test_bad_parameters_name_the_field(store):
    ex = MaskExplorer(store, model_config=TINY)
    with pytest.raises(Exception, match="time_patch"):
        ex.static_figures(time_patch=99)
    with pytest.raises(Exception, match="strategy"):
        ex.static_figures(strategy="nope")
