"""The authors' configs: MAMP's and the HA-CM release's YAML files, read as hacm configs.

They use flat keys (`feeder`, `train_feeder_args`, `model`, `model_args`, `epochs`, ...). `to_hacm`
maps one onto a nested hacm config dict: whatever hacm cannot honour is a ConfigError naming the
key and why, and every decision taken on the way (joint pruning from `num_joints`, which code a
shared model class comes from, where the data has to come from, ...) is reported as a note.
"""
from __future__ import annotations

import re
from pathlib import Path

from hacm.data.classes import NUM_CLASSES
from hacm.errors import ConfigError


def is_upstream(raw: dict) -> bool:
    return "model_args" in raw or "feeder" in raw


_FEEDERS = ("feeder.feeder_ntu.Feeder", "feeder.feeder_ntu_semi.Feeder")

# model class -> (protocol, masking) for the pre-training models; the downstream Transformer
# takes its protocol from model_args.protocol, and its source from `_downstream_source`.
_MODELS = {
    "model_hacm.transformer.Transformer": ("pretrain", dict(strategy="hacm")),
    "model_mamp.transformer.Transformer": ("pretrain", dict(strategy="motion", keep_high=False,
                                                            cross_grouping=False, keep_count="floor")),
    "model_mae.transformer.Transformer": ("pretrain", dict(strategy="random", cross_grouping=False,
                                                           keep_count="floor")),
    "model.transformer.Transformer": (None, None),
}

# legacy .npz file stem -> hacm benchmark name
_BENCHMARKS = {
    "NTU60_XSub": "ntu60-xsub", "NTU60_XView": "ntu60-xview",
    "NTU120_XSub": "ntu120-xsub", "NTU120_XSet": "ntu120-xset",
    "PKUv1_XSub": "pku1-xsub", "PKUv1_XView": "pku1-xview",
    "PKUv2_XSub": "pku2-xsub", "PKUv2_XView": "pku2-xview",
}

# model_args key -> model config key (straight copies)
_MODEL_KEYS = {"dim_in": "dim_in", "dim_feat": "dim", "decoder_dim_feat": "decoder_dim",
                        "depth": "depth", "decoder_depth": "decoder_depth", "num_heads": "heads",
                        "mlp_ratio": "mlp_ratio", "num_frames": "num_frames",
                        "t_patch_size": "t_patch", "qkv_bias": "qkv_bias",
                        "drop_path_rate": "drop_path"}
# top-level training key -> train config key
_TRAIN_KEYS = {"epochs": "epochs", "warmup_epochs": "warmup_epochs",
                        "batch_size": "batch_size", "lr": "lr", "min_lr": "min_lr",
                        "weight_decay": "weight_decay", "layer_decay": "layer_decay",
                        "smoothing": "label_smoothing"}
# feeder switches hacm's data pipeline does not have: only their "off" value is accepted.
_FEEDER_OFF = ("debug", "random_choose", "random_shift", "random_move", "normalization")


def _is_none(v) -> bool:
    return v is None or (isinstance(v, str) and v.strip().lower() in ("none", "null", "~"))


def _is_zero(v) -> bool:
    try:
        return float(v) == 0.0
    except (TypeError, ValueError):
        return False


# Downstream file names: MAMP's carry the clip length and depth, the HA-CM release's only the protocol.
_MAMP_DOWNSTREAM_NAME = re.compile(r"(linprobe|finetune|semi_[0-9.]+)_t\d+_layer\d+.*\.ya?ml", re.IGNORECASE)
_HACM_DOWNSTREAM_NAME = re.compile(r"(linprobe|finetune|semi_[0-9.]+)\.ya?ml", re.IGNORECASE)


