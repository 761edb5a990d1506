"""Reports: batches of parameterised notebooks, run with papermill and gathered into HTML.

- `hacm.report.batch`: the batch file (its format, parsing and checks, dependency order, placeholders).
- `hacm.report.runner`: one job: its record, the hashes that let unchanged jobs be reused, its execution.
- `hacm.report.worker`: one job in a process of its own (local executor) or on a Slurm node.
- `hacm.report.local` / `hacm.report.slurm`: the executors: N processes here, or sbatch via submitit.
- `hacm.report.batchrun`: `run_batch` (an executor, then the index) and `collect_batch` (the index only).
- `hacm.report.html`: offline HTML pages of the executed notebooks and the report's index page.

`run_batch(path)` is the whole thing; the CLI commands `hacm report` and `hacm demo` call it.
"""
from hacm.report.batch import DEMO_BATCH, Batch, Job, load_batch, notebook_parameters
from hacm.report.batchrun import collect_batch, run_batch
from hacm.report.runner import BatchResult, JobResult

__all__ = ["DEMO_BATCH", "Batch", "BatchResult", "Job", "JobResult", "collect_batch", "load_batch",
           "notebook_parameters", "run_batch"]
