"""A report's index page in Debian chromium through Playwright (never a downloaded browser): it opens
with the headline comparison (a row per method, accuracies in %, a significance column), then the
caveat, and every figure loads with its caption; a copied report still reads right.

The report is built by the real runner from one stand-in notebook that computes the headline with
hacm's own statistics on drawn per-clip correctness (no training: the page is under test, not the
methods), so the whole file runs in well under a minute.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from test_browser import CHROMIUM, _console_errors, _real, browser
from test_report import _notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.notebook,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (`make chromium` / .ci/install-chromium installs it)"),
]

METHODS = {"HA-CM": 0.80, "MAMP-style": 0.79, "MAE-style": 0.30, "random encoder": 0.40}   # MAE-style: below the floor
CAVEAT = "Synthetic data, a small model and a CPU budget: what the workbench measures, not HA-CM on NTU."

STAND_IN = [
    "report_dir = '.'",
    "import numpy as np\n"
    "from pathlib import Path\n"
    "from hacm import notebook\n"
    "from hacm.study import StudyResult, StudyRun\n"
    "from hacm.viz.evaluation import method_comparison_figure\n"
    "from hacm.viz.export import save_figure\n"
    "rng = np.random.default_rng(0)\n"
    f"rates = {METHODS!r}\n"
    "labels = np.arange(300) % 60   # 60 classes, 5 test clips each: chance 1.7 %\n"
    "runs = [StudyRun(m, s, {}, {}, {'linprobe': rng.random(300) < p, 'knn20': rng.random(300) < p - 0.02},\n"
    "                 {'linprobe_best_on_test': p + 0.01}, labels) for m, p in rates.items() for s in range(3)]\n"
    "configs = {m: {'masking.strategy': m.split('-')[0].lower(), 'model.cc_weight': 0.5, 'data.benchmark': 'ntu60-xsub'}\n"
    "           for m in rates}\n"
    "configs['random encoder'] = None\n"
    "result = StudyResult(runs, list(rates), [0, 1, 2], 300, configs)",
    "fig = method_comparison_figure(result.per_variant('linprobe'), metric='linear probe, last epoch (%)')\n"
    "save_figure(fig, report_dir, 'methods_linprobe', caption='Linear probe: mean over 3 seeds, 95 % CI, seeds')\n"
    "fig",
    "import hacm, sys\n"
    "print(hacm.__file__, sys.prefix)   # paths of the machine, as a traceback or warning shows them\n"
    "(Path(report_dir) / 'runs').mkdir()\n"
    "notebook.write_summary(report_dir, {'headline': result.headline('HA-CM'), 'run_dir': Path(report_dir) / 'runs',\n"
    "                                    'linprobe_test_acc': 0.8125, 'HA-CM: kNN-20 (%)': 78.4,\n"
    "                                    'MAE-style vs HA-CM: kNN-20': 'worse'})",
]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from hacm.report import run_batch

    root = tmp_path_factory.mktemp("report")
    (root / "nbs").mkdir()
    _notebook(root / "nbs" / "methods.ipynb", *STAND_IN)
    batch = root / "b.yaml"
    batch.write_text(yaml.safe_dump({"name": "headline", "notebooks_dir": "nbs", "caveat": CAVEAT,
                                     "jobs": [{"name": "methods", "notebook": "methods"}]}))
    result = run_batch(batch, out_dir=root / "out", progress=False)
    assert result.ok, [j.error for j in result.jobs]
    return root / "out"


def _screenshot_dir(tmp_path: Path) -> Path:
    """HACM_SCREENSHOTS keeps the screenshots for a person to look at; by default they stay in tmp."""
    out = Path(os.environ.get("HACM_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _check_index(page, index: Path) -> None:
    """The headline table, the caveat and every image of the index page at `index`."""
    page.goto(index.as_uri())
    page.wait_for_load_state("load")
    rows = page.locator("#headline-table tr.method")
    assert rows.count() == len(METHODS)
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(len(METHODS))] == list(METHODS)
    headers = page.locator("#headline-table th").all_inner_texts()
    assert any(h.startswith("linear probe, last epoch (%)") for h in headers)
    assert any(h.startswith("kNN-20 (%)") for h in headers)
    assert any("best test epoch" in h and "selected on the test set" in h and "never used to rank" in h for h in headers)
    assert all("chance 1.7" in h for h in headers if h.startswith(("linear probe, last epoch (%)", "kNN-20 (%)")))
    assert "Chance level on these test clips (60 classes): 1.7 %" in page.locator("#headline ~ p.sub").first.inner_text()
    verdicts = page.locator("#headline-table td.significance").all_inner_texts()
    assert len(verdicts) == 2 * len(METHODS)                       # two metrics per method
    assert verdicts[0] == "reference"
    # a verdict per comparison, written out, with the Holm-adjusted p
    assert all(re.match(r"(not significant|significantly (higher|lower))\n[+-]\d+\.\d pts .*p [=<] \d", v)
               for v in verdicts[2:]), verdicts
    assert any(v.startswith("not significant") for v in verdicts) and any(v.startswith("significantly") for v in verdicts)
    # lower is never shown in the colour of good news
    lower = page.locator("#headline-table span.sig-lower")
    assert lower.count() >= 1 and all(lower.nth(i).inner_text() == "significantly lower" for i in range(lower.count()))
    assert lower.first.evaluate("e => getComputedStyle(e).color") == "rgb(176, 58, 46)"   # red
    # the method below the untrained encoder, and only it, is flagged, under each metric
    flagged = [rows.nth(i).locator(".flag").count() for i in range(len(METHODS))]
    assert flagged == [0, 0, 2, 0], flagged
    published = page.locator("#published-table tr").all_inner_texts()
    assert any(r.startswith("HA-CM\tlinear evaluation\t86.3") for r in published), published
    mean = rows.nth(0).locator("td.num").first.inner_text()
    assert re.fullmatch(r"\d+\.\d ± \d+\.\d\n\[\d+\.\d, \d+\.\d\]", mean), mean   # % with one decimal
    assert page.locator("#config-differences-table tr").count() == len(METHODS) + 1
    assert page.locator(".caveat").inner_text() == CAVEAT
    job = page.locator("#job-methods").inner_text()
    assert "linear probe, last epoch (%): 81.2" in job and "run directory: methods/runs" in job
    assert "HA-CM: kNN-20" not in job and "MAE-style vs" not in job    # per-method numbers: in the headline
    images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert images and all(width > 0 for _, width in images), images
    assert "mean over 3 seeds" in page.locator(".figs figcaption").first.inner_text()


def test_index_opens_with_the_headline_and_figures_load(report, tmp_path):
    shots = _screenshot_dir(tmp_path)
    with browser(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        errors = _console_errors(page)
        _check_index(page, report / "index.html")
        page.screenshot(path=str(shots / "index.png"), full_page=True)
        page.goto((report / "methods" / "methods.notebook.html").as_uri())
        page.wait_for_load_state("load")
        # the notebook page shows the figure as an image with its caption, not "<Figure size ...>"
        shown = page.evaluate("() => [...document.images].map(i => i.naturalWidth)")
        assert shown and all(shown) and "Figure size" not in page.content()
        assert "mean over 3 seeds" in page.locator("figcaption").first.inner_text()
        page.screenshot(path=str(shots / "notebook.png"), full_page=True)
        assert not _real(errors), f"browser console errors: {_real(errors)}"


def test_a_copied_report_reads_right(report, tmp_path):
    """No absolute path on the pages; every link and image of the index resolves inside the copy."""
    copy = tmp_path / "elsewhere" / "copied"
    shutil.copytree(report, copy)
    pages = [copy / "index.html", *copy.glob("*/*.notebook.html"), *copy.glob("*/*.code.html")]
    import hacm
    from hacm.report.batch import REPO_ROOT

    assert Path(hacm.__file__).is_relative_to(REPO_ROOT)
    for html in pages:
        text = html.read_text()
        for place in (str(report), sys.prefix, str(REPO_ROOT)):
            assert place not in text, f"{html.name} names {place}"
    code = (copy / "methods" / "methods.code.html").read_text()
    assert "[hacm repository]/hacm/__init__.py [python environment]" in code
    index = (copy / "index.html").read_text()
    targets = re.findall(r'(?:href|src)="([^"#]+)"', index)
    assert targets
    for target in targets:
        assert not target.startswith(("/", "file:")), target
        assert (copy / target).exists(), f"index links {target}, missing in the copy"
    with browser(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        _check_index(page, copy / "index.html")