def _downstream_source(margs: dict, path: Path | None) -> tuple[str, str]:
    """Whose `model.transformer.Transformer` file this is, ("MAMP" or "HA-CM", why).

    MAMP and the HA-CM release share the class name, and some of their downstream files are
    byte-identical, so the content decides only where it can: 18 joints (trunk pruning) exist only
    in the HA-CM release. Then the file name (MAMP's `linprobe_t120_layer8.yaml`,
    `finetune_t120_layer8_decay.yaml`, `semi_0.1_t120_layer8_decay.yaml` against the release's
    `linprobe.yaml`, `finetune.yaml`, `semi_0.1.yaml`), then a folder named mamp or hacm just
    above it (the published layout is <source>/<benchmark>/<file>; folders further up, such as a
    checkout's own name, say nothing). With none of these, 25 joints mean MAMP: the release's
    models cannot run unpruned.
    """
    if margs.get("num_joints") == 18:
        return "HA-CM", "model_args.num_joints 18: trunk pruning exists only in the HA-CM release"
    if path is not None:
        if _MAMP_DOWNSTREAM_NAME.fullmatch(path.name):
            return "MAMP", f"file name {path.name} is MAMP's naming (<protocol>_t<frames>_layer<depth>...)"
        if _HACM_DOWNSTREAM_NAME.fullmatch(path.name):
            return "HA-CM", f"file name {path.name} is the HA-CM release's naming (<protocol>.yaml)"
        for folder in reversed(path.parent.parts[-2:]):
            source = {"mamp": "MAMP", "hacm": "HA-CM"}.get(folder.lower())
            if source is not None:
                return source, f"it lies in a folder named {folder}"
    return "MAMP", (f"model_args.num_joints {margs.get('num_joints', 25)} and neither file name nor folder "
                    "tells: the HA-CM release's models need 18 joints")


def to_hacm(raw: dict, notes: list[str], path: str | Path | None = None) -> dict:
    """Map an authors' MAMP / HA-CM YAML onto a nested hacm config dict (appending notes).

    `path` is the file the dict was read from: MAMP's and the HA-CM release's downstream files
    can only be told apart by their names (`_downstream_source`).
    """
    raw = dict(raw)
    out: dict = {"data": {}, "model": {}, "masking": {}, "train": {}}
    feeder = raw.pop("feeder", "feeder.feeder_ntu.Feeder")
    if feeder not in _FEEDERS:
        raise ConfigError(f"feeder: {feeder!r} is not a feeder hacm can stand in for "
                          f"(known: {', '.join(_FEEDERS)})")
    margs = dict(raw.pop("model_args", None) or {})
    protocol = _map_model_class(raw.pop("model", None), margs, None if path is None else Path(path), out, notes)
    num_classes = margs.pop("num_classes", None)
    _map_model_args(margs, out, notes)
    _map_feeders(raw, feeder, out, notes)
    if num_classes is not None:
        # The head is sized from the store; the published PKU-MMD configs say 60 for 51 classes.
        dataset = out["data"].get("benchmark", "").split("-")[0]
        expected = NUM_CLASSES.get(dataset)
        mismatch = (f" (inconsistent: {out['data']['benchmark']} has {expected} classes)"
                    if expected is not None and expected != num_classes else "")
        notes.append(f"model_args.num_classes {num_classes} not used: the class count comes from the "
                     f"store{mismatch}")
    _map_training(raw, protocol, out, notes)
    if raw:
        key = next(iter(raw))
        raise ConfigError(f"{key}: not a key of the MAMP/HA-CM configs hacm reads (known: feeder, "
                          f"train_feeder_args, val_feeder_args, model, model_args, "
                          f"{', '.join(_TRAIN_KEYS)}, mask_ratio, motion_aware_tau)")
    return out


