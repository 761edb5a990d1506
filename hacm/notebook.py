"""What the notebooks import: hacm's surface for parameterised notebooks and their reports.

A notebook of notebooks/ receives `report_dir` (papermill fills it in a batch) and writes its figures
and `summary.json` there; the report's index page reads the summary.
"""
from __future__ import annotations

import json
from pathlib import Path

from hacm.fileio import write_text_atomic


def write_summary(report_dir: str | Path, values: dict) -> Path:
    """Write a notebook's key numbers to report_dir/summary.json (the index table reads it).

    numpy scalars and arrays become plain numbers and lists."""
    def plain(v):
        if hasattr(v, "tolist"):
            return v.tolist()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    path = Path(report_dir) / "summary.json"
    write_text_atomic(path, json.dumps(plain(values), indent=1) + "\n")
    return path
