"""The Slurm executor: every job of a batch submitted through submitit, each depending `afterok` on
the Slurm jobs of its `depends_on`, so the scheduler, not this process, orders the batch.

- A job runs `hacm.report.worker.run_on_node` on a compute node; it writes the job's record on the
  shared file system and exits non-zero when the notebook failed, so its dependents never start.
  submitit's files and the Slurm logs go to `<out>/.slurm/<slurm job id>/`.
- The record of a submitted job keeps its Slurm job id. Running the batch again reattaches to
  jobs still queued or running instead of submitting them again; jobs whose inputs are unchanged
  (and whose dependencies were not resubmitted) are not submitted at all.
- States come from `scontrol show job` (slurmctld's memory, which keeps finished jobs for
  MinJobAge, 300 s by default), else from `sacct` where accounting is configured.
- A job whose notebook trains on several nodes (train.nodes, train.gpus_per_node of its `config`)
  is given the nodes, and its training runs as one torchrun per node under srun (hacm.launch).
- A failed job is recorded with the tail of its Slurm log; a job left pending because a dependency
  failed (DependencyNeverSatisfied) is cancelled and recorded as skipped; a job cancelled with
  scancel is recorded as "cancelled".
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hacm.config import load_config
from hacm.errors import HacmError
from hacm.progress import progress_bar
from hacm.report.batch import Batch, Job
from hacm.report.local import log_tail
from hacm.report.runner import JobResult, plan_job, read_record, resolved_parameters, write_record
from hacm.report.worker import run_on_node

ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING"}
FAILED_STATES = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_job: int = 0
    time_min: int = 24 * 60              # the wall-clock limit of each job
    poll_s: float = 5.0                  # seconds between two looks at the queue


@dataclass
class SlurmState:
    state: str                           # JobState (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...)
    reason: str = ""


def check_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise HacmError("--executor slurm: sbatch is not on PATH (run hacm on a Slurm login node)")


def job_resources(job: Job, out: Path) -> tuple[int, int]:
    """(nodes, processes per node) of a job whose notebook trains the config named by its `config`
    and `overrides` parameters (train.nodes, train.gpus_per_node); (1, 1) for any other job."""
    params = resolved_parameters(job, out)
    if "config" not in params:
        return 1, 1
    train = load_config(params["config"], params.get("overrides") or {}).train
    return train.nodes, train.gpus_per_node


def sbatch_parameters(job: Job, batch: Batch, options: SlurmOptions, dependencies: list[str],
                      resources: tuple[int, int] = (1, 1)) -> dict:
    """submitit's SlurmExecutor parameters of one job (pure, so it can be checked without Slurm).
    A job training on several nodes gets them all, one task per node, and runs its notebook once,
    in the batch script on the first node (no srun): the training srun-starts a torchrun per node."""
    nodes, per_node = resources
    params = {"job_name": f"{batch.name}.{job.name}", "time": options.time_min, "nodes": nodes,
              "ntasks_per_node": 1, "signal_delay_s": 120}
    if nodes > 1:
        params["use_srun"] = False
    if options.partition:
        params["partition"] = options.partition
    if options.gpus_per_job:       # a GPU cluster: a distributed job gets a GPU per process
        params["gpus_per_node"] = per_node if per_node > 1 else options.gpus_per_job
    if dependencies:
        params["dependency"] = "afterok:" + ":".join(dependencies)
    return params


def scheduler_states(job_ids: list[str]) -> dict[str, SlurmState]:
    """The state of each job id: scontrol for the jobs slurmctld still holds, sacct for older ones."""
    states: dict[str, SlurmState] = {}
    if not job_ids:
        return states
    listing = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=False)
    for line in listing.stdout.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobId") in job_ids:
            states[fields["JobId"]] = SlurmState(fields.get("JobState", "UNKNOWN"), fields.get("Reason", ""))
    missing = [j for j in job_ids if j not in states]
    if missing and shutil.which("sacct"):
        acct = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(missing)],
                              capture_output=True, text=True, check=False)
        for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
            job_id, _, state = line.partition("|")
            if job_id in missing:
                states[job_id] = SlurmState(state.split()[0] if state else "UNKNOWN")
    return {j: states.get(j, SlurmState("UNKNOWN")) for j in job_ids}


def _log_dir(out: Path) -> Path:
    return out / ".slurm"


def slurm_log_tail(out: Path, job_id: str, lines: int = 30) -> str:
    """The end of the job's Slurm logs (stderr, then stdout) as submitit writes them."""
    folder = _log_dir(out) / job_id
    parts = [log_tail(folder / f"{job_id}_0_log.{ext}", lines) for ext in ("err", "out")]
    return "\n".join(p for p in parts if p)


