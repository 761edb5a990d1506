"""Fault injection: real processes killed with SIGKILL at seeded random moments during a conversion,
a pre-training, a linear probe and a report batch, then run again (or resumed), and compared with
an uninterrupted run: the same store bytes, the same weights and metrics (the resume contract of
hacm.train), a report index with every job. The module ends by printing the tally: faults
injected, outcomes (identical / resumed / restarted), lost (must be 0). Concurrent writers of each
kind are tests/test_lock.py's.

A kill lands wherever it lands: before the first write, mid-part, mid-checkpoint, mid-notebook.
A process that had already finished when its moment came counts as no fault injected.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from test_lock import _env
from test_report import GOOD_JOBS, _batch, workspace  # noqa: F401  (fixture)
from test_train import make_toy_store, toy_config

from hacm import checkpoint, lock, train
from hacm.config import to_yaml
from hacm.rundir import read_metrics

pytestmark = pytest.mark.faults

SEED = 16
TALLY: Counter = Counter()


@pytest.fixture(scope="module", autouse=True)
def tally(request):
    """Print the figures once the module's tests have run; nothing may be lost."""
    TALLY.clear()
    yield TALLY
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(TALLY.items()) if k not in ("injected", "lost"))
    line = (f"fault injection: {TALLY['injected']} faults injected; outcomes: {outcomes or 'none'}; "
            f"lost: {TALLY['lost']}")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():    # shown in the run's output, not only with -rA
        print(f"\n{line}")
    assert TALLY["lost"] == 0


def _kill_at(command: list[str], directory: Path, delay: float, cwd=None, ready=lambda: True) -> bool:
    """Run `command`, wait until it holds the lock of the `directory` it writes and `ready()` (it is
    at work), then `delay` seconds; SIGKILL it and its children. True when the kill hit the process,
    False when it had finished by then."""
    p = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=cwd,
                         start_new_session=True)
    deadline = time.monotonic() + 180
    while not ((lock.read_holder(directory) or {}).get("pid") == p.pid and ready()) and p.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    hit = p.poll() is None
    try:
        os.killpg(p.pid, signal.SIGKILL)      # the process and any worker it started
    except ProcessLookupError:                # all of them had ended
        pass
    p.wait()
    if hit:
        TALLY["injected"] += 1
    return hit