def _map_model_class(model_cls, margs: dict, path: Path | None, out: dict, notes: list[str]) -> str:
    """The protocol, the masking and the geometry a model class stands for; returns the protocol."""
    if model_cls not in _MODELS:
        raise ConfigError(f"model: expected one of {', '.join(_MODELS)}, got {model_cls!r}")
    protocol, masking = _MODELS[model_cls]
    declared = margs.pop("protocol", None)
    if protocol is None:
        if declared not in ("linprobe", "finetune"):
            raise ConfigError(f"model_args.protocol: expected linprobe or finetune for {model_cls}, "
                              f"got {declared!r}")
        protocol = declared
    elif declared is not None:
        raise ConfigError(f"model_args.protocol: {model_cls} is a pre-training model, "
                          f"but the file declares protocol {declared!r}")
    out["protocol"] = protocol
    if masking:
        out["masking"].update(masking)
        notes.append(f"model {model_cls} -> protocol pretrain, masking.strategy {masking['strategy']}"
                     + (", masking.keep_count floor (int(L * (1 - mask_ratio)) tokens kept)"
                        if masking.get("keep_count") == "floor" else ""))
    if model_cls == "model.transformer.Transformer":
        source, why = _downstream_source(margs, path)
        geometry = "euclidean" if source == "MAMP" else "poincare"
        out["model"].update(geometry=geometry, pool_absent_actors=True)
        notes.append(f"model {model_cls} is shared by MAMP and the HA-CM release; read as {source}'s, because "
                     f"{why} -> model.geometry {geometry}")
        notes.append("both average the features of the empty second actor slot of single-actor clips into "
                     "the pooled features -> model.pool_absent_actors true")
    if model_cls in ("model_mamp.transformer.Transformer", "model_mae.transformer.Transformer"):
        # MAMP and MAE have neither the hyperbolic map nor the cross-contrast loss.
        out["model"].update(geometry="euclidean", cc_weight=0.0, motion_expmap=False)
        notes.append("MAMP/MAE model -> model.geometry euclidean, model.cc_weight 0 (no cross-contrast), "
                     "model.motion_expmap false")
    if model_cls == "model_mae.transformer.Transformer":
        notes.append("MAMP's MAE reconstructs joint positions; hacm's target is always the motion, so this "
                     "runs MAMP's model with random masking, not MAMP's MAE baseline")
    return protocol


def _map_training(raw: dict, protocol: str, out: dict, notes: list[str]) -> None:
    """The schedule and masking keys at the top level of the authors' files."""
    for key, hkey in _TRAIN_KEYS.items():
        if key in raw:
            out["train"][hkey] = raw.pop(key)
    # The authors' scripts train without --enable_amp, on float32 products: so does their config here.
    out["train"].update(amp="off", tf32=False)
    notes.append("the authors' scripts run in float32 (no --enable_amp): train.amp off, train.tf32 false; "
                 "--set train.amp=auto --set train.tf32=true for a GPU's bf16 and TF32 speed")
    if "mask_ratio" in raw:
        out["masking"]["mask_ratio"] = raw.pop("mask_ratio")
    if "motion_aware_tau" in raw:
        tau = raw.pop("motion_aware_tau")
        if protocol == "pretrain" and out["masking"].get("strategy") != "random":
            out["masking"]["tau"] = tau
            if out["masking"].get("strategy") == "hacm":
                notes.append(f"motion_aware_tau {tau} -> masking.tau (the HA-CM release ignores it and "
                             "hard-codes 0.9; hacm honours the config)")
        else:
            notes.append(f"motion_aware_tau {tau} ignored: no Gumbel sampling in this protocol")
    if "batch_size" in out["train"] and protocol in ("linprobe", "finetune"):
        notes.append(f"train.batch_size {out['train']['batch_size']} is the GLOBAL batch in hacm; the "
                     "release ran this protocol on 2 GPUs with that batch on each")


def _map_model_args(margs: dict, out: dict, notes: list[str]) -> None:
    model = out["model"]
    for key, hkey in _MODEL_KEYS.items():
        if key in margs:
            model[hkey] = margs.pop(key)
    if "num_joints" in margs:
        nj = margs.pop("num_joints")
        if nj not in (18, 25):
            raise ConfigError(f"model_args.num_joints: expected 18 (trunk pruned) or 25, got {nj!r}")
        model["prune"] = nj == 18
        notes.append(f"model_args.num_joints {nj} -> model.prune {str(nj == 18).lower()}"
                     + (" (the 7 trunk joints become parents)" if nj == 18 else " (all 25 joints are tokens)"))
    patch = margs.pop("patch_size", 1)
    if patch != 1:
        raise ConfigError(f"model_args.patch_size: hacm tokenises one joint per token (patch_size 1), "
                          f"got {patch!r}")
    qk_scale = margs.pop("qk_scale", None)
    if not _is_none(qk_scale):
        raise ConfigError(f"model_args.qk_scale: hacm's attention always scales by head_dim^-0.5 "
                          f"(qk_scale None), got {qk_scale!r}")
    for key in ("drop_rate", "attn_drop_rate"):
        v = margs.pop(key, 0.0)
        if not _is_zero(v):
            raise ConfigError(f"model_args.{key}: hacm's encoder has no dropout outside the "
                              f"fine-tune head (only 0 is accepted), got {v!r}")
    norm = margs.pop("norm_skes_loss", True)
    if norm is not True:
        raise ConfigError(f"model_args.norm_skes_loss: hacm always normalises the motion target "
                          f"per token (only True is accepted), got {norm!r}")
    if margs:
        key = next(iter(margs))
        raise ConfigError(f"model_args.{key}: not a model argument hacm reads (known: "
                          f"{', '.join([*_MODEL_KEYS, 'num_joints', 'patch_size', 'qk_scale', 'drop_rate', 'attn_drop_rate', 'norm_skes_loss', 'num_classes', 'protocol'])})")


