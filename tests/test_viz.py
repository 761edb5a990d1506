"""Figure functions on tiny inputs: disk geometry is faithful, grids mark exactly the kept tokens."""
from __future__ import annotations

import base64
import json

import geoopt
import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from matplotlib.figure import Figure

from hacm.errors import FormatError, HacmError
from hacm.rundir import read_metrics
from hacm.geometry import make_geometry
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS
from hacm.viz import curves, evaluation, export, poincare, skeleton, tables, tokens


@pytest.fixture
def ball_points():
    """Tokens of a 32-D Poincaré ball at very different depths, some close to the rim: the
    geometry, the tangent vectors (embeddings) and their exact distances from the origin."""
    g = make_geometry("poincare", 1.0)
    e = torch.randn(12, 32, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.05, 1.2, 12)[:, None]
    return g, e, g.dist0(g.points(e))


@pytest.mark.parametrize("curvature", [1.0, 0.5])
def test_disk_layout_keeps_dist0_and_stays_in_disk(curvature):
    g = make_geometry("poincare", curvature)
    e = torch.randn(10, 16, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 1.5, 10)[:, None]
    d0 = g.dist0(g.points(e))
    xy = poincare.disk_layout(e, d0)
    assert xy.shape == (10, 2)
    assert (np.linalg.norm(xy, axis=-1) < 1.0).all()
    # dist0 in D dimensions is 2 |e| (every curvature); on the drawn disk (c = 1) 2 artanh |xy|,
    # deeper points than MAX_DRAWN_DIST0 drawn at that depth
    true = 2 * e.double().norm(dim=-1).numpy()
    assert true.max() > poincare.MAX_DRAWN_DIST0 > true.min()
    np.testing.assert_allclose(2 * np.arctanh(np.linalg.norm(xy, axis=-1)),
                               np.minimum(true, poincare.MAX_DRAWN_DIST0), rtol=1e-9)


def test_euclidean_plane_keeps_l2_norm():
    g = make_geometry("euclidean")
    pts = torch.randn(6, 8, generator=torch.Generator().manual_seed(2)) * 3
    xy = poincare.disk_layout(pts, g.dist0(g.points(pts)), geometry="euclidean")
    np.testing.assert_allclose(np.linalg.norm(xy, axis=-1), pts.norm(dim=-1).numpy(), rtol=1e-5)


