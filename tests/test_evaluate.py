"""hacm.evaluate: kNN, accuracy, confusion matrices, features, run directories, MAMP imports."""
from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
from test_train import make_toy_store, toy_config

from hacm import checkpoint, rundir, train
from hacm import evaluate as ev
from hacm.cli import main
from hacm.config import replace as config_replace
from hacm.config import to_yaml, validate
from hacm.datasets import make_dataset
from hacm.errors import HacmError
from hacm.model import Encoder
from hacm.viz.evaluation import per_class_accuracy


def brute_force_knn(train_feats, train_labels, test_feats, k: int, temperature: float, num_classes: int):
    """Reference for ev.knn_predict, written out one clip at a time in float64: the k training clips
    of highest cosine similarity each vote exp(cos / temperature) for their label."""
    preds = []
    for f in np.asarray(test_feats, dtype=np.float64):
        cos = [float(f @ g / (np.linalg.norm(f) * np.linalg.norm(g))) for g in np.asarray(train_feats, np.float64)]
        votes = [0.0] * num_classes
        for i in sorted(range(len(cos)), key=lambda i: -cos[i])[:k]:
            votes[train_labels[i]] += math.exp(cos[i] / temperature)
        preds.append(max(range(num_classes), key=lambda c: votes[c]))
    return np.array(preds)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    store = make_toy_store(root / "store", clips_per_class=9)
    short = {"epochs": 1, "warmup_epochs": 0, "max_steps_per_epoch": 2, "batch_size": 8}
    train.pretrain(toy_config(store.path, train=short), root / "pt")
    # transfer: a fine-tune initialised from the pre-training run (whose decoder is ignored)
    train.finetune(toy_config(store.path, "finetune", train={**short, "pretrained": str(root / "pt")}), root / "ft")
    return store, root


def test_knn_votes_are_weighted_by_similarity():
    angle = np.deg2rad
    train_feats = np.array([[np.cos(a), np.sin(a)] for a in (angle(18), angle(-25), angle(-27))])
    train_labels = np.array([1, 0, 0])
    test = np.array([[1.0, 0.0]])
    # one close neighbour of class 1 against two farther ones of class 0
    sharp = ev.knn_predict(train_feats, train_labels, test, k=(3, 1), temperature=0.01, num_classes=2)
    flat = ev.knn_predict(train_feats, train_labels, test, k=(3,), temperature=10.0, num_classes=2)
    assert sharp[3][0] == 1 and sharp[1][0] == 1
    assert flat[3][0] == 0
    # k larger than the training set uses all of it; cosine ignores the feature scale
    assert ev.knn_predict(5 * train_feats, train_labels, test, k=(50,), temperature=10.0)[50][0] == 0


def test_knn_accuracy_on_separable_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (4, 16))
    labels = np.repeat(np.arange(4), 25)
    feats = centres[labels] + rng.normal(0, 0.05, (100, 16))
    accs = ev.knn_accuracy(feats[::2], labels[::2], feats[1::2], labels[1::2], k=(20, 1))
    assert accs == {20: 1.0, 1: 1.0}
    shuffled = rng.permutation(labels[::2])
    assert ev.knn_accuracy(feats[::2], shuffled, feats[1::2], labels[1::2], k=(1,))[1] < 0.6


def test_knn_predict_matches_a_brute_force_reference():
    # Overlapping classes, so that k and the temperature change the answers.
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, 90)
    feats = rng.normal(0, 1, (5, 8))[labels] + rng.normal(0, 1.5, (90, 8))
    train_feats, train_labels, test_feats = feats[:60], labels[:60], feats[60:]
    answers = set()
    for temperature in (0.07, 1.0):
        preds = ev.knn_predict(train_feats, train_labels, test_feats, k=(1, 5, 20), temperature=temperature,
                               num_classes=5, chunk=7)                  # several chunks, a ragged last one
        for k, pred in preds.items():
            assert np.array_equal(pred, brute_force_knn(train_feats, train_labels, test_feats, k, temperature, 5)), \
                (k, temperature)
            answers.add(tuple(pred))
    assert len(answers) >= 4                  # the settings mattered: a k or T ignored would show


