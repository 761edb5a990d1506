"""hacm ensemble: weighted sums of saved softmax scores over streams, per seed, with paired statistics."""
import numpy as np
import pytest

from hacm.cli import main
from hacm.config import load_config, to_yaml
from hacm.ensemble import ensemble, stream_of
from hacm.errors import HacmError
from hacm.rundir import write_predictions

N, C = 60, 4
STREAM_SETS = {"joint": {}, "bone": {"data.bone": True}, "motion": {"data.vel": True}}


def fake_run(root, stream, seed, scores, labels, protocol="linprobe"):
    """A run directory as an evaluation leaves it: config.yaml and predictions.npz with scores."""
    d = root / f"{stream}-s{seed}"
    d.mkdir(parents=True)
    cfg = load_config(f"synth_{protocol}", {**STREAM_SETS[stream], "train.seed": seed})
    (d / "config.yaml").write_text(to_yaml(cfg))
    write_predictions(d, labels, {"pred": scores.argmax(1)}, scores)
    return d


def streams(tmp_path, seeds=(0, 1, 2)):
    """Three streams that each know a different third of the clips well and guess the rest."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N)
    runs, scores = [], {}
    for k in seeds:
        for i, stream in enumerate(STREAM_SETS):
            logits = rng.normal(size=(N, C))
            known = np.arange(N) % 3 == i
            logits[known, labels[known]] += 4.0                      # confident and right on its third
            logits[~known, labels[~known]] += 0.8                    # weakly right elsewhere
            p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            scores[stream, k] = p
            runs.append(fake_run(tmp_path, stream, k, p, labels))
    return runs, scores, labels


def test_fusion_is_the_weighted_sum_of_softmax_scores(tmp_path):
    runs, scores, labels = streams(tmp_path)
    weights = {"joint": 1.0, "bone": 0.5, "motion": 2.0}
    result = ensemble(runs, weights, reps=500)
    assert result.seeds == [0, 1, 2] and result.weights == weights and result.reference == "joint"
    for i, k in enumerate(result.seeds):
        fused = sum(w * scores[s, k] for s, w in weights.items())
        np.testing.assert_array_equal(result.correct[result.fused_name][i], fused.argmax(1) == labels)
        for s in weights:
            np.testing.assert_array_equal(result.correct[s][i], scores[s, k].argmax(1) == labels)
    rows = {r.method: r for r in result.rows}
    fused = rows[result.fused_name]
    # each stream is right on its own third: the fusion beats the joint stream, significantly
    assert fused.accuracy > rows["joint"].accuracy + 0.1 and fused.significant and fused.seeds == 3
    assert rows["joint"].difference is None and rows["bone"].difference is not None


def test_weights_act(tmp_path):
    runs, scores, labels = streams(tmp_path)
    only_motion = ensemble(runs, {"joint": 0, "bone": 0, "motion": 1}, reps=200)
    np.testing.assert_array_equal(only_motion.correct[only_motion.fused_name], only_motion.correct["motion"])
    equal = ensemble(runs, reps=200)
    assert equal.weights == {"joint": 1.0, "bone": 1.0, "motion": 1.0}
    assert not np.array_equal(equal.correct[equal.fused_name], only_motion.correct[only_motion.fused_name])


def test_stream_names_follow_mamps_feeders():
    cfg = load_config("synth_linprobe")
    assert stream_of(cfg.data) == "joint"
    for sets, name in (({"data.bone": True}, "bone"), ({"data.vel": True}, "motion"),
                       ({"data.bone": True, "data.vel": True}, "bone motion")):
        assert stream_of(load_config("synth_linprobe", sets).data) == name


def test_bad_inputs_are_named(tmp_path):
    runs, scores, labels = streams(tmp_path, seeds=(0, 1))
    joint = [r for r in runs if r.name.startswith("joint")]
    with pytest.raises(HacmError, match="every run is of the joint stream"):
        ensemble(joint)
    with pytest.raises(HacmError, match=r"the joint runs have seeds \[0, 1\], the bone runs \[0\]"):
        ensemble(joint + [tmp_path / "bone-s0"])
    with pytest.raises(HacmError, match="weights for cheese"):
        ensemble(runs, {"cheese": 1})
    with pytest.raises(HacmError, match="weights must be >= 0"):
        ensemble(runs, {"joint": -1})
    reversed_clips = fake_run(tmp_path / "y", "bone", 0, scores["bone", 0][::-1].copy(), labels[::-1].copy())
    with pytest.raises(HacmError, match="its test clips differ"):
        ensemble([tmp_path / "joint-s0", reversed_clips])
    knn = tmp_path / "knn"
    knn.mkdir()
    (knn / "config.yaml").write_text(to_yaml(load_config("synth_linprobe", {"data.bone": True, "train.seed": 0})))
    write_predictions(knn, labels, {"knn20": labels})
    with pytest.raises(HacmError, match="no per-clip class scores"):
        ensemble([tmp_path / "joint-s0", knn])


def test_cli_prints_weights_seeds_spread_and_significance(tmp_path, capsys):
    runs, _, _ = streams(tmp_path)
    assert main(["ensemble", *map(str, runs), "--weights", "joint=1", "bone=1", "motion=0.5"]) == 0
    out = capsys.readouterr().out
    assert "weights (sum of softmax scores): joint 1, bone 1, motion 0.5" in out
    assert "seeds [0, 1, 2], 60 test clips" in out and "± seeds" in out and "p (Holm)" in out
    assert "ensemble (1 joint + 1 bone + 0.5 motion)" in out
    assert main(["ensemble", *map(str, runs), "--weights", "bone"]) == 2
    assert "expected STREAM=NUMBER" in capsys.readouterr().err
