"""The local executor: a batch's jobs on this machine, up to N at once, each in a process of its own
(`python -m hacm.report.worker`), in dependency order.

- Threads: every job gets `cores // N` (at least 1) through OMP_NUM_THREADS and MKL_NUM_THREADS,
  which torch reads when it starts, so N jobs together use the machine's cores once.
- GPUs: where GPUs are visible (CUDA_VISIBLE_DEVICES, else nvidia-smi), they are dealt out in groups
  of `gpus_per_job`, one group per running job (its CUDA_VISIBLE_DEVICES), so at most
  len(GPUs) // gpus_per_job jobs run at once.
- Progress: one bar for the batch and a line per running job (its notebook's cell bar).
- Ctrl-C: every running job's process gets SIGTERM, records itself as "interrupted" and stops its
  kernel; the index is written and the run ends with `interrupted` set. Running the batch again
  skips the finished jobs and continues the interrupted ones in their kept directories. A batch
  runner killed outright (kill -9) has the same effect on its jobs (hacm.report.worker stops with it).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hacm.errors import HacmError
from hacm.machine import usable_cores
from hacm.progress import progress_bar, read_status
from hacm.report.batch import Batch, Job
from hacm.report.runner import JobPlan, JobResult, plan_job, read_record, write_record
from hacm.report.worker import BATCH_PID_VARIABLE, progress_file, status_file

STOP_GRACE_S = 60          # how long an interrupted job may take to record itself and stop its kernel
_POLL_S = 0.2


def visible_gpus(env=os.environ) -> list[str]:
    """The GPUs jobs may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists, else none."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return [d.strip() for d in env["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, check=False)
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()] if listing.returncode == 0 else []


def job_slots(jobs: int, visible: list[str], gpus_per_job: int) -> list[list[str]]:
    """The device group of each job slot: `jobs` CPU slots (no GPU) on a machine without GPUs, else
    disjoint groups of `gpus_per_job` visible GPUs, at most `jobs` of them."""
    if jobs < 1:
        raise HacmError(f"--jobs: expected a positive number of jobs, got {jobs}")
    if gpus_per_job < 1:
        raise HacmError(f"--gpus-per-job: expected a positive number of GPUs, got {gpus_per_job}")
    if not visible:
        return [[] for _ in range(jobs)]
    if gpus_per_job > len(visible):
        raise HacmError(f"--gpus-per-job {gpus_per_job}: only {len(visible)} GPU(s) visible ({','.join(visible)})")
    groups = [visible[i:i + gpus_per_job] for i in range(0, len(visible) - gpus_per_job + 1, gpus_per_job)]
    return groups[:jobs]


