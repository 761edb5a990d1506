"""Batch files: what a report is made of, read and checked before anything runs.

A batch file is YAML. It names the report and lists jobs; a job is one notebook run with one set of
parameters:

    name: demo                       # the report goes to <out>/ (default: reports/<name>/)
    description: one line shown on the index page
    caveat: what the numbers can and cannot say (optional; shown under the index's headline table)
    notebooks_dir: ../../notebooks   # optional, relative to the batch file (default: the repo's notebooks/)
    jobs:
      - name: pretrain_hacm
        notebook: pretrain           # notebooks_dir/pretrain.ipynb
        depends_on: [data]
        parameters:
          store: ${jobs.data}/store  # ${jobs.NAME}: that job's output dir (NAME must be in depends_on)
          run_dir: ${report_dir}/run # ${report_dir}: this job's output dir; ${batch_dir}: the report root

Names (of the batch and of its jobs) are plain: letters, digits, `_`, `.` and `-`. Each parameter
must be assigned in the notebook's cell tagged `parameters`; `report_dir` is not allowed there, since
the runner passes every notebook its own job's output directory under that name. `depends_on` (a
name or a list of names) must name jobs of the same file and must form no cycle; the jobs come back
in an order that runs each one after everything it depends on, otherwise as they stand in the file.

Any problem raises a HacmError that names the batch file and the offending field.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import hacm
from hacm.config import read_yaml
from hacm.errors import HacmError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDER_RE = re.compile(r"\$\{([a-z_]+)(?:\.([A-Za-z0-9][A-Za-z0-9_.-]*))?\}")
_BATCH_KEYS = {"name", "description", "caveat", "notebooks_dir", "jobs"}
_JOB_KEYS = {"name", "notebook", "parameters", "depends_on"}
REPO_ROOT = Path(hacm.__file__).resolve().parent.parent
DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEMO_BATCH = REPO_ROOT / "reports" / "batches" / "demo.yaml"


@dataclass
class Job:
    name: str
    notebook: Path                      # absolute path of the source notebook
    parameters: dict                    # as written, placeholders unresolved
    depends_on: list[str] = field(default_factory=list)


@dataclass
class Batch:
    name: str
    path: Path
    description: str
    jobs: list[Job]                     # in a valid execution order (dependencies first)
    caveat: str = ""                    # the limits of the numbers, printed on the index page


def load_batch(path: str | Path) -> Batch:
    """Parse and validate a batch file; HacmError names the file and the offending field."""
    path = Path(path)
    if not path.is_file():
        raise HacmError(f"{path}: batch file not found")
    doc = read_yaml(path)

    def fail(fld: str, msg: str) -> HacmError:
        return HacmError(f"{path}: field '{fld}': {msg}")

    if not isinstance(doc, dict):
        raise HacmError(f"{path}: expected a mapping with keys 'name' and 'jobs'")
    unknown = set(doc) - _BATCH_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (expected name, description, caveat, notebooks_dir, jobs)")
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail("name", "missing or not a plain name (letters, digits, _ . -)")
    nb_dir = DEFAULT_NOTEBOOKS_DIR
    if doc.get("notebooks_dir") is not None:
        nb_dir = (path.parent / str(doc["notebooks_dir"])).resolve()
        if not nb_dir.is_dir():
            raise fail("notebooks_dir", f"directory {nb_dir} does not exist")
    raw_jobs = doc.get("jobs")
    if not isinstance(raw_jobs, list) or not raw_jobs:
        raise fail("jobs", "missing or not a non-empty list of jobs")

    jobs: dict[str, Job] = {}
    for i, raw in enumerate(raw_jobs):
        job = _parse_job(raw, f"jobs[{i}]", nb_dir, jobs, fail)
        jobs[job.name] = job
    _check_references(jobs, fail)
    return Batch(name, path.resolve(), str(doc.get("description") or ""), _topological(jobs, fail),
                 str(doc.get("caveat") or ""))


def _parse_job(raw, where: str, nb_dir: Path, earlier: dict[str, Job], fail) -> Job:
    """One entry of `jobs`, checked on its own (its dependencies are checked once all are read)."""
    if not isinstance(raw, dict):
        raise fail(where, "expected a mapping with name, notebook, parameters, depends_on")
    unknown = set(raw) - _JOB_KEYS
    if unknown:
        raise fail(f"{where}.{sorted(unknown)[0]}", "unknown key (expected name, notebook, parameters, depends_on)")
    for key in ("name", "notebook"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise fail(f"{where}.{key}", "missing (a string is required)")
    job_name = raw["name"]
    if not _NAME_RE.match(job_name):
        raise fail(f"{where}.name", f"'{job_name}' is not a plain name (letters, digits, _ . -)")
    if job_name in earlier:
        raise fail(f"{where}.name", f"duplicate job name '{job_name}'")
    nb_file = nb_dir / raw["notebook"]
    if nb_file.suffix != ".ipynb":
        nb_file = nb_file.with_name(nb_file.name + ".ipynb")
    if not nb_file.is_file():
        available = sorted(p.stem for p in nb_dir.glob("*.ipynb"))
        raise fail(f"{where}.notebook", f"unknown notebook '{raw['notebook']}' (in {nb_dir}: {', '.join(available) or 'none'})")
    params = raw.get("parameters") or {}
    _check_parameters(params, nb_file, where, fail)
    deps = raw.get("depends_on") or []
    if isinstance(deps, str):
        deps = [deps]
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise fail(f"{where}.depends_on", "expected a list of job names")
    return Job(job_name, nb_file.resolve(), params, list(deps))


def _check_parameters(params, nb_file: Path, where: str, fail) -> None:
    """A mapping whose every key the notebook's parameters cell assigns, and no `report_dir`."""
    if not isinstance(params, dict):
        raise fail(f"{where}.parameters", "expected a mapping of parameter names to values")
    if "report_dir" in params:
        raise fail(f"{where}.parameters.report_dir", "is set by the batch runner (the job's output directory)")
    known = notebook_parameters(nb_file)
    if known is None:
        raise fail(f"{where}.notebook", f"{nb_file} has no cell tagged 'parameters'")
    for key in params:
        if key not in known:
            raise fail(f"{where}.parameters.{key}",
                       f"notebook {nb_file.name} has no such parameter (it has: {', '.join(known)})")


