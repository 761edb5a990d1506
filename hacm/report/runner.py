"""One job of a batch: its record, the hashes that let an unchanged job be reused, and its execution
by papermill in the `hacm` Jupyter kernel. The executors (`hacm.report.local`, `hacm.report.slurm`)
decide where and when each job runs; `hacm.report.batchrun.run_batch` picks one.

A job runs in its own output directory, emptied first so that no figure of an earlier run survives
into this one; only a job that was interrupted keeps its directory, so that a pre-training notebook
continues from its last checkpoint (hacm.notebook.train_or_read). A notebook that raises is recorded
as failed together with its error and the cell that raised; the jobs depending on it are recorded as
skipped, and the rest of the batch still runs.

The record `<job>/.job.json` holds the result, a hash of the job's inputs (the notebook file, its
resolved parameters, the output hashes of the jobs it depends on and the hacm source) and a hash of
what it wrote. A later run reuses a successful record when both hashes still match, reporting the
job as "unchanged"; `force=True` runs everything again.

Layout of a report directory:
    <out>/index.html                          status and key numbers of every job, figure gallery
    <out>/<job>/<notebook>.ipynb              the executed notebook
    <out>/<job>/<stem>.notebook.html          its page without code; <stem>.code.html with code
    <out>/<job>/*.png, *.html, summary.json   what the notebook saved
    <out>/<job>/.job.json                     the record described above
    <out>/.logs/<job>.log                     what the job's process printed (local executor)
    <out>/.slurm/                             submitit's files and the Slurm logs (Slurm executor)
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import hacm
from hacm import lock
from hacm.errors import HacmError
from hacm.fileio import write_text_atomic
from hacm.report.batch import Batch, Job, resolve_parameters
from hacm.report.html import export_html, exports

KERNEL_NAME = "hacm"
JOB_RECORD = ".job.json"
JOB_LOCK_WAIT_S = 60.0      # as long as an interrupted job may take to record itself and stop its kernel
_PACKAGE_DIR = Path(hacm.__file__).resolve().parent


# ----------------------------------------------------------------------------- results


@dataclass
class JobResult:
    name: str
    notebook: str                        # source notebook file name
    # "ok" | "unchanged" (inputs unchanged, not run) | "failed" | "skipped" (a dependency did not
    # succeed) | "interrupted" (Ctrl-C) | "cancelled" (scancel)
    status: str
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str | None = None             # "ename: evalue" for a failed job, the reason for a skipped one
    failing_cell: int | None = None      # execution count ("In [n]") of the failing cell
    failing_source: str | None = None
    input_hash: str | None = None
    output_hash: str | None = None
    slurm_job_id: str | None = None      # while submitted to Slurm: reattached to by a later run

    @property
    def succeeded(self) -> bool:
        return self.status in ("ok", "unchanged")


@dataclass
class BatchResult:
    batch: Batch
    out_dir: Path
    index: Path
    jobs: list[JobResult]
    seconds: float
    interrupted: bool = False           # Ctrl-C ended the run

    @property
    def ok(self) -> bool:
        return all(j.succeeded for j in self.jobs)

    def result(self, name: str) -> JobResult:
        return next(j for j in self.jobs if j.name == name)


# ----------------------------------------------------------------------------- hashing


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def source_hash() -> str:
    """hacm version + every source/config file of the package: a code change invalidates cached jobs."""
    h = hashlib.sha256(hacm.__version__.encode())
    for p in sorted(_PACKAGE_DIR.rglob("*")):
        if p.suffix in (".py", ".yaml") and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(_PACKAGE_DIR)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def output_hash(job_dir: Path, notebook_name: str) -> str:
    """Content hash of what a job produced; its executed notebook, exports and record are left out
    because they carry timings and paths, not results."""
    skip = {JOB_RECORD, *exports(notebook_name)}
    h = hashlib.sha256()
    for p in sorted(job_dir.rglob("*")):
        rel = p.relative_to(job_dir)
        if not p.is_file() or rel.as_posix() in skip or p.name == lock.LOCK_FILE:
            continue
        h.update(f"{rel.as_posix()}\0{_sha256_file(p)}\n".encode())
    return h.hexdigest()


def input_hash(notebook: Path, parameters: dict, dependencies: dict[str, str], src: str) -> str:
    doc = {"notebook": _sha256_file(notebook), "parameters": parameters, "dependencies": dependencies, "source": src}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- job records


def write_record(job_dir: Path, result: JobResult) -> None:
    write_text_atomic(job_dir / JOB_RECORD, json.dumps(asdict(result), indent=1, default=str))


def read_record(job_dir: Path) -> JobResult | None:
    """The job's record, or None when it has none or it cannot be read (the job then runs again)."""
    record = job_dir / JOB_RECORD
    if not record.is_file():
        return None
    try:
        return JobResult(**json.loads(record.read_text()))
    except (ValueError, TypeError):
        return None


def _cached_result(job_dir: Path, key: str) -> JobResult | None:
    result = read_record(job_dir)
    # outputs edited or deleted since the record was written -> run again
    if result is None or result.status != "ok" or result.input_hash != key \
            or output_hash(job_dir, result.notebook) != result.output_hash:
        return None
    result.status = "unchanged"
    return result


