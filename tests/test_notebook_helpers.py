"""hacm.notebook: the cached-run helper notebooks use, and their output helpers."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

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
    assert again.summary == run.summary and again.config == config_replace(cfg, train={"amp": "off"})   # auto, on a CPU
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
    with pytest.raises(HacmError, match=r"holds no run to continue .*; set resume='auto' to start one$"):
        notebook.train_or_read(cfg, tmp_path / "none", resume=True)
    notebook.train_or_read(cfg, tmp_path / "run", resume=False)
    with pytest.raises(HacmError, match="already holds a run; set resume='auto' to continue or read it, "
                                        "or overwrite=True to replace it$"):
        notebook.train_or_read(cfg, tmp_path / "run", resume=False)


def test_overwrite_replaces_a_run_and_errors_speak_notebook_parameters(cfg, tmp_path):
    first = notebook.train_or_read(cfg, tmp_path / "run")
    (tmp_path / "run" / "stale.txt").write_text("from the replaced run")
    longer = config_replace(cfg, train={"epochs": 2})
    with pytest.raises(HacmError) as err:
        notebook.train_or_read(longer, tmp_path / "run")
    assert str(err.value).endswith("set overwrite=True to replace it, or run_dir to another directory")
    assert "--" not in str(err.value)                       # no command-line flags in notebook messages
    run = notebook.train_or_read(longer, tmp_path / "run", overwrite=True)
    assert run.summary["epochs"] == 2 and first.summary["epochs"] == 1
    assert not (tmp_path / "run" / "stale.txt").exists()    # replaced, not continued
    # a directory that is not a run is never deleted
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(HacmError, match="overwrite=True deletes run directories only"):
        notebook.train_or_read(cfg, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_store_parameter_defaults_to_the_data_root(cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(notebook.DATA_ENV, str(tmp_path / "root"))
    default = tmp_path / "root" / "synth" / "store"
    assert notebook.default_store() == default
    with pytest.raises(HacmError) as err:
        notebook.open_store("")
    assert str(err.value) == (f"store: {default} does not exist; set `store` to a store directory, e.g. "
                              f"reports/demo/data/store (the data_overview notebook writes the synthetic store to "
                              f"{default}); no stores found below {tmp_path} or {tmp_path / 'root'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HacmError, match="empty is not a hacm store; set `store` to a store directory"):
        notebook.with_store("synth_pretrain", {}, tmp_path / "empty")
    with pytest.raises(HacmError, match=f"^store: {default} does not exist"):   # synth configs: data/synth/store
        notebook.with_store("synth_pretrain", {}, "")
    shutil.copytree(cfg.data.store, default)
    # the synth configs' data/synth/store is the default store; `store` and overrides' data.store come first
    assert notebook.with_store("synth_pretrain", {"train.epochs": 3}) == {"train.epochs": 3, "data.store": str(default)}
    assert notebook.with_store("synth_pretrain", {}, cfg.data.store) == {"data.store": cfg.data.store}
    assert notebook.with_store("synth_pretrain", {"data.store": cfg.data.store}) == {"data.store": cfg.data.store}
    assert notebook.open_store("").path == default
    monkeypatch.delenv(notebook.DATA_ENV)   # outside a checkout, the working directory is the root (hacm.paths)
    assert notebook.default_store() == tmp_path / "data" / "synth" / "store"


def test_a_hacm_error_in_a_cell_shows_one_line(capsys, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert notebook.show_errors_briefly(shell)
    result = shell.run_cell(f"from hacm import notebook\nnotebook.open_store({str(tmp_path / 'x')!r})")
    assert isinstance(result.error_in_exec, HacmError)       # the cell still fails
    shown = capsys.readouterr()
    text = (shown.out + shown.err).strip()
    assert text.startswith(f"HacmError: store: {tmp_path / 'x'} does not exist; set `store` to a store directory, "
                           f"e.g. reports/demo/data/store (the data_overview notebook writes the synthetic store to "
                           f"{notebook.default_store()}); ") and "\n" not in text
    shell.run_cell("1 / 0")                                  # other errors keep their traceback
    assert "Traceback" in capsys.readouterr().out


def test_summary_and_test_set(cfg, tmp_path):
    report = notebook.output_dir(tmp_path / "a" / "b")
    path = notebook.write_summary(report, {"x": np.float32(0.5), "v": np.arange(2),
                                           "runs": {"in": report / "run", "beside": tmp_path / "a" / "c"}})
    # paths are written relative to the report directory: the summary survives a move
    assert json.loads(path.read_text()) == {"x": 0.5, "v": [0, 1], "runs": {"in": "run", "beside": "../c"}}
    test = notebook.test_set(cfg)
    assert len(test) == 6 * 4 and test.p_interval == cfg.data.p_interval_test and not test.random_rot
