"""The mask explorer in JupyterLab on a laptop screen (1366 x 768, file browser open), in Debian chromium.

Two checkpoints of different shapes: an HA-CM run (Poincaré, 12 frames, t_patch 3: 4 time patches)
and a MAMP-style run (Euclidean, motion masking, 16 frames, t_patch 2: 8 time patches). Switching
between them must move the time-patch range with them (no "out of range"), the Euclidean one must
show no Poincaré disk and no HA-CM branch, and the mask-overlap numbers must be on the page. The
first view must be centred at the parent point and spread over the disk (median radius about 0.5),
with no two printed labels overlapping and no title, axis label, tick label or annotation sticking
out of its figure (measured on the rendered page), and the views over many clips drawn. The
test saves screenshots (EXPLORER_SCREENSHOTS=dir keeps them) and the latency of each control, from
the change in the browser to the redrawn figure, in latency.json next to them.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from test_browser import CHROMIUM, REPO, _console_errors, _real, browser, jupyterlab, tiny_store  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason=f"{CHROMIUM} not installed (`make chromium` / .ci/install-chromium installs it)"),
]

LAPTOP = {"width": 1366, "height": 768}
DISK, PLANE, GRID = "Poincaré disk", "Euclidean plane", "Kept tokens"

# Trace data of the plotly figure whose title contains `title`, as one string (null: no such figure).
# FigureWidget data arrive as typed arrays, int64 ones as BigInt64Array, which JSON.stringify refuses.
_FIGURE_STATE = """(title) => {
  const plain = (k, v) => typeof v === 'bigint' ? v.toString() : (ArrayBuffer.isView(v) ? Array.from(v, String) : v);
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const t = gd.querySelector('.gtitle');
    if (t && t.textContent.includes(title)) {
      return JSON.stringify((gd.data || []).map(tr => [tr.x, tr.y, tr.z, tr.text, tr.marker && tr.marker.color]), plain);
    }
  }
  return null;
}"""

# All seven figures drawn (a FigureWidget shows an empty 360-px plot until its data arrive): the five
# views of one clip and the two over many clips.
_ALL_DRAWN = """() => {
  const figs = [...document.querySelectorAll('.js-plotly-plot')];
  return figs.length >= 7 && figs.every(gd => (gd.querySelector('.gtitle') || {}).textContent);
}"""

# Measured in the page: the disk's printed labels that overlap another (pairs of texts), the texts of
# every figure (titles, axis titles, tick labels, annotations) that stick out of their figure, and the
# drawn radius of every point of the disk (distance from the disk's centre / its rim's radius, in px).
_MEASURE = """(diskTitle) => {
  const inside = (r, box) => r.left >= box.left - 1 && r.right <= box.right + 1 && r.top >= box.top - 1 &&
                             r.bottom <= box.bottom + 1;
  const cut = [];
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const svg = gd.querySelector('.main-svg');
    if (!svg) continue;
    const box = svg.getBoundingClientRect();
    for (const t of gd.querySelectorAll('.gtitle, .g-xtitle text, .g-ytitle text, .xtick text, .ytick text, .annotation-text')) {
      const r = t.getBoundingClientRect();
      if (t.textContent.trim() && r.width > 0 && !inside(r, box)) cut.push(t.textContent.slice(0, 60));
    }
  }
  const disk = [...document.querySelectorAll('.js-plotly-plot')].find(
    gd => (gd.querySelector('.gtitle') || {textContent: ''}).textContent.includes(diskTitle));
  const labels = [...disk.querySelectorAll('.textpoint text')].filter(t => t.textContent.trim())
    .map(t => [t.textContent, t.getBoundingClientRect()]);
  const overlaps = [];
  for (let i = 0; i < labels.length; i++) for (let j = i + 1; j < labels.length; j++) {
    const a = labels[i][1], b = labels[j][1];
    if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5)
      overlaps.push([labels[i][0], labels[j][0]]);
  }
  const xa = disk._fullLayout.xaxis, ya = disk._fullLayout.yaxis;
  const radii = [];
  for (const tr of disk.data) if (tr.mode === 'markers+text' && tr.x) for (let k = 0; k < tr.x.length; k++)
    radii.push(Math.hypot(xa.d2p(Number(tr.x[k])) - xa.d2p(0), ya.d2p(Number(tr.y[k])) - ya.d2p(0)) /
               Math.abs(xa.d2p(1) - xa.d2p(0)));
  return {cut, overlaps, labels: labels.length, radii};
}"""

# The explorer's state on the page: the disk/plane figure's title and trace names, the time-patch
# slider's range and value, and the text lines.
_PAGE_STATE = """() => {
  const titles = [...document.querySelectorAll('.js-plotly-plot')].map(gd => {
    const t = gd.querySelector('.gtitle');
    return {title: t ? t.textContent : '', traces: (gd.data || []).map(tr => tr.name)};
  });
  const slider = [...document.querySelectorAll('.widget-slider')].find(
    s => (s.querySelector('.widget-label') || {}).textContent === 'time patch');
  const handle = slider && slider.querySelector('.noUi-handle');
  return {figures: titles, tp_max: handle && Number(handle.getAttribute('aria-valuemax')),
          tp_value: handle && Number(handle.getAttribute('aria-valuenow')),
          text: [...document.querySelectorAll('.widget-html-content')].map(e => e.textContent).join('\\n')};
}"""


def _run(root: Path, name: str, model: dict, masking: dict) -> Path:
    from hacm import checkpoint as ckpt
    from hacm.config import DataConfig, RunConfig, to_dict
    from hacm.masking import MaskingConfig
    from hacm.model import HACM, ModelConfig

    cfg = RunConfig(data=DataConfig(window_size=model["num_frames"]), model=ModelConfig(**model),
                    masking=MaskingConfig(**masking))
    torch.manual_seed(0)
    path = root / name / ckpt.CHECKPOINT_DIR / "last.pt"
    ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "version": ckpt.VERSION, "protocol": "pretrain",
                                "config": to_dict(cfg), "model": HACM(cfg.model, cfg.masking).state_dict()})
    return path


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    small = dict(dim=32, depth=1, heads=2, decoder_dim=32, decoder_depth=1)
    return {"HA-CM": str(_run(root, "hacm", dict(num_frames=12, t_patch=3, **small), {})),
            "MAMP-style": str(_run(root, "mamp", dict(num_frames=16, t_patch=2, geometry="euclidean", cc_weight=0.0,
                                                      motion_expmap=False, **small), {"strategy": "motion"}))}


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("EXPLORER_SCREENSHOTS", tmp_path / "shots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _open_notebook(ctx, base: str, token: str):
    page = ctx.new_page()
    page.set_viewport_size(LAPTOP)
    page.bring_to_front()   # a background tab gets no animation frames
    errors = _console_errors(page)
    page.goto(f"{base}/lab/tree/explorer.ipynb?reset&token={token}")
    page.get_by_text("| Idle").first.wait_for(timeout=90_000)
    if not page.locator(".jp-FileBrowser").first.is_visible():   # a laptop user keeps the file browser open
        page.locator("[data-id='filebrowser']").first.click()
    page.locator(".jp-Cell").first.click()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(f"() => ({_FIGURE_STATE})({json.dumps(DISK)}) !== null", timeout=480_000, polling=500)
    page.wait_for_function(_ALL_DRAWN, timeout=240_000, polling=500)
    page.get_by_text("| Idle").first.wait_for(timeout=180_000)
    return page, errors


def _timed(page, act, title: str) -> float:
    """Seconds from `act()` (a control change) to the figure titled `title` showing new data."""
    before = page.evaluate(_FIGURE_STATE, title)
    start = time.perf_counter()
    act()
    page.wait_for_function(f"() => ({_FIGURE_STATE})({json.dumps(title)}) !== {json.dumps(before)}",
                           timeout=120_000, polling=100)
    return time.perf_counter() - start


def _dropdown(page, label: str):
    return page.locator(".widget-dropdown", has=page.locator(".widget-label", has_text=label)).first.locator("select")


def _slider_press(page, label: str, key: str, presses: int = 1) -> None:
    handle = page.locator(".widget-slider", has=page.locator(".widget-label", has_text=label)).first \
        .locator(".noUi-handle").first
    handle.focus()
    for _ in range(presses):
        handle.press(key)


def _drive(ctx, base: str, token: str, shots: Path) -> dict[str, float]:
    """Open the notebook, check the HA-CM view, switch to MAMP-style and back; latency per control."""
    latency = {}
    page, errors = _open_notebook(ctx, base, token)
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(shots / "1_hacm_top.png"))
    state = page.evaluate(_PAGE_STATE)
    assert state["tp_max"] == 3, state["tp_max"]
    # the first view: centred at the parent point, spread over the disk, labels apart, no text cut
    measured = page.evaluate(_MEASURE, DISK)
    assert not measured["overlaps"], measured["overlaps"]
    assert not measured["cut"], measured["cut"]
    assert measured["labels"] >= 3
    radii = sorted(measured["radii"])
    assert abs(radii[len(radii) // 2] - 0.5) < 0.1 and radii[0] < 1e-3, radii   # median ~0.5, parent at the centre
    assert "How often each criterion keeps" in " ".join(f["title"] for f in state["figures"])
    assert "kept tokens in common" in state["text"] and "chance" in state["text"]
    assert "the MAMP mask (motion)" in state["text"] and "masking hacm with two branches" in state["text"]
    assert any(f["title"].startswith(DISK) for f in state["figures"])

    latency["time patch"] = _timed(page, lambda: _slider_press(page, "time patch", "ArrowRight"), DISK)
    latency["mask ratio"] = _timed(page, lambda: _slider_press(page, "mask ratio", "ArrowLeft", 3), GRID)
    latency["seed"] = _timed(page, lambda: _slider_press(page, "seed", "ArrowRight"), GRID)
    latency["view centre"] = _timed(page, lambda: _dropdown(page, "view centre").select_option("midpoint"),
                                    DISK)
    latency["radial scale"] = _timed(page, lambda: _slider_press(page, "radial scale", "ArrowLeft", 4), DISK)
    latency["class"] = _timed(page, lambda: _dropdown(page, "class").select_option(index=1), DISK)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "2_hacm_recentred.png"))

    # MAMP-style: 8 time patches, a Euclidean plane, one branch
    latency["checkpoint"] = _timed(page, lambda: _dropdown(page, "checkpoint").select_option("MAMP-style"), GRID)
    page.wait_for_function(f"() => ({_PAGE_STATE})().tp_max === 7", timeout=60_000, polling=500)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)
    state = page.evaluate(_PAGE_STATE)
    assert not any(DISK in f["title"] for f in state["figures"]), [f["title"] for f in state["figures"]]
    assert not page.evaluate(_MEASURE, PLANE)["cut"]
    plane = next(f for f in state["figures"] if f["title"].startswith(PLANE))
    assert not any(str(n).startswith(("temporal", "spatial")) for n in plane["traces"]), plane["traces"]
    assert "boundary |x| = 1" not in plane["traces"]
    assert "euclidean geometry, masking motion with one branch" in state["text"]
    assert "8 time patches" in state["text"] and "kept tokens in common" in state["text"]
    _slider_press(page, "time patch", "ArrowRight", 7)
    page.wait_for_function(f"() => ({_PAGE_STATE})().tp_value === 7", timeout=60_000, polling=500)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "3_mamp_plane.png"))

    # back to HA-CM at time patch 7: the range shrinks to 0..3, no "out of range"
    _dropdown(page, "checkpoint").select_option("HA-CM")
    page.wait_for_function(f"() => ({_PAGE_STATE})().tp_max === 3", timeout=60_000, polling=500)
    page.get_by_text("| Idle").first.wait_for(timeout=60_000)
    state = page.evaluate(_PAGE_STATE)
    assert state["tp_value"] == 3 and "out of range" not in state["text"]
    page.locator(".widget-html-content", has_text="kept tokens in common").first.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "4_hacm_numbers.png"))
    page.locator(".js-plotly-plot").nth(1).scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "5_token_grid.png"))
    assert not _real(errors), f"browser console errors: {_real(errors)}"
    return latency


def test_explorer_checkpoint_switch_on_a_laptop_screen(tmp_path, tiny_store, two_checkpoints):
    import papermill as pm

    root = tmp_path / "root"
    root.mkdir()
    pm.execute_notebook(str(REPO / "notebooks" / "explorer.ipynb"), str(root / "explorer.ipynb"),
                        parameters={"store": str(tiny_store), "checkpoints": two_checkpoints, "interactive": True,
                                    "report_dir": str(root / "out")},
                        prepare_only=True, kernel_name="hacm", progress_bar=False)
    shots = _shots(tmp_path)
    # Every cell rendered, in view or not: JupyterLab's default skips drawing off-screen outputs, and a
    # plotly figure drawn off-screen has no title to find.
    tracker = tmp_path / "jupyter" / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    with jupyterlab(root, tmp_path / "jupyter") as (base, token), browser(tmp_path / "profile") as ctx:
        try:
            latency = _drive(ctx, base, token, shots)
        except Exception:
            for k, page in enumerate(ctx.pages):     # what the page showed when it failed
                page.screenshot(path=str(shots / f"failure{k}.png"), full_page=True)
            raise
    (shots / "latency.json").write_text(json.dumps({k: round(v, 3) for k, v in latency.items()}, indent=1))
    print("explorer latency in the browser (s):", json.dumps(latency))
