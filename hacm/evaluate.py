"""Evaluation: pooled features, kNN, accuracy, confusion matrices, and reading run directories.

Everything here works on a model in memory or on a run directory / checkpoint file, so the same
calls serve `hacm knn`, the training loop and the notebooks:

    run = load_run("runs/ft")                       # config, metrics rows, summary, checkpoints
    model = run.load_model()                        # last checkpoint: ActionClassifier / HACM in eval mode
    cm, names = confusion_matrix("runs/ft", test_set)
    feats, labels = extract_features("runs/pt", test_set)
    knn_accuracy(train_feats, train_labels, test_feats, test_labels, k=(20, 1))
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from hacm import checkpoint as ckpt
from hacm.config import RunConfig, from_dict, load_config, to_dict
from hacm.data.loader import make_loader
from hacm.errors import FormatError, HacmError
from hacm.fileio import write_atomic
from hacm.model import HACM, ActionClassifier, Encoder, actor_mean

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CONFIG_FILE = "config.yaml"
PREDICTIONS_FILE = "predictions.npz"      # test labels and per-clip predictions of the final model


# ---------------------------------------------------------------------------------------------
# Models from configs and checkpoints


def new_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """The (randomly initialised) model of cfg.protocol: HACM, or an ActionClassifier (kNN uses
    the linear-probe classifier: a frozen encoder)."""
    if cfg.protocol == "pretrain":
        return HACM(cfg.model, cfg.masking)
    protocol = "linprobe" if cfg.protocol == "knn" else cfg.protocol
    return ActionClassifier(cfg.model, num_classes, protocol, head_dropout=cfg.train.head_dropout)


def model_from_checkpoint(path: str | Path, which: str = "last", device="cpu") -> nn.Module:
    """A hacm run directory (checkpoints/<which>.pt; default last.pt: best.pt is the epoch with the
    best test accuracy, selected on the test set) or a checkpoint file -> its model, in eval mode."""
    path = Path(path)
    state = ckpt.load_checkpoint(ckpt.find_checkpoint(path, which))
    model = new_model(from_dict(state["config"]), len(state["class_names"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def _encoder_of(source) -> Encoder:
    if isinstance(source, (str, Path)):
        source = model_from_checkpoint(source)
    if isinstance(source, Encoder):
        return source
    if isinstance(getattr(source, "encoder", None), Encoder):
        return source.encoder
    raise HacmError(f"expected an Encoder, a model with .encoder, or a checkpoint path; got {type(source).__name__}")


# ---------------------------------------------------------------------------------------------
# Features and predictions


def _batches(dataset, batch_size: int, num_workers: int | None, desc: str):
    loader = make_loader(dataset, batch_size, train=False, num_workers=num_workers)
    return tqdm(loader, desc=desc, unit="batch", leave=False)


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs must have: that of its parameters (train.dtype float32 / float64)."""
    return next(model.parameters()).dtype


def autocast(amp: str, device: torch.device):
    """bf16 autocast when train.amp is "bf16", else nothing (the training loop uses it too)."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if amp == "bf16" else nullcontext()


@torch.no_grad()
def extract_features(source, dataset, *, batch_size: int = 256, device="cpu", amp: str = "off",
                     num_workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled encoder features (mean over present actors, time and joints) of every clip.

    source: an Encoder, a model with `.encoder` (HACM, ActionClassifier), or a run dir /
    checkpoint. Returns features [N, D] float32 and labels [N] int64, in dataset order.
    """
    device = torch.device(device)
    encoder = _encoder_of(source).to(device)
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    for x, y in _batches(dataset, batch_size, num_workers, "features"):
        with autocast(amp, device):
            tokens, actor_mask = encoder.forward_packed(x.to(device, input_dtype(encoder)))  # [S, TP, V, D]
        feats.append(actor_mean(tokens.float().mean((1, 2)), actor_mask).cpu())    # [B, D]
        labels.append(y)
    encoder.train(was_training)
    return torch.cat(feats).numpy(), torch.cat(labels).numpy().astype(np.int64)