@dataclass
class JobPlan:
    """What a job needs to run: its directory, resolved parameters and input hash. `result` is set
    instead when it need not run: "unchanged" (cached) or "skipped" (a dependency did not succeed)."""
    job: Job
    job_dir: Path
    params: dict
    key: str
    result: JobResult | None = None


def resolved_parameters(job: Job, out: Path) -> dict:
    job_dirs = {name: out / name for name in [job.name, *job.depends_on]}
    return resolve_parameters(job.parameters, report_dir=job_dirs[job.name], batch_dir=out, job_dirs=job_dirs)


def plan_job(job: Job, out: Path, done: dict[str, JobResult], force: bool) -> JobPlan:
    """Decide a job whose dependencies are all in `done`; a skipped job's record is written here."""
    job_dirs = {name: out / name for name in [job.name, *job.depends_on]}
    params = resolved_parameters(job, out)
    failed_deps = [d for d in job.depends_on if not done[d].succeeded]
    if failed_deps:
        skipped = JobResult(job.name, job.notebook.name, "skipped",
                            error=f"upstream job {', '.join(failed_deps)} did not succeed")
        write_record(job_dirs[job.name], skipped)
        return JobPlan(job, job_dirs[job.name], params, "", skipped)
    key = input_hash(job.notebook, params, {dep: done[dep].output_hash for dep in job.depends_on}, source_hash())
    cached = None if force else _cached_result(job_dirs[job.name], key)
    return JobPlan(job, job_dirs[job.name], params, key, cached)


# ----------------------------------------------------------------------------- running


def check_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        raise HacmError(
            f"Jupyter kernel '{KERNEL_NAME}' is not installed for this Python; install it with "
            f"`python -m ipykernel install --prefix .venv --name {KERNEL_NAME}` (make setup does this)"
        ) from None


def execute_job(plan: JobPlan, progress) -> JobResult:
    """Execute one job into its directory, export its pages and write its record. `progress` is
    False or papermill's tqdm keywords for the cell bar. Ctrl-C (KeyboardInterrupt) ends the job as
    "interrupted" and keeps its directory for the next run. The job's directory is locked
    (hacm.lock) while it runs: a second process for the same job (a re-run while the job of a killed
    runner still stops, a Slurm re-submission) waits up to JOB_LOCK_WAIT_S for it, then is refused."""
    with lock.hold(plan.job_dir, "report job directory", wait_s=JOB_LOCK_WAIT_S):
        return _execute(plan, progress)


def _execute(plan: JobPlan, progress) -> JobResult:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    job, job_dir = plan.job, plan.job_dir
    previous = read_record(job_dir)
    if not (previous and previous.status == "interrupted" and previous.input_hash == plan.key):
        _empty_dir(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    executed = job_dir / job.notebook.name
    result = JobResult(job.name, job.notebook.name, "ok", input_hash=plan.key)
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="hacm-kernel-") as sockets:
            # cwd = where the command was started, so the kernel finds the same repository root
            # (hacm.paths) as the command and relative paths in parameters mean the same to both;
            # notebooks write only into report_dir
            pm.execute_notebook(str(job.notebook), str(executed), parameters={**plan.params, "report_dir": str(job_dir)},
                                kernel_name=KERNEL_NAME, cwd=os.getcwd(), progress_bar=progress,
                                config=_ipc_kernel_config(sockets))
    except PapermillExecutionError as exc:
        result.status = "failed"
        result.error = f"{exc.ename}: {exc.evalue}"
        result.failing_cell = exc.exec_count
        result.failing_source = exc.source
    except KeyboardInterrupt:
        result.status, result.error = "interrupted", "interrupted (Ctrl-C); running the batch again continues it"
    except Exception as exc:   # kernel died, timeout, ...: recorded like a failing cell, the batch goes on
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        result.failing_source = traceback.format_exc(limit=3)
    result.seconds = time.perf_counter() - t0
    _read_summary(job_dir / "summary.json", result)
    if executed.is_file():
        export_html(executed)
    result.output_hash = output_hash(job_dir, job.notebook.name)
    write_record(job_dir, result)
    return result


def _ipc_kernel_config(socket_dir: str):
    """The kernel talks over Unix sockets in a private directory: no TCP port to race for when jobs
    start kernels side by side, and ipykernel has no unencrypted-TCP warning to print."""
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = str(Path(socket_dir) / "kernel")
    return config


def _read_summary(summary_file: Path, result: JobResult) -> None:
    if summary_file.is_file():
        try:
            result.summary = json.loads(summary_file.read_text())
        except ValueError as exc:
            result.status, result.error = "failed", f"summary.json is not valid JSON: {exc}"


def _empty_dir(job_dir: Path) -> None:
    """A fresh directory: stale figures of an earlier run must not appear in this report."""
    if job_dir.exists():
        for p in sorted(job_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if p != job_dir / lock.LOCK_FILE:   # this process's own lock on the directory
                p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    job_dir.mkdir(parents=True, exist_ok=True)