class _SlurmRun:
    """Submission, reattachment and the final state of each job of one batch."""

    def __init__(self, batch: Batch, out: Path, force: bool, options: SlurmOptions):
        self.batch, self.out, self.force, self.options = batch, out, force, options
        self.done: dict[str, JobResult] = {}
        self.submitted: dict[str, str] = {}          # job name -> Slurm job id

    def submit_all(self) -> None:
        import submitit

        executor = submitit.SlurmExecutor(folder=_log_dir(self.out) / "%j")
        live = self._live_records()
        for job in self.batch.jobs:
            if job.name in live:
                self.submitted[job.name] = live[job.name]
            elif not any(dep in self.submitted for dep in job.depends_on) and \
                    (plan := plan_job(job, self.out, self.done, self.force)).result is not None:
                self.done[job.name] = plan.result          # unchanged, or skipped after a failed dependency
            else:
                deps = [self.submitted[d] for d in job.depends_on if d in self.submitted]
                executor.update_parameters(**sbatch_parameters(job, self.batch, self.options, deps,
                                                               job_resources(job, self.out)))
                submitted = executor.submit(run_on_node, str(self.batch.path), str(self.out), job.name, self.force)
                self.submitted[job.name] = str(submitted.job_id)
                self._remember(job, str(submitted.job_id))

    def _live_records(self) -> dict[str, str]:
        """Jobs whose record names a Slurm job still queued or running (a run to reattach to)."""
        ids = {job.name: rec.slurm_job_id for job in self.batch.jobs
               if (rec := read_record(self.out / job.name)) is not None and rec.slurm_job_id}
        states = scheduler_states(list(ids.values()))
        return {name: job_id for name, job_id in ids.items() if states[job_id].state in ACTIVE_STATES}

    def _remember(self, job: Job, job_id: str) -> None:
        """Put the Slurm job id into the job's record, keeping a previous result (and its cache)."""
        record = read_record(self.out / job.name) or JobResult(job.name, job.notebook.name, "submitted")
        record.slurm_job_id = job_id
        write_record(self.out / job.name, record)

    def poll(self) -> dict[str, SlurmState]:
        """Look at the queue once; settle every job that has ended. Returns the states of the others."""
        pending = {name: job_id for name, job_id in self.submitted.items() if name not in self.done}
        states = scheduler_states(list(pending.values()))
        for name, job_id in pending.items():
            state = states[job_id]
            if state.state == "PENDING" and state.reason == "DependencyNeverSatisfied":
                subprocess.run(["scancel", job_id], check=False)
                self._settle(name, job_id, SlurmState("CANCELLED", "DependencyNeverSatisfied"))
            elif state.state not in ACTIVE_STATES and state.state != "UNKNOWN":
                self._settle(name, job_id, state)
        return {name: states[job_id] for name, job_id in pending.items() if name not in self.done}

    def _settle(self, name: str, job_id: str, state: SlurmState) -> None:
        job = next(j for j in self.batch.jobs if j.name == name)
        record = read_record(self.out / name)
        if state.state == "COMPLETED" and record is not None and record.succeeded:
            self.done[name] = record
            return
        if state.reason == "DependencyNeverSatisfied":
            failed = [d for d in job.depends_on if d in self.done and not self.done[d].succeeded]
            result = JobResult(name, job.notebook.name, "skipped", slurm_job_id=job_id,
                               error=f"upstream job {', '.join(failed) or '?'} did not succeed (Slurm job {job_id} cancelled)")
        elif state.state.startswith("CANCELLED"):
            result = JobResult(name, job.notebook.name, "cancelled", slurm_job_id=job_id,
                               error=f"Slurm job {job_id} was cancelled (scancel)",
                               failing_source=slurm_log_tail(self.out, job_id) or None)
        else:
            result = record if record is not None and record.status == "failed" else JobResult(
                name, job.notebook.name, "failed", error=f"Slurm job {job_id} ended {state.state}")
            result.slurm_job_id = job_id
            result.failing_source = "\n".join(filter(None, [result.failing_source, "--- Slurm log (end) ---",
                                                           slurm_log_tail(self.out, job_id)]))
        write_record(self.out / name, result)
        self.done[name] = result


def run_slurm(batch: Batch, out: Path, *, force: bool, options: SlurmOptions, progress: bool,
              wait: bool) -> tuple[dict[str, JobResult], bool]:
    """Submit (or reattach to) the batch's jobs; with `wait`, follow the queue until every job has
    ended. Ctrl-C stops following, not the jobs: `hacm report --collect` or a re-run picks them up."""
    check_slurm()
    run = _SlurmRun(batch, out, force, options)
    run.submit_all()
    if not wait:
        return _with_live_states(run, run.poll()), False
    bar = progress_bar(total=len(batch.jobs), desc=f"batch {batch.name} (Slurm)", unit="job", disable=not progress)
    try:
        while True:
            active = run.poll()
            bar.n = len(run.done)
            bar.set_postfix_str(", ".join(f"{n}: {s.state.lower()}" for n, s in active.items()), refresh=True)
            if not active:
                break
            time.sleep(options.poll_s)
    except KeyboardInterrupt:
        return _with_live_states(run, run.poll()), True
    finally:
        bar.close()
    return run.done, False


def _with_live_states(run: _SlurmRun, active: dict[str, SlurmState]) -> dict[str, JobResult]:
    """Settled jobs as recorded, the others by their scheduler state (status "pending"/"running")."""
    results = dict(run.done)
    for name, state in active.items():
        job = next(j for j in run.batch.jobs if j.name == name)
        results[name] = JobResult(name, job.notebook.name, state.state.lower(), slurm_job_id=run.submitted[name],
                                  error=f"Slurm job {run.submitted[name]}: {state.state} {state.reason}".strip())
    return results


def collect_slurm(batch: Batch, out: Path) -> dict[str, JobResult]:
    """Results of the batch's jobs as the records and the scheduler have them now, for the index
    page (`hacm report --collect`); jobs without a record are left out."""
    run = _SlurmRun(batch, out, False, SlurmOptions())
    records = {job.name: rec for job in batch.jobs if (rec := read_record(out / job.name)) is not None}
    ids = {name: rec.slurm_job_id for name, rec in records.items() if rec.slurm_job_id}
    states = scheduler_states(list(ids.values())) if shutil.which("scontrol") else {}
    for name, record in records.items():
        job_id = ids.get(name)
        if job_id and (record.status == "submitted" or states.get(job_id, SlurmState("")).state in ACTIVE_STATES):
            run.submitted[name] = job_id
        else:
            run.done[name] = record
    return _with_live_states(run, run.poll() if states else {}) if run.submitted else run.done
