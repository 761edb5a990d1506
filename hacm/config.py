"""Run configuration: dataclasses, validation, and the YAML readers (hacm's own and the authors').

A run is described by one `RunConfig`:

    protocol: pretrain | linprobe | finetune | knn
    data:     DataConfig    (store, benchmark, augmentation, semi-supervised subset)
    model:    ModelConfig   (read by hacm.model: encoder/decoder shapes, geometry, loss weights)
    masking:  MaskingConfig (read by hacm.masking: strategy, ratio, tau, ...)
    train:    TrainConfig   (optimiser, schedule, precision, checkpoints, device)
    knn:      KnnConfig     (k values and temperature of the kNN evaluation)

Every protocol starts from its paper defaults (`protocol_defaults`; docs/method.md, downstream
protocols), the file's values go on top, and `--set a.b=value` overrides go on top of that. Every key is checked:
an unknown key or a value of the wrong type raises `ConfigError` naming the full dotted key and
what is allowed, with the closest valid key when one is close ("did you mean train.epochs?").

All sections are defined here and this module imports neither torch nor numpy, so that reading and
checking a config (every command-line error included) answers at once.

Two file formats are read, told apart by their keys:
- hacm YAML: nested sections as above (`hacm/configs/*.yaml`).
- the authors' MAMP / HA-CM YAML: flat keys (`feeder`, `model_args`, ...), mapped onto a hacm
  config by `hacm.upstream` with a note for every decision and an error for what hacm cannot honour.
"""
from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import yaml

from hacm import upstream
from hacm.errors import ConfigError, did_you_mean

PROTOCOLS = ("pretrain", "linprobe", "finetune", "knn")
PACKAGE_CONFIG_DIR = Path(__file__).parent / "configs"

# --------------------------------------------------------------------------------------------
# The sections of hacm.model and hacm.masking. They live here, with the values each key allows, so
# that reading and checking a config (and so every command-line error) needs neither torch nor numpy.

GEOMETRIES = ("poincare", "euclidean")     # hacm.geometry.make_geometry
DEFAULT_BALL_EPS = 1e-12                    # float64 resolves radii this close to the rim (hacm.geometry)
CC_SIMILARITIES = ("cosine", "release")    # hacm.losses.cross_contrast

STRATEGIES = ("hacm", "spatial_only", "temporal_only", "motion", "random")
ATTENTION_VARIANTS = ("standard", "release")
NORMALISATIONS = ("standard", "release")
KEEP_COUNTS = ("round", "floor")            # hacm.masking.num_keep

# What a strategy means when a key is not given: a strategy name brings its method's settings, so
# "motion" is MAMP (masks the high-motion tokens over all patches, MAMP's normalisation) and
# "random" is MAE (one branch), not HA-CM's settings with another criterion.
STRATEGY_DEFAULTS = {
    "hacm": dict(keep_high=True, cross_grouping=True, normalise="standard"),
    "spatial_only": dict(keep_high=True, cross_grouping=True, normalise="standard"),
    "temporal_only": dict(keep_high=True, cross_grouping=True, normalise="standard"),
    "motion": dict(keep_high=False, cross_grouping=False, normalise="release"),
    "random": dict(keep_high=True, cross_grouping=False, normalise="release"),
}


