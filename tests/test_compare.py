"""Run comparison (hacm.compare): finding runs, readable names, the config diff, the comparison table,
overlaid curves, and the sortable HTML table in a real browser."""
from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib.colors as mcolors
import pytest

from hacm import compare
from hacm.config import load_config
from hacm.errors import HacmError
from hacm.rundir import RunWriter, prepare
from hacm.viz.curves import run_curves_figure
from hacm.viz.tables import SortableTable

CHROMIUM = "/usr/bin/chromium"


def _make_run(run_dir: Path, overrides: dict, epochs: list[dict], summary: dict | None) -> Path:
    """A run directory as training leaves it (config, epoch records, summary), without training."""
    cfg = load_config("synth_pretrain", overrides)
    prepare(cfg, run_dir, resume=False, is_main=True)
    writer = RunWriter(run_dir, True, tensorboard=False)
    for i, rec in enumerate(epochs):
        writer.log({"kind": "epoch", "epoch": i, "step": i + 1, **rec})
    if summary is not None:
        writer.summary(summary)
    return run_dir


@pytest.fixture
def runs(tmp_path):
    """ha-cm seed 0 and 1, a "mamp" seed 0 (no contrast, another tau) and a linear probe
    reading ha-cm seed 0's encoder; the seed-1 run stopped early (no summary)."""
    root = tmp_path / "study" / "runs"
    store = str(tmp_path / "data" / "store")
    base = {"data.store": store}
    _make_run(root / "ha-cm" / "seed0" / "pretrain", base, [{"loss": 1.0}, {"loss": 0.5}],
              {"protocol": "pretrain", "loss": 0.5, "epochs": 2, "seconds": 3.0})
    _make_run(root / "ha-cm" / "seed1" / "pretrain", {**base, "train.seed": 1}, [{"loss": 1.2}], None)
    _make_run(root / "mamp" / "seed0" / "pretrain",
              {**base, "model.cc_weight": 0.0, "masking.tau": 0.5},
              [{"loss": 0.9}, {"loss": 0.7}], {"protocol": "pretrain", "loss": 0.7, "epochs": 2})
    _make_run(root / "ha-cm" / "seed0" / "linprobe",
              {**base, "protocol": "linprobe", "train.pretrained": str(root / "ha-cm" / "seed0" / "pretrain")},
              [{"loss": 2.0, "test_acc": 0.25}, {"loss": 1.5, "test_acc": 0.5}],
              {"protocol": "linprobe", "loss": 1.5, "test_acc": 0.5, "best_test_acc": 0.5, "epochs": 2})
    return root


def test_find_runs_takes_paths_and_globs_once_each(runs):
    found = compare.find_runs([str(runs / "*" / "seed0" / "pretrain"), runs / "ha-cm" / "seed0" / "pretrain"])
    assert found == [(runs / "ha-cm" / "seed0" / "pretrain").resolve(), (runs / "mamp" / "seed0" / "pretrain").resolve()]
    with pytest.raises(HacmError, match="matches no run directory"):
        compare.find_runs(str(runs / "nothing*"))
    # a pattern keeps the run directories among its matches: ha-cm/seed0/* holds files too
    (runs / "ha-cm" / "seed0" / "notes.txt").write_text("not a run")
    assert len(compare.find_runs(str(runs / "ha-cm" / "seed0" / "*"))) == 2
    with pytest.raises(HacmError, match="matches no run directory"):
        compare.find_runs(str(runs / "ha-cm" / "seed0" / "*.txt"))
    with pytest.raises(HacmError, match="not a hacm run directory"):
        compare.find_runs(runs / "ha-cm")


def test_run_names_are_readable_and_unique(runs):
    paths = compare.find_runs(str(runs / "*" / "*" / "*"))
    names = compare.run_names(paths)
    assert sorted(names.values()) == ["ha-cm/seed0/linprobe", "ha-cm/seed0/pretrain", "ha-cm/seed1/pretrain",
                                      "mamp/seed0/pretrain"]
    # the common root is as deep as it can be: two seed0 runs of ha-cm are named below ha-cm/seed0
    two = compare.run_names([runs / "ha-cm" / "seed0" / "pretrain", runs / "ha-cm" / "seed0" / "linprobe"])
    assert sorted(two.values()) == ["linprobe", "pretrain"]
    assert list(compare.run_names([runs / "mamp" / "seed0" / "pretrain"]).values()) == ["pretrain"]
    with pytest.raises(HacmError, match="twice"):
        compare.run_names([runs / "mamp" / "seed0" / "pretrain"] * 2)


