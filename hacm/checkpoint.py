"""Checkpoints: atomic writes, `weights_only` reads, RNG state, pre-trained encoder import.

A hacm checkpoint is a dict of tensors and plain Python values only (no pickled classes), so it
always loads with `torch.load(..., weights_only=True)`:

    format "hacm-checkpoint", version, protocol, config (plain dict), model (state dict),
    optimizer (state dict), epoch (completed epochs), step (optimizer steps taken),
    rng (torch / cuda / numpy / python states as tensors and lists), best ({"metric", "value",
    "epoch"} or None), class_names, loss (the epoch's mean training loss).

Nothing else is needed to resume exactly: the data order and augmentation are functions of
(seed, epoch), the learning rate of the step, masks of (seed, epoch, step, rank); and bf16
autocast needs no gradient scaler, so there is no scaler state.

Original MAMP / HA-CM release checkpoints (a state dict, or one under "model", with MAMP's
parameter names) are read by `load_pretrained_encoder` through `load_mamp_state_dict`.

This module is the only place a model comes out of a file: `load_model` (a hacm run's model),
`load_pretrained_encoder` (an encoder from a hacm run or an original-code file) and
`load_for_masks` (the mask explorer's model); `build_model` makes a run's model from its config.
"""
from __future__ import annotations

import argparse
import dataclasses
import pickle
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hacm.config import RunConfig, from_dict, to_dict
from hacm.errors import HacmError
from hacm.fileio import write_atomic
from hacm.masking import MaskingConfig
from hacm.model import HACM, ActionClassifier, Encoder, ModelConfig
from hacm.skeleton import NUM_JOINTS

FORMAT = "hacm-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"

# Model fields that change what an encoder computes without changing any tensor shape, or that
# load_mamp_state_dict cannot reconcile: a pre-trained encoder must agree with the run on them.
ARCHITECTURE_KEYS = ("dim_in", "dim", "depth", "heads", "t_patch", "prune", "geometry", "curvature")


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """Write `state` to `path` atomically (temp file, fsync, rename)."""
    return write_atomic(path, lambda f: torch.save(state, f))


def _torch_load(path: Path, allowed_classes=()) -> object:
    """torch.load on the CPU with weights_only=True (never running code from a file), with one clear
    message for a bad file instead of torch's (which suggests turning weights_only off)."""
    try:
        with torch.serialization.safe_globals(list(allowed_classes)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):
            raise HacmError(f"{path}: holds Python objects that a weights-only load refuses "
                            "(hacm never runs code from a checkpoint)") from None
        raise HacmError(f"{path}: not a readable checkpoint (corrupt or not a PyTorch file)") from None
    except Exception as exc:  # RuntimeError, EOFError, zipfile errors, ... for damaged files
        raise HacmError(f"{path}: not a readable checkpoint (truncated, corrupt or not a PyTorch file; "
                        f"{type(exc).__name__})") from None


