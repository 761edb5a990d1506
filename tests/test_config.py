"""hacm.config: hacm and authors' YAML, validation messages, overrides, `hacm config check`."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hacm.cli import main
from hacm.config import (PACKAGE_CONFIG_DIR, apply_overrides, from_dict, load_config,
                         resolve_config_path, to_dict, to_yaml)
from hacm.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED = sorted(PACKAGE_CONFIG_DIR.glob("*.yaml"))
# Every config the authors published, vendored (see the README there).
VENDORED = Path(__file__).parent / "data" / "upstream"
UPSTREAM = VENDORED
UPSTREAM_FILES = sorted(UPSTREAM.rglob("*.yaml"))


def _write(tmp_path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("path", UPSTREAM_FILES, ids=lambda p: str(p.relative_to(UPSTREAM)))
def test_every_authors_config_loads(path):
    notes: list[str] = []
    cfg = load_config(path, notes=notes)
    name = path.stem
    expected = "pretrain" if name.startswith("pretrain") else "linprobe" if name.startswith("linprobe") else "finetune"
    assert cfg.protocol == expected
    assert cfg.data.window_size == cfg.model.num_frames
    # 18-joint files prune the trunk, 25-joint files do not, and the decision is reported
    joints = 18 if cfg.model.prune else 25
    assert any(f"num_joints {joints} -> model.prune {str(cfg.model.prune).lower()}" in n for n in notes)
    assert any("hacm data import-npz" in n for n in notes)
    if name.startswith("semi"):
        assert cfg.data.subset_fraction in (0.01, 0.1)
    if "pretrain_mamp" in name:
        assert cfg.masking.strategy == "motion" and not cfg.masking.keep_high and cfg.model.cc_weight == 0
    if "pretrain_mae" in name:
        assert cfg.masking.strategy == "random"
    if "pretrain_hacm" in name:
        assert cfg.masking.strategy == "hacm" and cfg.masking.tau in (0.8, 0.75)
    # MAMP's files, its downstream ones included, describe Euclidean encoders; the release's hyperbolic ones
    source = path.relative_to(UPSTREAM).parts[0]
    assert cfg.model.geometry == {"mamp": "euclidean", "hacm": "poincare"}[source]


@pytest.mark.parametrize("rel, geometry, reason", [
    # byte-identical files: only the names tell them apart
    ("mamp/ntu120_xset_joint/linprobe_t120_layer8.yaml", "euclidean",
     "read as MAMP's, because file name linprobe_t120_layer8.yaml is MAMP's naming"),
    ("hacm/ntu120_xset_joint/linprobe.yaml", "poincare",
     "read as HA-CM's, because file name linprobe.yaml is the HA-CM release's naming"),
    ("mamp/ntu60_xsub_joint/finetune_t120_layer8_decay.yaml", "euclidean",
     "read as MAMP's, because file name finetune_t120_layer8_decay.yaml"),
    ("mamp/ntu60_xsub_joint/semi_0.1_t120_layer8_decay.yaml", "euclidean",
     "read as MAMP's, because file name semi_0.1_t120_layer8_decay.yaml"),
    ("hacm/pkuv1_xsub_joint/finetune.yaml", "poincare", "read as HA-CM's, because file name finetune.yaml"),
    ("hacm/ntu60_xsub_joint/finetune.yaml", "poincare",
     "read as HA-CM's, because model_args.num_joints 18: trunk pruning exists only in the HA-CM release"),
    ("mamp/ntu60_xsub_joint/pretrain_mamp_t120_layer8+3_mask90.yaml", "euclidean",
     "MAMP/MAE model -> model.geometry euclidean"),
    ("mamp/ntu60_xsub_joint/pretrain_mae_t120_layer8+3_mask90.yaml", "euclidean",
     "hacm's target is always the motion, so this runs MAMP's model with random masking"),
])
def test_authors_files_resolve_to_their_own_geometry(rel, geometry, reason):
    notes: list[str] = []
    cfg = load_config(VENDORED / rel, notes=notes)
    assert cfg.model.geometry == geometry
    # the authors' downstream models pool the empty actor slot; their pre-training keeps int(...) tokens
    assert cfg.model.pool_absent_actors == (cfg.protocol != "pretrain")
    assert cfg.masking.keep_count == ("floor" if "pretrain_ma" in rel else "round")
    assert sum(reason in n for n in notes) == 1, notes
    if "semi" in rel:
        assert cfg.data.subset_fraction == 0.1 and not cfg.data.subset_balanced
        assert any("drawn uniformly as MAMP" in n and "the same subset on every rank" in n for n in notes)


def test_shared_model_class_without_a_telling_name(tmp_path):
    mamp_text = (VENDORED / "mamp" / "ntu120_xset_joint" / "linprobe_t120_layer8.yaml").read_text()
    hacm18_text = (VENDORED / "hacm" / "ntu60_xsub_joint" / "finetune.yaml").read_text()
    cases = [("mamp/x/eval.yaml", mamp_text, "euclidean", "it lies in a folder named mamp"),
             ("hacm/x/eval.yaml", mamp_text, "poincare", "it lies in a folder named hacm"),
             ("hacm/eval.yaml", mamp_text, "poincare", "it lies in a folder named hacm"),
             # the name outranks the folder, the joints outrank both
             ("hacm/x/linprobe_t120_layer8.yaml", mamp_text, "euclidean", "file name linprobe_t120_layer8.yaml"),
             ("mamp/x/finetune_t120_layer8_decay.yaml", hacm18_text, "poincare", "num_joints 18"),
             # nothing tells: 25 joints can only be MAMP's
             ("eval.yaml", mamp_text, "euclidean", "num_joints 25 and neither file name nor folder tells")]
    for rel, text, geometry, reason in cases:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        notes: list[str] = []
        assert load_config(path, notes=notes).model.geometry == geometry, rel
        assert any(reason in n for n in notes), (rel, notes)


# Every shipped MAMP / MAE config: (decoder depth, tau) per benchmark, then the defining values.
_MAMP_BENCHMARKS = {"ntu60_xsub": (3, 0.8), "ntu60_xview": (3, 0.8), "ntu120_xsub": (5, 0.75),
                    "ntu120_xset": (5, 0.75), "pku1_xsub": (5, 0.8), "pku2_xsub": (5, 0.8)}
_MAMP_SHIPPED = ([(f"mamp_{b}_{p}", b) for b in _MAMP_BENCHMARKS for p in ("pretrain", "linprobe", "finetune")]
                 + [(f"mae_{b}_pretrain", b) for b in _MAMP_BENCHMARKS]
                 + [(f"mamp_{b}_{p}", b) for b in ("ntu60_xsub", "ntu60_xview") for p in ("semi1", "semi10")])


def test_every_shipped_mamp_and_mae_config_is_in_the_table():
    assert {p.stem for p in SHIPPED if p.stem.startswith(("mamp_", "mae_"))} == {n for n, _ in _MAMP_SHIPPED}


@pytest.mark.parametrize("name, bench", _MAMP_SHIPPED, ids=[n for n, _ in _MAMP_SHIPPED])
def test_shipped_mamp_and_mae_configs_are_mamps(name, bench):
    cfg = load_config(name)
    m, t, d = cfg.model, cfg.train, cfg.data
    decoder_depth, tau = _MAMP_BENCHMARKS[bench]
    assert (d.benchmark, d.window_size, d.vel, d.bone) == (bench.replace("_", "-"), 120, False, False)
    assert (m.num_frames, m.t_patch, m.prune, m.dim, m.depth, m.heads) == (120, 4, False, 256, 8, 8)
    assert (m.geometry, m.cc_weight, m.motion_expmap, m.decoder_depth) == ("euclidean", 0.0, False, decoder_depth)
    if cfg.protocol == "pretrain":
        mk = cfg.masking
        assert (mk.mask_ratio, mk.cross_grouping, m.drop_path, mk.keep_count) == (0.9, False, 0.0, "floor")
        if name.startswith("mamp_"):
            assert (mk.strategy, mk.keep_high, mk.tau) == ("motion", False, tau)
        else:
            assert mk.strategy == "random"
        assert (t.epochs, t.warmup_epochs, t.batch_size, t.lr, t.min_lr, t.weight_decay, t.betas) == \
            (400, 20, 128, 1e-3, 5e-4, 0.05, (0.9, 0.95))
    elif cfg.protocol == "linprobe":
        batch, lr = {"pku1_xsub": (128, 0.1), "pku2_xsub": (32, 0.01)}.get(bench, (256, 0.1))
        assert (t.epochs, t.warmup_epochs, t.batch_size, t.lr, t.min_lr, t.weight_decay) == \
            (100, 0, batch, lr, 0.0, 0.0)
    else:
        assert (t.epochs, t.warmup_epochs, t.batch_size, t.lr, t.min_lr, t.layer_decay, t.label_smoothing,
                m.drop_path, t.head_dropout) == (100, 5, 48, 3e-4, 1e-5, 0.8, 0.1, 0.3, 0.3)
        semi = {"semi1": 0.01, "semi10": 0.1}.get(name.rsplit("_", 1)[1])
        assert (d.subset_fraction, d.subset_balanced) == (semi, False)
    if cfg.protocol != "pretrain":
        assert t.pretrained == f"runs/pretrain-mamp_{bench}_pretrain"
        assert m.pool_absent_actors      # MAMP averages the empty second slot in


def test_authors_values_are_mapped():
    notes: list[str] = []
    cfg = load_config(UPSTREAM / "hacm" / "ntu60_xsub_joint" / "pretrain_hacm.yaml", notes=notes)
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.min_lr) == (500, 64, 1e-3, 5e-4)
    assert (cfg.model.num_frames, cfg.model.t_patch, cfg.model.prune, cfg.model.decoder_depth) == (72, 3, True, 3)
    assert (cfg.data.benchmark, cfg.data.store) == ("ntu60-xsub", "data/ntu/NTU60_XSub")
    pku = []
    cfg = load_config(UPSTREAM / "hacm" / "pkuv1_xsub_joint" / "finetune.yaml", notes=pku)
    assert any("inconsistent: pku1-xsub has 51 classes" in n for n in pku)
    assert (cfg.train.layer_decay, cfg.train.label_smoothing, cfg.model.drop_path) == (0.8, 0.1, 0.3)


def test_shipped_configs_load_and_are_consistent():
    names = {p.stem for p in SHIPPED}
    for ds in ("ntu60_xsub", "ntu60_xview", "ntu120_xsub", "ntu120_xset", "pku1_xsub", "pku2_xsub"):
        assert {f"{ds}_pretrain", f"{ds}_linprobe", f"{ds}_finetune"} <= names
    assert {"ntu60_xsub_semi1", "ntu60_xsub_semi10", "synth_pretrain", "synth_linprobe", "synth_finetune"} <= names
    for path in SHIPPED:
        cfg = load_config(path)
        suffix = path.stem.rsplit("_", 1)[1]
        assert cfg.protocol == {"semi1": "finetune", "semi10": "finetune"}.get(suffix, suffix), path.name
        if cfg.protocol != "pretrain":
            # downstream runs read the encoder the matching pre-training config writes
            pre = load_config(path.with_name(path.stem.rsplit("_", 1)[0] + "_pretrain.yaml"))
            for key in ("num_frames", "t_patch", "prune", "dim", "depth", "heads", "geometry"):
                assert getattr(cfg.model, key) == getattr(pre.model, key), (path.name, key)
            assert (cfg.data.vel, cfg.data.bone) == (pre.data.vel, pre.data.bone), path.name
    assert resolve_config_path("synth_pretrain") == PACKAGE_CONFIG_DIR / "synth_pretrain.yaml"


def test_round_trip_and_protocol_defaults():
    cfg = from_dict({"protocol": "finetune"})
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.layer_decay, cfg.train.label_smoothing,
            cfg.model.drop_path, cfg.train.betas) == (3e-4, 1e-5, 0.8, 0.1, 0.3, (0.9, 0.999))
    lp = from_dict({"protocol": "linprobe"})
    assert (lp.train.lr, lp.train.weight_decay, lp.train.momentum, lp.train.batch_size) == (0.1, 0.0, 0.9, 256)
    pt = from_dict({})
    assert pt.protocol == "pretrain" and pt.train.betas == (0.9, 0.95) and pt.train.weight_decay == 0.05
    assert from_dict(to_dict(cfg)) == cfg
    assert from_dict(yaml.safe_load(to_yaml(cfg))) == cfg


@pytest.mark.parametrize("text, message", [
    ("train:\n  epoch: 3\n", "unknown key train.epoch (did you mean train.epochs?); allowed keys in train: "
                            "epochs, warmup_epochs"),
    ("trian:\n  epochs: 3\n", "unknown key trian (did you mean train?); allowed top-level keys"),
    ("masking:\n  tua: 3\n", "unknown key masking.tua (did you mean masking.tau?)"),
    ("optim:\n  lr: 1\n", "unknown key optim; allowed top-level keys: protocol, data, model, masking, train, knn"),
    ("train:\n  epochs: ten\n", "train.epochs: expected an integer, got 'ten' (str)"),
    ("train:\n  epochs: 2.5\n", "train.epochs: expected an integer, got 2.5 (float)"),
    ("data:\n  random_rot: 1\n", "data.random_rot: expected true/false, got 1 (int)"),
    ("train:\n  amp: fp16\n", "train.amp: expected one of auto, off, bf16, got 'fp16'"),
    ("train:\n  dtype: float16\n", "train.dtype: expected one of float32, float64, got 'float16'"),
    ("train:\n  amp: bf16\n  dtype: float64\n", "train.amp: bf16 autocast needs train.dtype float32, got float64"),
    ("model:\n  geometry: sphere\n", "model.geometry: expected one of poincare, euclidean, got 'sphere'"),
    ("masking:\n  strategy: blocks\n", "masking.strategy: expected one of hacm, spatial_only, temporal_only, motion, random"),
    ("train:\n  betas: [0.9]\n", "train.betas: expected a list of 2 a number/a number, got [0.9]"),
    ("protocol: distill\n", "protocol: expected one of pretrain, linprobe, finetune, knn, got 'distill'"),
    ("data:\n  window_size: 60\n", "data.window_size (60) must equal model.num_frames (72)"),
    ("data:\n  subset_fraction: 0\n", "data.subset_fraction: expected a fraction in (0, 1]"),
    ("data: [1, 2]\n", "data: expected a mapping of keys"),
    ("train:\n  lr: 1\n  epochs: [3\nmodel: {}\n", "c.yaml:4: not valid YAML"),
])
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path / "c.yaml"))


@pytest.mark.parametrize("change, message", [
    (("qk_scale: None", "qk_scale: 0.125"), "model_args.qk_scale: hacm's attention always scales by head_dim^-0.5"),
    (("patch_size: 1", "patch_size: 2"), "model_args.patch_size: hacm tokenises one joint per token"),
    (("num_joints: 18", "num_joints: 20"), "model_args.num_joints: expected 18 (trunk pruned) or 25, got 20"),
    (("drop_rate: 0.", "drop_rate: 0.1"), "model_args.drop_rate: hacm's encoder has no dropout"),
    (("random_move: False", "random_move: True"), "train_feeder_args.random_move: hacm's data pipeline has no random_move"),
    (("model_hacm.transformer", "model_x.transformer"), "model: expected one of model_hacm.transformer.Transformer"),
    (("mask_ratio: 0.9", "mask_ratio: 0.9\nwarmup: 3"), "warmup: not a key of the MAMP/HA-CM configs hacm reads"),
    (("norm_skes_loss: True", "norm_skes_loss: True\n  use_cls: True"), "model_args.use_cls: not a model argument"),
    (("window_size: 72", "window_size: 64"), "train_feeder_args.window_size 64 differs from model_args.num_frames 72"),
])
def test_authors_keys_hacm_cannot_honour(tmp_path, change, message):
    text = (UPSTREAM / "hacm" / "ntu60_xsub_joint" / "pretrain_hacm.yaml").read_text()
    assert change[0] in text
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text.replace(change[0], change[1], 1)))
    assert message in str(err.value)


def test_overrides():
    cfg = from_dict(apply_overrides({}, ["train.epochs=30", "train.betas=[0.9, 0.99]", "masking.strategy=random",
                                         "train.pretrained=null", "data.p_interval_train=[0.8, 1]"]))
    assert (cfg.train.epochs, cfg.train.betas, cfg.masking.strategy) == (30, (0.9, 0.99), "random")
    assert cfg.data.p_interval_train == (0.8, 1.0) and cfg.train.pretrained is None
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match=r"unknown key train.epoch \(did you mean train.epochs\?\);"):
        from_dict(apply_overrides({}, ["train.epoch=3"]))
    with pytest.raises(ConfigError, match="protocol is not a section"):
        apply_overrides({"protocol": "knn"}, ["protocol.x=1"])


def test_config_check_cli(tmp_path, capsys):
    good = SHIPPED[0]
    bad = _write(tmp_path, "train:\n  epochs: ten\n", "bad.yaml")
    assert main(["config", "check", str(good)]) == 0
    out = capsys.readouterr().out
    assert f"# {good}" in out and load_config(good) == from_dict(yaml.safe_load(out))
    assert main(["config", "check", "--quiet", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ok: ") and out[1] == f"error: {bad}: train.epochs: expected an integer, got 'ten' (str)"
    if UPSTREAM is not None:
        assert main(["config", "check", "--quiet", str(UPSTREAM)]) == 0
        assert len(capsys.readouterr().out.splitlines()) == len(UPSTREAM_FILES)


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    bad = _write(tmp_path, "train:\n  epochs: ten\n", "bad.yaml")
    for args in (["config", "check", str(bad)], ["pretrain", "--config", str(bad)],
                 ["pretrain", "--config", str(tmp_path / "missing.yaml")],
                 ["linprobe", "--config", "synth_pretrain"]):
        proc = subprocess.run([sys.executable, "-m", "hacm", *args], capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode in (1, 2), (args, proc.returncode)
        assert "Traceback" not in proc.stderr + proc.stdout, args
    proc = subprocess.run([sys.executable, "-m", "hacm", "linprobe", "--config", "synth_pretrain"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("hacm: error: synth_pretrain: is a pretrain config; run `hacm pretrain` "
                                   "(or --set protocol=linprobe)")