def test_accuracy_confusion_and_per_class():
    labels = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    assert ev.accuracy(pred, labels) == pytest.approx(4 / 6)
    logits = np.eye(4)[pred]
    assert ev.accuracy(logits, labels) == pytest.approx(4 / 6)
    cm = ev.confusion_from_predictions(pred, labels, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    per = per_class_accuracy(cm, ["a", "b", "c", "d"])          # percent, by class name
    assert [per[c] for c in "abc"] == [50.0, pytest.approx(200 / 3), 100.0] and np.isnan(per["d"])
    with pytest.raises(HacmError, match="5 predictions for 6 labels"):
        ev.accuracy(pred[:5], labels)


def test_features_from_a_run_directory(runs):
    store, root = runs
    cfg = toy_config(store.path)
    test_set = make_dataset(cfg, store, "test", augment=False)
    feats, labels = ev.extract_features(root / "pt", test_set, batch_size=7)
    assert feats.shape == (len(test_set), cfg.model.dim) and feats.dtype == np.float32
    assert np.array_equal(labels, test_set.labels)
    model = checkpoint.load_model(root / "pt")
    again, _ = ev.extract_features(model, test_set, batch_size=32)
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-6)   # batch size does not matter
    classifier = checkpoint.build_model(toy_config(store.path, "linprobe"), store.num_classes)
    classifier.encoder.load_state_dict(model.encoder.state_dict())
    x = torch.stack([test_set[i][0] for i in range(4)])
    with torch.no_grad():
        np.testing.assert_allclose(classifier.eval().features(x).numpy(), feats[:4], rtol=1e-5, atol=1e-6)


def test_load_run_and_confusion_matrix(runs):
    store, root = runs
    run = rundir.load_run(root / "ft")
    assert run.config.protocol == "finetune" and run.config.train.pretrained == str(root / "pt")
    assert {"last", "best"} <= set(run.checkpoints)
    assert len(run.rows("epoch")) == 1 and "test_acc" in run.rows("epoch")[0]
    assert run.summary["best_test_acc"] == run.rows("epoch")[0]["test_acc"]
    test_set = make_dataset(run.config, store, "test", augment=False)
    cm, names = ev.confusion_matrix(root / "ft", test_set)
    assert cm.shape == (6, 6) and cm.sum() == len(test_set) and names == store.class_names
    assert np.trace(cm) / cm.sum() == pytest.approx(run.summary["best_test_acc"])
    with pytest.raises(HacmError, match="predict needs a classifier"):
        ev.predict(root / "pt", test_set)
    with pytest.raises(HacmError, match="not a hacm run directory"):
        rundir.load_run(root)


def test_mamp_checkpoint_import_through_the_cli(runs, tmp_path):
    store, root = runs
    cfg = toy_config(store.path, "knn")
    source = Encoder(cfg.model)
    state = {f"module.{k}" if i % 2 else k: v.clone() for i, (k, v) in enumerate(source.state_dict().items())}
    state["decoder_pred.weight"] = torch.zeros(12, 32)
    state["mask_token"] = torch.zeros(1, 1, 32)
    state["head.fc.weight"] = torch.zeros(60, 32)
    # a MAMP checkpoint keeps its argparse.Namespace beside the weights
    torch.save({"model": state, "epoch": 399, "args": argparse.Namespace(lr=1e-3, model="Transformer")},
               tmp_path / "mamp.pth")

    target = Encoder(cfg.model)
    report = checkpoint.load_pretrained_encoder(target, tmp_path / "mamp.pth", cfg.model)
    assert report.ignored == ["decoder_pred.weight", "mask_token"] and report.unexpected == ["head.fc.weight"]
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    assert "ignored 2 decoder" in checkpoint.describe_load(report, "mamp.pth")

    cfg_file = tmp_path / "knn.yaml"
    cfg_file.write_text(to_yaml(cfg))
    assert main(["knn", "--config", str(cfg_file), "--set", f"train.pretrained={tmp_path / 'mamp.pth'}",
                 "--out", str(tmp_path / "knn")]) == 0
    summary = rundir.load_run(tmp_path / "knn").summary
    assert summary["pretrained"] == str(tmp_path / "mamp.pth")
    # The accuracies are those of the imported encoder's features under a brute-force kNN. (Equal,
    # not approximately: they count clips, and the float32 kNN agrees with the float64 reference
    # unless two similarities or two vote totals tie to 1e-7, which these features do not.)
    feats = {part: ev.extract_features(source, make_dataset(cfg, store, part, augment=False),
                                       batch_size=cfg.train.batch_size) for part in ("train", "test")}
    preds = ev.knn_predict(*feats["train"], feats["test"][0], k=cfg.knn.k, temperature=cfg.knn.temperature,
                           num_classes=store.num_classes)
    for k in cfg.knn.k:
        pred = brute_force_knn(*feats["train"], feats["test"][0], k, cfg.knn.temperature, store.num_classes)
        assert len(set(pred)) > 1                 # the reference itself is not a constant guess
        assert np.array_equal(preds[k], pred), k
        assert summary[f"knn{k}_acc"] == ev.accuracy(pred, feats["test"][1]), k

    del state[next(k for k in state if k.endswith("blocks.1.mlp.fc2.weight"))]
    torch.save({"model": state}, tmp_path / "partial.pth")
    with pytest.raises(HacmError, match="no value for encoder tensors blocks.1.mlp.fc2.weight"):
        checkpoint.load_pretrained_encoder(Encoder(cfg.model), tmp_path / "partial.pth")


