"""The run directory: the one unit of exchange between training, evaluation, notebooks and reports.

This module is its only writer and reader (docs/rundir.md describes the format):

    config.yaml             the resolved RunConfig
    metrics.jsonl           one JSON object per line: {"kind": "start" | "step" | "epoch" | "knn", ...}
    summary.json            the final numbers (written when the run ends: a run without it stopped early)
    predictions.npz         linprobe / finetune / knn: test labels and per-clip predictions of the
                            final model, in dataset order (what the paired statistics compare);
                            linprobe / finetune also `scores` [N, C], softmax (what `hacm ensemble` fuses)
    checkpoints/last.pt     after every epoch: what a resume continues from
    checkpoints/best.pt     linprobe / finetune: the best epoch on the test set (a labelled extra)
    checkpoints/epoch_NNNN.pt  every train.checkpoint_every epochs and at the last one
    tensorboard/            event files of the same metrics (`tensorboard --logdir runs`)
"""
from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from hacm import checkpoint
from hacm.config import RunConfig, load_config, to_dict, to_yaml
from hacm.errors import FormatError, HacmError
from hacm.fileio import make_dir, remove_temporaries, write_atomic, write_text_atomic

logger = logging.getLogger("hacm.rundir")

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
PREDICTIONS_FILE = "predictions.npz"
TENSORBOARD_DIR = "tensorboard"

# Keys that may change between a run and its resume: they do not alter what is computed.
RESUMABLE_CHANGES = {"train.epochs", "train.checkpoint_every", "train.log_every", "train.eval_every",
                     "train.device", "data.num_workers", "data.store", "train.tensorboard",
                     "train.compile"}
# Keys that say where and how fast a run computed, or in which extra format it logged, not what it
# computed: a finished run is reused across them.
_PLACEMENT_KEYS = {"train.device", "data.num_workers", "train.tensorboard", "train.compile"}


def flatten(d: dict, prefix: str = "") -> dict:
    """A nested config dict as {dotted key: value}."""
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


# Keys whose "auto" a run resolves when it starts (hacm.train.resolve_precision) and records
# resolved: asking for "auto" matches whatever a run recorded.
RESOLVED_AUTO_KEYS = {"train.amp"}


def _changed(saved: dict, now: dict, ignore: set[str]) -> list[str]:
    """Dotted keys whose values differ between a run's config dict and a requested one, except `ignore`."""
    saved, now = flatten(saved), flatten(now)
    return sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in ignore
                  and not (k in RESOLVED_AUTO_KEYS and now.get(k) == "auto"))


# ---------------------------------------------------------------------------------------------
# Writing


def prepare(cfg: RunConfig, run_dir: Path, resume: bool, is_main: bool) -> dict | None:
    """Check the directory and write config.yaml (rank 0); return the checkpoint to resume from."""
    last = run_dir / checkpoint.CHECKPOINT_DIR / "last.pt"
    state = None
    if resume:
        state = checkpoint.load_checkpoint(last)
        changed = _changed(state["config"], to_dict(cfg), RESUMABLE_CHANGES)
        if changed:
            raise HacmError(f"{last}: cannot resume with a different config ({', '.join(changed)} changed); "
                            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change")
    elif last.exists():
        raise HacmError(f"{run_dir} already holds a run ({last}); resume it with --resume or choose "
                        f"another output directory")
    if is_main:
        make_dir(run_dir, "run directory")
        remove_temporaries(run_dir / checkpoint.CHECKPOINT_DIR)   # a checkpoint cut short by a kill
        write_text_atomic(run_dir / CONFIG_FILE, to_yaml(cfg))
    return state


class RunWriter:
    """metrics.jsonl, summary.json, predictions.npz and TensorBoard events; on ranks other than 0
    (active=False) every call does nothing.

    resume_from: (epoch, step) of the checkpoint a resumed run continues from. Records written after
    it (the epoch that was cut short) are dropped from metrics.jsonl, and TensorBoard is told to
    hide its events from step + 1 on (purge_step), so neither holds a step twice.
    """

    def __init__(self, run_dir: Path, active: bool, *, resume_from: tuple[int, int] | None = None,
                 tensorboard: bool = True):
        self.run_dir, self.active = Path(run_dir), active
        self.tb = None
        if not active:
            return
        path, tb_dir = self.run_dir / METRICS_FILE, self.run_dir / TENSORBOARD_DIR
        if resume_from is not None and path.exists():
            rows = read_metrics(self.run_dir)
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows
                                            if r.get("epoch", 0) < resume_from[0]))
        elif resume_from is None:   # a new run: nothing of an earlier attempt may mix in
            path.unlink(missing_ok=True)
            shutil.rmtree(tb_dir, ignore_errors=True)
        if tensorboard:
            self.tb = _summary_writer(tb_dir, purge_step=None if resume_from is None else resume_from[1] + 1)

    def log(self, record: dict) -> None:
        if not self.active:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and record["kind"] != "start":   # start: run facts, not curves
            for k, v in record.items():
                if k not in ("kind", "epoch", "step") and isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def summary(self, values: dict) -> None:
        if self.active:
            write_text_atomic(self.run_dir / SUMMARY_FILE, json.dumps(values, indent=2) + "\n")

    def predictions(self, labels: np.ndarray, predictions: dict[str, np.ndarray],
                    scores: np.ndarray | None = None) -> None:
        if self.active:
            write_predictions(self.run_dir, labels, predictions, scores)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _summary_writer(log_dir: Path, purge_step: int | None):
    try:   # torch.utils.tensorboard raises ImportError when the tensorboard package is missing
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.warning("tensorboard is not installed (pip install tensorboard): metrics go to %s only",
                       log_dir.parent / METRICS_FILE)
        return None
    return SummaryWriter(str(log_dir), purge_step=purge_step)


