"""The local executor: jobs in processes of their own, N at a time, threads and GPUs dealt out,
Ctrl-C recorded and resumed. Tiny stand-in notebooks (no torch), as in test_report.py."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hacm.errors import HacmError
from hacm.report import run_batch
from hacm.report.local import job_environment, job_slots, job_threads, visible_gpus
from test_report import GOOD_JOBS, _batch, _notebook, workspace  # noqa: F401  (workspace: a fixture)

pytestmark = pytest.mark.notebook

# writes its process id and environment, then waits (up to a minute) for its partner's file: two of
# them finish only if they run at the same time
_MEET = ("import json, os, pathlib, time\nout = pathlib.Path(report_dir)\n"
         "(out.parent / f'{me}.here').write_text('')\n"
         "json.dump({'pid': os.getpid(), 'ppid': os.getppid(), 'omp': os.environ.get('OMP_NUM_THREADS'),\n"
         "           'cuda': os.environ.get('CUDA_VISIBLE_DEVICES')}, open(out / 'env.json', 'w'))\n"
         "deadline = time.time() + 60\n"
         "while not (out.parent / f'{partner}.here').exists():\n"
         "    assert time.time() < deadline, f'{partner} never ran alongside {me}'\n"
         "    time.sleep(0.2)\n"
         "json.dump({'met': partner}, open(out / 'summary.json', 'w'))")
# counts its attempts in its own directory; the first one hangs until interrupted
_RESUMABLE = ("import json, pathlib, time\nout = pathlib.Path(report_dir)\nn = out / 'attempts.txt'\n"
              "attempt = int(n.read_text()) + 1 if n.exists() else 1\nn.write_text(str(attempt))\n"
              "(out.parent / 'resumable.started').write_text('')\n"
              "if attempt == 1:\n    time.sleep(600)\n"
              "json.dump({'attempts': attempt}, open(out / 'summary.json', 'w'))")


@pytest.fixture
def parallel_ws(workspace):  # noqa: F811
    _notebook(workspace / "notebooks" / "meet.ipynb", "me = ''\npartner = ''\nreport_dir = '.'", _MEET)
    _notebook(workspace / "notebooks" / "resumable.ipynb", "report_dir = '.'", _RESUMABLE)
    return workspace


def test_two_jobs_run_at_once_in_their_own_processes_with_half_the_threads(parallel_ws, capsys, monkeypatch):
    from hacm import progress

    jobs = [{"name": "a", "notebook": "meet", "parameters": {"me": "a", "partner": "b"}},
            {"name": "b", "notebook": "meet", "parameters": {"me": "b", "partner": "a"}}]
    out = parallel_ws / "report"
    monkeypatch.setattr(progress, "EVERY_S", 0.0)     # a log line for every change, not one each 15 s
    result = run_batch(_batch(parallel_ws, jobs), out_dir=out, jobs=2)
    assert [j.status for j in result.jobs] == ["ok", "ok"], [j.error for j in result.jobs]
    # the progress display, captured (not a terminal): plain lines of the batch's bar and of each
    # running job (its cell bar)
    shown = capsys.readouterr().err
    assert "batch tiny" in shown and re.search(r"\ba: +\d+%", shown) and re.search(r"\bb: +\d+%", shown)
    assert "\r" not in shown
    envs = [json.loads((out / name / "env.json").read_text()) for name in ("a", "b")]
    # each kernel's parent is a worker process of its own, not this interpreter
    assert envs[0]["ppid"] != envs[1]["ppid"] and os.getpid() not in {e["ppid"] for e in envs}
    assert {e["omp"] for e in envs} == {str(job_threads(len(os.sched_getaffinity(0)), 2))}
    # the kernels talk over Unix sockets: ipykernel's TCP warning is not in any job's output
    for name in ("a", "b"):
        assert "without encryption" not in (out / ".logs" / f"{name}.log").read_text()


def test_jobs_2_gives_the_outputs_of_jobs_1_and_a_failure_still_isolates_its_dependents(parallel_ws):
    jobs = GOOD_JOBS + [
        {"name": "boom", "notebook": "explode"},
        {"name": "after_boom", "notebook": "consume", "depends_on": ["boom"], "parameters": {"upstream": "${jobs.boom}"}},
    ]
    batch = _batch(parallel_ws, jobs)
    one = run_batch(batch, out_dir=parallel_ws / "one", progress=False, jobs=1)
    two = run_batch(batch, out_dir=parallel_ws / "two", progress=False, jobs=2)
    status = {j.name: j.status for j in two.jobs}
    assert status == {"make": "ok", "use": "ok", "boom": "failed", "after_boom": "skipped"}
    assert two.result("boom").failing_cell == 4 and two.result("boom").error == "ValueError: deliberate failure"
    assert [(j.name, j.status, j.summary, j.output_hash) for j in one.jobs] == \
           [(j.name, j.status, j.summary, j.output_hash) for j in two.jobs]


def _wait_for(path: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_ctrl_c_records_interrupted_jobs_and_a_rerun_continues_them(parallel_ws):
    jobs = [{"name": "quick", "notebook": "produce", "parameters": {"value": 3}},
            {"name": "resumable", "notebook": "resumable"},
            {"name": "later", "notebook": "consume", "depends_on": ["resumable", "quick"],
             "parameters": {"upstream": "${jobs.quick}"}}]
    batch, out = _batch(parallel_ws, jobs), parallel_ws / "report"
    command = [sys.executable, "-m", "hacm", "report", str(batch), "--out", str(out), "--jobs", "2"]
    # a session of its own, as a shell's foreground job: Ctrl-C is SIGINT to that process group
    # as a shell's foreground job, SIGINT not ignored: a process inherits an ignored SIGINT, and the test
    # process may have one (measured in the full suite: the runner then never saw the Ctrl-C)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    _wait_for(out / "resumable.started", process)
    _wait_for(out / "quick" / ".job.json", process)
    os.killpg(process.pid, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout and "zmq" not in (stderr + stdout).lower()
    record = json.loads((out / "resumable" / ".job.json").read_text())
    assert record["status"] == "interrupted"
    row = re.search(r'<tr id="job-resumable">.*?</tr>', (out / "index.html").read_text(), re.S).group(0)
    assert "interrupted" in row
    assert not (out / "later" / ".job.json").exists()      # never started, so nothing recorded

    (out / "resumable.started").unlink()
    again = run_batch(batch, out_dir=out, progress=False, jobs=2)
    assert {j.name: j.status for j in again.jobs} == {"quick": "unchanged", "resumable": "ok", "later": "ok"}
    assert again.result("resumable").summary == {"attempts": 2}     # its directory was kept


def test_job_slots_deal_gpus_out_per_job():
    four = ["0", "1", "2", "3"]
    assert job_slots(8, four, 1) == [["0"], ["1"], ["2"], ["3"]]       # one job per visible GPU
    assert job_slots(8, four, 2) == [["0", "1"], ["2", "3"]]
    assert job_slots(1, four, 2) == [["0", "1"]]
    assert job_slots(2, ["3", "5", "7"], 2) == [["3", "5"]]            # the odd one out stays idle
    assert job_slots(3, [], 1) == [[], [], []]                        # no GPU: CPU slots
    with pytest.raises(HacmError, match="--gpus-per-job 4: only 2 GPU"):
        job_slots(2, ["0", "1"], 4)
    with pytest.raises(HacmError, match="--jobs"):
        job_slots(0, [], 1)
    env = job_environment({"PATH": "/bin"}, 3, ["2", "3"])
    assert env == {"PATH": "/bin", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3", "CUDA_VISIBLE_DEVICES": "2,3"}
    assert "CUDA_VISIBLE_DEVICES" not in job_environment({}, 1, [])
    assert [job_threads(16, n) for n in (1, 2, 3, 32)] == [16, 8, 5, 1]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "1, 3"}) == ["1", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