def _run(command: list[str], cwd=None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=cwd, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


# ----------------------------------------------------------------------------- conversion

CONVERT = ("import sys; from hacm.data.convert import convert_ntu; "
           "convert_ntu(sys.argv[1], sys.argv[2], workers=1, chunk_size=8, progress=False)")


def _store_bytes(store: Path) -> dict:
    meta = json.loads((store / "meta.json").read_text())
    meta.pop("created")
    return {"meta": meta, **{name: (store / name).read_bytes() for name in ("frames.bin", "index.npz", "splits.npz")}}


def test_conversion_killed_at_random_moments_gives_the_same_store(tmp_path):
    from hacm.data.convert import convert_ntu
    from hacm.data.synth import action_names, write_synthetic

    raw = tmp_path / "raw"
    write_synthetic(raw, seed=0, performers=2, replications=2, classes=action_names()[:4], progress=False)
    reference = convert_ntu(raw, tmp_path / "straight", workers=1, chunk_size=8, progress=False).store_path
    store = tmp_path / "killed"
    rng = np.random.default_rng(SEED)
    command = [sys.executable, "-c", CONVERT, str(raw), str(store)]
    hits = sum(_kill_at(command, store, float(delay))
               for delay in rng.uniform(0.0, 1.0, size=3))
    _run(command)
    same = _store_bytes(store) == _store_bytes(reference)
    TALLY["identical" if same else "lost"] += hits
    assert same and not (store / ".parts").exists() and not list(store.glob("*.tmp")), list(store.iterdir())


# ----------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    store = make_toy_store(root / "store", clips_per_class=6)
    pre = toy_config(store.path, train={"epochs": 4, "warmup_epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8,
                                        "log_every": 1, "tensorboard": False})
    train.run(pre, root / "pretrain")                                  # uninterrupted, in this process
    probe = toy_config(store.path, "linprobe", train={"epochs": 4, "warmup_epochs": 0, "max_steps_per_epoch": 2,
                                                       "batch_size": 8, "tensorboard": False,
                                                       "pretrained": str(root / "pretrain")})
    train.run(probe, root / "linprobe")
    return root, pre, probe


def _killed_then_finished(cfg, reference: Path, run_dir: Path, kills: int, tmp_path: Path, seed: int) -> None:
    """Kill `hacm <protocol>` `kills` times at seeded moments of its training, each time going on as
    a user would (--resume when a checkpoint exists, else start again), then let it finish; the
    result must equal the uninterrupted run's."""
    config = tmp_path / f"{cfg.protocol}.yaml"
    config.write_text(to_yaml(cfg))
    last = run_dir / checkpoint.CHECKPOINT_DIR / "last.pt"

    def command() -> list[str]:
        return [sys.executable, "-m", "hacm", cfg.protocol, "--config", str(config), "--out", str(run_dir),
                *(["--resume"] if last.exists() else [])]

    rng = np.random.default_rng(seed)
    outcomes = Counter()
    for delay in rng.uniform(0.0, 2.0, size=kills):
        # from its first step on (the start record is written once data and model are built)
        if _kill_at(command(), run_dir, float(delay), ready=(run_dir / "metrics.jsonl").exists):
            # what the next run does: continue from the last checkpoint, or start again (none yet)
            outcomes["resumed" if last.exists() else "restarted (killed before its first checkpoint)"] += 1
    _run(command())
    a = checkpoint.load_checkpoint(reference / checkpoint.CHECKPOINT_DIR / "last.pt")
    b = checkpoint.load_checkpoint(last)
    same_weights = a["epoch"] == b["epoch"] and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    epochs = [[(r["epoch"], r["loss"]) for r in read_metrics(d) if r["kind"] == "epoch"] for d in (reference, run_dir)]
    if same_weights and epochs[0] == epochs[1]:
        TALLY.update(outcomes)
    else:
        TALLY["lost"] += sum(outcomes.values())
    assert same_weights and epochs[0] == epochs[1]


@pytest.mark.slow
def test_pretraining_killed_at_random_moments_resumes_to_the_same_weights(toy, tmp_path):
    root, pre, _ = toy
    _killed_then_finished(pre, root / "pretrain", tmp_path / "run", kills=2, tmp_path=tmp_path, seed=SEED)


@pytest.mark.slow
def test_linear_probe_killed_at_a_random_moment_resumes_to_the_same_weights(toy, tmp_path):
    root, _, probe = toy
    _killed_then_finished(probe, root / "linprobe", tmp_path / "run", kills=1, tmp_path=tmp_path, seed=SEED + 1)
    a = json.loads((root / "linprobe" / "summary.json").read_text())
    b = json.loads((tmp_path / "run" / "summary.json").read_text())
    keys = ("test_acc", "best_test_acc", "epochs")
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}


# ----------------------------------------------------------------------------- report batch

@pytest.mark.notebook
def test_report_batch_killed_at_a_random_moment_completes_on_the_next_run(workspace):  # noqa: F811
    batch = _batch(workspace, GOOD_JOBS + [{"name": "again", "notebook": "produce", "parameters": {"value": 5}}])
    out = workspace / "report"
    rng = np.random.default_rng(SEED + 2)
    command = [sys.executable, "-m", "hacm", "report", str(batch), "--out", str(out)]
    hit = _kill_at(command, out, float(rng.uniform(0.0, 6.0)), cwd=workspace)
    done = _run(command, cwd=workspace)
    records = {name: json.loads((out / name / ".job.json").read_text()) for name in ("make", "use", "again")}
    complete = all(r["status"] in ("ok", "unchanged") for r in records.values()) \
        and records["use"]["summary"] == {"plus_one": 41} and records["again"]["summary"] == {"doubled": 10}
    index = (out / "index.html").read_text()
    complete = complete and all(re.search(rf'<tr id="job-{name}">(?:(?!</tr>).)*<td class="(ok|unchanged)">', index)
                                for name in records)
    TALLY["resumed" if complete else "lost"] += int(hit)
    assert complete, done.stdout + done.stderr
