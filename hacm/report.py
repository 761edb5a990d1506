"""Notebook batches: run parameterised notebooks with papermill and collect them into a report.

A batch file (YAML) lists jobs; each job runs one notebook with one parameter set:

    name: demo                       # the report is written to <out>/ (default: reports/<name>/)
    description: one line shown on the index page
    notebooks_dir: ../../notebooks   # optional, relative to the batch file (default: the repo's notebooks/)
    jobs:
      - name: pretrain_hacm
        notebook: pretrain           # notebooks_dir/pretrain.ipynb
        depends_on: [data]
        parameters:
          store: ${jobs.data}/store  # ${jobs.NAME}: that job's output dir (NAME must be in depends_on)
          run_dir: ${report_dir}/run # ${report_dir}: this job's output dir; ${batch_dir}: the report root

Every notebook also receives `report_dir` (its job's output directory, absolute): it saves figures and
`summary.json` (key numbers for the index table) there. Jobs run in dependency order; a failing job is
recorded with its error and failing cell, its dependents are skipped and the rest still run. A job
whose inputs (notebook file, resolved parameters, upstream outputs, hacm source) are unchanged since
its last successful run is not run again unless `force=True`.

Layout of a report:
    <out>/index.html                     links + summary table of every job
    <out>/<job>/<notebook>.ipynb          executed notebook
    <out>/<job>/<notebook>.notebook.html  exported, code hidden;  <notebook>.code.html with code
    <out>/<job>/*.png, *.html, summary.json   what the notebook saved
    <out>/<job>/.job.json                 status, hashes and timing (drives skip-unchanged)
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import re
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

import hacm
from hacm.config import read_yaml
from hacm.errors import HacmError

KERNEL_NAME = "hacm"
JOB_RECORD = ".job.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_PLACEHOLDER_RE = re.compile(r"\$\{([a-z_]+)(?:\.([A-Za-z0-9][A-Za-z0-9_.-]*))?\}")
_PACKAGE_DIR = Path(hacm.__file__).resolve().parent
REPO_ROOT = _PACKAGE_DIR.parent
DEFAULT_NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
DEMO_BATCH = REPO_ROOT / "reports" / "batches" / "demo.yaml"


# ----------------------------------------------------------------------------- batch file


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
    unknown = set(doc) - {"name", "description", "notebooks_dir", "jobs"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown key (expected name, description, notebooks_dir, jobs)")
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
        where = f"jobs[{i}]"
        if not isinstance(raw, dict):
            raise fail(where, "expected a mapping with name, notebook, parameters, depends_on")
        unknown = set(raw) - {"name", "notebook", "parameters", "depends_on"}
        if unknown:
            raise fail(f"{where}.{sorted(unknown)[0]}", "unknown key (expected name, notebook, parameters, depends_on)")
        for key in ("name", "notebook"):
            if not isinstance(raw.get(key), str) or not raw[key]:
                raise fail(f"{where}.{key}", "missing (a string is required)")
        job_name = raw["name"]
        if not _NAME_RE.match(job_name):
            raise fail(f"{where}.name", f"'{job_name}' is not a plain name (letters, digits, _ . -)")
        if job_name in jobs:
            raise fail(f"{where}.name", f"duplicate job name '{job_name}'")
        nb_file = nb_dir / raw["notebook"]
        if nb_file.suffix != ".ipynb":
            nb_file = nb_file.with_name(nb_file.name + ".ipynb")
        if not nb_file.is_file():
            available = sorted(p.stem for p in nb_dir.glob("*.ipynb"))
            raise fail(f"{where}.notebook", f"unknown notebook '{raw['notebook']}' (in {nb_dir}: {', '.join(available) or 'none'})")
        params = raw.get("parameters") or {}
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
        deps = raw.get("depends_on") or []
        if isinstance(deps, str):
            deps = [deps]
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
            raise fail(f"{where}.depends_on", "expected a list of job names")
        jobs[job_name] = Job(job_name, nb_file.resolve(), params, list(deps))

    for i, job in enumerate(jobs.values()):
        for dep in job.depends_on:
            if dep not in jobs:
                raise fail(f"jobs[{i}].depends_on", f"unknown job '{dep}' (jobs: {', '.join(jobs)})")
        for ref in _job_references(job.parameters):
            if ref not in job.depends_on:
                raise fail(f"jobs[{i}].parameters", f"refers to ${{jobs.{ref}}} but '{ref}' is not in depends_on")
    return Batch(name, path.resolve(), str(doc.get("description") or ""), _topological(jobs, fail))


def notebook_parameters(notebook: Path) -> list[str] | None:
    """Names assigned in the notebook's cell tagged `parameters` (None when it has no such cell)."""
    import ast

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


