"""Run configuration: dataclasses, validation, and the YAML readers (hacm's own and the authors').

A run is described by one `RunConfig`:

    protocol: pretrain | linprobe | finetune | knn
    data:     DataConfig    (store, benchmark, augmentation, semi-supervised subset)
    model:    ModelConfig   (hacm.model: encoder/decoder shapes, geometry, loss weights)
    masking:  MaskingConfig (hacm.masking: strategy, ratio, tau, ...)
    train:    TrainConfig   (optimiser, schedule, precision, checkpoints, device)
    knn:      KnnConfig     (k values and temperature of the kNN evaluation)

Every protocol starts from its paper defaults (`protocol_defaults`; docs/method.md, downstream
protocols), the file's values go on top, and `--set a.b=value` overrides go on top of that. Every key is checked:
an unknown key or a value of the wrong type raises `ConfigError` naming the full dotted key and
what is allowed.

Two file formats are read, told apart by their keys:
- hacm YAML: nested sections as above (`hacm/configs/*.yaml`).
- the authors' MAMP / HA-CM YAML: flat keys (`feeder`, `model_args`, ...), mapped onto a hacm
  config by `hacm.upstream` with a note for every decision and an error for what hacm cannot honour.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from hacm import upstream
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
    # Distributed pre-training from a notebook or batch job (hacm.launch): torchrun on `nodes` nodes
    # (under Slurm, srun starts one torchrun per node) with `gpus_per_node` processes on each, one
    # per GPU (gloo processes on CPUs). 1 x 1 trains in the calling process.
    nodes: int = 1
    gpus_per_node: int = 1


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
    """The paper setup (docs/method.md, downstream protocols) of one protocol, as a nested config dict."""
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


def replace(cfg: RunConfig, **sections) -> RunConfig:
    """A copy of cfg with some sections' fields replaced: replace(cfg, train={"epochs": 2})."""
    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)
                                       for name, values in sections.items()})


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False)


def validate(cfg: RunConfig) -> None:
    """Cross-field checks that no single annotation can express."""
    data, t, m = cfg.data, cfg.train, cfg.model
    if data.window_size != m.num_frames:
        raise ConfigError(f"data.window_size ({data.window_size}) must equal model.num_frames "
                          f"({m.num_frames}): the encoder's temporal embedding has one slot per patch")
    for key, p in (("data.p_interval_train", data.p_interval_train), ("data.p_interval_test", data.p_interval_test)):
        if len(p) not in (1, 2) or not all(0 < x <= 1 for x in p) or (len(p) == 2 and p[0] > p[1]):
            raise ConfigError(f"{key}: expected [ratio] or [low, high] with 0 < low <= high <= 1, got {list(p)}")
    if data.subset_fraction is not None and not 0 < data.subset_fraction <= 1:
        raise ConfigError(f"data.subset_fraction: expected a fraction in (0, 1], got {data.subset_fraction}")
    if data.num_workers is not None and data.num_workers < 0:
        raise ConfigError(f"data.num_workers: expected >= 0, got {data.num_workers}")
    positive = {"train.batch_size": t.batch_size, "train.log_every": t.log_every, "train.eval_every": t.eval_every,
                "train.nodes": t.nodes, "train.gpus_per_node": t.gpus_per_node}
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
        d = upstream.to_hacm(raw, sink, path) if upstream.is_upstream(raw) else raw
        return from_dict(apply_overrides(d, overrides))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