def _map_feeders(raw: dict, feeder: str, out: dict, notes: list[str]) -> None:
    data = out["data"]
    train_args = dict(raw.pop("train_feeder_args", None) or {})
    val_args = dict(raw.pop("val_feeder_args", None) or {})
    for part, args, expect in (("train_feeder_args", train_args, "train"), ("val_feeder_args", val_args, "test")):
        split = args.pop("split", expect)
        if split != expect:
            raise ConfigError(f"{part}.split: expected {expect!r}, got {split!r}")
        for key in _FEEDER_OFF:
            if args.pop(key, False):
                raise ConfigError(f"{part}.{key}: hacm's data pipeline has no {key} option "
                                  f"(only False is accepted)")

    npz = train_args.pop("data_path", None)
    val_npz = val_args.pop("data_path", None)
    if npz is not None:
        if val_npz is not None and val_npz != npz:
            raise ConfigError(f"val_feeder_args.data_path: {val_npz!r} differs from the training file "
                              f"{npz!r}; hacm reads both parts from one store")
        stem = Path(npz).stem
        if stem not in _BENCHMARKS:
            raise ConfigError(f"train_feeder_args.data_path: cannot tell the benchmark from {npz!r} "
                              f"(known files: {', '.join(s + '.npz' for s in _BENCHMARKS)})")
        bench = _BENCHMARKS[stem]
        store = str(Path(npz).with_suffix(""))
        data.update(store=store, benchmark=bench)
        notes.append(f"data_path {npz} is a legacy .npz: import it once with `hacm data import-npz {npz} "
                     f"--out {store} --benchmark {bench}` (or point data.store at a converted store)")

    if "window_size" in train_args:
        data["window_size"] = train_args.pop("window_size")
    val_window = val_args.pop("window_size", data.get("window_size"))
    if val_window != data.get("window_size"):
        raise ConfigError(f"val_feeder_args.window_size: {val_window} differs from the training window "
                          f"{data.get('window_size')}; hacm evaluates at the encoder's window")
    if "p_interval" in train_args:
        data["p_interval_train"] = train_args.pop("p_interval")
    if "p_interval" in val_args:
        data["p_interval_test"] = val_args.pop("p_interval")
    if "random_rot" in train_args:
        data["random_rot"] = train_args.pop("random_rot")
    if val_args.pop("random_rot", False):
        raise ConfigError("val_feeder_args.random_rot: hacm never augments the test part (only False)")
    for key in ("vel", "bone"):
        t = train_args.pop(key, False)
        v = val_args.pop(key, t)
        if t != v:
            raise ConfigError(f"val_feeder_args.{key}: {v} differs from train_feeder_args.{key} {t}")
        data[key] = t
    if feeder == "feeder.feeder_ntu_semi.Feeder":
        if "data_ratio" not in train_args:
            raise ConfigError("train_feeder_args.data_ratio: the semi-supervised feeder needs it")
        data["subset_fraction"] = train_args.pop("data_ratio")
        notes.append(f"data_ratio {data['subset_fraction']} -> data.subset_fraction (int(n * data_ratio) clips "
                     "drawn uniformly as MAMP, from data.subset_seed: the same subset on every rank, where "
                     "MAMP drew one per rank; data.subset_balanced: true draws per class instead)")
    for part, args in (("train_feeder_args", train_args), ("val_feeder_args", val_args)):
        if args:
            key = next(iter(args))
            raise ConfigError(f"{part}.{key}: not a feeder argument hacm reads")
    if "window_size" in data and "num_frames" in out["model"] and data["window_size"] != out["model"]["num_frames"]:
        raise ConfigError(f"train_feeder_args.window_size {data['window_size']} differs from "
                          f"model_args.num_frames {out['model']['num_frames']}")
