"""A job of a batch in a process of its own: `python -m hacm.report.worker BATCH OUT JOB KEY`.

The local executor starts one such process per running job (papermill's kernel start-up races when
many notebooks share one interpreter), with its thread count and GPUs set in the environment; the
Slurm executor runs `run_on_node` on a compute node. Either way the job's record is written by the
process that ran it. SIGTERM (sent by the executor on Ctrl-C) ends the job as "interrupted".

Exit status: 0 the job succeeded, 1 it failed, 2 it could not start (its directory is another
process's), 130 it was interrupted.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from hacm import progress
from hacm.errors import HacmError
from hacm.report.batch import Job, load_batch
from hacm.report.runner import JobPlan, JobResult, execute_job, plan_job, read_record, resolved_parameters

EXIT_STATUS = {"ok": 0, "failed": 1, "interrupted": 130}     # the statuses execute_job returns


def progress_file(out: Path, job_name: str) -> Path:
    """Where a job's process writes its cell bar; the local executor shows its last line."""
    return out / ".logs" / f"{job_name}.progress"


def status_file(out: Path, job_name: str) -> Path:
    """Where the job's notebook publishes its status line (hacm.progress.publish: a study's pipelines)."""
    return out / ".logs" / f"{job_name}.status"


def _notebook_progress(out: Path, job_name: str) -> None:
    """The kernel (a child of this process) inherits these: its bars print plain lines into the
    executed notebook, and its status line goes where the executor reads it."""
    os.environ.setdefault(progress.STYLE_ENV, "lines")
    os.environ[progress.STATUS_ENV] = str(status_file(out, job_name))


def find_job(batch_path: str | Path, name: str) -> Job:
    batch = load_batch(batch_path)
    for job in batch.jobs:
        if job.name == name:
            return job
    raise HacmError(f"{batch_path}: no job named '{name}' (jobs: {', '.join(j.name for j in batch.jobs)})")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


BATCH_PID_VARIABLE = "HACM_BATCH_PID"     # the local batch runner that started this job


def _stop_with_parent() -> bool:
    """Ask Linux for SIGTERM when the batch runner dies (kill -9), so the job stops as "interrupted",
    as on Ctrl-C, instead of running on unwatched; the next run of the batch continues it. Done here,
    at the job's start, not in a fork hook (unsafe in a threaded parent). False when the runner is
    already gone."""
    parent = os.environ.get(BATCH_PID_VARIABLE)
    if parent is None or not sys.platform.startswith("linux"):
        return True
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    return os.getppid() == int(parent)      # a runner that died before the call: nobody will signal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hacm.report.worker", description=__doc__.splitlines()[0])
    parser.add_argument("batch", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("job")
    parser.add_argument("key", help="the job's input hash, computed by the executor")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if not _stop_with_parent():
        print("hacm: error: the batch runner that started this job is gone", file=sys.stderr)
        return EXIT_STATUS["interrupted"]
    job = find_job(args.batch, args.job)
    bar_file = progress_file(args.out, job.name)
    bar_file.parent.mkdir(parents=True, exist_ok=True)
    status_file(args.out, job.name).unlink(missing_ok=True)
    _notebook_progress(args.out, job.name)
    with open(bar_file, "w") as bar:
        progress = {"desc": job.name, "file": bar, "mininterval": 0.5, "ascii": True, "ncols": 80}
        try:
            result = execute_job(JobPlan(job, args.out / job.name, resolved_parameters(job, args.out), args.key),
                                 progress)
        except HacmError as exc:   # e.g. another process runs this job: one line for the executor's record
            print(f"hacm: error: {exc}", file=sys.stderr)
            return 2
    return EXIT_STATUS[result.status]


def run_on_node(batch_path: str, out: str, job_name: str, force: bool) -> JobResult:
    """A Slurm job's function (pickled by submitit). Its dependencies finished before Slurm started
    it (afterok), so their records are on the shared file system; it fails (a non-zero exit, which
    keeps its dependents from starting) when the notebook failed."""
    job, out_dir = find_job(batch_path, job_name), Path(out)
    done = {dep: read_record(out_dir / dep) for dep in job.depends_on}
    missing = [dep for dep, record in done.items() if record is None]
    if missing:
        raise HacmError(f"job {job_name}: dependencies {', '.join(missing)} have no record in {out_dir}")
    plan = plan_job(job, out_dir, done, force)
    _notebook_progress(out_dir, job_name)
    result = plan.result or execute_job(plan, False)
    if not result.succeeded:
        raise HacmError(f"job {job_name} {result.status}: {result.error}")
    return result


if __name__ == "__main__":
    sys.exit(main())