def test_shared_basis_is_used(ball_points):
    g, e, d0 = ball_points
    basis = np.eye(32)[:, :2]
    xy = poincare.disk_layout(e, d0, basis=basis)
    tangent = e.double().numpy()[:, :2]
    cos = (xy * tangent).sum(-1) / (np.linalg.norm(xy, axis=-1) * np.linalg.norm(tangent, axis=-1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-6)   # each point lies along its tangent's projection


def test_geodesic_arcs_inside_disk_and_connect_endpoints(ball_points):
    g, e, d0 = ball_points
    xy = poincare.disk_layout(e, d0)
    # points 7-11 are drawn on the rim: deeper than MAX_DRAWN_DIST0
    for a, b in [(0, 7), (3, 7), (5, 6), (9, 11), (10, 11)]:
        arc = poincare.geodesic_arc(xy[a], xy[b])
        np.testing.assert_allclose(arc[0], xy[a], atol=1e-9)
        np.testing.assert_allclose(arc[-1], xy[b], atol=1e-9)
        assert (np.linalg.norm(arc, axis=-1) < 1.0).all()
        # Consecutive samples are equally spaced along the geodesic: it is the hyperbolic shortest path.
        disk = geoopt.PoincareBall(c=torch.tensor(1.0, dtype=torch.float64))   # float64 curvature
        d = disk.dist(torch.from_numpy(arc[:-1]), torch.from_numpy(arc[1:])).numpy()
        np.testing.assert_allclose(d, d.mean(), rtol=1e-6)


def test_disk_figure_traces_and_hover(ball_points):
    g, e, d0 = ball_points
    xy = poincare.disk_layout(e, d0)
    labels = [f"j{i}" for i in range(12)]
    status = ["spatial kept"] * 3 + ["spatial masked"] * 8 + ["trunk parent point"]
    fig = poincare.poincare_disk_figure(xy, labels, status=status, edges=[(1, 0), (2, 1)],
                                        dist0=d0.numpy(), scores=np.arange(12.0), title="t")
    names = [t.name for t in fig.data]
    assert names[:3] == ["boundary |x| = 1", "kinematic tree (geodesics)", "origin"]
    assert names[3:] == ["spatial kept", "spatial masked", "trunk parent point"]
    kept = fig.data[3]
    assert list(kept.text) == ["j0", "j1", "j2"] and "dist0" in kept.hovertemplate
    # Two arcs of GEODESIC_SAMPLES points each, separated by None.
    assert sum(v is None for v in fig.data[1].x) == 2
    assert len(fig.data[1].x) == 2 * (poincare.GEODESIC_SAMPLES + 1)
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.title.text == "t"


def test_token_grid_marks_exactly_kept():
    rng = np.random.default_rng(0)
    kept = rng.random((8, 5)) < 0.3
    scores = rng.random((8, 5))
    names = list(JOINT_NAMES[:5])
    log_ratio = np.log10(scores / scores.mean())
    fig = tokens.token_grid_figure([tokens.TokenPanel("hierarchy", kept, scores, log_ratio),
                                    tokens.TokenPanel("random", ~kept, None)], names, t_patch=3)
    heat = [t for t in fig.data if t.type == "heatmap"]
    marks = [t for t in fig.data if t.type == "scatter"]
    assert len(heat) == 2 and len(marks) == 2
    for panel_kept, m in zip([kept, ~kept], marks):
        got = {(int(x), names.index(y)) for x, y in zip(m.x, m.y)}
        assert got == {(int(t), int(v)) for t, v in zip(*np.nonzero(panel_kept))}
    np.testing.assert_allclose(np.asarray(heat[0].z), log_ratio.T)
    np.testing.assert_allclose(np.asarray(heat[1].z), 0.0)          # random: as likely as random
    lim = np.abs(log_ratio).max()
    assert fig.layout.coloraxis.cmin == -lim and fig.layout.coloraxis.cmax == lim
    assert fig.layout.xaxis.title.text.startswith("time patch")
    assert [a.text for a in fig.layout.annotations][:2] == ["hierarchy", "random"]


def test_skeleton_figure_static_and_animated():
    frames = np.random.default_rng(0).normal(size=(2, 90, NUM_JOINTS, 3)).astype(np.float32)
    frames[1] = 0.0                                             # absent second actor is dropped
    status = ["spatial kept"] * 10 + ["spatial masked"] * 15
    fig = skeleton.skeleton_figure(frames, status, animate=False, frame=4, title="clip")
    assert [t.name for t in fig.data] == ["bones", "spatial kept", "spatial masked"]
    assert sum(v is None for v in fig.data[0].x) == 24         # 24 bones, one actor
    assert fig.layout.scene.aspectmode == "cube" and fig.layout.scene.zaxis.title.text == "y, up (m)"
    anim = skeleton.skeleton_figure(frames[0])
    assert len(anim.frames) == skeleton.MAX_ANIMATION_FRAMES and anim.layout.sliders
    with pytest.raises(HacmError, match="25"):
        skeleton.skeleton_figure(frames, status[:3])


def assert_legend_above(ax) -> None:
    """The legend lies above the axes, so it cannot hide a bar."""
    ax.figure.canvas.draw()   # the layout engine places the legend
    legend, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.y0 >= frame.y1 - 1


def test_training_figures():
    rows = [{"epoch": e, "step": 10 * e, "loss": 1.0 / (e + 1), "lr": 1e-3 * e, "accuracy": 0.1 * e} for e in range(5)]
    fig = curves.loss_lr_figure(rows)
    assert isinstance(fig, Figure) and fig.axes[0].get_xlabel() == "step"
    assert fig.axes[1].get_ylabel() == "learning rate"
    acc = curves.accuracy_figure(rows)
    assert acc.axes[0].get_ylabel() == "accuracy (%)"
    np.testing.assert_allclose(acc.axes[0].lines[0].get_ydata(), [0, 10, 20, 30, 40])

    names = ["a", "b", "c"]
    cm = np.array([[5, 1, 0], [3, 2, 0], [0, 0, 4]])
    assert evaluation.per_class_accuracy(cm, names)["b"] == pytest.approx(40.0)
    assert evaluation.most_confused_pairs(cm, names, 5) == [
        {"true": "b", "predicted": "a", "count": 3, "rate": 60.0},
        {"true": "a", "predicted": "b", "count": 1, "rate": pytest.approx(100 / 6)}]
    cmf = evaluation.confusion_matrix_figure(cm, names)
    assert cmf.axes[0].get_xlabel() == "predicted class" and len(cmf.axes) == 2   # + colour bar
    diff = evaluation.confusion_difference_figure(cm, np.eye(3) * 5, names, labels=("hacm", "mamp"))
    assert "hacm - mamp" in diff.axes[1].get_ylabel()
    # bars: this run's per-class accuracy sorted ascending (b 40 %, a 5/6, c 100 %), then the other's
    bars = evaluation.per_class_accuracy_figure(cm, names, compare=np.eye(3)).axes[0]
    # each class labelled with its test clips (row sums 6, 5, 4); the legend sits above the axes
    assert [t.get_text() for t in bars.get_yticklabels()] == ["b (5)", "a (6)", "c (4)"]
    assert "4-6 test clips per class, 15 in all" in bars.get_title()
    assert_legend_above(bars)
    assert [r.get_width() for r in bars.patches] == pytest.approx([40.0, 500 / 6, 100.0, 100.0, 100.0, 100.0])
    with pytest.raises(HacmError, match="3 class names"):
        evaluation.confusion_matrix_figure(np.eye(2), names)


def test_tau_curve_and_tables_and_reconstruction():
    points = [{"tau": t, "series": n, "mean": 50 + t + k, "ci": (49 + t + k, 51 + t + k), "values": [50 + t, 51 + t]}
              for k, n in enumerate(("standard", "release")) for t in (5.0, 0.1, 0.9)]
    fig = evaluation.tau_curve_figure(points)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["standard", "release"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.1, 0.9, 5.0])       # sorted by tau
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [51.1, 51.9, 56.0])
    assert ax.get_xscale() == "log" and "3 seeds" not in ax.get_legend().get_title().get_text()
    with pytest.raises(HacmError, match="needs"):
        evaluation.tau_curve_figure([{"tau": 1.0}])
    bars = evaluation.method_comparison_figure({"A": {"values": [80, 82, 81], "mean": 81, "ci": (79, 83)},
                                                "B": {"values": [70, 71, 69], "mean": 70, "ci": (68, 72)}})
    np.testing.assert_allclose([p.get_height() for p in bars.axes[0].patches], [81, 70])
    assert_legend_above(bars.axes[0])
    table = tables.ablation_table([{"run": "x", "acc": 1.5}, {"run": "y", "acc": 3.25}], sort_by="acc")
    assert [r["run"] for r in table.rows] == ["y", "x"]
    assert "<td>3.25</td>" in table.to_html() and table.to_markdown().splitlines()[0] == "| run | acc |"
    # a column that is the same in every row goes to the caption, read once
    rows = [{"run": "x", "seeds": 3}, {"run": "y", "seeds": 3}]
    assert tables.ablation_table(rows).columns == ["run", "seeds"]
    shared = tables.ablation_table(rows, caption="± is the spread.", fold_constant=True)
    assert shared.columns == ["run"] and shared.caption == "± is the spread. Same in every row: seeds 3."
    assert "<caption>± is the spread. Same in every row: seeds 3.</caption>" in shared.to_html()
    assert shared.to_markdown().endswith("\n\n± is the spread. Same in every row: seeds 3.")
    assert tables.ablation_table(rows[:1], fold_constant=True).columns == ["run", "seeds"]   # one row: kept
    # motion in its own units: 3 frames x 3 channels per token; target speed |(1, 2, 2)| = 3 per frame
    target = np.tile([1.0, 2.0, 2.0], (4, 3, 3))
    pred = np.zeros((4, 3, 9))
    mask = np.zeros((4, 3), dtype=bool)
    mask[0] = True
    pred[0, 0] = np.tile([2.0, 4.0, 4.0], 3)                 # twice as fast: speed 6, error 3
    pred[1, 2] = 50.0                                         # a kept token's value is never shown
    rec = curves.reconstruction_figure(pred, target, mask, ["a", "b", "c"], units="m / frame")
    assert rec.axes[2].get_title() == "|prediction - target| (mean 3 m / frame)"   # (3 + 3 + 3) / 3
    # target and prediction on one colour scale with one colour bar; kept tokens are not predicted:
    # blank (NaN) in the prediction, hatched in the prediction and error panels
    target_img, pred_img = rec.axes[0].images[0], rec.axes[1].images[0]
    assert target_img.get_clim() == pred_img.get_clim() == (0.0, 6.0)   # speeds 3 (target), 6 and 0 (masked)
    np.testing.assert_allclose(np.asarray(target_img.get_array()), 3.0)   # uniform target motion reads as such
    np.testing.assert_allclose(np.asarray(pred_img.get_array()).T[0], [6.0, 0.0, 0.0])
    assert "m / frame" in rec.axes[0].get_title() and len(rec.axes) == 5   # 3 panels + 2 colour bars
    shown = np.asarray(pred_img.get_array()).T                           # [TP, V]
    assert np.isnan(np.ma.filled(shown, np.nan)[~mask]).all() and not np.isnan(shown[mask]).any()
    for ax in rec.axes[1:3]:
        assert len(ax.patches) == (~mask).sum() and all(p.get_hatch() for p in ax.patches)
    with pytest.raises(HacmError, match=r"t_patch\*3"):
        curves.reconstruction_figure(pred[..., :8], target[..., :8], mask, ["a", "b", "c"])
    assert not rec.axes[0].patches