def job_threads(cores: int, running: int) -> int:
    return max(1, cores // max(1, running))


def job_environment(base: dict, threads: int, gpus: list[str]) -> dict:
    """A job's environment: its share of the cores and, on a GPU machine, its own GPUs."""
    env = {**base, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


@dataclass
class _Running:
    plan: JobPlan
    process: subprocess.Popen
    slot: int
    started: float


class _LocalRun:
    """The state of one batch run: who runs where, what finished, the progress display."""

    def __init__(self, batch: Batch, out: Path, force: bool, slots: list[list[str]], progress: bool):
        self.batch, self.out, self.force, self.slots = batch, out, force, slots
        self.threads = job_threads(usable_cores(), len(slots))
        self.done: dict[str, JobResult] = {}
        self.waiting: list[Job] = list(batch.jobs)
        self.running: dict[str, _Running] = {}
        self.plans: dict[str, JobPlan] = {}
        self.bar = progress_bar(total=len(batch.jobs), desc=f"batch {batch.name}", unit="job", disable=not progress)
        self.lines = [progress_bar(bar_format="{desc}", desc="", position=i + 1, disable=not progress, leave=False)
                      for i in range(len(slots))]
        self.shown = [""] * len(slots)

    def step(self) -> None:
        """Reap finished jobs, then decide or start every job whose dependencies are done."""
        for name, run in list(self.running.items()):
            if run.process.poll() is not None:
                self._finish(name, self._outcome(run))
        for job in list(self.waiting):
            if not all(dep in self.done for dep in job.depends_on):
                continue
            free = sorted(set(range(len(self.slots))) - {r.slot for r in self.running.values()})
            if job.name not in self.plans:      # hashing reads files: once per job, not once per poll
                self.plans[job.name] = plan_job(job, self.out, self.done, self.force)
            plan = self.plans[job.name]
            if plan.result is not None:
                self.waiting.remove(job)
                self._finish(job.name, plan.result)
            elif free:
                self.waiting.remove(job)
                self._start(plan, free[0])
        self._show()

    def _start(self, plan: JobPlan, slot: int) -> None:
        logs = self.out / ".logs"
        logs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "hacm.report.worker", str(self.batch.path), str(self.out), plan.job.name, plan.key]
        with open(logs / f"{plan.job.name}.log", "w") as log:
            # a session of its own: the terminal's Ctrl-C reaches this process only, which stops the jobs in order
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**job_environment(dict(os.environ), self.threads, self.slots[slot]),
                                            BATCH_PID_VARIABLE: str(os.getpid())})
        self.running[plan.job.name] = _Running(plan, process, slot, time.perf_counter())

    def _outcome(self, run: _Running, interrupted: bool = False) -> JobResult:
        """The record the job's process wrote; when it wrote none, a failure quoting its log, or
        "interrupted" when Ctrl-C stopped it before it could."""
        record = read_record(run.plan.job_dir)
        if record is not None and record.input_hash == run.plan.key and record.status != "skipped":
            return record
        log = self.out / ".logs" / f"{run.plan.job.name}.log"
        result = JobResult(run.plan.job.name, run.plan.job.notebook.name, "failed", input_hash=run.plan.key,
                           seconds=time.perf_counter() - run.started,
                           error=f"the job's process exited with status {run.process.returncode} without a record",
                           failing_source=log_tail(log))
        if interrupted:
            result.status, result.error, result.failing_source = "interrupted", "interrupted (Ctrl-C)", None
        write_record(run.plan.job_dir, result)
        return result

    def _finish(self, name: str, result: JobResult) -> None:
        self.running.pop(name, None)
        self.done[name] = result
        self.bar.update(1)

    def _show(self) -> None:
        shown = {run.slot: self._job_line(name) for name, run in self.running.items()}
        for slot, line in enumerate(self.lines):
            if self.shown[slot] != shown.get(slot, ""):   # redraw (or print) a job's line when it changes
                self.shown[slot] = shown.get(slot, "")
                line.set_description_str(self.shown[slot], refresh=True)
        self.bar.set_postfix_str(f"{len(self.running)} running", refresh=True)

    def _job_line(self, name: str) -> str:
        """A running job's cell bar, and the status its notebook publishes (a study's pipelines)."""
        status = read_status(status_file(self.out, name))
        return " | ".join(filter(None, [_last_bar(progress_file(self.out, name)) or f"{name}: starting", status]))

    def stop(self) -> None:
        """Ctrl-C: every running job records itself as interrupted (SIGTERM), else is killed and
        recorded here."""
        for run in self.running.values():
            os.killpg(run.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for name, run in list(self.running.items()):
            try:
                run.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(run.process.pid, signal.SIGKILL)
                run.process.wait()
            self._finish(name, self._outcome(run, interrupted=True))   # a job that had just ended keeps its result
        for job in self.waiting:
            self.done[job.name] = JobResult(job.name, job.notebook.name, "skipped",
                                            error="not started: the batch was interrupted")

    def close(self) -> None:
        for line in self.lines:
            line.close()
        self.bar.close()


def run_local(batch: Batch, out: Path, *, force: bool, jobs: int, gpus_per_job: int,
              progress: bool) -> tuple[dict[str, JobResult], bool]:
    """Run the batch here; returns every job's result and whether Ctrl-C ended the run."""
    run = _LocalRun(batch, out, force, job_slots(jobs, visible_gpus(), gpus_per_job), progress)
    interrupted = False
    try:
        while run.waiting or run.running:
            run.step()
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        interrupted = True
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)   # a second Ctrl-C must not cut the clean-up short
        try:
            run.stop()
        finally:
            signal.signal(signal.SIGINT, previous)
    finally:
        run.close()
    return run.done, interrupted


def _last_bar(path: Path) -> str:
    """The current state of a tqdm bar written to a file: the text after its last carriage return."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in text.replace("\n", "\r").split("\r") if p.strip()]
    return parts[-1] if parts else ""


def log_tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file ("" when it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