def _check_references(jobs: dict[str, Job], fail) -> None:
    """Every dependency is a job of the batch, and ${jobs.NAME} only names a dependency."""
    for i, job in enumerate(jobs.values()):
        for dep in job.depends_on:
            if dep not in jobs:
                raise fail(f"jobs[{i}].depends_on", f"unknown job '{dep}' (jobs: {', '.join(jobs)})")
        for ref in _job_references(job.parameters):
            if ref not in job.depends_on:
                raise fail(f"jobs[{i}].parameters", f"refers to ${{jobs.{ref}}} but '{ref}' is not in depends_on")


def notebook_parameters(notebook: Path) -> list[str] | None:
    """Names assigned in the notebook's cell tagged `parameters` (None when it has no such cell)."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (ValueError, KeyError) as exc:
        raise HacmError(f"{notebook}: not a readable notebook ({exc})") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            try:
                tree = ast.parse(source)
            except SyntaxError as exc:
                raise HacmError(f"{notebook}: the parameters cell is not valid Python ({exc.msg}, line {exc.lineno})") from None
            return [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
    return None


def _job_references(value) -> set[str]:
    """The NAMEs of every ${jobs.NAME} in a parameter tree."""
    if isinstance(value, str):
        return {m.group(2) for m in _PLACEHOLDER_RE.finditer(value) if m.group(1) == "jobs" and m.group(2)}
    if isinstance(value, dict):
        return set().union(*(_job_references(v) for v in value.values()), set())
    if isinstance(value, list):
        return set().union(*(_job_references(v) for v in value), set())
    return set()


def _topological(jobs: dict[str, Job], fail) -> list[Job]:
    """Kahn's algorithm, keeping file order among ready jobs so the report reads like the batch file."""
    remaining = {name: set(job.depends_on) for name, job in jobs.items()}
    order: list[Job] = []
    while remaining:
        ready = [name for name, deps in remaining.items() if not deps]
        if not ready:
            cycle = " -> ".join(_find_cycle(remaining))
            raise fail("jobs", f"dependency cycle: {cycle}")
        name = ready[0]
        order.append(jobs[name])
        del remaining[name]
        for deps in remaining.values():
            deps.discard(name)
    return order


def _find_cycle(graph: dict[str, set[str]]) -> list[str]:
    # every node left has an unfinished dependency, so walking dependencies must revisit a node
    node, seen = next(iter(graph)), []
    while node not in seen:
        seen.append(node)
        node = sorted(graph[node])[0]
    return seen[seen.index(node):] + [node]


def resolve_parameters(value, *, report_dir: Path, batch_dir: Path, job_dirs: dict[str, Path]):
    """Substitute ${report_dir}, ${batch_dir} and ${jobs.NAME} in every string of a parameter tree."""
    def sub(match: re.Match) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "report_dir" and arg is None:
            return str(report_dir)
        if kind == "batch_dir" and arg is None:
            return str(batch_dir)
        if kind == "jobs" and arg in job_dirs:
            return str(job_dirs[arg])
        raise HacmError(f"unknown placeholder '{match.group(0)}' (expected ${{report_dir}}, ${{batch_dir}}, ${{jobs.NAME}})")

    if isinstance(value, str):
        return _PLACEHOLDER_RE.sub(sub, value)
    if isinstance(value, dict):
        return {k: resolve_parameters(v, report_dir=report_dir, batch_dir=batch_dir, job_dirs=job_dirs) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_parameters(v, report_dir=report_dir, batch_dir=batch_dir, job_dirs=job_dirs) for v in value]
    return value


def default_out_dir(batch: Batch) -> Path:
    """reports/<name>/ next to the `batches/` folder holding the batch file."""
    return batch.path.parent.parent / batch.name