def load_checkpoint(path: str | Path) -> dict:
    """Read a hacm checkpoint onto the CPU; HacmError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise HacmError(f"{path}: no such checkpoint")
    return _checked(path, _torch_load(path))


def _checked(path: Path, state) -> dict:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise HacmError(f"{path}: not a hacm checkpoint (no format marker {FORMAT!r})")
    if state.get("version") != VERSION:
        raise HacmError(f"{path}: checkpoint version {state.get('version')!r}, this hacm reads {VERSION}")
    return state


def find_checkpoint(path: str | Path, which: str = "last") -> Path:
    """A checkpoint file, or a run directory -> its checkpoints/<which>.pt."""
    path = Path(path)
    if path.is_dir():
        candidate = path / CHECKPOINT_DIR / f"{which}.pt"
        if not candidate.is_file():
            raise HacmError(f"{path}: run directory has no {CHECKPOINT_DIR}/{which}.pt")
        return candidate
    if not path.is_file():
        raise HacmError(f"{path}: no such checkpoint file or run directory")
    return path


# ---------------------------------------------------------------------------------------------
# RNG state as tensors and lists (weights_only-safe)


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


# ---------------------------------------------------------------------------------------------
# State dicts of the original code (MAMP, the HA-CM release)


@dataclass
class LoadReport:
    loaded: list[str]
    missing: list[str]                # encoder keys the checkpoint does not have (left at init)
    unexpected: list[str]             # checkpoint keys the encoder does not have (e.g. a head)
    ignored: list[str]                # decoder_* / mask_token keys of pre-training checkpoints
    interpolated: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]   # key -> (checkpoint, encoder) shape


def load_mamp_state_dict(encoder: Encoder, state_dict: dict) -> LoadReport:
    """Load a MAMP / HA-CM release state dict (bare, or under "model") into `encoder`.

    temp_embed is interpolated linearly along time when the number of time patches differs; a
    25-joint pos_embed is reduced to the token joints for a pruned encoder. Any other shape
    mismatch raises HacmError naming the key: a tensor of another shape belongs to another
    architecture, and silently leaving it at init would make a partly random encoder.
    """
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    own = encoder.state_dict()
    src, ignored, interpolated = {}, [], {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        if key.startswith(("decoder_", "mask_token")):
            ignored.append(key)
        else:
            src[key] = value
    unexpected = sorted(k for k in src if k not in own)
    accepted = {}
    for key in own:
        if key not in src:
            continue
        value, want = src[key], own[key].shape
        if value.shape != want:
            if key == "temp_embed" and value.dim() == 4 and value.shape[0::2] == want[0::2] \
                    and value.shape[3] == want[3]:
                seq = value.permute(0, 3, 1, 2).flatten(2).float()                  # [1, D, TP_src]
                seq = F.interpolate(seq, size=want[1], mode="linear", align_corners=False)
                value = seq.view(1, want[3], want[1], 1).permute(0, 2, 3, 1).to(own[key].dtype)
                interpolated[key] = (tuple(src[key].shape), tuple(want))
            elif key == "pos_embed" and value.dim() == 4 and value.shape[2] == NUM_JOINTS \
                    and value.shape[3] == want[3]:
                value = value[:, :, encoder.joints.cpu()]
                interpolated[key] = (tuple(src[key].shape), tuple(want))
            else:
                raise HacmError(f"checkpoint key {key!r}: shape {list(value.shape)} does not match the "
                                f"encoder's {list(want)} (check num_frames, t_patch, prune, dim)")
        accepted[key] = value
    encoder.load_state_dict(accepted, strict=False)
    missing = sorted(k for k in own if k not in accepted)
    return LoadReport(sorted(accepted), missing, unexpected, sorted(ignored), interpolated)


# MAMP's classifier heads under hacm's names. MAMP's linear probe wraps its fc as
# Sequential(BatchNorm1d(affine=False), fc) (main_linprobe.py); its fine-tune head has hacm's names.
_MAMP_HEAD_KEYS = {
    "linprobe": {"head.fc.0.running_mean": "head.bn.running_mean", "head.fc.0.running_var": "head.bn.running_var",
                 "head.fc.0.num_batches_tracked": "head.bn.num_batches_tracked",
                 "head.fc.1.weight": "head.fc.weight", "head.fc.1.bias": "head.fc.bias"},
    "finetune": {f"head.{k}": f"head.{k}" for k in (
        "fc1.weight", "fc1.bias", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var",
        "bn.num_batches_tracked", "fc2.weight", "fc2.bias")},
}


def load_mamp_classifier(model: ActionClassifier, state_dict: dict) -> LoadReport:
    """Load a MAMP / HA-CM release linear-probe or fine-tune checkpoint (encoder and head) into
    `model`. Every encoder and head tensor must be there with its shape; a missing one raises
    HacmError naming it (a half-random classifier would give plausible, wrong logits)."""
    if isinstance(state_dict, dict) and isinstance(state_dict.get("model"), dict):
        state_dict = state_dict["model"]
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    names = _MAMP_HEAD_KEYS[model.protocol]
    head_src = {k: v for k, v in state.items() if k.startswith("head.")}
    report = load_mamp_state_dict(model.encoder, {k: v for k, v in state.items() if not k.startswith("head.")})
    own = model.state_dict()
    missing = report.missing + sorted(k for k in names if k not in head_src)
    if missing:
        raise HacmError(f"MAMP {model.protocol} checkpoint: no value for {', '.join(missing[:6])}"
                        f"{' ...' if len(missing) > 6 else ''}")
    head = {}
    for key, ours in names.items():
        value = head_src[key]
        if value.shape != own[ours].shape:
            raise HacmError(f"checkpoint key {key!r}: shape {list(value.shape)} does not match the "
                            f"{model.protocol} head's {list(own[ours].shape)} (check dim and the class count)")
        head[ours] = value
    model.load_state_dict(head, strict=False)
    unexpected = report.unexpected + sorted(k for k in head_src if k not in names)
    return LoadReport(report.loaded + sorted(head), [], unexpected, report.ignored, report.interpolated)


# ---------------------------------------------------------------------------------------------
# Pre-trained encoders: hacm runs and original MAMP / HA-CM checkpoints


def _load_any(path: Path) -> object:
    """A hacm or original-code checkpoint. MAMP stores its argparse.Namespace next to the weights;
    that one class is allowed, nothing else that executes code on load."""
    return _torch_load(path, [argparse.Namespace])


# MAMP's pre-training classes; `model.transformer.Transformer` is its downstream class and the
# HA-CM release's alike, told apart by the joints (the release prunes to 18, MAMP keeps 25).
_MAMP_PRETRAIN_CLASSES = ("model_mamp.transformer.Transformer", "model_mae.transformer.Transformer")
_HACM_PRETRAIN_CLASS = "model_hacm.transformer.Transformer"


def _mamp_evidence(raw: dict, state: dict) -> str | None:
    """Why an original-code checkpoint comes from MAMP's code (Euclidean tokens), or None.

    MAMP saves its argparse namespace beside the weights (`args.model` names the class). The
    HA-CM release trains only 18-joint models, so a 25-joint `pos_embed` is MAMP's whatever the
    class name says, unless the class is the release's own pre-training model.
    """
    args = raw.get("args")
    model_cls = vars(args).get("model") if isinstance(args, argparse.Namespace) else None
    if model_cls in _MAMP_PRETRAIN_CLASSES:
        return f"args.model {model_cls!r} is MAMP's"
    pos = state.get("pos_embed", state.get("module.pos_embed"))
    if model_cls != _HACM_PRETRAIN_CLASS and isinstance(pos, torch.Tensor) and pos.dim() == 4 \
            and pos.shape[2] == NUM_JOINTS:
        named = f"args.model {model_cls!r} and " if model_cls else ""
        return f"{named}a {NUM_JOINTS}-joint pos_embed {list(pos.shape)} (the HA-CM release prunes to 18)"
    return None


def load_pretrained_encoder(encoder: Encoder, path: str | Path, model_config=None) -> LoadReport:
    """Initialise `encoder` from a hacm run / checkpoint or an original MAMP / HA-CM `.pth`.

    With `model_config` (a run's), hacm checkpoints must agree with it on ARCHITECTURE_KEYS, and
    an original MAMP checkpoint needs `geometry: euclidean`: its weights never saw the Poincaré
    map, and would still load without an error. Without it (the explorer, which looks at the same
    weights in either geometry) neither is checked. Every encoder tensor must be found (a partly
    random "pre-trained" encoder is a mistake, not a warning); heads and decoders in the file are
    reported and ignored, temp_embed is interpolated when the number of time patches differs.
    """
    path = find_checkpoint(path)
    raw = _load_any(path)
    if isinstance(raw, dict) and raw.get("format") == FORMAT:
        if model_config is not None:
            saved = raw["config"]["model"]
            diff = [f"{k}: checkpoint {saved.get(k)!r}, run {getattr(model_config, k)!r}"
                    for k in ARCHITECTURE_KEYS if saved.get(k) != getattr(model_config, k)]
            if diff:
                raise HacmError(f"{path}: the pre-trained encoder does not match model config ({'; '.join(diff)})")
        state = {k.removeprefix("encoder."): v for k, v in raw["model"].items() if k.startswith("encoder.")}
    elif isinstance(raw, dict):
        state = raw.get("model", raw)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise HacmError(f"{path}: expected a state dict (or a dict with one under 'model')")
        evidence = _mamp_evidence(raw, state)
        if model_config is not None and model_config.geometry != "euclidean" and evidence is not None:
            raise HacmError(f"{path}: a MAMP checkpoint ({evidence}), whose Euclidean weights would be read "
                            f"through the {model_config.geometry} map they were never trained with; evaluate "
                            f"it with --set model.geometry=euclidean")
    else:
        raise HacmError(f"{path}: expected a dict checkpoint, got {type(raw).__name__}")
    report = load_mamp_state_dict(encoder, state)
    if report.missing:
        raise HacmError(f"{path}: the checkpoint has no value for encoder tensors "
                        f"{', '.join(report.missing[:6])}{' ...' if len(report.missing) > 6 else ''}")
    return report


def describe_load(report: LoadReport, path) -> str:
    """One human-readable paragraph about what `load_pretrained_encoder` did."""
    lines = [f"loaded {len(report.loaded)} encoder tensors from {path}"]
    for key, (src, dst) in report.interpolated.items():
        lines.append(f"  {key}: resized {list(src)} -> {list(dst)}")
    if report.ignored:
        lines.append(f"  ignored {len(report.ignored)} decoder / mask-token tensors")
    if report.unexpected:
        lines.append(f"  ignored {len(report.unexpected)} tensors the encoder has no slot for: "
                     f"{', '.join(report.unexpected[:6])}{' ...' if len(report.unexpected) > 6 else ''}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Models out of configs and files: the one place a model is built from a run's config


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The randomly initialised model of cfg.protocol: HACM, or an ActionClassifier (kNN uses the
    linear-probe classifier: a frozen encoder)."""
    if cfg.protocol == "pretrain":
        return HACM(cfg.model, cfg.masking)
    protocol = "linprobe" if cfg.protocol == "knn" else cfg.protocol
    return ActionClassifier(cfg.model, num_classes, protocol, head_dropout=cfg.train.head_dropout)


def training_state(cfg: RunConfig, model: nn.Module, optimizer: torch.optim.Optimizer, *, epoch: int,
                   step: int, best: dict | None, class_names: list[str], loss: float) -> dict:
    """What a hacm checkpoint holds (see the module docstring): enough to resume exactly."""
    return {"format": FORMAT, "version": VERSION, "protocol": cfg.protocol, "config": to_dict(cfg),
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
            "rng": rng_state(), "best": best, "class_names": list(class_names), "loss": loss}


def load_model(path: str | Path, which: str = "last", device="cpu") -> nn.Module:
    """A hacm run directory (checkpoints/<which>.pt; default last.pt: best.pt is the epoch with the
    best test accuracy, selected on the test set) or a checkpoint file -> its model, in eval mode."""
    state = load_checkpoint(find_checkpoint(path, which))
    model = build_model(from_dict(state["config"]), len(state["class_names"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def load_for_masks(source: str | Path | None, model_config: ModelConfig, *, geometry: str | None = None,
                   masking: MaskingConfig | None = None) -> HACM:
    """A pre-training model to draw masks with (the mask explorer), in eval mode.

    source: a hacm run directory or checkpoint of any protocol (its encoder, and the temporal
    criterion's projections when it is a pre-training run, so the masks are those training drew),
    an original MAMP / HA-CM release file (encoder weights only), or None for an untrained model
    (seed 0: the same in every session). A hacm checkpoint brings its run's model and masking
    configs; an original MAMP file (`_mamp_evidence`) is Euclidean with MAMP's motion masking; the
    others use `model_config` and `masking` (default HA-CM's). The model's `masking` is that
    config: the checkpoint's own strategy. `geometry` overrides the config's: the map has no
    parameters, so the same weights can be looked at in either space. Built with every criterion
    (the hacm strategy's modules), so any strategy's masks can be drawn.
    """
    path = find_checkpoint(source) if source is not None else None
    raw = _load_any(path) if path is not None else None
    state = _hacm_state(path, raw) if path is not None else None
    run = from_dict(state["config"]) if state is not None else None
    cfg, own_masking = (run.model, run.masking) if run is not None else (model_config, masking or MaskingConfig())
    if isinstance(raw, dict) and state is None and _mamp_evidence(raw, raw.get("model", raw)) is not None:
        cfg, own_masking = dataclasses.replace(cfg, geometry="euclidean"), MaskingConfig(strategy="motion")
    if geometry is not None:
        cfg = dataclasses.replace(cfg, geometry=geometry)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HACM(cfg, MaskingConfig(strategy="hacm")).eval()
    model.masking = own_masking
    if path is not None:
        load_pretrained_encoder(model.encoder, path)   # every encoder tensor, or HacmError
        saved = state["model"] if state is not None else {}
        own = model.temporal.state_dict()
        model.temporal.load_state_dict({k: saved.get(f"temporal.{k}", v) for k, v in own.items()})
    return model


def run_config_of(source: str | Path) -> RunConfig | None:
    """The run config saved in a hacm checkpoint or run directory; None for an original-code file."""
    path = find_checkpoint(source)
    state = _hacm_state(path, _load_any(path))
    return from_dict(state["config"]) if state is not None else None


def _hacm_state(path: Path, raw) -> dict | None:
    """`raw` (read from path) if it is a hacm checkpoint (checked), None for an original-code file."""
    return _checked(path, raw) if isinstance(raw, dict) and raw.get("format") == FORMAT else None
