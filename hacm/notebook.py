"""What the notebooks import: hacm's surface for parameterised notebooks and their reports.

A notebook of notebooks/ receives `report_dir` (papermill fills it in a batch) and writes its
figures and `summary.json` there; the report's index page reads the summary. Runs go through
`train_or_read`, so re-executing a notebook reads the runs it already finished.

Where things are: every path parameter (store, runs, run_dir, report_dir, checkpoints) is read by
hacm.paths.resolve: absolute as given, relative from the repository root (not from the kernel's
notebooks/ folder), so the README's `reports/demo/data/store` works as typed. A notebook that reads
a store has a `store` parameter; empty means `default_store()`, the synthetic store under the data
root ($HACM_DATA, else `<root>/data`: `data/synth/store`, where the README's `hacm data ntu` example
writes it). The data_overview notebook generates the synthetic dataset there when it is missing, so
the chain data_overview -> pretrain -> evaluate works with every parameter left at its default.

Importing this module makes a HacmError raised in a notebook cell show as one line naming what to
change, without hacm's internal traceback (`show_errors_briefly`).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from hacm import launch, lock, paths, rundir, train
from hacm.config import RunConfig, load_config
from hacm.data.convert import convert_ntu
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import META_FILE, Store
from hacm.data.synth import make_world, write_synthetic
from hacm.datasets import make_dataset
from hacm.errors import HacmError
from hacm.fileio import make_dir, write_text_atomic

DATA_ENV = paths.DATA_ENV
STORE_EXAMPLE = "reports/demo/data/store"     # what `hacm demo` writes
RESUME_CHOICES = ("auto", True, False)


def resolve(path: str | Path | None):
    """A path parameter as an absolute path (hacm.paths.resolve: relative from the repository root);
    None and "" (a parameter's "none" or "unset", which the code reading it explains) stay as they are."""
    return paths.resolve(path) if path else path


def output_dir(report_dir: str | Path) -> Path:
    """The notebook's output directory (a relative one under the repository root), created if needed."""
    return make_dir(paths.resolve(report_dir), "notebook output directory")


def write_summary(report_dir: str | Path, values: dict) -> Path:
    """Write a notebook's key numbers to report_dir/summary.json (the index table reads it).

    numpy scalars and arrays become plain numbers and lists; a `Path` becomes a path relative to
    report_dir, so a copied or moved report still reads right."""
    def plain(v):
        if isinstance(v, Path):
            return Path(os.path.relpath(Path(v).resolve(), paths.resolve(report_dir).resolve())).as_posix()
        if hasattr(v, "tolist"):
            return v.tolist()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    path = paths.resolve(report_dir) / "summary.json"
    write_text_atomic(path, json.dumps(plain(values), indent=1) + "\n")
    return path


def train_or_read(cfg: RunConfig, run_dir: str | Path, *, resume: str | bool = "auto",
                  overwrite: bool = False) -> rundir.Run:
    """The run of `cfg` in run_dir: read when it finished, continued when it stopped early, else run.

    resume="auto" does that; True only continues an existing run; False only starts a new one (an
    existing run is then an error). overwrite=True first deletes the run in run_dir, so it is trained
    again from scratch. A run of another config in run_dir is an error naming the keys that differ.
    Errors name the notebook parameters to change (resume, overwrite, run_dir). A config with
    train.nodes x train.gpus_per_node > 1 trains under torchrun (hacm.launch), srun-started on several
    nodes.
    """
    if resume not in RESUME_CHOICES:
        raise HacmError(f"resume: expected one of {RESUME_CHOICES}, got {resume!r}")
    run_dir = paths.resolve(run_dir)
    if overwrite:
        _delete_run(run_dir)
    partial = (run_dir / "checkpoints" / "last.pt").is_file()
    done = rundir.finished(run_dir, cfg, advice="set overwrite=True to replace it, or run_dir to another directory")
    if resume is True and not partial:
        raise HacmError(f"run_dir {run_dir}: holds no run to continue (no checkpoints/last.pt); "
                        "set resume='auto' to start one")
    if resume is False and (partial or done):
        raise HacmError(f"run_dir {run_dir}: already holds a run; set resume='auto' to continue or read it, "
                        "or overwrite=True to replace it")
    fit = launch.run_distributed if launch.is_distributed(cfg) else train.run
    if resume != "auto":
        fit(cfg, run_dir, resume=resume)
    elif not done:
        fit(cfg, run_dir, resume=partial)
    return rundir.load_run(run_dir)


def _delete_run(run_dir: Path) -> None:
    """Delete a run directory, refusing a directory that is not one (overwrite must not eat other files)."""
    if not run_dir.exists():
        return
    if not (run_dir / rundir.CONFIG_FILE).is_file():
        raise HacmError(f"run_dir {run_dir}: overwrite=True deletes run directories only, and this one holds no "
                        f"{rundir.CONFIG_FILE}; set run_dir to a run directory or a new one")
    with lock.hold(run_dir, "run directory"):   # not while another process writes it
        for p in run_dir.iterdir():
            if p.name != lock.LOCK_FILE:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def test_set(cfg: RunConfig) -> SkeletonDataset:
    """The test clips of cfg's store and benchmark, as evaluation sees them (centre crop, no rotation)."""
    return make_dataset(cfg, None, "test", augment=False)


def data_root() -> Path:
    """Where notebooks keep datasets: $HACM_DATA, else data/ of the repository root (hacm.paths)."""
    return paths.data_root()


def default_store() -> Path:
    """The store a notebook reads when its `store` parameter is empty: <data_root>/synth/store."""
    return data_root() / "synth" / "store"


def is_store(path: str | Path) -> bool:
    return (Path(path) / META_FILE).is_file()


def store_path(store: str | Path = "") -> Path:
    """The store a notebook reads, as an absolute path: `store` (hacm.paths.resolve: relative from the
    repository root; `data/...` from the data root, so `data/synth/store` means default_store()), or
    default_store() when empty. HacmError naming the notebook parameter `store`, the absolute path
    tried and the stores that do exist, when no store is there."""
    path = paths.resolve(store) if store else default_store()
    if not is_store(path):
        found = "is not a hacm store" if path.exists() else "does not exist"
        raise paths.not_found("store", path, found, f"set `store` to a store directory, e.g. {STORE_EXAMPLE} "
                              f"(the data_overview notebook writes the synthetic store to {default_store()})")
    return path


def with_store(config: str | Path, overrides: Mapping[str, Any] | None, store: str | Path = "") -> dict:
    """`overrides` plus the checked data.store (store_path) of a run of `config`: `store` if given, else
    the overrides' data.store, else the config's own."""
    overrides = dict(overrides or {})
    chosen = store or overrides.get("data.store") or load_config(config, overrides).data.store
    return {**overrides, "data.store": str(store_path(chosen))}


def open_store(path: str | Path = "") -> Store:
    return Store.open(store_path(path))


def overview_store(store: str | Path = "", make_synthetic: bool = False, **synth) -> Path:
    """The store the data_overview notebook shows. Synthetic data is written only where that cannot
    hide or mix with real data: into the default store (`store` empty) when it is missing, or, with
    make_synthetic=True, into an absent or empty directory `store`. Any other path must already be a
    store; a directory holding anything else is refused (a one-line HacmError naming the command
    that converts real data into a store)."""
    path = paths.resolve(store) if store else default_store()
    if is_store(path):
        return path
    holds = path.is_dir() and any(path.iterdir())
    if path.exists() and (holds or not path.is_dir()):
        raise paths.not_found("store", path, "holds files but no hacm store", "point `store` at a store, or convert "
                              f"your data into one with `hacm data ntu|pku --out {paths.shown(path)}`")
    if store and not make_synthetic:
        raise paths.not_found("store", path, "does not exist" if not path.exists() else "is empty",
                              f"convert your data into it with `hacm data ntu|pku --out {paths.shown(path)}`, or set "
                              "make_synthetic=True to generate the synthetic dataset there")
    return synthetic_store(path, **synth)


def synthetic_store(store_dir: str | Path, world: Mapping[str, Any] | None = None, **synth) -> Path:
    """Generate the synthetic dataset (hacm.data.synth.write_synthetic keywords; `world`: knobs of the
    synthetic world as dotted settings, hacm.data.synth.make_world) and convert it into the store
    store_dir with the NTU pipeline; the raw files are a temporary intermediate."""
    population, variation, sensor = make_world(world)
    with tempfile.TemporaryDirectory() as raw:
        write_synthetic(raw, population=population, variation=variation, sensor=sensor, **synth)
        return convert_ntu(raw, Path(store_dir)).store_path


def show_errors_briefly(shell=None) -> bool:
    """In an IPython kernel, show a HacmError as one line (what to change), not hacm's traceback.

    The cell still fails (papermill and "run all" stop there). Returns whether a shell was found."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False

    def one_line(shell, etype, value, tb, tb_offset=None):
        stb = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, stb)   # IPython's (and ipykernel's) display of an error
        return stb

    shell.set_custom_exc((HacmError,), one_line)
    return True


show_errors_briefly()
