"""`hacm report BATCH.yaml` and `hacm demo`: run notebook batches into an HTML report."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hacm.errors import HacmError


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="run a notebook batch (papermill) into an HTML report",
                              description="Run the notebooks of a batch file in dependency order and write "
                                          "executed notebooks, HTML exports, figures and index.html.")
    p.add_argument("batch", type=Path, help="batch file (YAML), e.g. reports/batches/demo.yaml")
    p.add_argument("--out", type=Path, default=None, help="report directory (default: reports/<batch name>/)")
    p.add_argument("--force", action="store_true", help="re-run jobs whose inputs are unchanged")
    p.set_defaults(func=_report)

    d = subparsers.add_parser("demo", help="the full report on synthetic data (reports/batches/demo.yaml)",
                              description="Generate synthetic skeletons, pre-train HA-CM and a baseline, "
                                          "linear-probe, compare, ablate and render the explorer: one report.")
    d.add_argument("--out", type=Path, default=None, help="report directory (default: reports/demo/)")
    d.add_argument("--force", action="store_true", help="re-run jobs whose inputs are unchanged")
    d.set_defaults(func=_demo)


def _run(batch: Path, out: Path | None, force: bool) -> int:
    from hacm import machine
    from hacm.report import run_batch

    print(f"machine: {machine.describe()}", flush=True)   # what the times below were measured on
    result = run_batch(batch, out_dir=out, force=force)
    width = max(len(j.name) for j in result.jobs)
    for job in result.jobs:
        line = f"  {job.name:<{width}}  {job.status:<9}  {job.seconds:6.1f} s"
        if job.error:
            cell = f" (cell In [{job.failing_cell}])" if job.failing_cell is not None else ""
            line += f"  {job.error.splitlines()[0]}{cell}"
        print(line)
    print(f"report: {result.index}  ({result.seconds:.0f} s)")
    if not result.ok:
        failed = [j.name for j in result.jobs if not j.succeeded]
        print(f"hacm: {len(failed)} job(s) did not succeed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    return _run(args.batch, args.out, args.force)


def _demo(args: argparse.Namespace) -> int:
    from hacm.report import DEMO_BATCH

    if not DEMO_BATCH.is_file():
        raise HacmError(f"{DEMO_BATCH}: demo batch not found (hacm demo runs from a source checkout)")
    return _run(DEMO_BATCH, args.out, args.force)