@dataclass
class MaskingConfig:
    strategy: str = "hacm"        # hacm | spatial_only | temporal_only | motion | random
    mask_ratio: float = 0.9
    tau: float = 0.9
    # None: the strategy's own value (STRATEGY_DEFAULTS)
    keep_high: bool | None = None        # keep high-score tokens (HA-CM release); False masks them (MAMP)
    cross_grouping: bool | None = None   # odd/even time-patch branches; off -> one branch over all patches
    normalise: str | None = None         # standard: (s - mean) / std / tau | release: s / (tau * max|s|)
    attention: str = "standard"   # standard (softmax over time, 1/sqrt(d)) | release (softmax over joints, *sqrt(d))
    parent_weight: float = 0.01
    # tokens kept of a branch of L: round((1 - mask_ratio) * L), or MAMP's int(L * (1 - mask_ratio)),
    # which floors the float product (74 of 750 at mask_ratio 0.9, where round gives 75)
    keep_count: str = "round"

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"masking.strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for key, value in STRATEGY_DEFAULTS[self.strategy].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.attention not in ATTENTION_VARIANTS:
            raise ConfigError(f"masking.attention: expected one of {', '.join(ATTENTION_VARIANTS)}, "
                              f"got {self.attention!r}")
        if self.normalise not in NORMALISATIONS:
            raise ConfigError(f"masking.normalise: expected one of {', '.join(NORMALISATIONS)}, "
                              f"got {self.normalise!r}")
        if self.keep_count not in KEEP_COUNTS:
            raise ConfigError(f"masking.keep_count: expected one of {', '.join(KEEP_COUNTS)}, "
                              f"got {self.keep_count!r}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"masking.mask_ratio: expected a number in [0, 1), got {self.mask_ratio!r}")
        if not self.tau > 0:
            raise ConfigError(f"masking.tau: expected a positive number, got {self.tau!r}")
        if self.strategy == "hacm" and not self.cross_grouping:
            raise ConfigError("masking.strategy 'hacm' needs cross_grouping: true (its two criteria are "
                              "the two branches); use spatial_only or temporal_only for one criterion")

    def branch_criteria(self) -> tuple[str, ...]:
        """The criterion of each branch, in branch order (temporal/even first, spatial/odd second)."""
        single = {"spatial_only": "hierarchy", "temporal_only": "attention",
                  "motion": "motion", "random": "random"}
        if self.strategy == "hacm":
            return ("attention", "hierarchy")
        return (single[self.strategy],) * (2 if self.cross_grouping else 1)


@dataclass
class ModelConfig:
    num_frames: int = 72
    t_patch: int = 3
    prune: bool = True              # 18 token joints (trunk joints become parents) or all 25
    dim_in: int = 3
    dim: int = 256
    depth: int = 8
    heads: int = 8
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    decoder_dim: int = 256
    decoder_depth: int = 3
    drop_path: float = 0.0
    geometry: str = "poincare"      # poincare | euclidean: where tokens live before the blocks
    curvature: float = 1.0
    ball_eps: float = DEFAULT_BALL_EPS   # projection margin inside the rim (release: 1e-5); see geometry.py
    clip_radius: float | None = None     # feature clipping of |e| before the map (Guo et al. 2022); None = off
    motion_expmap: bool = True      # pass the motion target through expmap0 (release) or not
    cc_weight: float = 0.5          # alpha in alpha*L_cc + (1-alpha)*L_rec ; 0 disables cross-contrast
    cc_similarity: str = "cosine"   # cosine (/ cc_temperature) | release (raw dot products: saturated)
    cc_temperature: float = 0.1     # softmax temperature of the cosine cross-contrast
    cc_odd_even_term: bool = False  # the release's third (odd vs even) similarity term
    # Downstream (features, linear probe, fine-tune, kNN): encode the all-zero actor slot of a
    # single-actor clip and average it in, as MAMP and the release do, or skip it (hacm).
    # Pre-training always skips absent actors.
    pool_absent_actors: bool = False

    def __post_init__(self):
        for name in ("num_frames", "t_patch", "dim_in", "dim", "depth", "heads", "decoder_dim"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) > 0):
                raise ConfigError(f"model.{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.num_frames % self.t_patch:
            raise ConfigError(f"model.num_frames: expected a multiple of t_patch={self.t_patch}, "
                              f"got {self.num_frames}")
        if self.dim % self.heads or self.decoder_dim % self.heads:
            raise ConfigError(f"model.heads: expected a divisor of dim={self.dim} and "
                              f"decoder_dim={self.decoder_dim}, got {self.heads}")
        if self.geometry not in GEOMETRIES:
            raise ConfigError(f"model.geometry: expected one of {', '.join(GEOMETRIES)}, got {self.geometry!r}")
        if not 0.0 <= self.cc_weight <= 1.0:
            raise ConfigError(f"model.cc_weight: expected a number in [0, 1], got {self.cc_weight!r}")
        if self.cc_similarity not in CC_SIMILARITIES:
            raise ConfigError(f"model.cc_similarity: expected one of {', '.join(CC_SIMILARITIES)}, "
                              f"got {self.cc_similarity!r}")
        if not self.cc_temperature > 0:
            raise ConfigError(f"model.cc_temperature: expected a positive number, got {self.cc_temperature!r}")
        if not 0.0 < self.ball_eps < 1.0:
            raise ConfigError(f"model.ball_eps: expected a number in (0, 1), got {self.ball_eps!r}")
        if self.clip_radius is not None and not self.clip_radius > 0:
            raise ConfigError(f"model.clip_radius: expected a positive number or null, got {self.clip_radius!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ConfigError(f"model.drop_path: expected a number in [0, 1), got {self.drop_path!r}")

    @property
    def num_patches(self) -> int:
        return self.num_frames // self.t_patch

    @property
    def num_tokens_joints(self) -> int:
        from hacm.skeleton import joint_set   # numpy: not on the import path of the CLI

        return len(joint_set(self.prune))


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
    # bf16 autocast of the forward pass. "auto": bf16 on a CUDA GPU with native bf16 (Ampere and
    # later) when train.dtype is float32, else off (hacm.distributed.resolve_amp); the run's
    # config.yaml records what it resolved to, and a resumed run keeps it. "bf16" also autocasts
    # on a CPU (fast only with AMX). MAMP's published runs are float32 (mamp_* configs: off).
    amp: Literal["auto", "off", "bf16"] = "auto"
    # TensorFloat-32 tensor cores for float32 matmuls and convolutions on CUDA (10-bit mantissa
    # inputs, float32 accumulation). Has no effect on a CPU or with dtype float64; false for
    # float32 products in full IEEE float32 precision (parity runs: the mamp_* configs).
    tf32: bool = True
    # torch.compile the encoder's transformer (and the pre-training decoder); the masking, the
    # geometry maps and the heads stay eager. Same function up to rounding; pays off on a GPU.
    compile: bool = False
    # Parameters and inputs of training and evaluation. float64 is for exactness checks (a DDP
    # run against one process, a resumed run against a straight one): its rounding noise is far
    # below AdamW's eps, which float32's is not. Slower; not with amp bf16.
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    checkpoint_every: int = 20               # epochs between checkpoints/epoch_NNNN.pt (0 = never)
    eval_every: int = 1                      # linprobe/finetune: epochs between test evaluations (and the last)
    log_every: int = 10                      # steps between metrics.jsonl step records
    tensorboard: bool = True                 # also write the metrics as TensorBoard events (rank 0)
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
    train_clips: int | None = None           # bank of at most this many training clips, a sample drawn
                                             # with train.seed (a large store's quick check); None: all


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
        # YAML 1.1 reads a bare `off` (`--set train.amp=off`) as false
        if value is False and "off" in args:
            return "off"
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
        hint = did_you_mean(f"{prefix}.{unknown[0]}", [f"{prefix}.{n}" for n in names])
        raise ConfigError(f"unknown key {prefix}.{unknown[0]}{hint}; allowed keys in {prefix}: "
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


def _clamp_warmup(merged: dict, notes: list[str] | None) -> None:
    """A run shortened below its warmup (`--set train.epochs=1` on a config with 20 warmup epochs)
    warms up over all its epochs instead of failing; the note (or a warning) names both keys."""
    t = merged.get("train")
    if not isinstance(t, dict):
        return
    epochs, warmup = t.get("epochs"), t.get("warmup_epochs")
    if isinstance(epochs, int) and isinstance(warmup, int) and 0 <= epochs < warmup:
        t["warmup_epochs"] = epochs
        note = (f"train.warmup_epochs ({warmup}) is more than train.epochs ({epochs}): "
                f"warmup clamped to train.epochs")
        if notes is None:
            warnings.warn(note, stacklevel=4)   # the caller of load_config
        else:
            notes.append(note)


def from_dict(d: dict, notes: list[str] | None = None) -> RunConfig:
    """A nested hacm config dict -> RunConfig, with the protocol's defaults underneath.

    Adjustments taken (a warmup clamped to the epoch count) go to `notes`, or are warned when None."""
    if not isinstance(d, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(d).__name__}")
    allowed = ["protocol", *SECTIONS]
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}{did_you_mean(unknown[0], allowed)}; "
                          f"allowed top-level keys: {', '.join(allowed)}")
    protocol = d.get("protocol", "pretrain")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol: expected one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    merged = _deep_merge(protocol_defaults(protocol), d)
    _clamp_warmup(merged, notes)
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
    if cfg.knn.train_clips is not None and cfg.knn.train_clips < 1:
        raise ConfigError(f"knn.train_clips: expected a positive number of clips or null (all), got {cfg.knn.train_clips}")


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


def parse_overrides(texts: Sequence[str]) -> dict[str, Any]:
    """`--set` texts ["a.b=value", ...] -> {"a.b": value} (values parsed as YAML)."""
    return {".".join(path): value for path, value in map(parse_override, texts)}


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
    shipped_names = sorted(shipped_configs())
    hint = did_you_mean(p.stem, shipped_names)
    raise ConfigError(f"{name}: no such config file{hint}; " + ("`hacm config list` lists the shipped configs" if hint
                      else f"shipped configs (`hacm config list` describes them): {', '.join(shipped_names)}"))


def shipped_configs() -> dict[str, str]:
    """Name -> one-line description of every config shipped in hacm/configs (from its first comment line)."""
    out = {}
    for path in sorted(PACKAGE_CONFIG_DIR.glob("*.yaml")):
        with path.open() as f:
            first = f.readline().strip()
        # "# hacm config (HA-CM pre-training, ntu60-xsub). Run: hacm ..." -> "HA-CM pre-training, ntu60-xsub"
        text = first.lstrip("#").strip().removeprefix("hacm config").split(" Run:")[0]
        out[path.stem] = text.replace("(", "", 1).replace(")", "", 1).strip().rstrip(".") if first.startswith("#") else ""
    return out


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

    Decisions taken while mapping the authors' keys, and adjustments (a warmup clamped to a shorter
    run), are appended to `notes` when given; without `notes` the adjustments are warned.
    """
    path = resolve_config_path(path)
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    try:
        d = upstream.to_hacm(raw, notes if notes is not None else [], path) if upstream.is_upstream(raw) else raw
        return from_dict(apply_overrides(d, overrides), notes)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