def write_predictions(run_dir: str | Path, labels: np.ndarray, predictions: dict[str, np.ndarray],
                      scores: np.ndarray | None = None) -> Path:
    """predictions.npz: `labels` [N], each named prediction [N] ("pred", "knn20", ...) and, for a
    classifier, `scores` [N, C]: the softmax class scores of every test clip (what `hacm ensemble` fuses)."""
    arrays = {"labels": np.asarray(labels, dtype=np.int64),
              **{k: np.asarray(v, dtype=np.int64) for k, v in predictions.items()}}
    for name, a in arrays.items():
        if a.shape != arrays["labels"].shape:
            raise HacmError(f"predictions {name!r}: {a.shape[0]} values for {arrays['labels'].shape[0]} test clips")
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[0] != arrays["labels"].shape[0]:
            raise HacmError(f"predictions 'scores': expected [{arrays['labels'].shape[0]}, classes], "
                            f"got {list(scores.shape)}")
        arrays["scores"] = scores
    return write_atomic(Path(run_dir) / PREDICTIONS_FILE, lambda f: np.savez(f, **arrays))


# ---------------------------------------------------------------------------------------------
# Reading


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of metrics.jsonl (empty if the run wrote none yet). A last line without its
    newline is one being written right now, or cut by a kill: it is not a record yet."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    text = path.read_text()
    for i, line in enumerate(text[:text.rfind("\n") + 1].splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise FormatError(path, i, f"expected one JSON object per line ({e.msg})") from None
    return rows


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
        return checkpoint.load_model(self.path, which, device=device)


def load_run(run_dir: str | Path) -> Run:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise HacmError(f"{run_dir}: not a hacm run directory (no {CONFIG_FILE})")
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    checkpoints = {p.stem: p for p in sorted((run_dir / checkpoint.CHECKPOINT_DIR).glob("*.pt"))}
    return Run(run_dir, load_config(run_dir / CONFIG_FILE), read_metrics(run_dir), summary, checkpoints)


def finished(run_dir: str | Path, cfg: RunConfig, advice: str = "choose another directory or delete it") -> bool:
    """True when run_dir holds a finished run of exactly `cfg`; False when it holds no run (or one
    that stopped before the end: resume it); HacmError when it holds a run of another config, naming
    the keys that differ (results of different settings must never be mixed up) and `advice`."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return False
    diff = _changed(to_dict(load_config(run_dir / CONFIG_FILE)), to_dict(cfg), _PLACEMENT_KEYS)
    if diff:
        raise HacmError(f"{run_dir}: holds a run with another config ({', '.join(diff)} differ); {advice}")
    return (run_dir / SUMMARY_FILE).is_file()
