"""Feature spaces side by side (hacm.features) and their t-SNE pictures (hacm.viz.features)."""
from __future__ import annotations

import matplotlib.colors as mcolors
import numpy as np
import pytest
from test_train import make_toy_store, toy_config

from hacm import features, train
from hacm.data.store import Store
from hacm.datasets import make_dataset
from hacm.errors import HacmError
from hacm.evaluate import extract_features, knn_accuracy
from hacm.viz.features import embedding_figure, tsne_embedding


def _clusters(seed: int, classes: int = 5, per_class: int = 30, dim: int = 32):
    """Gaussian clusters far apart (centres ~ 10 standard deviations from each other)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (classes, dim)) * 10
    labels = np.repeat(np.arange(classes), per_class)
    return centres[labels] + rng.normal(0, 1, (len(labels), dim)), labels


def test_tsne_separates_well_separated_classes_and_is_deterministic():
    x, y = _clusters(0)
    emb = tsne_embedding(x)
    assert emb.shape == (len(x), 2)
    # every point's nearest other point in the map is of its own class
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert np.all(y[d.argmin(1)] == y)
    # and the classes lie apart: each point is nearer its own class centre than any other
    centres = np.stack([emb[y == c].mean(0) for c in range(5)])
    assert np.all(np.linalg.norm(emb[:, None] - centres[None], axis=-1).argmin(1) == y)
    np.testing.assert_array_equal(tsne_embedding(x), emb)
    with pytest.raises(HacmError, match="N >= 4"):
        tsne_embedding(x[:3])


def test_embedding_figure_panels_share_class_colours_and_one_legend():
    x, y = _clusters(1, classes=3, per_class=5, dim=2)
    names = ["wave", "clap", "kick", "never shown"]
    fig = embedding_figure({"A\nkNN-20: 90.0 %": (x, y), "B": (x[y != 1], y[y != 1])}, names)
    a, b = fig.axes
    assert a.get_title() == "A\nkNN-20: 90.0 %" and b.get_title() == "B"
    assert len(a.collections) == 3 and len(b.collections) == 2            # one scatter per class present
    assert mcolors.same_color(a.collections[2].get_facecolor()[0], b.collections[1].get_facecolor()[0])  # kick
    assert [t.get_text() for t in fig.legends[0].texts] == ["wave", "clap", "kick"]
    with pytest.raises(HacmError, match="points"):
        embedding_figure({"bad": (x[:, :1], y)}, names)


def test_sample_indices_is_a_seeded_subset():
    a = features.sample_indices(100, 10, seed=3)
    assert len(set(a)) == 10 and list(a) == sorted(a) and a.max() < 100
    np.testing.assert_array_equal(a, features.sample_indices(100, 10, seed=3))
    assert list(features.sample_indices(5, None, seed=0)) == list(features.sample_indices(5, 9, seed=0)) == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    store = make_toy_store(root / "store", clips_per_class=9)
    cfg = toy_config(store.path, train={"epochs": 1, "warmup_epochs": 0, "batch_size": 8})
    train.pretrain(cfg, root / "pt")
    return cfg, root / "pt"


def test_feature_spaces_are_the_checkpoints_features_and_knn(pretrained):
    cfg, run = pretrained
    spaces = features.feature_spaces({"trained": run, "random": None}, test_clips=10, k=3, seed=1)
    trained, random = spaces
    assert [s.name for s in spaces] == ["trained", "random"] and trained.class_names == list(Store.open(cfg.data.store).class_names)
    # the same seeded 10 test clips in both panels, with the checkpoint's own features
    test = make_dataset(cfg, None, "test", augment=False)
    idx = features.sample_indices(len(test), 10, seed=1)
    np.testing.assert_array_equal(trained.labels, test.labels[idx])
    np.testing.assert_array_equal(random.labels, trained.labels)
    all_f, _ = extract_features(run, test)
    np.testing.assert_allclose(trained.features, all_f[idx], rtol=1e-5, atol=1e-6)
    # the accuracy is kNN-3 of those clips against every training clip
    train_f, train_y = extract_features(run, make_dataset(cfg, None, "train", augment=False))
    assert trained.k == 3 and trained.knn_accuracy == knn_accuracy(train_f, train_y, all_f[idx], trained.labels,
                                                                    k=(3,), num_classes=6)[3]
    assert trained.train_clips == len(train_y) == 36
    # the untrained encoder: built from the checkpoint's config, seeded, not the trained one
    again = features.feature_spaces({"trained": run, "random": None}, test_clips=10, k=3, seed=1)[1]
    np.testing.assert_array_equal(again.features, random.features)
    assert not np.allclose(random.features, trained.features)
    with pytest.raises(HacmError, match="at least one checkpoint"):
        features.feature_spaces({"random": None})
    with pytest.raises(HacmError, match="test_clips"):
        features.feature_spaces({"trained": run}, test_clips=0)


def test_knn_memory_can_be_a_sample_of_the_training_clips(pretrained):
    cfg, run = pretrained
    space = features.feature_space("trained", run, cfg, test_clips=10, train_clips=12, k=3, seed=2)
    train = make_dataset(cfg, None, "train", augment=False)
    idx = features.sample_indices(len(train), 12, seed=2)
    train_f, train_y = extract_features(run, train)
    test_f, test_y = extract_features(run, make_dataset(cfg, None, "test", augment=False))
    test_idx = features.sample_indices(len(test_y), 10, seed=2)
    assert space.train_clips == 12 and space.knn_accuracy == knn_accuracy(
        train_f[idx], train_y[idx], test_f[test_idx], test_y[test_idx], k=(3,), num_classes=6)[3]
