"""Real-browser checks in Debian chromium through Playwright (Playwright driving /usr/bin/chromium, never a downloaded browser).

1. The explorer notebook in JupyterLab: run all cells, move the mask-ratio and seed sliders,
   the Poincaré disk and the token grid must change, with no browser console errors.
2. A generated report's index.html: every PNG loads and every interactive plotly page draws.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from test_report import _notebook

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (`make chromium` / .ci/install-chromium installs it)"),
]

# The explorer's figures and sliders, as hacm.viz.explorer titles and labels them.
DISK_TITLE, GRID_TITLE = "Poincaré disk", "Kept tokens"
MASK_RATIO_LABEL, SEED_LABEL = "mask ratio", "seed"

# Console messages that are not faults of the page under test:
BENIGN_CONSOLE = (
    # JupyterLab probes optional server extensions (e.g. /lsp/status, /api/translations) that this
    # bare server does not run; the 404 is expected and handled by JupyterLab.
    "Failed to load resource: the server responded with a status of 404",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def jupyterlab(root: Path, home: Path):
    """JupyterLab on 127.0.0.1 with a random token; every Jupyter directory inside `home`."""
    token = secrets.token_hex(16)
    port = _free_port()
    dirs = {name: home / name for name in ("config", "data", "runtime", "settings", "workspaces")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    # no "Jupyter news" toast over the notebook
    notif = dirs["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notif.parent.mkdir(parents=True)
    notif.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
           "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
           "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"])}
    log = open(home / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(home / 'jupyterlab.log').read_text()[-2000:]}")
                time.sleep(0.3)
        yield base, token
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # its own session: the server and the kernels it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@contextmanager
def browser(profile: Path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(profile), executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


def _console_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    return errors


def _real(errors: list[str]) -> list[str]:
    return [e for e in errors if not any(b in e for b in BENIGN_CONSOLE)]


# ----------------------------------------------------------------------------- the explorer in JupyterLab


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Synthetic clips of three classes, three performers (two train, one test), one camera."""
    from hacm.data.convert import convert_ntu
    from hacm.data.synth import write_synthetic

    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root / "raw", performers=3, replications=1, cameras=(1,), classes=["clap", "kick", "sit down"],
                    progress=False)
    convert_ntu(root / "raw", root / "store", progress=False)
    return root / "store"


# trace data of a plotly figure found by its title, as JSON (changes when the figure is redrawn)
_FIGURE_STATE = """(title) => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = gd.querySelector('.gtitle');
    if (t && t.textContent.includes(title)) {
      return JSON.stringify((gd.data || []).map(tr => [tr.x, tr.y, tr.z, tr.text, tr.marker && tr.marker.color]));
    }
  }
  return null;
}"""


def _press_slider(page, label: str, presses: int = 1, key: str = "ArrowRight") -> None:
    slider = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).first
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        handle.press(key)


def test_explorer_in_jupyterlab(tmp_path, tiny_store):
    import papermill as pm

    root = tmp_path / "root"
    root.mkdir()
    # the notebook as a user would open it, with parameters pointing at the tiny store
    pm.execute_notebook(str(REPO / "notebooks" / "explorer.ipynb"), str(root / "explorer.ipynb"),
                        parameters={"store": str(tiny_store), "checkpoints": {"untrained": None},
                                    "interactive": True, "report_dir": str(root / "out")},
                        prepare_only=True, kernel_name="hacm", progress_bar=False)
    with jupyterlab(root, tmp_path / "jupyter") as (base, token), browser(tmp_path / "profile") as ctx:
        page = ctx.new_page()
        errors = _console_errors(page)
        page.goto(f"{base}/lab/tree/explorer.ipynb?reset&token={token}")
        page.get_by_text("| Idle").first.wait_for(timeout=90_000)
        page.locator(".jp-Cell").first.click()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        for title in (DISK_TITLE, GRID_TITLE):
            page.wait_for_function(f"() => ({_FIGURE_STATE})({json.dumps(title)}) !== null", timeout=180_000)
        page.get_by_text("| Idle").first.wait_for(timeout=180_000)

        def state():
            return {t: page.evaluate(_FIGURE_STATE, t) for t in (DISK_TITLE, GRID_TITLE)}

        # a lower mask ratio keeps more tokens in every time patch (a higher one may keep the same one)
        for label, key, presses in ((MASK_RATIO_LABEL, "ArrowLeft", 5), (SEED_LABEL, "ArrowRight", 2)):
            before = state()
            _press_slider(page, label, presses=presses, key=key)
            for title in (GRID_TITLE, DISK_TITLE):     # the disk is redrawn in the same callback, after the grid
                try:
                    page.wait_for_function(
                        f"() => ({_FIGURE_STATE})({json.dumps(title)}) !== {json.dumps(before[title])}", timeout=60_000)
                except Exception:       # a timeout: the assertions below say which figure stayed as it was
                    break
            after = state()
            assert after[GRID_TITLE] != before[GRID_TITLE], f"token grid unchanged after moving '{label}'"
            # a new seed or mask ratio recolours the disk's points (other kept tokens)
            assert after[DISK_TITLE] != before[DISK_TITLE], f"Poincaré disk unchanged after moving '{label}'"

        page.get_by_text("| Idle").first.wait_for(timeout=60_000)
        page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "explorer.png"))
        assert (tmp_path / "explorer.png").stat().st_size > 10_000
        assert not _real(errors), f"browser console errors: {_real(errors)}"