def _exports(notebook_name: str) -> tuple[str, str, str]:
    """Executed notebook, its page without code, its page with code. The dotted names cannot clash
    with a figure's (save_figure names have no suffix)."""
    stem = Path(notebook_name).stem
    return notebook_name, f"{stem}.notebook.html", f"{stem}.code.html"


def output_hash(job_dir: Path, notebook_name: str) -> str:
    """Content hash of what a job produced; its executed notebook, exports and record are left out
    because they carry timings and paths, not results."""
    skip = {JOB_RECORD, *_exports(notebook_name)}
    h = hashlib.sha256()
    for p in sorted(job_dir.rglob("*")):
        rel = p.relative_to(job_dir)
        if not p.is_file() or rel.as_posix() in skip:
            continue
        h.update(f"{rel.as_posix()}\0{_sha256_file(p)}\n".encode())
    return h.hexdigest()


def input_hash(notebook: Path, parameters: dict, upstream: dict[str, str], src: str) -> str:
    doc = {"notebook": _sha256_file(notebook), "parameters": parameters, "upstream": upstream, "source": src}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------- running


@dataclass
class JobResult:
    name: str
    notebook: str                        # source notebook file name
    status: str                          # "ok" | "unchanged" (skipped, inputs unchanged) | "failed" | "skipped"
    seconds: float = 0.0
    summary: dict = field(default_factory=dict)
    error: str | None = None             # "ename: evalue" for a failed job, the reason for a skipped one
    failing_cell: int | None = None      # execution count ("In [n]") of the failing cell
    failing_source: str | None = None
    input_hash: str | None = None
    output_hash: str | None = None

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

    @property
    def ok(self) -> bool:
        return all(j.succeeded for j in self.jobs)

    def result(self, name: str) -> JobResult:
        return next(j for j in self.jobs if j.name == name)


def default_out_dir(batch: Batch) -> Path:
    """reports/<name>/ next to the `batches/` folder holding the batch file."""
    return batch.path.parent.parent / batch.name


def check_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
    except NoSuchKernel:
        raise HacmError(
            f"Jupyter kernel '{KERNEL_NAME}' is not installed for this Python; install it with "
            f"`python -m ipykernel install --prefix .venv --name {KERNEL_NAME}` (make setup does this)"
        ) from None


def run_batch(batch_yaml: str | Path, out_dir: str | Path | None = None, force: bool = False,
              progress: bool = True) -> BatchResult:
    """Run every job of a batch file in dependency order and write the report (see module docstring)."""
    batch = load_batch(batch_yaml)
    out = Path(out_dir).resolve() if out_dir is not None else default_out_dir(batch)
    out.mkdir(parents=True, exist_ok=True)
    check_kernel()
    src = source_hash()
    job_dirs = {job.name: out / job.name for job in batch.jobs}
    results: dict[str, JobResult] = {}
    start = time.perf_counter()
    bar = tqdm(batch.jobs, desc=f"batch {batch.name}", unit="job", disable=not progress)
    for job in bar:
        bar.set_postfix_str(job.name)
        failed_deps = [d for d in job.depends_on if not results[d].succeeded]
        if failed_deps:
            results[job.name] = JobResult(job.name, job.notebook.name, "skipped",
                                          error=f"upstream job {', '.join(failed_deps)} did not succeed")
            _write_record(job_dirs[job.name], results[job.name])
            continue
        params = resolve_parameters(job.parameters, report_dir=job_dirs[job.name], batch_dir=out, job_dirs=job_dirs)
        upstream = {d: results[d].output_hash for d in job.depends_on}
        key = input_hash(job.notebook, params, upstream, src)
        cached = None if force else _cached_result(job_dirs[job.name], key)
        results[job.name] = cached or _run_job(job, job_dirs[job.name], params, key, progress)
    index = write_index(batch, out, [results[j.name] for j in batch.jobs], time.perf_counter() - start)
    return BatchResult(batch, out, index, [results[j.name] for j in batch.jobs], time.perf_counter() - start)


