"""Run configuration: dataclasses, validation, and the YAML readers (hacm's own and the authors').

A run is described by one `RunConfig`:

    protocol: pretrain | linprobe | finetune | knn
    data:     DataConfig    (store, benchmark, augmentation, semi-supervised subset)
    model:    ModelConfig   (hacm.model: encoder/decoder shapes, geometry, loss weights)
    masking:  MaskingConfig (hacm.masking: strategy, ratio, tau, ...)
    train:    TrainConfig   (optimiser, schedule, precision, checkpoints, device)
    knn:      KnnConfig     (k values and temperature of the kNN evaluation)

Every protocol starts from the defaults of `method.md` section 9 (`protocol_defaults`), the
file's values go on top, and `--set a.b=value` overrides go on top of that. Every key is checked:
an unknown key or a value of the wrong type raises `ConfigError` naming the full dotted key and
what is allowed.

Two file formats are read, told apart by their keys:
- hacm YAML: nested sections as above (`hacm/configs/*.yaml`).
- the authors' MAMP / HA-CM YAML: flat keys (`feeder`, `train_feeder_args`, `model`,
  `model_args`, `epochs`, ...). They are mapped onto a RunConfig; whatever hacm cannot honour
  is a ConfigError saying which key and why, and every decision taken on the way (joint pruning
  from `num_joints`, where the data has to come from, whether a model class MAMP and the HA-CM
  release share stands for MAMP's Euclidean or the release's hyperbolic encoder, ...) is
  reported as a note.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from hacm.errors import ConfigError
from hacm.masking import MaskingConfig
from hacm.model import ModelConfig

PROTOCOLS = ("pretrain", "linprobe", "finetune", "knn")
PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    store: str = "data/synth/store"          # a hacm store directory (`hacm data ...` writes one)
    benchmark: str = "synth-xsub"            # "<dataset>-<protocol>", parts train/test
    window_size: int = 72                    # frames per clip after crop+resize; = model.num_frames
    p_interval_train: tuple[float, ...] = (0.5, 1.0)   # crop ratio range while training
    p_interval_test: tuple[float, ...] = (0.95,)       # fixed centre crop for evaluation
    random_rot: bool = True                  # random rotation (+-0.3 rad) while training
    vel: bool = False                        # frame differences instead of positions
    bone: bool = False                       # bone vectors instead of positions
    subset_fraction: float | None = None     # semi-supervised: labelled fraction of the train part
    subset_seed: int = 0                     # the subset is a function of this seed only (same on every rank)
    subset_balanced: bool = False            # False: int(n * fraction) drawn uniformly (MAMP); True: per class
    num_workers: int | None = None           # DataLoader workers; None = hacm.data.loader's choice


@dataclass
class TrainConfig:
    epochs: int = 400
    warmup_epochs: int = 20                  # linear warmup, then half-cosine to min_lr (per iteration)
    batch_size: int = 64                     # GLOBAL batch: split evenly over DDP ranks
    lr: float = 1e-3
    min_lr: float = 5e-4
    weight_decay: float = 0.05               # on every tensor with ndim >= 2 (as MAMP), never biases/norms
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW (pretrain, finetune)
    momentum: float = 0.9                    # SGD (linear probe)
    layer_decay: float = 1.0                 # fine-tune: lr * layer_decay^(depth + 1 - layer_id)
    label_smoothing: float = 0.0
    head_dropout: float = 0.3                # fine-tune head dropout
    amp: Literal["off", "bf16"] = "off"      # bf16 autocast (GPU, and CPUs with AMX)
    # Parameters and inputs of training and evaluation. float64 is for exactness checks (a DDP
    # run against one process, a resumed run against a straight one): its rounding noise is far
    # below AdamW's eps, which float32's is not. Slower; not with amp bf16.
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    checkpoint_every: int = 20               # epochs between checkpoints/epoch_NNNN.pt (0 = never)
    eval_every: int = 1                      # linprobe/finetune: epochs between test evaluations (and the last)
    log_every: int = 10                      # steps between metrics.jsonl step records
    device: Literal["auto", "cpu", "cuda"] = "auto"
    pretrained: str | None = None            # hacm run dir / checkpoint, or an original MAMP .pth
    max_steps_per_epoch: int | None = None   # cut epochs short (smoke runs)


@dataclass
class KnnConfig:
    k: tuple[int, ...] = (20, 1)
    temperature: float = 0.07                # vote weight exp(cos / T)


@dataclass
class RunConfig:
    protocol: Literal["pretrain", "linprobe", "finetune", "knn"] = "pretrain"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)

    def __post_init__(self):
        validate(self)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "masking": MaskingConfig,
            "train": TrainConfig, "knn": KnnConfig}

def protocol_defaults(protocol: str) -> dict:
    """The paper setup of `method.md` section 9 for one protocol, as a nested config dict."""
    if protocol == "pretrain":
        return {"train": dict(epochs=400, warmup_epochs=20, batch_size=64, lr=1e-3, min_lr=5e-4,
                              weight_decay=0.05, betas=(0.9, 0.95))}
    if protocol == "linprobe":
        return {"train": dict(epochs=100, warmup_epochs=0, batch_size=256, lr=0.1, min_lr=0.0,
                              weight_decay=0.0, momentum=0.9)}
    if protocol == "finetune":
        return {"train": dict(epochs=100, warmup_epochs=5, batch_size=48, lr=3e-4, min_lr=1e-5,
                              weight_decay=0.05, betas=(0.9, 0.999), layer_decay=0.8,
                              label_smoothing=0.1),
                "model": dict(drop_path=0.3)}
    if protocol == "knn":
        return {"train": dict(epochs=0, warmup_epochs=0, batch_size=256)}
    raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with checking


def _type_name(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return f"a list of {len(args)} " + "/".join(_type_name(a) for a in args)
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _coerce(value, hint, key: str):
    """Check `value` against the annotation `hint`; return it in canonical form or raise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)

    def bad():
        return ConfigError(f"{key}: expected {_type_name(hint)}, got {value!r} "
                           f"({type(value).__name__})")

    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise bad()
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad()
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise bad()
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        # YAML 1.1 reads `1e-3` (no dot) as a string; the authors' files are full of them.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise bad()
    if hint is str:
        if isinstance(value, str):
            return value
        raise bad()
    raise TypeError(f"config field {key} has an annotation hacm does not handle: {hint!r}")