def test_config_diff_finds_exactly_the_differing_keys(runs):
    pre = compare.load_runs(str(runs / "*" / "*" / "pretrain"))
    diff = compare.config_diff(pre)
    assert set(diff) == {"masking.tau", "model.cc_weight", "train.seed"}
    assert diff["train.seed"] == {"ha-cm/seed0/pretrain": 0, "ha-cm/seed1/pretrain": 1, "mamp/seed0/pretrain": 0}
    assert diff["model.cc_weight"]["mamp/seed0/pretrain"] == 0.0 and diff["masking.tau"]["mamp/seed0/pretrain"] == 0.5
    assert diff["model.cc_weight"]["ha-cm/seed0/pretrain"] > 0
    # one run, or identical configs: nothing differs
    assert compare.config_diff(pre[:1]) == {}
    # a path below the common root is shown relative to it (a moved report still reads right)
    both = compare.load_runs([runs / "ha-cm" / "seed0" / "pretrain", runs / "ha-cm" / "seed0" / "linprobe"])
    diff = compare.config_diff(both)
    assert diff["train.pretrained"] == {"pretrain": None, "linprobe": "pretrain"}
    assert "protocol" in diff and not any(os.path.isabs(str(v)) for d in diff.values() for v in d.values())


def test_comparison_rows_hold_differing_keys_and_results_in_percent(runs):
    all_runs = compare.load_runs(str(runs / "*" / "*" / "*"))
    rows = {r["run"]: r for r in compare.comparison_rows(all_runs)}
    lin, stopped = rows["ha-cm/seed0/linprobe"], rows["ha-cm/seed1/pretrain"]
    assert lin["test_acc (%)"] == 50.0 and lin["best_test_acc (%)"] == 50.0 and lin["finished"] is True
    assert "epochs" not in lin and "seconds" not in rows["ha-cm/seed0/pretrain"]    # bookkeeping left out
    assert stopped["finished"] is False
    # the pre-training runs weigh L_cc differently (mamp: 0): their totals give way to what each sums
    assert "loss" not in stopped and stopped["loss formula"] == "loss = 0.5 L_rec + 0.5 L_cc"
    assert rows["mamp/seed0/pretrain"]["loss formula"] == "loss = L_rec"
    same = compare.load_runs([str(runs / "ha-cm" / "seed1" / "pretrain")])
    assert compare.comparison_rows(same)[0]["loss"] == 1.2                       # its last epoch
    assert set(lin) - {"run", "finished", "loss", "test_acc (%)", "best_test_acc (%)"} == \
        set(compare.config_diff(all_runs))
    chosen = compare.comparison_rows(all_runs, metrics=["test_acc"])
    assert [r["test_acc (%)"] for r in chosen] == [50.0, None, None, None]
    assert list(rows) == [r["run"] for r in compare.comparison_rows(all_runs)]
    assert list(rows["ha-cm/seed0/linprobe"])[:2] == ["run", "finished"]


def test_config_diff_rows_list_the_runs_of_each_value(runs):
    pre = compare.load_runs(str(runs / "*" / "*" / "pretrain"))
    rows = compare.config_diff_rows(compare.config_diff(pre))
    assert {"key": "train.seed", "value": "0", "runs": "ha-cm/seed0/pretrain, mamp/seed0/pretrain"} in rows
    assert {"key": "train.seed", "value": "1", "runs": "ha-cm/seed1/pretrain"} in rows
    assert sorted({r["key"] for r in rows}) == ["masking.tau", "model.cc_weight", "train.seed"] and len(rows) == 6


def test_epoch_curves_group_runs_by_protocol(runs):
    all_runs = compare.load_runs(str(runs / "*" / "*" / "*"))
    names = compare.run_names([r.path for r in all_runs])
    hacm_runs = [r for r in all_runs if r.config.protocol == "pretrain" and r.config.model.cc_weight > 0]
    curves = compare.epoch_curves(hacm_runs + [r for r in all_runs if r.config.protocol == "linprobe"], names, ["loss"])
    assert {p: sorted(c) for p, c in curves.items()} == {
        "linprobe": ["ha-cm/seed0/linprobe"], "pretrain": ["ha-cm/seed0/pretrain", "ha-cm/seed1/pretrain"]}
    assert curves["pretrain"]["ha-cm/seed1/pretrain"] == [r for r in all_runs if r.path.parent.name == "seed1"][0].rows("epoch")
    assert list(compare.epoch_curves(all_runs, names, ["test_acc"])) == ["linprobe"]