@torch.no_grad()
def predict(source, dataset, *, batch_size: int = 256, device="cpu", amp: str = "off",
            num_workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N, C] and labels [N] of a classifier (a model, or a run dir / checkpoint)."""
    device = torch.device(device)
    model = model_from_checkpoint(source) if isinstance(source, (str, Path)) else source
    if not isinstance(model, ActionClassifier):
        raise HacmError(f"predict needs a classifier (a linprobe / finetune run), got {type(model).__name__}")
    model = model.to(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for x, y in _batches(dataset, batch_size, num_workers, "predict"):
        with autocast(amp, device):
            logits.append(model(x.to(device, input_dtype(model))).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy().astype(np.int64)


# ---------------------------------------------------------------------------------------------
# kNN


@torch.no_grad()
def knn_predict(train_feats: np.ndarray, train_labels: np.ndarray, test_feats: np.ndarray, *,
                k: Sequence[int] = (20, 1), temperature: float = 0.07, num_classes: int | None = None,
                chunk: int = 1024) -> dict[int, np.ndarray]:
    """Weighted kNN on cosine similarity: each of the k nearest training clips votes for its
    label with weight exp(cos / temperature). Returns {k: predicted labels [N_test]}."""
    if len(train_feats) == 0 or len(test_feats) == 0:
        raise HacmError("kNN needs at least one training and one test feature")
    train = F.normalize(torch.as_tensor(train_feats, dtype=torch.float32), dim=1)     # [Ntr, D]
    test = F.normalize(torch.as_tensor(test_feats, dtype=torch.float32), dim=1)       # [Nte, D]
    labels = torch.as_tensor(train_labels, dtype=torch.int64)
    C = int(num_classes if num_classes is not None else labels.max() + 1)
    kmax = min(max(k), len(train))
    out = {kk: [] for kk in k}
    for start in range(0, len(test), chunk):
        sims, idx = (test[start:start + chunk] @ train.T).topk(kmax, dim=1)          # [B, kmax]
        # exp((cos - best cos) / T): the same votes up to a per-row factor, without overflow
        weights, votes_for = ((sims - sims[:, :1]) / temperature).exp(), labels[idx]
        for kk in k:
            kk_eff = min(kk, kmax)
            votes = torch.zeros(len(idx), C).scatter_add_(1, votes_for[:, :kk_eff], weights[:, :kk_eff])
            out[kk].append(votes.argmax(1))
    return {kk: torch.cat(v).numpy() for kk, v in out.items()}


def knn_accuracy(train_feats, train_labels, test_feats, test_labels, *, k: Sequence[int] = (20, 1),
                 temperature: float = 0.07, num_classes: int | None = None) -> dict[int, float]:
    """{k: top-1 accuracy} of `knn_predict`."""
    preds = knn_predict(train_feats, train_labels, test_feats, k=k, temperature=temperature,
                        num_classes=num_classes)
    return {kk: accuracy(p, test_labels) for kk, p in preds.items()}


# ---------------------------------------------------------------------------------------------
# Accuracy and confusion


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of predicted labels [N] (or logits [N, C])."""
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(1)
    labels = np.asarray(labels)
    if pred.shape != labels.shape:
        raise HacmError(f"accuracy: {pred.shape[0]} predictions for {labels.shape[0]} labels")
    return float((pred == labels).mean()) if labels.size else float("nan")


def confusion_from_predictions(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts: row = true class, column = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels), np.asarray(pred)), 1)
    return cm