def _build_section(cls, values: dict, prefix: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys, got {values!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(f"unknown key {prefix}.{unknown[0]}; allowed keys in {prefix}: "
                          f"{', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in values.items()}
    try:
        return cls(**kwargs)            # the section's own checks (e.g. ModelConfig.__post_init__)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(prefix) else f"{prefix}: {message}") from None


def _deep_merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for k, v in top.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(d: dict) -> RunConfig:
    """A nested hacm config dict -> RunConfig, with the protocol's defaults underneath."""
    if not isinstance(d, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(d).__name__}")
    allowed = ["protocol", *SECTIONS]
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}; allowed top-level keys: {', '.join(allowed)}")
    protocol = d.get("protocol", "pretrain")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    merged = _deep_merge(protocol_defaults(protocol), d)
    sections = {name: _build_section(cls, merged.get(name) or {}, name)
                for name, cls in SECTIONS.items()}
    return RunConfig(protocol=protocol, **sections)


def to_dict(cfg: RunConfig) -> dict:
    """Plain YAML/JSON-able dict (tuples become lists); `from_dict(to_dict(c)) == c`."""
    def plain(v):
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that no single annotation can express."""
    d, t, m = cfg.data, cfg.train, cfg.model
    if d.window_size != m.num_frames:
        raise ConfigError(f"data.window_size ({d.window_size}) must equal model.num_frames "
                          f"({m.num_frames}): the encoder's temporal embedding has one slot per patch")
    for key, p in (("data.p_interval_train", d.p_interval_train), ("data.p_interval_test", d.p_interval_test)):
        if len(p) not in (1, 2) or not all(0 < x <= 1 for x in p) or (len(p) == 2 and p[0] > p[1]):
            raise ConfigError(f"{key}: expected [ratio] or [low, high] with 0 < low <= high <= 1, got {list(p)}")
    if d.subset_fraction is not None and not 0 < d.subset_fraction <= 1:
        raise ConfigError(f"data.subset_fraction: expected a fraction in (0, 1], got {d.subset_fraction}")
    if d.num_workers is not None and d.num_workers < 0:
        raise ConfigError(f"data.num_workers: expected >= 0, got {d.num_workers}")
    positive = {"train.batch_size": t.batch_size, "train.log_every": t.log_every, "train.eval_every": t.eval_every}
    for key, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{key}: expected a positive integer, got {v}")
    for key, v in {"train.epochs": t.epochs, "train.warmup_epochs": t.warmup_epochs,
                   "train.checkpoint_every": t.checkpoint_every}.items():
        if v < 0:
            raise ConfigError(f"{key}: expected >= 0, got {v}")
    if cfg.protocol != "knn" and t.epochs == 0:
        raise ConfigError(f"train.epochs: expected at least 1 for protocol {cfg.protocol}")
    if t.warmup_epochs > t.epochs:
        raise ConfigError(f"train.warmup_epochs ({t.warmup_epochs}) exceeds train.epochs ({t.epochs})")
    if t.lr <= 0 or t.min_lr < 0 or t.min_lr > t.lr:
        raise ConfigError(f"train.lr / train.min_lr: expected 0 <= min_lr <= lr and lr > 0, "
                          f"got lr={t.lr}, min_lr={t.min_lr}")
    if not 0 < t.layer_decay <= 1:
        raise ConfigError(f"train.layer_decay: expected a value in (0, 1], got {t.layer_decay}")
    if not 0 <= t.label_smoothing < 1:
        raise ConfigError(f"train.label_smoothing: expected a value in [0, 1), got {t.label_smoothing}")
    if not 0 <= t.head_dropout < 1:
        raise ConfigError(f"train.head_dropout: expected a value in [0, 1), got {t.head_dropout}")
    if t.amp == "bf16" and t.dtype != "float32":
        raise ConfigError(f"train.amp: bf16 autocast needs train.dtype float32, got {t.dtype}")
    if t.max_steps_per_epoch is not None and t.max_steps_per_epoch <= 0:
        raise ConfigError(f"train.max_steps_per_epoch: expected a positive integer or null, "
                          f"got {t.max_steps_per_epoch}")
    if not cfg.knn.k or min(cfg.knn.k) <= 0:
        raise ConfigError(f"knn.k: expected a non-empty list of positive integers, got {list(cfg.knn.k)}")
    if cfg.knn.temperature <= 0:
        raise ConfigError(f"knn.temperature: expected > 0, got {cfg.knn.temperature}")


# --------------------------------------------------------------------------------------------
# --set overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], yaml.safe_load(value))."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=10")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: the value is not valid YAML ({exc.problem})") from None
    return key.strip().split("."), value


def apply_overrides(d: dict, overrides: Sequence[str] | Mapping[str, Any]) -> dict:
    """Overrides on a nested config dict: `--set` texts ["a.b=value", ...] (values parsed as YAML)
    or a mapping {"a.b": value} of Python values (notebooks, batch parameters)."""
    items = ((k.split("."), v, f"{k}={v!r}") for k, v in overrides.items()) if isinstance(overrides, Mapping) \
        else ((*parse_override(text), text) for text in overrides)
    out = _deep_merge({}, d)
    for path, value, text in items:
        node = out
        for part in path[:-1]:
            if not isinstance(node.get(part, {}), dict):
                raise ConfigError(f"--set {text!r}: {part} is not a section")
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


# --------------------------------------------------------------------------------------------
# file reading


def resolve_config_path(name: str | Path) -> Path:
    """A path, or the name of a config shipped with hacm (`synth_pretrain`, `ntu60_xsub_linprobe`)."""
    p = Path(name)
    if p.exists():
        return p
    shipped = PACKAGE_CONFIG_DIR / (p.name if p.suffix in (".yaml", ".yml") else p.name + ".yaml")
    if p.parent == Path(".") and shipped.exists():
        return shipped
    available = ", ".join(sorted(q.stem for q in PACKAGE_CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"{name}: no such config file (shipped configs: {available})")


def read_yaml(path: Path):
    """Parse a YAML file (configs, report batches); ConfigError naming the file (and line) if unreadable."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{line}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: expected a UTF-8 text YAML file, found byte 0x{exc.object[exc.start]:02x} "
                          f"at offset {exc.start}") from None


def load_config(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = (),
                notes: list[str] | None = None) -> RunConfig:
    """Read a hacm or authors' (MAMP / HA-CM) YAML file, apply overrides (`--set` texts or a
    {"a.b": value} mapping), validate.

    Decisions taken while mapping the authors' keys are appended to `notes` when given.
    """
    path = resolve_config_path(path)
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    sink = notes if notes is not None else []
    try:
        d = from_upstream(raw, sink, path) if is_upstream(raw) else raw
        return from_dict(apply_overrides(d, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------------------------
# the authors' YAML (MAMP and the HA-CM release)


def is_upstream(raw: dict) -> bool:
    return "model_args" in raw or "feeder" in raw


_UPSTREAM_FEEDERS = ("feeder.feeder_ntu.Feeder", "feeder.feeder_ntu_semi.Feeder")

# model class -> (protocol, masking) for the pre-training models; the downstream Transformer
# takes its protocol from model_args.protocol, and its source from `_downstream_source`.
_UPSTREAM_MODELS = {
    "model_hacm.transformer.Transformer": ("pretrain", dict(strategy="hacm")),
    "model_mamp.transformer.Transformer": ("pretrain", dict(strategy="motion", keep_high=False,
                                                            cross_grouping=False)),
    "model_mae.transformer.Transformer": ("pretrain", dict(strategy="random", cross_grouping=False)),
    "model.transformer.Transformer": (None, None),
}

# legacy .npz file stem -> hacm benchmark name
_UPSTREAM_BENCHMARKS = {
    "NTU60_XSub": "ntu60-xsub", "NTU60_XView": "ntu60-xview",
    "NTU120_XSub": "ntu120-xsub", "NTU120_XSet": "ntu120-xset",
    "PKUv1_XSub": "pku1-xsub", "PKUv1_XView": "pku1-xview",
    "PKUv2_XSub": "pku2-xsub", "PKUv2_XView": "pku2-xview",
}
_DATASET_CLASSES = {"ntu60": 60, "ntu120": 120, "pku1": 51, "pku2": 51}

# model_args key -> model config key (straight copies)
_UPSTREAM_MODEL_KEYS = {"dim_in": "dim_in", "dim_feat": "dim", "decoder_dim_feat": "decoder_dim",
                        "depth": "depth", "decoder_depth": "decoder_depth", "num_heads": "heads",
                        "mlp_ratio": "mlp_ratio", "num_frames": "num_frames",
                        "t_patch_size": "t_patch", "qkv_bias": "qkv_bias",
                        "drop_path_rate": "drop_path"}
# top-level training key -> train config key
_UPSTREAM_TRAIN_KEYS = {"epochs": "epochs", "warmup_epochs": "warmup_epochs",
                        "batch_size": "batch_size", "lr": "lr", "min_lr": "min_lr",
                        "weight_decay": "weight_decay", "layer_decay": "layer_decay",
                        "smoothing": "label_smoothing"}
# feeder switches hacm's data pipeline does not have: only their "off" value is accepted.
_UPSTREAM_FEEDER_OFF = ("debug", "random_choose", "random_shift", "random_move", "normalization")


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


def from_upstream(raw: dict, notes: list[str], path: str | Path | None = None) -> dict:
    """Map an authors' MAMP / HA-CM YAML onto a nested hacm config dict (appending notes).

    `path` is the file the dict was read from: MAMP's and the HA-CM release's downstream files
    can only be told apart by their names (`_downstream_source`).
    """
    raw = dict(raw)
    out: dict = {"data": {}, "model": {}, "masking": {}, "train": {}}

    feeder = raw.pop("feeder", "feeder.feeder_ntu.Feeder")
    if feeder not in _UPSTREAM_FEEDERS:
        raise ConfigError(f"feeder: {feeder!r} is not a feeder hacm can stand in for "
                          f"(known: {', '.join(_UPSTREAM_FEEDERS)})")

    model_cls = raw.pop("model", None)
    if model_cls not in _UPSTREAM_MODELS:
        raise ConfigError(f"model: expected one of {', '.join(_UPSTREAM_MODELS)}, got {model_cls!r}")
    protocol, masking = _UPSTREAM_MODELS[model_cls]
    margs = dict(raw.pop("model_args", None) or {})
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
        notes.append(f"model {model_cls} -> protocol pretrain, masking.strategy {masking['strategy']}")
    if model_cls == "model.transformer.Transformer":
        source, why = _downstream_source(margs, None if path is None else Path(path))
        geometry = "euclidean" if source == "MAMP" else "poincare"
        out["model"]["geometry"] = geometry
        notes.append(f"model {model_cls} is shared by MAMP and the HA-CM release; read as {source}'s, because "
                     f"{why} -> model.geometry {geometry}")
    if model_cls in ("model_mamp.transformer.Transformer", "model_mae.transformer.Transformer"):
        # MAMP and MAE have neither the hyperbolic map nor the cross-contrast loss.
        out["model"].update(geometry="euclidean", cc_weight=0.0, motion_expmap=False)
        notes.append("MAMP/MAE model -> model.geometry euclidean, model.cc_weight 0 (no cross-contrast), "
                     "model.motion_expmap false")
    if model_cls == "model_mae.transformer.Transformer":
        notes.append("MAMP's MAE reconstructs joint positions; hacm's target is always the motion, so this "
                     "runs MAMP's model with random masking, not MAMP's MAE baseline")

    num_classes = margs.pop("num_classes", None)
    _map_model_args(margs, out, notes)
    _map_feeders(raw, feeder, out, notes)
    if num_classes is not None:
        # The head is sized from the store; the published PKU-MMD configs say 60 for 51 classes.
        dataset = out["data"].get("benchmark", "").split("-")[0]
        expected = _DATASET_CLASSES.get(dataset)
        mismatch = (f" (inconsistent: {out['data']['benchmark']} has {expected} classes)"
                    if expected is not None and expected != num_classes else "")
        notes.append(f"model_args.num_classes {num_classes} not used: the class count comes from the "
                     f"store{mismatch}")

    for key, hkey in _UPSTREAM_TRAIN_KEYS.items():
        if key in raw:
            out["train"][hkey] = raw.pop(key)
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
    if raw:
        key = next(iter(raw))
        raise ConfigError(f"{key}: not a key of the MAMP/HA-CM configs hacm reads (known: feeder, "
                          f"train_feeder_args, val_feeder_args, model, model_args, "
                          f"{', '.join(_UPSTREAM_TRAIN_KEYS)}, mask_ratio, motion_aware_tau)")
    return out


def _map_model_args(margs: dict, out: dict, notes: list[str]) -> None:
    model = out["model"]
    for key, hkey in _UPSTREAM_MODEL_KEYS.items():
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
                          f"{', '.join([*_UPSTREAM_MODEL_KEYS, 'num_joints', 'patch_size', 'qk_scale', 'drop_rate', 'attn_drop_rate', 'norm_skes_loss', 'num_classes', 'protocol'])})")


def _map_feeders(raw: dict, feeder: str, out: dict, notes: list[str]) -> None:
    data = out["data"]
    train_args = dict(raw.pop("train_feeder_args", None) or {})
    val_args = dict(raw.pop("val_feeder_args", None) or {})
    for part, args, expect in (("train_feeder_args", train_args, "train"), ("val_feeder_args", val_args, "test")):
        split = args.pop("split", expect)
        if split != expect:
            raise ConfigError(f"{part}.split: expected {expect!r}, got {split!r}")
        for key in _UPSTREAM_FEEDER_OFF:
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
        if stem not in _UPSTREAM_BENCHMARKS:
            raise ConfigError(f"train_feeder_args.data_path: cannot tell the benchmark from {npz!r} "
                              f"(known files: {', '.join(s + '.npz' for s in _UPSTREAM_BENCHMARKS)})")
        bench = _UPSTREAM_BENCHMARKS[stem]
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
