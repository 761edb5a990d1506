"""One writer per output directory (hacm.lock), with real processes: a second writer of a run
directory, a store or a report is refused with one line naming the holder, exit status 2, and
touches nothing; a lock whose holder died is taken over; a directory a failed call created is gone."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_report import GOOD_JOBS, _batch, workspace  # noqa: F401  (fixture)
from test_train import make_toy_store, toy_config

from hacm import lock
from hacm.config import to_yaml

REPO = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from hacm import lock; lock.acquire(sys.argv[1]); "
        "print('held', flush=True); time.sleep(float(sys.argv[2]))")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _hacm(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hacm", *map(str, args)], capture_output=True, text=True,
                          env=_env(), cwd=cwd, timeout=300)


def _holder(directory: Path, seconds: float = 120) -> subprocess.Popen:
    """Another process that holds `directory`'s lock for `seconds` or until killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), str(seconds)], stdout=subprocess.PIPE,
                         text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def _snapshot(directory: Path) -> dict:
    return {p.relative_to(directory).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _assert_refused(proc: subprocess.CompletedProcess, directory: Path, holder_pid: int) -> None:
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("hacm: error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(directory.resolve()) in errors[0] and "another hacm process is writing here" in errors[0]
    assert f"pid {holder_pid} on " in errors[0] and "since 20" in errors[0]


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=6)


def test_lock_is_exclusive_reentrant_released_and_taken_over_from_the_dead(tmp_path, caplog):
    d = tmp_path / "out"
    holder = _holder(d)
    try:
        with pytest.raises(lock.DirectoryLocked, match=f"pid {holder.pid} on .*time.sleep"):
            lock.acquire(d)
        with pytest.raises(lock.DirectoryLocked):
            lock.acquire(d, wait_s=0.5)     # waits, then still refuses
        (d / ".summary.json.x1y2.tmp").write_text("{half")    # what the holder was writing when killed
        (d / "summary.json").write_text("{}")
    finally:
        holder.kill()                        # kill -9: the lock file keeps its record, the OS lock goes
        holder.wait()
    assert lock.read_holder(d)["pid"] == holder.pid
    with caplog.at_level("WARNING", logger="hacm.lock"):
        with lock.hold(d):
            assert f"writer that is gone (pid {holder.pid}" in caplog.text
            assert sorted(p.name for p in d.iterdir()) == [lock.LOCK_FILE, "summary.json"]   # its temporary gone
            assert lock.read_holder(d)["pid"] == os.getpid()
            with lock.hold(d):              # the same process may nest holds
                pass
            assert lock.is_held(d)
    assert not lock.is_held(d) and not (d / lock.LOCK_FILE).exists()
    fresh = tmp_path / "never_written"
    with lock.hold(fresh):
        assert fresh.is_dir()
    assert not fresh.exists()               # created by the hold, left empty: removed again


@pytest.mark.slow
def test_two_pretrains_into_one_out_second_is_refused(toy_store, tmp_path):
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(to_yaml(toy_config(toy_store.path, train={"epochs": 100000, "max_steps_per_epoch": 1,
                                                               "batch_size": 8, "tensorboard": False})))
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "hacm", "pretrain", "--config", str(cfg), "--out", str(out)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists():    # the first run is training
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        second = _hacm("pretrain", "--config", cfg, "--out", out)
        _assert_refused(second, out, first.pid)
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    starts = [line for line in (out / "metrics.jsonl").read_text().splitlines() if '"kind": "start"' in line]
    assert len(starts) == 1


def test_data_ntu_into_a_held_store_is_refused_and_touches_nothing(tmp_path):
    from hacm.data.synth import action_names, write_synthetic

    raw, store = tmp_path / "raw", tmp_path / "store"
    write_synthetic(raw, seed=0, performers=2, replications=1, classes=action_names()[:2], progress=False)
    store.mkdir()
    (store / "keep.txt").write_text("a file of the other writer")
    holder = _holder(store)
    try:
        before = _snapshot(store)
        proc = _hacm("data", "ntu", "--raw", raw, "--out", store, "--workers", 1)
        _assert_refused(proc, store, holder.pid)
        assert _snapshot(store) == before
    finally:
        holder.kill()
        holder.wait()
    proc = _hacm("data", "ntu", "--raw", raw, "--out", store, "--workers", 1)   # the holder is gone
    assert proc.returncode == 0, proc.stderr
    assert (store / "meta.json").is_file() and not (store / lock.LOCK_FILE).exists()
    # its progress, captured (not a terminal), is plain lines: no carriage-return redraws
    bars = [line for line in proc.stderr.splitlines() if line.startswith("convert")]
    assert "\r" not in proc.stderr and bars and all(len(line) < 200 for line in bars)
    assert bars[-1].startswith("convert synth: 100%")
    assert "taking over the lock of a writer that is gone" in proc.stderr   # the killed holder's


@pytest.mark.notebook
def test_report_rerun_while_running_is_refused(workspace, tmp_path):  # noqa: F811
    batch = _batch(workspace, GOOD_JOBS)
    out = workspace / "report"
    out.mkdir()
    holder = _holder(out)
    try:
        proc = _hacm("report", batch, "--out", out)
        _assert_refused(proc, out, holder.pid)
        assert _snapshot(out) == {lock.LOCK_FILE: _snapshot(out)[lock.LOCK_FILE]}
    finally:
        holder.kill()
        holder.wait()
    # a job directory still held by the process of an earlier run (the job of a killed runner,
    # stopping): the job's new process waits for it, then runs
    job_dir = out / "make"
    job_dir.mkdir()
    holder = _holder(job_dir, seconds=3)
    try:
        from hacm.report import run_batch

        assert run_batch(batch, out_dir=out, progress=False).ok
        assert holder.wait(timeout=30) == 0        # it ended by itself, was not overridden
    finally:
        holder.kill()
        holder.wait()
    assert yaml.safe_load((out / "use" / "summary.json").read_text()) == {"plus_one": 41}


def test_atomic_writes_get_the_modes_of_plain_files(tmp_path):
    from hacm.fileio import write_text_atomic

    umask = os.umask(0o022)
    os.umask(umask)
    plain, atomic = tmp_path / "plain.html", tmp_path / "atomic.html"
    plain.write_text("x")
    write_text_atomic(atomic, "x", fsync=False)
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask
