"""Evaluation of models in memory or in run directories: pooled features, predictions, kNN,
accuracy and confusion matrices. The same calls serve the training protocols and the notebooks:

    feats, labels = extract_features("runs/pt", test_set)        # a run dir, checkpoint or model
    logits, labels = predict("runs/lp", test_set)
    knn_predict(train_feats, train_labels, test_feats, k=(20, 1))
    cm, names = confusion_matrix("runs/lp", test_set)
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hacm import checkpoint
from hacm.data.loader import make_loader
from hacm.distributed import autocast, resolve_amp
from hacm.errors import HacmError
from hacm.model import ActionClassifier, Encoder, actor_mean
from hacm.progress import progress_bar


def _encoder_of(source) -> Encoder:
    if isinstance(source, (str, Path)):
        source = checkpoint.load_model(source)
    if isinstance(source, Encoder):
        return source
    if isinstance(getattr(source, "encoder", None), Encoder):
        return source.encoder
    raise HacmError(f"expected an Encoder, a model with .encoder, or a checkpoint path; got {type(source).__name__}")


# ---------------------------------------------------------------------------------------------
# Features and predictions


def _batches(dataset, batch_size: int, num_workers: int | None, desc: str):
    loader = make_loader(dataset, batch_size, train=False, num_workers=num_workers)
    return progress_bar(loader, desc=desc, unit="batch", leave=False)


def input_dtype(model: nn.Module) -> torch.dtype:
    """The dtype a model's inputs must have: that of its parameters (train.dtype float32 / float64)."""
    return next(model.parameters()).dtype


@torch.no_grad()
def extract_features(source, dataset, *, batch_size: int = 256, device="cpu", amp: str = "off",
                     num_workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pooled encoder features (mean over present actors, time and joints) of every clip.

    source: an Encoder, a model with `.encoder` (HACM, ActionClassifier), or a run dir /
    checkpoint. Returns features [N, D] float32 and labels [N] int64, in dataset order.
    amp: "off", "bf16", or "auto" (bf16 on a GPU that has it: hacm.distributed.resolve_amp).
    """
    device = torch.device(device)
    encoder = _encoder_of(source).to(device)
    was_training = encoder.training
    encoder.eval()
    feats, labels = [], []
    amp = resolve_amp(amp, input_dtype(encoder), device)
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
    model = checkpoint.load_model(source) if isinstance(source, (str, Path)) else source
    if not isinstance(model, ActionClassifier):
        raise HacmError(f"predict needs a classifier (a linprobe / finetune run), got {type(model).__name__}")
    model = model.to(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    amp = resolve_amp(amp, input_dtype(model), device)
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


def chance_levels(labels: np.ndarray) -> dict[str, float]:
    """What guessing scores on clips with these true classes (fractions): "majority" always answers
    the most frequent class, "uniform" picks one of the classes present at random; and "classes"."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    classes = int((counts > 0).sum())
    return {"majority": float(counts.max() / counts.sum()), "uniform": 1.0 / classes, "classes": classes}


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


def pose_statistics(store, indices: np.ndarray) -> np.ndarray:
    """[n, 300] per clip: the mean and standard deviation over frames of every joint coordinate of
    both actors (zeros for an absent second actor): what a classifier sees without a representation."""
    out = np.zeros((len(indices), 2, 2, 25, 3))
    for row, i in enumerate(indices):
        frames = np.asarray(store.frames(i), dtype=np.float64)          # [A, T, 25, 3]
        out[row, 0, : frames.shape[0]] = frames.mean(1)
        out[row, 1, : frames.shape[0]] = frames.std(1)
    return out.reshape(len(indices), -1)


def pose_statistics_accuracy(store, benchmark: str) -> tuple[float, int]:
    """Test accuracy of a logistic regression on standardised pose_statistics of the benchmark's
    training clips, and the number of test clips: the baseline a learned representation must add to."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = store.split(benchmark, "train"), store.split(benchmark, "test")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(pose_statistics(store, train), store.labels[train])
    return float(model.score(pose_statistics(store, test), store.labels[test])), len(test)
