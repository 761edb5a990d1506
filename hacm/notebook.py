"""What the notebooks import: hacm's surface for parameterised notebooks and their reports.

A notebook of notebooks/ receives `report_dir` (papermill fills it in a batch) and writes its
figures and `summary.json` there; the report's index page reads the summary. Runs go through
`train_or_read`, so re-executing a notebook reads the runs it already finished.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hacm import launch, rundir, train
from hacm.config import RunConfig
from hacm.data.convert import convert_ntu
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import Store
from hacm.data.synth import write_synthetic
from hacm.datasets import make_dataset
from hacm.errors import HacmError
from hacm.fileio import make_dir, write_text_atomic

RESUME_CHOICES = ("auto", True, False)


def output_dir(report_dir: str | Path) -> Path:
    """The notebook's output directory, created if needed."""
    return make_dir(report_dir, "notebook output directory")


def write_summary(report_dir: str | Path, values: dict) -> Path:
    """Write a notebook's key numbers to report_dir/summary.json (the index table reads it).

    numpy scalars and arrays become plain numbers and lists."""
    def plain(v):
        if hasattr(v, "tolist"):
            return v.tolist()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    path = Path(report_dir) / "summary.json"
    write_text_atomic(path, json.dumps(plain(values), indent=1) + "\n")
    return path


def train_or_read(cfg: RunConfig, run_dir: str | Path, *, resume: str | bool = "auto") -> rundir.Run:
    """The run of `cfg` in run_dir: read when it finished, continued when it stopped early, else run.

    resume="auto" does that; True only continues an existing run; False only starts a new one (an
    existing run is then an error, as on the command line). A run of another config in run_dir is
    an error naming the keys that differ. A config with train.nodes x train.gpus_per_node > 1
    trains under torchrun (hacm.launch), srun-started on several nodes.
    """
    if resume not in RESUME_CHOICES:
        raise HacmError(f"resume: expected one of {RESUME_CHOICES}, got {resume!r}")
    run_dir = Path(run_dir)
    partial = (run_dir / "checkpoints" / "last.pt").is_file()
    fit = launch.run_distributed if launch.is_distributed(cfg) else train.run
    if resume != "auto":
        fit(cfg, run_dir, resume=resume)
    elif not rundir.finished(run_dir, cfg):
        fit(cfg, run_dir, resume=partial)
    return rundir.load_run(run_dir)


def test_set(cfg: RunConfig) -> SkeletonDataset:
    """The test clips of cfg's store and benchmark, as evaluation sees them (centre crop, no rotation)."""
    return make_dataset(cfg, None, "test", augment=False)


def open_store(path: str | Path) -> Store:
    return Store.open(path)


def synthetic_store(out_dir: str | Path, **synth) -> Path:
    """Generate the synthetic dataset (hacm.data.synth.write_synthetic keywords) and convert it to
    out_dir/store with the NTU pipeline; the raw files are a temporary intermediate."""
    with tempfile.TemporaryDirectory() as raw:
        write_synthetic(raw, **synth)
        return convert_ntu(raw, Path(out_dir) / "store").store_path
