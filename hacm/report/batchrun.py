"""`run_batch`: a batch file run by one of the executors, then its index page.

- "local" (`hacm.report.local`): on this machine, `jobs` at a time, each in its own process.
- "slurm" (`hacm.report.slurm`): every job submitted to Slurm through submitit, dependencies as
  `afterok`; the call waits for the batch to end (`wait=False` returns once everything is submitted,
  and `collect_batch` writes the index from the records later).
"""
from __future__ import annotations

import time
from pathlib import Path

from hacm import lock
from hacm.report.batch import default_out_dir, load_batch
from hacm.report.html import write_index
from hacm.report.local import run_local
from hacm.report.runner import BatchResult, JobResult, check_kernel, read_record
from hacm.report.slurm import SlurmOptions, collect_slurm, run_slurm

EXECUTORS = ("local", "slurm")


def run_batch(batch_yaml: str | Path, out_dir: str | Path | None = None, force: bool = False,
              progress: bool = True, *, jobs: int = 1, gpus_per_job: int = 1, executor: str = "local",
              slurm: SlurmOptions | None = None, wait: bool = True) -> BatchResult:
    """Run every job of a batch file in dependency order and write the report (hacm.report.runner
    describes the records and the report directory). The report directory is locked while the
    call runs (hacm.lock): a second run of the same report is refused, naming this one."""
    batch = load_batch(batch_yaml)
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir(batch)
    check_kernel()
    with lock.hold(out, "report directory"):
        return _run(batch, out, force, progress, jobs, gpus_per_job, executor, slurm, wait)


def _run(batch, out: Path, force: bool, progress: bool, jobs: int, gpus_per_job: int, executor: str,
         slurm: SlurmOptions | None, wait: bool) -> BatchResult:
    start = time.perf_counter()
    if executor == "local":
        results, interrupted = run_local(batch, out, force=force, jobs=jobs, gpus_per_job=gpus_per_job,
                                         progress=progress)
    elif executor == "slurm":
        results, interrupted = run_slurm(batch, out, force=force, options=slurm or SlurmOptions(
            gpus_per_job=gpus_per_job), progress=progress, wait=wait)
    else:
        raise ValueError(f"executor: expected one of {EXECUTORS}, got {executor!r}")
    ordered = [results[j.name] for j in batch.jobs]
    index = write_index(batch, out, ordered, time.perf_counter() - start)
    return BatchResult(batch, out, index, ordered, time.perf_counter() - start, interrupted)


def collect_batch(batch_yaml: str | Path, out_dir: str | Path | None = None) -> BatchResult:
    """The index page from the job records as they stand (Slurm jobs still queued or running are
    shown with the scheduler's state)."""
    batch = load_batch(batch_yaml)
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir(batch)
    with lock.hold(out, "report directory"):   # it rewrites index.html and settled records
        return _collect(batch, out)


def _collect(batch, out: Path) -> BatchResult:
    start = time.perf_counter()
    results = collect_slurm(batch, out)
    for job in batch.jobs:
        if job.name not in results:
            results[job.name] = read_record(out / job.name) or JobResult(
                job.name, job.notebook.name, "skipped", error="not run yet")
    ordered = [results[j.name] for j in batch.jobs]
    index = write_index(batch, out, ordered, time.perf_counter() - start)
    return BatchResult(batch, out, index, ordered, time.perf_counter() - start)