def test_matplotlib_figures_display_as_png_with_caption():
    """Built outside pyplot, hacm's figures still display as images (no inline backend needed);
    a caption adds an HTML figure with the caption under the same image."""
    fig = curves.loss_lr_figure([{"step": s, "loss": 1.0 / (s + 1)} for s in range(3)])
    bundle = fig._repr_mimebundle_()
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Figure size" not in bundle["text/plain"] and "text/html" not in bundle
    fig.caption = "loss <of> run x"
    bundle = fig._repr_mimebundle_()
    assert bundle["text/html"].endswith("<figcaption>loss &lt;of&gt; run x</figcaption></figure>")
    assert f'src="data:image/png;base64,{bundle["image/png"]}"' in bundle["text/html"]


def test_save_figure_writes_caption(tmp_path):
    fig = curves.accuracy_figure([{"epoch": 0, "acc": 0.5}])
    written = export.save_figure(fig, tmp_path, "acc", caption="linear probe of run x")
    assert written == [tmp_path / f"acc.{fmt}" for fmt in ("png", "pdf", "svg", "caption.txt")]
    assert export.caption_of(tmp_path / "acc.png") == "linear probe of run x" == fig.caption
    export.save_figure(Figure(), tmp_path, "plain")
    assert export.caption_of(tmp_path / "plain.png") is None


