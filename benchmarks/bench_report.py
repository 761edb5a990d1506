"""How much faster does a batch of independent jobs run with `--jobs 2` than with `--jobs 1`?

    .venv/bin/python benchmarks/bench_report.py [--batch-jobs 4] [--work 1.0] [--workload python|torch]

Writes a batch of --batch-jobs independent notebooks (no dependencies) into a temp dir, each doing
--work units of CPU work (one unit: about 2.5 s of one core on this project's 2-core machine), runs it with `hacm report --jobs 1`
and `--jobs 2` (each from scratch, with --force), and prints both wall times and their ratio; the
target on a 2-core machine is >= 1.6. `python` work is single-threaded (pure Python), so the ratio
shows what running jobs side by side wins; `torch` work is matrix products using the job's
OMP_NUM_THREADS, where --jobs 1 already uses both cores within a job. Each job's time includes its
process and kernel start-up and its HTML export, as in a real batch (about 7 s a job there, which
running side by side hides less well than the work: measured at 1.49x with --work 1, 1.85x with
--work 3 on an idle 2-core machine). The summaries of both runs must be equal.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import yaml

_WORK = {
    # one unit of work; only the ratio of the two runs matters
    "python": "total = 0\nfor i in range(int(work * 12_000_000)):\n    total += i * i % 7\nresult = total",
    "torch": "import torch\ntorch.manual_seed(0)\nx = torch.randn(512, 512)\n"
             "for _ in range(int(work * 40)):\n    x = torch.tanh(x @ x / 512)\nresult = float(x.sum())",
}


def write_batch(root: Path, n_jobs: int, work: float, workload: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hacm", "display_name": "Python (hacm)", "language": "python"}
    params = nbformat.v4.new_code_cell("work = 1.0\nreport_dir = '.'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(_WORK[workload]),
                nbformat.v4.new_code_cell("import json, pathlib\n"
                                          "json.dump({'result': result}, open(pathlib.Path(report_dir) / 'summary.json', 'w'))")]
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, root / "notebooks" / "work.ipynb")
    jobs = [{"name": f"job{i}", "notebook": "work", "parameters": {"work": work}} for i in range(n_jobs)]
    batch = root / "batches" / "bench.yaml"
    batch.parent.mkdir(exist_ok=True)
    batch.write_text(yaml.safe_dump({"name": "bench", "notebooks_dir": "../notebooks", "jobs": jobs}))
    return batch


def timed_run(batch: Path, out: Path, jobs: int) -> tuple[float, dict]:
    command = [sys.executable, "-m", "hacm", "report", str(batch), "--out", str(out), "--force", "--jobs", str(jobs)]
    t0 = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{run.stdout}\n{run.stderr[-3000:]}")
    seconds = time.perf_counter() - t0
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob("*/summary.json"))}
    return seconds, summaries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-jobs", type=int, default=4, help="independent jobs in the batch")
    parser.add_argument("--work", type=float, default=1.0, help="CPU work of each job (units of about 2.5 core-seconds)")
    parser.add_argument("--workload", choices=sorted(_WORK), default="python")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores; "
          f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        batch = write_batch(Path(tmp), args.batch_jobs, args.work, args.workload)
        one, sums_one = timed_run(batch, Path(tmp) / "one", 1)
        two, sums_two = timed_run(batch, Path(tmp) / "two", 2)
    print(f"{args.batch_jobs} independent jobs, {args.workload} work {args.work}:")
    print(f"  --jobs 1: {one:6.1f} s")
    print(f"  --jobs 2: {two:6.1f} s")
    print(f"  speed-up: {one / two:.2f}x (target >= 1.6 on 2 cores)")
    print(f"  summaries equal: {sums_one == sums_two}")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
