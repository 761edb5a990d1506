"""The explorer's views over many clips act as their names say: the keep-frequency map of random
masking is flat within noise while the motion criterion's is not (and follows the moving joints per
class), the uniformity test holds its level, the depth correlation is right on constructed
embeddings, and the clip bootstrap widens the interval when a clip's points move together."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as sps
import torch

from hacm.data.store import SampleRecord, StoreWriter
from hacm.geometry import make_geometry
from hacm.model import ModelConfig
from hacm.skeleton import DEPTH, JOINT_NAMES, TOKEN_JOINTS, TRUNK_JOINTS
from hacm.stats import spearman_by_cluster
from hacm.viz.clipviews import depth_correlation, keep_frequency
from hacm.viz.explorer import MaskExplorer, demo_inputs

TINY = ModelConfig(num_frames=12, t_patch=3, dim=16, depth=1, heads=2, decoder_dim=16, decoder_depth=1)
MOVING = {"wave": ("right_wrist", "right_hand", "right_hand_tip", "right_thumb"),
          "kick": ("right_ankle", "right_foot", "right_knee")}


@pytest.fixture(scope="module")
def moving_store(tmp_path_factory):
    """Still skeletons whose right hand moves in "wave" clips and whose right foot moves in "kick" clips."""
    rng = np.random.default_rng(0)
    pose = rng.normal(scale=0.3, size=(25, 3))
    out = tmp_path_factory.mktemp("moving")
    with StoreWriter(out, dataset="synth", class_names=list(MOVING)) as w:
        for i in range(48):
            label = i % 2
            T = 24 + i % 5
            frames = np.repeat(pose[None], T, 0) + rng.normal(scale=0.002, size=(T, 25, 3))
            t = np.arange(T)[:, None]
            for name in MOVING[list(MOVING)[label]]:
                frames[:, JOINT_NAMES.index(name)] += 0.4 * np.sin(0.9 * t + rng.uniform(0, 6, size=3))
            w.add(SampleRecord(name=f"S001C001P{i + 1:03d}R001A00{label + 1}", label=label,
                               frames=frames[None].astype(np.float32)))
        return w.finish({"synth-xsub": {"train": np.arange(8), "test": np.arange(48)}})


def test_random_map_is_flat_and_the_motion_map_follows_the_moving_joints(moving_store):
    ex = MaskExplorer(moving_store, model_config=TINY)
    params = ex.resolve(tau=0.3, seed=1)
    freqs = {f.title: f for f in ex.keep_frequencies(params, clips=48)}
    random, motion = freqs["random (MAE)"], freqs["motion (MAMP)"]
    assert random.draws == motion.draws == 48 * 4
    assert random.p > 0.01, random.describe()            # flat within noise
    assert motion.p < 1e-6, motion.describe()            # the criterion shows
    tokens = [JOINT_NAMES[j] for j in TOKEN_JOINTS]
    for cls, joints in MOVING.items():
        per_class = {f.title: f for f in ex.keep_frequencies(params, clips=48, class_name=cls)}["motion (MAMP)"]
        assert per_class.draws == 24 * 4
        ratio = per_class.ratio.mean(0)                  # [V] over time patches
        moving = [tokens.index(j) for j in joints if j in tokens]
        still = [v for v in range(len(tokens)) if v not in moving]
        # MAMP masks the high-motion tokens: the moving joints of this class are kept less than chance
        assert ratio[moving].max() < 0.7 < ratio[still].min(), (cls, ratio.round(2))
    with pytest.raises(Exception, match="class_name"):
        ex.keep_frequencies(params, clips=48, class_name="jump")


def test_uniformity_test_holds_its_level():
    """Uniform masks (k of L per branch): the test rejects at 5 % about 5 % of the time."""
    rng = np.random.default_rng(0)
    TP, V, n = 4, 6, 30
    patches = (np.array([0, 2]), np.array([1, 3]))

    def uniform_masks():
        mask = np.ones((n, TP, V), dtype=bool)
        for p in patches:
            flat = np.ones((n, len(p) * V), dtype=bool)
            for s in range(n):
                flat[s, rng.choice(len(p) * V, 2, replace=False)] = False
            mask[:, p] = flat.reshape(n, len(p), V)
        return mask

    p_values = np.array([keep_frequency([uniform_masks()], patches, "uniform").p for _ in range(400)])
    assert 0.02 < np.mean(p_values < 0.05) < 0.09
    assert keep_frequency([uniform_masks()], patches, "uniform").df == 2 * (2 * V - 1)
    # a mask that always keeps the same tokens is not uniform
    fixed = np.ones((n, TP, V), dtype=bool)
    fixed[:, :, :1] = False
    assert keep_frequency([fixed], patches, "fixed").p < 1e-10


def test_depth_correlation_on_constructed_embeddings():
    """Embeddings whose norm grows with the joint's kinematic depth: rank correlation 1 from the
    origin; norms unrelated to depth: an interval around 0."""
    g = make_geometry("poincare")
    S, TP, D = 12, 2, 8
    gen = torch.Generator().manual_seed(0)
    joints = list(TOKEN_JOINTS) + list(TRUNK_JOINTS)

    def embeddings(norm):
        # one direction for all: equal norms give bit-equal distances (ties stay ties), the parent point
        # on the same ray
        direction = torch.nn.functional.normalize(torch.randn(1, 1, 1, D, generator=gen), dim=-1)
        e = (direction * norm.view(1, 1, 25, 1)).expand(S, TP, 25, D)
        return e[:, :, :len(TOKEN_JOINTS)], e[:, :, len(TOKEN_JOINTS):]

    norm = 0.3 * torch.tensor([DEPTH[j] + 1.0 for j in joints])
    result = depth_correlation(*embeddings(norm), TOKEN_JOINTS, g, reps=200)
    assert result.origin.rho == pytest.approx(1.0) and result.origin.ci == pytest.approx((1.0, 1.0))
    assert sorted(result.joints[0].tolist()) == list(range(25))
    assert result.dist0.shape == (S, 25)
    # every distance as the geometry gives it
    tokens, trunk = embeddings(norm)
    expected = g.dist0(g.points(torch.cat([tokens, trunk], 2))).mean(1).numpy()
    np.testing.assert_allclose(result.dist0[:, :len(TOKEN_JOINTS)], expected[:, :len(TOKEN_JOINTS)], rtol=1e-6)
    pooled = sps.spearmanr(np.array(DEPTH)[result.joints].ravel(), result.to_parent.ravel()).statistic
    assert result.parent.rho == pytest.approx(pooled)
    # embeddings unrelated to depth: the 95 % interval covers 0 in most of 20 data sets (fixed seeds)
    covers = []
    for seed in range(20):
        gen_null = torch.Generator().manual_seed(seed)
        tokens = torch.randn(30, TP, len(TOKEN_JOINTS), D, generator=gen_null) * 0.2
        trunk = torch.randn(30, TP, len(TRUNK_JOINTS), D, generator=gen_null) * 0.2
        low, high = depth_correlation(tokens, trunk, TOKEN_JOINTS, g, reps=300, seed=seed).origin.ci
        covers.append(low < 0 < high)
    assert np.mean(covers) >= 0.8, covers


def test_spearman_interval_resamples_whole_clusters():
    """rho is scipy's on the pooled points; a clip-wide shift shared by a clip's points widens the
    interval compared with treating every point as its own clip."""
    rng = np.random.default_rng(2)
    G, m = 40, 25
    x = np.tile(np.arange(m) % 8, G).astype(float)
    y = x + np.repeat(rng.normal(scale=6.0, size=G), m) * (x > 3) + rng.normal(size=G * m)
    clusters = np.repeat(np.arange(G), m)
    by_clip = spearman_by_cluster(x, y, clusters, reps=500)
    by_point = spearman_by_cluster(x, y, np.arange(G * m), reps=500)
    assert by_clip.rho == pytest.approx(sps.spearmanr(x, y).statistic)
    assert (by_clip.ci[1] - by_clip.ci[0]) > 1.5 * (by_point.ci[1] - by_point.ci[0])
    assert by_clip.clusters == G and by_clip.points == G * m
    with pytest.raises(Exception, match="constant"):
        spearman_by_cluster(np.ones(10), np.arange(10), np.arange(10) % 2)


def test_over_clips_figures_have_captions(moving_store):
    ex = MaskExplorer(moving_store, model_config=TINY)
    figs, captions = ex.over_clips_figures(ex.resolve(), clips=20)
    assert sum(t.type == "heatmap" for t in figs["frequency"].data) == 5
    assert "Spearman rho" in figs["depth"].layout.annotations[0].text
    assert "chi-square" in captions["frequency"] and "Spearman rho" in captions["depth"]


def test_demo_inputs_are_the_demo_explorer_jobs(tmp_path):
    """With the demo's store and checkpoints written, the explorer opens on them (none: None)."""
    repo = Path(__file__).resolve().parents[1]
    batch = tmp_path / "reports" / "batches" / "demo.yaml"
    batch.parent.mkdir(parents=True)
    shutil.copy(repo / "reports" / "batches" / "demo.yaml", batch)
    assert demo_inputs(batch) is None
    demo = tmp_path / "reports" / "demo"
    (demo / "data" / "store").mkdir(parents=True)
    (demo / "data" / "store" / "meta.json").write_text(json.dumps({}))
    hacm_ckpt = demo / "methods" / "runs" / "ha-cm" / "seed0" / "pretrain" / "checkpoints" / "last.pt"
    assert demo_inputs(batch) is None                    # a store alone: no trained checkpoint yet
    hacm_ckpt.parent.mkdir(parents=True)
    hacm_ckpt.write_bytes(b"")
    store, checkpoints = demo_inputs(batch)
    assert store == str(demo / "data" / "store")
    assert checkpoints == {"HA-CM": str(hacm_ckpt), "untrained": None}   # the MAMP-style one is not there
