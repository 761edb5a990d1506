"""Reports: batches of parameterised notebooks, run with papermill and gathered into HTML.

- `hacm.report.batch`: the batch file (its format, parsing and checks, dependency order, placeholders).
- `hacm.report.runner`: execution, the per-job records and hashes that let unchanged jobs be reused.
- `hacm.report.html`: offline HTML pages of the executed notebooks and the report's index page.

`run_batch(path)` is the whole thing; the CLI commands `hacm report` and `hacm demo` call it.
"""
from hacm.report.batch import DEMO_BATCH, Batch, Job, load_batch, notebook_parameters
from hacm.report.runner import BatchResult, JobResult, run_batch

__all__ = ["DEMO_BATCH", "Batch", "BatchResult", "Job", "JobResult", "load_batch", "notebook_parameters",
           "run_batch"]
