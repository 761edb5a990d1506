"""Batch runner: dependency order, failure recording, skip-unchanged, --force, bad batch files.

The notebooks here are tiny stand-ins written into tmp (no torch), so the file checks the runner
itself; tests/test_notebooks.py executes the real notebooks.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from hacm.cli import main
from hacm.config import load_config
from hacm.errors import HacmError
from hacm.report import load_batch, run_batch

pytestmark = pytest.mark.notebook

SHIPPED_BATCHES = sorted((Path(__file__).resolve().parents[1] / "reports" / "batches").glob("*.yaml"))


def _notebook(path: Path, params: str, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hacm", "display_name": "Python (hacm)", "language": "python"}
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@pytest.fixture
def workspace(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    # writes value*2 into produce.txt and summary.json
    _notebook(nbs / "produce.ipynb", "value = 1\nreport_dir = '.'",
              "import json, pathlib\nout = pathlib.Path(report_dir)",
              "(out / 'produce.txt').write_text(str(value * 2))\n"
              "json.dump({'doubled': value * 2}, open(out / 'summary.json', 'w'))")
    # reads an upstream output, adds one
    _notebook(nbs / "consume.ipynb", "upstream = ''\nreport_dir = '.'",
              "import json, pathlib\nn = int(pathlib.Path(upstream, 'produce.txt').read_text())",
              "json.dump({'plus_one': n + 1}, open(pathlib.Path(report_dir) / 'summary.json', 'w'))")
    _notebook(nbs / "explode.ipynb", "report_dir = '.'", "x = 1", "raise ValueError('deliberate failure')", "y = 2")
    return tmp_path


def _batch(ws: Path, jobs: list[dict], name: str = "tiny") -> Path:
    path = ws / "batches" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump({"name": name, "notebooks_dir": "../notebooks", "jobs": jobs}))
    return path


GOOD_JOBS = [
    # listed out of order on purpose: the runner must sort by depends_on
    {"name": "use", "notebook": "consume", "depends_on": ["make"], "parameters": {"upstream": "${jobs.make}"}},
    {"name": "make", "notebook": "produce", "parameters": {"value": 20}},
]


def test_failing_job_is_recorded_dependents_skipped_rest_runs(workspace, capsys):
    jobs = GOOD_JOBS + [
        {"name": "boom", "notebook": "explode"},
        {"name": "after_boom", "notebook": "consume", "depends_on": ["boom"], "parameters": {"upstream": "${jobs.boom}"}},
    ]
    batch = _batch(workspace, jobs)
    out = workspace / "report"
    result = run_batch(batch, out_dir=out, progress=False)
    assert [j.name for j in result.jobs] == ["make", "use", "boom", "after_boom"]
    status = {j.name: j.status for j in result.jobs}
    assert status == {"make": "ok", "use": "ok", "boom": "failed", "after_boom": "skipped"}
    assert not result.ok
    assert result.result("use").summary == {"plus_one": 41}
    boom = result.result("boom")
    assert boom.error == "ValueError: deliberate failure"
    # In [1] parameters, In [2] papermill's injected parameters, In [3] x = 1, In [4] the raise
    assert boom.failing_cell == 4
    assert "raise ValueError" in boom.failing_source

    index = (out / "index.html").read_text()
    row = re.search(r'<tr id="job-boom">.*?</tr>', index, re.S).group(0)
    assert "failed" in row and "deliberate failure" in row and "In [4]" in row and "raise ValueError" in row
    assert "upstream job boom did not succeed" in index
    assert "41" in index                      # summary table
    # the executed notebook and both exports exist for the failing job too (papermill saves it)
    for name in ("explode.ipynb", "explode.notebook.html", "explode.code.html"):
        assert (out / "boom" / name).is_file()
    assert "raise ValueError" not in (out / "use" / "consume.notebook.html").read_text()   # code hidden
    assert "pathlib" in (out / "use" / "consume.code.html").read_text()

    # the CLI reports the same and exits non-zero
    assert main(["report", str(batch), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "boom" in captured.err and "deliberate failure" in captured.out


def test_unchanged_jobs_are_skipped_and_force_reruns(workspace, monkeypatch):
    # pin the package hash: other edits to hacm/ while the test runs must not invalidate the cache
    monkeypatch.setattr("hacm.report.runner.source_hash", lambda: "pinned")
    batch = _batch(workspace, GOOD_JOBS)
    out = workspace / "report"
    first = run_batch(batch, out_dir=out, progress=False)
    assert [j.status for j in first.jobs] == ["ok", "ok"]

    again = run_batch(batch, out_dir=out, progress=False)
    assert [j.status for j in again.jobs] == ["unchanged", "unchanged"]
    assert again.result("use").summary == {"plus_one": 41}

    # a parameter change reruns that job and, through its output hash, its dependent
    doc = yaml.safe_load(batch.read_text())
    doc["jobs"][1]["parameters"]["value"] = 5
    batch.write_text(yaml.safe_dump(doc))
    changed = run_batch(batch, out_dir=out, progress=False)
    assert [j.status for j in changed.jobs] == ["ok", "ok"]
    assert changed.result("use").summary == {"plus_one": 11}

    # editing the downstream notebook reruns only it
    nb = workspace / "notebooks" / "consume.ipynb"
    node = nbformat.read(nb, as_version=4)
    node.cells[2].source = node.cells[2].source.replace("n + 1", "n + 2")
    nbformat.write(node, nb)
    edited = run_batch(batch, out_dir=out, progress=False)
    assert [j.status for j in edited.jobs] == ["unchanged", "ok"]
    assert edited.result("use").summary == {"plus_one": 12}

    # deleting an output invalidates the record
    (out / "make" / "produce.txt").unlink()
    assert run_batch(batch, out_dir=out, progress=False).result("make").status == "ok"

    # a change to hacm's source reruns everything
    monkeypatch.setattr("hacm.report.runner.source_hash", lambda: "changed")
    assert [j.status for j in run_batch(batch, out_dir=out, progress=False).jobs] == ["ok", "ok"]

    forced = run_batch(batch, out_dir=out, force=True, progress=False)
    assert [j.status for j in forced.jobs] == ["ok", "ok"]
    assert json.loads((out / "make" / ".job.json").read_text())["status"] == "ok"


@pytest.mark.parametrize("doc, field, words", [
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [{"name": "a", "notebook": "nope"}]},
     "jobs[0].notebook", "unknown notebook 'nope'"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [{"name": "a"}]}, "jobs[0].notebook", "missing"),
    ({"notebooks_dir": "../notebooks", "jobs": [{"name": "a", "notebook": "produce"}]}, "name", "missing"),
    ({"name": "x", "notebooks_dir": "../notebooks"}, "jobs", "missing"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce", "depends_on": ["b"]},
        {"name": "b", "notebook": "produce", "depends_on": ["a"]}]}, "jobs", "dependency cycle: a -> b -> a"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce", "depends_on": ["zzz"]}]}, "jobs[0].depends_on", "unknown job 'zzz'"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce"},
        {"name": "b", "notebook": "consume", "parameters": {"upstream": "${jobs.a}"}}]},
     "jobs[1].parameters", "'a' is not in depends_on"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce"}, {"name": "a", "notebook": "produce"}]}, "jobs[1].name", "duplicate"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce", "params": {}}]}, "jobs[0].params", "unknown key"),
    ({"name": "x", "notebooks_dir": "../notebooks", "jobs": [
        {"name": "a", "notebook": "produce", "parameters": {"valeu": 3}}]},
     "jobs[0].parameters.valeu", "notebook produce.ipynb has no such parameter (it has: value, report_dir)"),
])
def test_bad_batch_file_names_file_and_field(workspace, doc, field, words):
    path = workspace / "batches" / "bad.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(HacmError) as info:
        load_batch(path)
    message = str(info.value)
    assert str(path) in message and f"'{field}'" in message and words in message


def test_bad_batch_file_on_the_command_line_exits_2(workspace, capsys):
    path = workspace / "broken.yaml"
    path.write_text("name: x\njobs: [\n")
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "not valid YAML" in err


def _configs(value) -> list:
    """A config name, or a mapping protocol -> config name (hacm.study's eval_config)."""
    return list(value.values()) if isinstance(value, dict) else [value]


@pytest.mark.parametrize("path", SHIPPED_BATCHES, ids=lambda p: p.name)
def test_shipped_batches_load_and_their_configs_resolve(path):
    for job in load_batch(path).jobs:
        p = job.parameters
        names = [c for k in ("config", "pretrain_config", "eval_config") if k in p for c in _configs(p[k])]
        for name in names + list(p.get("configs", {}).values()):
            load_config(name, p.get("overrides", {}))
        for sets in list(p.get("variants", {}).values()) + list(p.get("methods", {}).values()):
            if not sets or "pretrain_config" not in p:        # a random encoder, or the notebook's default
                continue
            own = {k: v for k, v in sets.items() if k not in ("config", "eval_config")}
            load_config(sets.get("config", p["pretrain_config"]), {**p.get("overrides", {}), **own})
            for name in _configs(sets["eval_config"]) if "eval_config" in sets else []:
                load_config(name, p.get("eval_overrides", {}))


def test_paper_batch_mamp_baseline_is_mamp():
    jobs = {j.name: j.parameters for j in load_batch(SHIPPED_BATCHES[0].with_name("ntu60_paper.yaml")).jobs}
    methods = jobs["methods"]
    mamp = methods["methods"]["MAMP"]
    pre = load_config(mamp["config"], methods["overrides"])
    evals = [load_config(c, methods["eval_overrides"]) for c in mamp["eval_config"].values()]
    for cfg in [pre, *evals]:
        m = cfg.model
        assert (m.num_frames, m.t_patch, m.prune, m.geometry) == (120, 4, False, "euclidean"), cfg.protocol
    assert (pre.masking.strategy, pre.masking.keep_high, pre.masking.cross_grouping, pre.masking.normalise,
            pre.model.cc_weight) == ("motion", False, False, "release", 0.0)
    assert methods["seeds"] == [0, 1, 2] and set(methods["protocols"]) >= {"linprobe", "knn"}
    # every ablation row with MAMP's criterion masks the high-motion tokens, as MAMP does
    motion = [s for s in jobs["ablations"]["variants"].values() if s.get("masking.strategy") == "motion"]
    assert motion and all(s["masking.keep_high"] is False for s in motion)
    assert len(jobs["ablations"]["seeds"]) >= 3