def confusion_matrix(source, dataset, *, batch_size: int = 256, device="cpu",
                     amp: str = "off") -> tuple[np.ndarray, list[str]]:
    """Confusion matrix [C, C] (rows true) and class names of a classifier on `dataset`."""
    logits, labels = predict(source, dataset, batch_size=batch_size, device=device, amp=amp)
    return confusion_from_predictions(logits.argmax(1), labels, dataset.num_classes), list(dataset.class_names)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix; NaN for classes without test clips."""
    totals = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / totals, np.nan)


# ---------------------------------------------------------------------------------------------
# Run directories


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of metrics.jsonl (empty if the run wrote none yet)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FormatError(path, i, f"expected one JSON object per line ({e.msg})") from None
    return rows


def write_predictions(run_dir: str | Path, labels: np.ndarray, predictions: dict[str, np.ndarray]) -> Path:
    """predictions.npz: `labels` [N] and each named prediction [N] (e.g. "pred", "knn20"), the test
    clips in dataset order. The paired statistics between runs (hacm.stats) read these."""
    arrays = {"labels": np.asarray(labels, dtype=np.int64),
              **{k: np.asarray(v, dtype=np.int64) for k, v in predictions.items()}}
    for name, a in arrays.items():
        if a.shape != arrays["labels"].shape:
            raise HacmError(f"predictions {name!r}: {a.shape[0]} values for {arrays['labels'].shape[0]} test clips")
    return write_atomic(Path(run_dir) / PREDICTIONS_FILE, lambda f: np.savez(f, **arrays))


def read_predictions(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a run's predictions.npz (labels and predictions)."""
    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        raise HacmError(f"{run_dir}: no {PREDICTIONS_FILE} (written when a linprobe / finetune / knn run ends)")
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@dataclass
class Run:
    """What a run directory holds, for notebooks and reports."""
    path: Path
    config: RunConfig
    metrics: list[dict]
    summary: dict
    checkpoints: dict[str, Path] = field(default_factory=dict)   # "last", "best", "epoch_0020", ...

    def rows(self, kind: str) -> list[dict]:
        """metrics records of one kind: "epoch", "step", "knn", "start"."""
        return [r for r in self.metrics if r.get("kind") == kind]

    def predictions(self) -> dict[str, np.ndarray]:
        """Test labels and per-clip predictions of the final model (`read_predictions`)."""
        return read_predictions(self.path)

    def load_model(self, which: str = "last", device="cpu") -> nn.Module:
        """The model of a checkpoint (default: the last one; "best" is selected on the test set)."""
        if which not in self.checkpoints:
            raise HacmError(f"{self.path}: no checkpoint {which!r} (have: {', '.join(self.checkpoints) or 'none'})")
        return model_from_checkpoint(self.path, which, device=device)


# keys that say where and how fast a run computed, not what: a finished run is reused across them
_PLACEMENT_KEYS = {("train", "device"), ("data", "num_workers")}


def finished_run(run_dir: str | Path, cfg: RunConfig) -> bool:
    """True when run_dir holds a finished run of exactly `cfg`; False when it holds no run (or one
    that stopped before the end: resume it); HacmError when it holds a run of another config, naming
    the keys that differ (results of different settings must never be mixed up)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    saved, want = to_dict(load_config(run_dir / CONFIG_FILE)), to_dict(cfg)
    diff = [f"{section}.{k}" for section, values in want.items() if isinstance(values, dict)
            for k in values if (section, k) not in _PLACEMENT_KEYS and saved.get(section, {}).get(k) != values[k]]
    if saved["protocol"] != want["protocol"]:
        diff.insert(0, "protocol")
    if diff:
        raise HacmError(f"{run_dir}: holds a run with another config ({', '.join(diff)} differ); "
                        "choose another directory or delete it")
    return (run_dir / SUMMARY_FILE).is_file()


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise HacmError(f"{run_dir}: not a hacm run directory (no {CONFIG_FILE})")
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    checkpoints = {p.stem: p for p in sorted((run_dir / ckpt.CHECKPOINT_DIR).glob("*.pt"))}
    return Run(run_dir, load_config(run_dir / CONFIG_FILE), read_metrics(run_dir), summary, checkpoints)
