"""`hacm report BATCH.yaml` and `hacm demo`: run notebook batches into an HTML report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hacm import paths
from hacm.errors import HacmError

INTERRUPTED_STATUS = 130     # what a shell reports for a command ended by Ctrl-C (128 + SIGINT)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="run a notebook batch (papermill) into an HTML report",
                              description="Run the notebooks of a batch file in dependency order and write "
                                          "executed notebooks, HTML exports, figures and index.html.")
    p.add_argument("batch", type=paths.resolve, help="batch file (YAML), e.g. reports/batches/demo.yaml")
    p.add_argument("--out", type=paths.resolve, default=None, help="report directory (default: reports/<batch name>/)")
    p.add_argument("--force", action="store_true", help="re-run jobs whose inputs are unchanged")
    _add_scaling(p)
    p.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="local: this machine (--jobs at a time); slurm: submit every job with sbatch (submitit)")
    p.add_argument("--partition", default=None, help="Slurm partition (default: the cluster's default)")
    p.add_argument("--time", type=_positive, default=24 * 60, metavar="MIN",
                   help="Slurm wall-clock limit of each job in minutes (default: 1440)")
    p.add_argument("--collect", action="store_true",
                   help="only write index.html from the job records and the Slurm queue as they stand")
    p.set_defaults(func=_report)

    d = subparsers.add_parser("demo", help="the full report on synthetic data (reports/batches/demo.yaml)",
                              description="Generate synthetic skeletons, pre-train HA-CM and a baseline, "
                                          "linear-probe, compare, ablate and render the explorer: one report.")
    d.add_argument("--out", type=paths.resolve, default=None, help="report directory (default: reports/demo/)")
    d.add_argument("--force", action="store_true", help="re-run jobs whose inputs are unchanged")
    _add_scaling(d)
    d.set_defaults(func=_demo, executor="local", partition=None, time=None, collect=False)


def _add_scaling(p) -> None:
    p.add_argument("--jobs", type=_positive, default=1,
                   help="jobs run at once, each in its own process with cores/N threads (default: 1)")
    p.add_argument("--gpus-per-job", type=int, default=None, metavar="G",
                   help="GPUs of each job (local: visible GPUs dealt out G per job, default 1; slurm: default 0)")


def _run(batch: Path, args: argparse.Namespace) -> int:
    from hacm import machine
    from hacm.report import collect_batch, run_batch
    from hacm.report.slurm import SlurmOptions

    print(f"machine: {machine.describe()}", flush=True)   # what the times below were measured on
    if args.collect:
        result = collect_batch(batch, args.out)
    else:
        slurm = SlurmOptions(partition=args.partition, gpus_per_job=args.gpus_per_job or 0, time_min=args.time)
        result = run_batch(batch, out_dir=args.out, force=args.force, jobs=args.jobs,
                           gpus_per_job=args.gpus_per_job or 1, executor=args.executor, slurm=slurm)
    width = max(len(j.name) for j in result.jobs)
    for job in result.jobs:
        line = f"  {job.name:<{width}}  {job.status:<11}  {job.seconds:6.1f} s"
        if job.error:
            cell = f" (cell In [{job.failing_cell}])" if job.failing_cell is not None else ""
            line += f"  {job.error.splitlines()[0]}{cell}"
        print(line)
    print(f"report: {result.index}  ({result.seconds:.0f} s)")
    if result.interrupted:
        print("hacm: interrupted; run the same command again to continue", file=sys.stderr)
        return INTERRUPTED_STATUS
    if not result.ok:
        failed = [j.name for j in result.jobs if not j.succeeded]
        print(f"hacm: {len(failed)} job(s) did not succeed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    return _run(args.batch, args)


def _demo(args: argparse.Namespace) -> int:
    from hacm.report import DEMO_BATCH

    if not DEMO_BATCH.is_file():
        raise HacmError(f"{DEMO_BATCH}: demo batch not found (hacm demo runs from a source checkout)")
    return _run(DEMO_BATCH, args)