def test_read_metrics_names_bad_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.0}) + "\n{oops\n")
    with pytest.raises(FormatError, match="metrics.jsonl:2"):
        read_metrics(tmp_path)


def test_save_figure_writes_html_and_png(tmp_path):
    written = export.save_figure(go.Figure(go.Scatter(x=[0, 1], y=[1, 0])), tmp_path, "line")
    html = tmp_path / "line.html"
    assert html in written and (tmp_path / "plotly.min.js").exists()
    assert "cdn.plot.ly" not in html.read_text() and 'src="plotly.min.js"' in html.read_text()
    mpl = Figure()
    mpl.subplots().plot([0, 1])
    assert export.save_figure(mpl, tmp_path, "mpl") == [tmp_path / f"mpl.{fmt}" for fmt in ("png", "pdf", "svg")]
    assert (tmp_path / "mpl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "mpl.pdf").read_bytes()[:5] == b"%PDF-" and b"<svg" in (tmp_path / "mpl.svg").read_bytes()
    if export.find_chromium() is None:
        pytest.skip("no Chromium (/usr/bin/chromium or BROWSER_PATH): plotly PNG export not testable here")
    png = tmp_path / "line.png"
    assert png in written and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "line.pdf").read_bytes()[:5] == b"%PDF-" and b"<svg" in (tmp_path / "line.svg").read_bytes()
    export.close_exporter()