def test_pretrained_encoder_must_match_the_architecture(runs):
    store, root = runs
    euclid = toy_config(store.path, "linprobe", model={"geometry": "euclidean"})
    with pytest.raises(HacmError, match="geometry: checkpoint 'poincare', run 'euclidean'"):
        checkpoint.load_pretrained_encoder(Encoder(euclid.model), root / "pt", euclid.model)
    wider = toy_config(store.path, "linprobe", model={"dim": 64, "decoder_dim": 64})
    with pytest.raises(HacmError, match="dim: checkpoint 32, run 64"):
        train.linear_probe(config_replace(wider, train={"pretrained": str(root / "pt")}), root / "lp_wide")


def test_knn_prints_percent_beside_chance_and_can_subsample_its_bank(runs, tmp_path, capsys):
    """`hacm knn` reports accuracies in percent with the chance level; knn.train_clips draws a seeded
    bank: the same clips for the same train.seed, other clips for another, and the accuracies are
    those of a brute-force kNN over exactly that bank."""
    from torch.utils.data import Subset

    from hacm.features import sample_indices

    store, root = runs
    cfg = config_replace(toy_config(store.path, "knn"), knn={"train_clips": 10})
    cfg_file = tmp_path / "knn.yaml"
    cfg_file.write_text(to_yaml(cfg))
    assert main(["knn", "--config", str(cfg_file), "--set", f"train.pretrained={root / 'pt'}",
                 "--out", str(tmp_path / "knn")]) == 0
    printed = capsys.readouterr().out.splitlines()
    summary = rundir.load_run(tmp_path / "knn").summary
    train_set = make_dataset(cfg, store, "train", augment=False)
    labels = ev.extract_features(root / "pt", make_dataset(cfg, store, "test", augment=False))[1]
    chance = ev.chance_levels(labels)["majority"]
    assert summary["train_clips"] == 10 < len(train_set) and summary["chance_acc"] == chance
    assert f"knn20_acc: {100 * summary['knn20_acc']:.1f} %  (chance {100 * chance:.1f} %)" in printed
    assert f"chance level: {100 * chance:.1f} % (always answering the most frequent test class)" in printed
    assert not [line for line in printed if "0." in line and len(line.split(".")[-1].split()[0]) > 4]   # no long fractions
    bank = sample_indices(len(train_set), 10, cfg.train.seed)
    assert not np.array_equal(bank, sample_indices(len(train_set), 10, cfg.train.seed + 1))
    train_feats = ev.extract_features(root / "pt", Subset(train_set, bank.tolist()))
    test_feats = ev.extract_features(root / "pt", make_dataset(cfg, store, "test", augment=False))
    for k in cfg.knn.k:
        pred = brute_force_knn(*train_feats, test_feats[0], k, cfg.knn.temperature, store.num_classes)
        assert summary[f"knn{k}_acc"] == ev.accuracy(pred, test_feats[1]), k
    with pytest.raises(HacmError, match=r"knn.train_clips: expected a positive number"):
        validate(config_replace(cfg, knn={"train_clips": 0}))


def test_chance_levels():
    assert ev.chance_levels(np.array([0, 0, 0, 2, 2, 5])) == {"majority": 0.5, "uniform": 1 / 3, "classes": 3}