def _log_losses(run_dir: Path, cc_weight: float) -> None:
    """Epoch records as a pre-training with model.cc_weight logs them (loss_cc 0 without the contrast)."""
    rows = []
    for epoch, (rec, cc) in enumerate([(1.0, 4.0), (0.8, 3.0)]):
        cc = cc if cc_weight > 0 else 0.0
        rows.append({"kind": "epoch", "epoch": epoch, "loss_rec": rec, "loss_cc": cc,
                     "loss": (1 - cc_weight) * rec + cc_weight * cc})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_losses_are_compared_as_themselves(runs):
    """HA-CM's 0.5 L_rec + 0.5 L_cc is not set against a baseline's L_rec alone; a baseline's logged
    L_cc = 0 is not drawn; the legend states each run's formula."""
    _log_losses(runs / "ha-cm" / "seed0" / "pretrain", 0.5)
    _log_losses(runs / "mamp" / "seed0" / "pretrain", 0.0)
    both = compare.load_runs([str(runs / "ha-cm" / "seed0" / "pretrain"), str(runs / "mamp" / "seed0" / "pretrain")])
    names = compare.run_names([r.path for r in both])
    formulas = {names[r.path.resolve()]: compare.loss_formula(r) for r in both}
    assert formulas == {"ha-cm/seed0/pretrain": "loss = 0.5 L_rec + 0.5 L_cc", "mamp/seed0/pretrain": "loss = L_rec"}
    curves = compare.epoch_curves(both, names, ["loss", "loss_rec", "loss_cc"])["pretrain"]
    assert not any("loss" in row for rows in curves.values() for row in rows)          # totals differ: left out
    assert [row["loss_cc"] for row in curves["ha-cm/seed0/pretrain"]] == [4.0, 3.0]
    assert not any("loss_cc" in row for row in curves["mamp/seed0/pretrain"])          # not trained: not drawn
    fig = run_curves_figure(curves, ["loss", "loss_rec", "loss_cc"], notes=formulas)
    rec_ax, cc_ax = fig.axes
    assert rec_ax.get_title().startswith("L_rec") and cc_ax.get_title().startswith("L_cc")
    assert [list(line.get_ydata()) for line in rec_ax.lines] == [[1.0, 0.8], [1.0, 0.8]]   # the same L_rec
    assert len(cc_ax.lines) == 1
    assert [t.get_text() for t in fig.legends[0].texts] == ["ha-cm/seed0/pretrain: loss = 0.5 L_rec + 0.5 L_cc",
                                                            "mamp/seed0/pretrain: loss = L_rec"]
    # runs that share the weights keep their total
    same = compare.epoch_curves(both[:1], names, ["loss"])["pretrain"]
    assert [row["loss"] for row in same["ha-cm/seed0/pretrain"]] == [2.5, 1.9]


def test_run_curves_overlay_runs_with_seed_sharing_a_colour(runs):
    curves = {name: run.rows("epoch") for run, name in
              zip(compare.load_runs(str(runs / "*" / "*" / "*")),
                  compare.run_names(compare.find_runs(str(runs / "*" / "*" / "*"))).values())}
    fig = run_curves_figure(curves, ["loss", "test_acc", "not_logged"])
    loss_ax, acc_ax = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["loss: the weighted total (legend: its formula)", "test_acc"] and acc_ax.get_ylabel() == "test_acc (%)"
    assert len(loss_ax.lines) == 4 and len(acc_ax.lines) == 1
    assert list(acc_ax.lines[0].get_ydata()) == [25.0, 50.0]                       # percent
    lines = dict(zip(curves, loss_ax.lines))
    seed0, seed1 = lines["ha-cm/seed0/pretrain"], lines["ha-cm/seed1/pretrain"]
    assert mcolors.same_color(seed0.get_color(), seed1.get_color()) and seed0.get_linestyle() != seed1.get_linestyle()
    assert not mcolors.same_color(seed0.get_color(), lines["mamp/seed0/pretrain"].get_color())
    assert len(fig.legends[0].texts) == 4
    with pytest.raises(HacmError, match="no run logged"):
        run_curves_figure(curves, ["not_logged"])


def test_sortable_table_html_carries_numbers_for_sorting():
    table = SortableTable(["run", "acc"], [{"run": "a", "acc": 9.5}, {"run": "b", "acc": None},
                                           {"run": "c", "acc": float("nan")}])
    html = table.to_html()
    assert '<td data-sort="9.5">9.50</td>' in html and html.count('data-sort=""') == 2
    assert html.count("<th title") == 2 and "addEventListener" in html
    assert table.to_html().split('"')[1] != html.split('"')[1]          # one id per rendering


@pytest.mark.browser
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed")
def test_sortable_table_sorts_by_value_in_a_browser(tmp_path):
    from playwright.sync_api import sync_playwright

    rows = [{"run": "b", "acc": 10.0}, {"run": "a", "acc": 9.0}, {"run": "c", "acc": None},
            {"run": "d", "acc": 100.0}]
    page_file = tmp_path / "table.html"
    page_file.write_text(f"<html><body>{SortableTable(['run', 'acc'], rows).to_html()}</body></html>")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())
        column = lambda: page.eval_on_selector_all("tbody tr", "rs => rs.map(r => r.cells[0].textContent)")  # noqa: E731
        page.click("th:nth-child(2)")
        assert column() == ["a", "b", "d", "c"]          # 9 < 10 < 100 by value; the empty cell last
        page.click("th:nth-child(2)")
        assert column() == ["d", "b", "a", "c"]          # the other way; empty still last
        page.click("th:nth-child(1)")
        assert column() == ["a", "b", "c", "d"]
        browser.close()
    assert errors == []