def test_tables_save_as_booktabs_latex_csv_and_markdown(tmp_path):
    table = tables.ablation_table([{"method": "HA-CM (ours)", "kNN-20 (%)": 81.25, "vs HA-CM": "reference"},
                                   {"method": "MAMP_style & co", "kNN-20 (%)": 79.5, "vs HA-CM": "-1.8 ± 0.4"}],
                                  caption="± is the spread over seeds; 95 % CI.")
    written = export.save_table(table, tmp_path, "methods")
    assert written == [tmp_path / f"methods.{fmt}" for fmt in ("md", "tex", "csv")]
    tex = (tmp_path / "methods.tex").read_text().splitlines()
    assert tex[:3] == ["\\begin{table}[t]", "\\centering",
                       "\\caption{$\\pm$ is the spread over seeds; 95 \\% CI.}"]
    assert tex[3:7] == ["\\begin{tabular}{lrl}", "\\toprule", "method & kNN-20 (\\%) & vs HA-CM \\\\", "\\midrule"]
    assert tex[7:9] == ["HA-CM (ours) & 81.25 & reference \\\\", "MAMP\\_style \\& co & 79.50 & -1.8 $\\pm$ 0.4 \\\\"]
    assert tex[9:] == ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
    import csv
    with open(tmp_path / "methods.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[1] == {"method": "MAMP_style & co", "kNN-20 (%)": "79.5", "vs HA-CM": "-1.8 ± 0.4"}
    assert (tmp_path / "methods.md").read_text().startswith("| method | kNN-20 (%) | vs HA-CM |")
    with pytest.raises(HacmError, match="name"):
        export.save_table(table, tmp_path, "methods.tex")


def test_save_figure_rejects_bad_input(tmp_path):
    with pytest.raises(HacmError, match="name"):
        export.save_figure(go.Figure(), tmp_path, "a/b")
    with pytest.raises(HacmError, match="matplotlib or plotly"):
        export.save_figure(object(), tmp_path, "x")


def test_length_histogram_counts_every_clip():
    fig = curves.length_histogram_figure({"train": [30, 40, 40, 90], "test": [50, 60]}, bins=4)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "frames per clip" and ax.get_ylabel() == "clips"
    heights = [sum(p.get_height() for p in c) for c in ax.containers]
    assert heights == [4, 2]
    assert [t.get_text().split(" (")[0] for t in ax.get_legend().get_texts()] == ["train", "test"]
    with pytest.raises(HacmError, match="no clip lengths"):
        curves.length_histogram_figure({"train": []})


def test_report_gallery_links_vector_figures_and_tables(tmp_path):
    """The index's section of a job links each figure's PDF and SVG and each table's LaTeX, CSV and
    Markdown, as save_figure and save_table wrote them."""
    from hacm.report.html import _figure_section
    from hacm.report.runner import JobResult

    fig = curves.accuracy_figure([{"epoch": 0, "acc": 0.5}, {"epoch": 1, "acc": 0.75}])
    export.save_figure(fig, tmp_path / "methods", "acc", caption="accuracy per epoch")
    export.save_table(tables.ablation_table([{"method": "a", "acc": 1.0}]), tmp_path / "methods", "methods")
    section = _figure_section(tmp_path, JobResult("methods", "methods.ipynb", "ok"))
    assert '(<a href="methods/acc.pdf">PDF</a> · <a href="methods/acc.svg">SVG</a>)' in section
    assert ('<li>methods: <a href="methods/methods.tex">LaTeX</a> · <a href="methods/methods.csv">CSV</a> · '
            '<a href="methods/methods.md">Markdown</a></li>') in section
    (tmp_path / "methods" / "acc.pdf").unlink()
    assert '<a href="methods/acc.svg">SVG</a>' in _figure_section(tmp_path, JobResult("methods", "methods.ipynb", "ok"))
    assert "acc.pdf" not in _figure_section(tmp_path, JobResult("methods", "methods.ipynb", "ok"))
