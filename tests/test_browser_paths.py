"""The first hour in JupyterLab, in Debian chromium: JupyterLab started at the repository root (as
the README says), the explorer and compare notebooks opened from notebooks/ with the README's
relative paths typed in, run all: both work, though their kernels run in notebooks/, and their
outputs land under the root's reports/, not notebooks/reports/.

The "repository" is a stand-in checkout in a temporary folder (hacm's pyproject.toml name, the two
notebooks, a tiny store at reports/demo/data/store and two pre-training runs below
reports/demo/methods/runs/), so the test leaves the real checkout alone.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import nbformat
import pytest
from test_browser import CHROMIUM, REPO, _console_errors, _real, browser, jupyterlab, tiny_store  # noqa: F401
from test_compare import _make_run

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (`make chromium` / .ci/install-chromium installs it)"),
]

STORE = "reports/demo/data/store"                      # the README's example store
RUNS = "reports/demo/methods/runs/*/seed*/pretrain"    # compare.ipynb's example pattern


def _with_parameters(name: str, root: Path, **values: str) -> None:
    """notebooks/<name>.ipynb copied into root/notebooks with parameters edited as a user types them."""
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = cell.source.splitlines()
    for key, value in values.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
        lines[at] = f"{key} = {value}"
    cell.source = "\n".join(lines)
    nbformat.write(nb, root / "notebooks" / f"{name}.ipynb")


@pytest.fixture
def checkout(tmp_path, tiny_store):
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "hacm"\nversion = "0"\n')
    shutil.copytree(tiny_store, root / STORE)
    runs = root / "reports" / "demo" / "methods" / "runs"
    base = {"data.store": str(root / STORE)}
    _make_run(runs / "ha-cm" / "seed0" / "pretrain", base,
              [{"loss": 1.0, "loss_rec": 1.2, "loss_cc": 0.8}, {"loss": 0.8, "loss_rec": 1.0, "loss_cc": 0.6}],
              {"protocol": "pretrain", "loss": 0.8, "epochs": 2})
    _make_run(runs / "mamp" / "seed0" / "pretrain", {**base, "model.cc_weight": 0.0},
              [{"loss": 1.1, "loss_rec": 1.1, "loss_cc": 0.0}, {"loss": 1.0, "loss_rec": 1.0, "loss_cc": 0.0}],
              {"protocol": "pretrain", "loss": 1.0, "epochs": 2})
    _with_parameters("explorer", root, store=repr(STORE))
    _with_parameters("compare", root, runs=repr([RUNS]))
    return root


def _run_all(page, base: str, token: str, path: str) -> None:
    page.goto(f"{base}/lab/tree/{path}?reset&token={token}")
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)
    page.locator(".jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _errors_shown(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def test_notebooks_read_the_readmes_relative_paths_from_the_root(checkout, tmp_path, monkeypatch):
    monkeypatch.delenv("HACM_ROOT", raising=False)
    monkeypatch.delenv("HACM_DATA", raising=False)
    with jupyterlab(checkout, tmp_path / "jupyter") as (base, token), browser(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        errors = _console_errors(page)

        _run_all(page, base, token, "notebooks/explorer.ipynb")
        page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot .gtitle')]"
                               ".some(t => t.textContent.includes('Poincaré disk'))", timeout=180_000)
        page.get_by_text("| Idle").first.wait_for(timeout=180_000)
        assert not [e for e in _errors_shown(page) if "HacmError" in e or "Traceback" in e], _errors_shown(page)
        page.screenshot(path=str(tmp_path / "explorer.png"))

        _run_all(page, base, token, "notebooks/compare.ipynb")
        # the curves (a matplotlib PNG) and the runs' table appear; the loss of runs that weigh L_cc
        # differently is not drawn on one axis
        page.locator(".jp-OutputArea-output img").first.wait_for(timeout=180_000)
        page.get_by_text("| Idle").first.wait_for(timeout=180_000)
        text = page.locator(".jp-NotebookPanel:visible .jp-OutputArea").all_inner_texts()
        assert any("2 runs: ha-cm/seed0/pretrain, mamp/seed0/pretrain" in t for t in text), text
        assert not [e for e in _errors_shown(page) if "Error" in e], _errors_shown(page)
        page.screenshot(path=str(tmp_path / "compare.png"), full_page=True)
        assert not _real(errors), f"browser console errors: {_real(errors)}"

    # outputs under the root's reports/ (the notebooks' report_dir defaults), none below notebooks/
    compare_out = checkout / "reports" / "scratch" / "compare"
    assert {"curves_pretrain.png", "curves_pretrain.pdf", "curves_pretrain.svg", "compare.tex", "compare.csv",
            "summary.json"} <= {p.name for p in compare_out.iterdir()}
    assert (checkout / "reports" / "scratch" / "explorer").is_dir()
    assert not (checkout / "notebooks" / "reports").exists()
