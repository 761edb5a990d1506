"""hacm.notebook: the cached-run helper notebooks use, and their output helpers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hacm import notebook, rundir
from hacm.config import replace as config_replace
from hacm.errors import HacmError
from test_train import make_toy_store, toy_config


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    store = make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)
    return toy_config(store.path, train={"epochs": 1, "checkpoint_every": 0})


def test_a_finished_run_is_read_not_trained_again(cfg, tmp_path):
    run = notebook.train_or_read(cfg, tmp_path / "run")
    stamp = (tmp_path / "run" / "summary.json").stat().st_mtime_ns
    again = notebook.train_or_read(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").stat().st_mtime_ns == stamp
    assert again.summary == run.summary and again.config == cfg
    # placement keys do not make another run
    notebook.train_or_read(config_replace(cfg, train={"device": "cpu"}, data={"num_workers": 0}), tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").stat().st_mtime_ns == stamp


def test_a_partial_run_is_continued_and_another_config_refused(cfg, tmp_path):
    notebook.train_or_read(cfg, tmp_path / "run")
    longer = config_replace(cfg, train={"epochs": 2})
    with pytest.raises(HacmError, match=r"another config \(train.epochs"):
        notebook.train_or_read(longer, tmp_path / "run")
    # a run killed after its first epoch: no summary yet, last.pt there -> continued, not restarted
    notebook.train_or_read(cfg, tmp_path / "killed")
    (tmp_path / "killed" / "summary.json").unlink()
    steps_before = [r["step"] for r in rundir.read_metrics(tmp_path / "killed") if r["kind"] == "epoch"]
    run = notebook.train_or_read(cfg, tmp_path / "killed")
    assert [r["step"] for r in run.rows("epoch")] == steps_before and run.summary["epochs"] == 1
    assert run.summary["loss"] == run.rows("epoch")[-1]["loss"]          # the summary is whole again
    with pytest.raises(HacmError, match="resume"):
        notebook.train_or_read(cfg, tmp_path / "x", resume="sometimes")


def test_resume_true_and_false_mean_what_the_command_line_means(cfg, tmp_path):
    with pytest.raises(HacmError, match="no such checkpoint"):
        notebook.train_or_read(cfg, tmp_path / "none", resume=True)
    notebook.train_or_read(cfg, tmp_path / "run", resume=False)
    with pytest.raises(HacmError, match="already holds a run"):
        notebook.train_or_read(cfg, tmp_path / "run", resume=False)


def test_summary_and_test_set(cfg, tmp_path):
    report = notebook.output_dir(tmp_path / "a" / "b")
    path = notebook.write_summary(report, {"x": np.float32(0.5), "v": np.arange(2),
                                           "runs": {"in": report / "run", "beside": tmp_path / "a" / "c"}})
    # paths are written relative to the report directory: the summary survives a move
    assert json.loads(path.read_text()) == {"x": 0.5, "v": [0, 1], "runs": {"in": "run", "beside": "../c"}}
    test = notebook.test_set(cfg)
    assert len(test) == 6 * 4 and test.p_interval == cfg.data.p_interval_test and not test.random_rot
