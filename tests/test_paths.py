"""hacm.paths: relative paths mean the repository root from any working directory (a kernel in
notebooks/, a shell in a sub-folder), and a path that is not a store or run is answered with the
absolute path tried and the stores or runs that exist."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hacm import compare, notebook, paths
from hacm.errors import HacmError
from test_train import make_toy_store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A stand-in hacm checkout: pyproject.toml naming hacm, a notebooks/ folder, no $HACM_* set."""
    root = tmp_path / "checkout"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "hacm"\nversion = "0"\n')
    monkeypatch.delenv(paths.ROOT_ENV, raising=False)
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    return root


def test_the_root_is_the_checkout_around_the_working_directory(checkout, tmp_path, monkeypatch):
    monkeypatch.chdir(checkout / "notebooks")                 # where a JupyterLab kernel runs
    assert paths.repo_root() == checkout.resolve()
    assert paths.resolve("reports/demo/data/store") == checkout.resolve() / "reports/demo/data/store"
    assert paths.resolve(tmp_path / "x") == tmp_path / "x"     # absolute: as given
    assert notebook.output_dir("reports/scratch/x") == checkout.resolve() / "reports/scratch/x"
    assert not (checkout / "notebooks" / "reports").exists()   # not below the kernel's folder
    # another project's pyproject.toml is not hacm's root
    (checkout / "notebooks" / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert paths.repo_root() == checkout.resolve()
    # outside any checkout the working directory is the root (hacm pip-installed, used elsewhere)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert paths.repo_root() == outside.resolve() and paths.resolve("runs") == outside.resolve() / "runs"
    # $HACM_ROOT wins; $HACM_DATA moves the data root, which data/... paths fall back to
    monkeypatch.setenv(paths.ROOT_ENV, str(checkout))
    assert paths.repo_root() == checkout.resolve() and paths.data_root() == checkout.resolve() / "data"
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "datasets"))
    assert paths.resolve("data/synth/store") == tmp_path / "datasets" / "synth" / "store"
    (checkout / "data" / "synth" / "store").mkdir(parents=True)   # present under the root: read there
    assert paths.resolve("data/synth/store") == checkout.resolve() / "data" / "synth" / "store"


def test_a_store_given_relative_to_the_root_opens_from_notebooks(checkout, monkeypatch):
    make_toy_store(checkout / "reports" / "demo" / "data" / "store", clips_per_class=2)
    monkeypatch.chdir(checkout / "notebooks")
    assert notebook.store_path("reports/demo/data/store") == checkout.resolve() / "reports/demo/data/store"
    with pytest.raises(HacmError) as err:
        notebook.store_path("reports/dmeo/data/store")
    message = str(err.value)
    assert message.startswith(f"store: {checkout.resolve() / 'reports/dmeo/data/store'} does not exist; ")
    assert message.endswith("stores that exist: reports/demo/data/store") and "\n" not in message


def test_runs_patterns_resolve_from_the_root_and_errors_list_the_runs(checkout, monkeypatch):
    for name in ("a", "b"):
        (checkout / "runs" / name).mkdir(parents=True)
        (checkout / "runs" / name / "config.yaml").write_text("protocol: pretrain\n")
    monkeypatch.chdir(checkout / "notebooks")
    assert compare.find_runs(["runs/*"]) == [checkout.resolve() / "runs" / n for n in ("a", "b")]
    with pytest.raises(HacmError) as err:
        compare.find_runs(["runs/z*"])
    assert str(err.value).startswith(f"runs: {checkout.resolve() / 'runs/z*'} (a pattern) matches no run directory")
    assert str(err.value).endswith("runs that exist: runs/a, runs/b")


def test_data_overview_writes_synthetic_data_only_where_asked_and_empty(checkout, monkeypatch):
    monkeypatch.chdir(checkout)
    mine = checkout / "data" / "pku1"
    # a path meant for real data gets no synthetic clips unless asked
    with pytest.raises(HacmError, match=r"does not exist; convert your data into it with `hacm data ntu\|pku "
                                        r"--out data/pku1`, or set make_synthetic=True"):
        notebook.overview_store("data/pku1")
    assert not mine.exists()
    (mine / "skeleton").mkdir(parents=True)
    (mine / "skeleton" / "0001-L.txt").write_text("raw\n")
    for asked in (False, True):   # a folder holding anything else is refused even when asked
        with pytest.raises(HacmError, match=r"^store: \S+/data/pku1 holds files but no hacm store; point `store` "
                                            r"at a store, or convert your data into one with `hacm data ntu\|pku"):
            notebook.overview_store("data/pku1", make_synthetic=asked)
    assert sorted(p.name for p in mine.rglob("*")) == ["0001-L.txt", "skeleton"]
    # an existing store is shown as it is, whatever make_synthetic says
    make_toy_store(checkout / "data" / "toy", clips_per_class=2)
    assert notebook.overview_store("data/toy", make_synthetic=True) == checkout.resolve() / "data" / "toy"


@pytest.mark.slow
def test_data_overview_generates_into_an_empty_directory_when_asked(checkout, monkeypatch):
    monkeypatch.chdir(checkout)
    (checkout / "data" / "empty").mkdir(parents=True)
    path = notebook.overview_store("data/empty", make_synthetic=True, performers=3, replications=1,
                                   classes=["clap", "kick"])
    assert notebook.is_store(path) and path == checkout.resolve() / "data" / "empty"


def test_the_cli_reads_paths_from_the_root_in_a_subdirectory(checkout):
    """`hacm data info reports/store` from notebooks/ reads <root>/reports/store."""
    make_toy_store(checkout / "reports" / "store", clips_per_class=2)
    done = subprocess.run([sys.executable, "-m", "hacm", "data", "info", "reports/store"], cwd=checkout / "notebooks",
                          capture_output=True, text=True, env={**_env(), "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert "clips" in done.stdout or "samples" in done.stdout


def _env() -> dict:
    import os
    return {k: v for k, v in os.environ.items() if k not in (paths.ROOT_ENV, paths.DATA_ENV)}