def _cached_result(job_dir: Path, key: str) -> JobResult | None:
    record = job_dir / JOB_RECORD
    if not record.is_file():
        return None
    try:
        result = JobResult(**json.loads(record.read_text()))
    except (ValueError, TypeError):
        return None   # an unreadable record only means the job runs again
    # outputs edited or deleted since the record was written -> run again
    if result.status != "ok" or result.input_hash != key or output_hash(job_dir, result.notebook) != result.output_hash:
        return None
    result.status = "unchanged"
    return result


def _run_job(job: Job, job_dir: Path, params: dict, key: str, progress: bool) -> JobResult:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    # a fresh directory: stale figures of an earlier run must not appear in this report
    if job_dir.exists():
        for p in sorted(job_dir.rglob("*"), key=lambda p: len(p.parts), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
    job_dir.mkdir(parents=True, exist_ok=True)
    executed = job_dir / job.notebook.name
    result = JobResult(job.name, job.notebook.name, "ok", input_hash=key)
    t0 = time.perf_counter()
    try:
        # cwd = where the command was started, so relative paths in parameters mean what they mean
        # on the command line; notebooks write only into report_dir
        pm.execute_notebook(str(job.notebook), str(executed), parameters={**params, "report_dir": str(job_dir)},
                            kernel_name=KERNEL_NAME, cwd=os.getcwd(),
                            progress_bar={"desc": job.name, "leave": False} if progress else False)
    except PapermillExecutionError as exc:
        result.status = "failed"
        result.error = f"{exc.ename}: {exc.evalue}"
        result.failing_cell = exc.exec_count
        result.failing_source = exc.source
    except Exception as exc:   # kernel died, timeout, ...: recorded like a failing cell, the batch goes on
        result.status = "failed"
        result.error = f"{type(exc).__name__}: {exc}"
        result.failing_source = traceback.format_exc(limit=3)
    result.seconds = time.perf_counter() - t0
    summary_file = job_dir / "summary.json"
    if summary_file.is_file():
        try:
            result.summary = json.loads(summary_file.read_text())
        except ValueError as exc:
            result.status, result.error = "failed", f"summary.json is not valid JSON: {exc}"
    if executed.is_file():
        _export_html(executed)
    result.output_hash = output_hash(job_dir, job.notebook.name)
    _write_record(job_dir, result)
    return result


PLOTLY_MIME = "application/vnd.plotly.v1+json"
PLOTLY_JS = "plotly.min.js"
# JupyterLab's export template without the scripts it fetches from a CDN (require.js, MathJax, the
# widget manager): reports are read offline; the notebooks use no TeX, and the only widgets of a
# batch run are tqdm bars, whose text fallback the page shows.
_OFFLINE_TEMPLATE = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
"""


def _export_html(notebook: Path) -> None:
    """The page without code (what a reader of the report wants) and the one with it."""
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    if _embed_plotly(nb):
        _ensure_plotly_js(notebook.parent)
    offline = dict(extra_loaders=[jinja2.DictLoader({"hacm_offline.html.j2": _OFFLINE_TEMPLATE})],
                   template_file="hacm_offline.html.j2")
    hidden = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, **offline)
    _, hidden_name, code_name = _exports(notebook.name)
    notebook.with_name(hidden_name).write_text(hidden.from_notebook_node(nb)[0])
    notebook.with_name(code_name).write_text(HTMLExporter(**offline).from_notebook_node(nb)[0])


def _embed_plotly(nb) -> bool:
    """Give every plotly output (mimetype JSON only, which HTML cannot show) an HTML twin that draws
    it with the plotly.min.js next to the page: interactive, offline, and one copy of plotly.js per job
    instead of one per notebook export. Returns whether any was found."""
    n = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME not in data or "text/html" in data:
                continue
            spec = data[PLOTLY_MIME]
            div = f"plotly-figure-{n}"
            load = "" if n else f'<script src="{PLOTLY_JS}"></script>'
            payload = json.dumps({"data": spec.get("data", []), "layout": spec.get("layout", {})}).replace("</", "<\\/")
            data["text/html"] = (f'{load}<div id="{div}"></div><script>(function(){{var f={payload};'
                                 f'Plotly.newPlot("{div}", f.data, f.layout, {{responsive: true}});}})();</script>')
            n += 1
    return n > 0


def _ensure_plotly_js(job_dir: Path) -> None:
    """save_figure writes plotly.min.js beside interactive figures; a job that only displayed figures
    gets the copy shipped in the plotly package (found without importing plotly here)."""
    if (job_dir / PLOTLY_JS).is_file():
        return
    import importlib.util
    import shutil

    spec = importlib.util.find_spec("plotly")
    bundled = Path(next(iter(spec.submodule_search_locations))) / "package_data" / PLOTLY_JS
    shutil.copyfile(bundled, job_dir / PLOTLY_JS)


def _write_record(job_dir: Path, result: JobResult) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    tmp = job_dir / (JOB_RECORD + ".tmp")
    tmp.write_text(json.dumps(asdict(result), indent=1, default=str))
    tmp.replace(job_dir / JOB_RECORD)


# ----------------------------------------------------------------------------- index page


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
.ok { color: #186a3b; } .unchanged { color: #1f618d; } .failed { color: #b03a2e; font-weight: bold; } .skipped { color: #7d6608; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; } .figs { display: flex; flex-wrap: wrap; gap: 1em; }
.figs figure { margin: 0; } .figs img { max-width: 360px; border: 1px solid #ddd; } figcaption { font-size: .85em; }
"""


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return html.escape(json.dumps(value)[:80])
    return html.escape(str(value))


def write_index(batch: Batch, out: Path, results: list[JobResult], seconds: float) -> Path:
    """index.html: status table, summary numbers of every job, its exports and its figures."""
    e = html.escape
    n_failed = sum(r.status == "failed" for r in results)
    rows = []
    for r in results:
        executed, hidden, with_code = _exports(r.notebook)
        links = ""
        if (out / r.name / hidden).is_file():
            links = (f'<a href="{r.name}/{hidden}">report</a> · <a href="{r.name}/{with_code}">with code</a> · '
                     f'<a href="{r.name}/{executed}">notebook</a>')
        numbers = "<br>".join(f"{e(str(k))}: {_fmt(v)}" for k, v in r.summary.items())
        detail = ""
        if r.status == "failed":
            cell = f"In [{r.failing_cell}]" if r.failing_cell is not None else "outside a cell"
            detail = f"<div>{e(r.error or '')}<br>failing cell: {cell}</div>"
            if r.failing_source:
                detail += f"<pre>{e(r.failing_source)}</pre>"
        elif r.status == "skipped":
            detail = f"<div>{e(r.error or '')}</div>"
        rows.append(f'<tr id="job-{e(r.name)}"><td>{e(r.name)}</td><td>{e(r.notebook)}</td>'
                    f'<td class="{r.status}">{r.status}{detail}</td><td>{r.seconds:.1f} s</td>'
                    f"<td>{numbers}</td><td>{links}</td></tr>")

    sections = []
    for r in results:
        figs = []
        for png in sorted((out / r.name).glob("*.png")) if r.succeeded else []:
            interactive = png.with_suffix(".html")
            target = f"{r.name}/{interactive.name}" if interactive.is_file() else f"{r.name}/{png.name}"
            figs.append(f'<figure><a href="{e(target)}"><img src="{e(r.name)}/{e(png.name)}" alt="{e(png.stem)}"></a>'
                        f"<figcaption>{e(png.stem)}</figcaption></figure>")
        # interactive figures that have no PNG (kaleido unavailable) are still linked
        pngs = {p.stem for p in (out / r.name).glob("*.png")}
        for page in sorted((out / r.name).glob("*.html")) if r.succeeded else []:
            if page.stem not in pngs and page.name not in _exports(r.notebook):
                figs.append(f'<figure><a href="{e(r.name)}/{e(page.name)}">{e(page.stem)} (interactive)</a></figure>')
        if figs:
            sections.append(f'<h2 id="figures-{e(r.name)}">{e(r.name)}</h2><div class="figs">{"".join(figs)}</div>')

    verdict = f"{n_failed} job(s) failed" if n_failed else "all jobs succeeded"
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>hacm report: {e(batch.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>hacm report: {e(batch.name)}</h1>
<p>{e(batch.description)}</p>
<p>Batch file <code>{e(str(batch.path))}</code> · hacm {e(hacm.__version__)} · {time.strftime('%Y-%m-%d %H:%M:%S')}
 · {seconds:.0f} s · <span class="{'failed' if n_failed else 'ok'}">{verdict}</span></p>
<table><tr><th>job</th><th>notebook</th><th>status</th><th>time</th><th>key numbers</th><th>exports</th></tr>
{''.join(rows)}
</table>
{''.join(sections)}
</body></html>
"""
    index = out / "index.html"
    index.write_text(page)
    return index