# ----------------------------------------------------------------------------- a generated report


FIGURES_NOTEBOOK = [
    "report_dir = '.'",
    "from hacm.viz.export import save_figure\n"
    "import plotly.graph_objects as go\n"
    "import matplotlib.pyplot as plt\n"
    "fig = go.Figure(go.Scatter(x=[0, 1, 2], y=[2, 0, 1]), layout=dict(title='interactive'))\n"
    "save_figure(fig, report_dir, 'interactive')\n"
    "f, ax = plt.subplots()\n"
    "ax.plot([0, 1], [1, 0])\n"
    "save_figure(f, report_dir, 'static')\n"
    "import json; json.dump({'figures': 2}, open(f'{report_dir}/summary.json', 'w'))",
    "fig  # displayed in the notebook: the HTML export must draw it too",
]


def test_report_index_renders_every_figure(tmp_path):
    from hacm.report import run_batch

    (tmp_path / "nbs").mkdir()
    _notebook(tmp_path / "nbs" / "figures.ipynb", *FIGURES_NOTEBOOK)
    batch = tmp_path / "b.yaml"
    batch.write_text(yaml.safe_dump({"name": "figs", "notebooks_dir": "nbs",
                                     "jobs": [{"name": "one", "notebook": "figures"},
                                              {"name": "two", "notebook": "figures"}]}))
    result = run_batch(batch, out_dir=tmp_path / "report", progress=False)
    assert result.ok
    check_report_renders(result.index, tmp_path / "profile", min_images=4)


def check_report_renders(index: Path, profile: Path, min_images: int) -> None:
    """Open index.html, require every <img> loaded, then open every linked figure page and require
    each plotly div to have drawn its SVG."""
    with browser(profile) as ctx:
        page = ctx.new_page()
        errors = _console_errors(page)
        page.goto(index.as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("() => [...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
        assert len(images) >= min_images
        assert all(width > 0 for _, width in images), f"images not rendered: {[s for s, w in images if not w]}"
        links = page.evaluate("() => [...document.querySelectorAll('.figs a')].map(a => a.href)")
        figure_pages = sorted({link for link in links if link.endswith(".html")})
        assert figure_pages, "index links no interactive figure"
        exports = page.evaluate("() => [...document.querySelectorAll('a')].filter(a => a.textContent === 'report')"
                                ".map(a => a.href)")
        assert exports, "index links no notebook export"
        for url in figure_pages + exports:
            page.goto(url)
            page.wait_for_load_state("load")
            n_plots = page.evaluate("() => document.querySelectorAll('.js-plotly-plot').length")
            n_drawn = page.evaluate("() => document.querySelectorAll('.js-plotly-plot .main-svg').length")
            assert n_drawn >= n_plots, url
            if url in figure_pages:
                assert n_plots >= 1, url
        assert not _real(errors), f"browser console errors: {_real(errors)}"
