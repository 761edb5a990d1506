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

Original MAMP / HA-CM release checkpoints (`ckpt["model"]` with MAMP parameter names) are read
by `load_pretrained_encoder` through `hacm.model.load_mamp_state_dict`.
"""
from __future__ import annotations

import argparse
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from hacm.errors import HacmError
from hacm.fileio import write_atomic
from hacm.model import Encoder, LoadReport, load_mamp_state_dict
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
    state = _torch_load(path)
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
