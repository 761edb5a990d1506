"""The Slurm executor against a real one-node Slurm cluster (tests/slurm_cluster.py): submission
through submitit with afterok dependencies, failures with their Slurm log, cancelled jobs,
reattaching and --collect. Tiny stand-in notebooks, as in test_report.py."""
from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from hacm.report import collect_batch, run_batch
from hacm.report.runner import read_record
from hacm.report.slurm import SlurmOptions, sbatch_parameters, scheduler_states
from test_report import GOOD_JOBS, _batch, _notebook, workspace  # noqa: F401  (workspace: a fixture)

pytestmark = [pytest.mark.slurm, pytest.mark.notebook]

FAST = SlurmOptions(poll_s=0.5, time_min=10)
_SLEEPER = ("import pathlib, time\n(pathlib.Path(report_dir).parent / 'sleeper.started').write_text('')\n"
            "time.sleep(600)")


def _numbers(index: Path) -> dict[str, str]:
    """Each job's 'key numbers' cell of an index page."""
    rows = re.findall(r'<tr id="job-([^"]+)">(.*?)</tr>', index.read_text(), re.S)
    return {name: re.findall(r"<td>(.*?)</td>", row, re.S)[3] for name, row in rows}


def test_batch_with_a_dependency_runs_through_sbatch_as_it_runs_here(slurm_cluster, workspace):  # noqa: F811
    jobs = GOOD_JOBS + [{"name": "other", "notebook": "produce", "parameters": {"value": 7}}]
    batch = _batch(workspace, jobs)
    here = run_batch(batch, out_dir=workspace / "here", progress=False)
    there = run_batch(batch, out_dir=workspace / "there", progress=False, executor="slurm", slurm=FAST)
    assert [j.status for j in there.jobs] == ["ok", "ok", "ok"], [j.error for j in there.jobs]
    assert [(j.name, j.summary) for j in there.jobs] == [(j.name, j.summary) for j in here.jobs]
    assert _numbers(there.index) == _numbers(here.index) and "41" in _numbers(there.index)["use"]
    # each job ran as a Slurm job of its own, with its log under the report directory
    logs = sorted(p.name for p in (workspace / "there" / ".slurm").iterdir() if p.is_dir())
    assert len(logs) == 3 and all((workspace / "there" / ".slurm" / i / f"{i}_0_log.out").is_file() for i in logs)
    # running it again submits nothing: every job is unchanged
    again = run_batch(batch, out_dir=workspace / "there", progress=False, executor="slurm", slurm=FAST)
    assert [j.status for j in again.jobs] == ["unchanged"] * 3


def test_failing_job_keeps_its_slurm_log_and_its_dependent_is_cancelled(slurm_cluster, workspace):  # noqa: F811
    jobs = [{"name": "boom", "notebook": "explode"},
            {"name": "after_boom", "notebook": "consume", "depends_on": ["boom"], "parameters": {"upstream": "${jobs.boom}"}}]
    out = workspace / "report"
    result = run_batch(_batch(workspace, jobs), out_dir=out, progress=False, executor="slurm", slurm=FAST)
    boom, after = result.result("boom"), result.result("after_boom")
    assert boom.status == "failed" and boom.error == "ValueError: deliberate failure" and boom.failing_cell == 4
    log = boom.failing_source.split("--- Slurm log (end) ---")[1]
    assert "deliberate failure" in log                      # the tail of the job's Slurm log
    assert after.status == "skipped" and "upstream job boom did not succeed" in after.error
    # the dependent never ran: Slurm held it (DependencyNeverSatisfied) and the executor cancelled it
    assert scheduler_states([after.slurm_job_id])[after.slurm_job_id].state == "CANCELLED"
    assert not (out / "after_boom" / "consume.ipynb").exists()
    row = re.search(r'<tr id="job-boom">.*?</tr>', result.index.read_text(), re.S).group(0)
    assert "deliberate failure" in row and "Slurm log" in row


def test_rerun_reattaches_and_scancel_is_reported_as_cancelled(slurm_cluster, workspace):  # noqa: F811
    _notebook(workspace / "notebooks" / "sleeper.ipynb", "report_dir = '.'", _SLEEPER)
    batch, out = _batch(workspace, [{"name": "sleeper", "notebook": "sleeper"}]), workspace / "report"
    first = run_batch(batch, out_dir=out, progress=False, executor="slurm", slurm=FAST, wait=False)
    job_id = read_record(out / "sleeper").slurm_job_id
    assert first.result("sleeper").status in ("pending", "running") and job_id
    assert collect_batch(batch, out_dir=out).result("sleeper").slurm_job_id == job_id

    followed: dict = {}
    follower = threading.Thread(target=lambda: followed.update(result=run_batch(
        batch, out_dir=out, progress=False, executor="slurm", slurm=FAST)))
    follower.start()
    deadline = time.monotonic() + 240
    while not (out / "sleeper.started").exists():
        assert time.monotonic() < deadline, "the sleeper never started"
        time.sleep(0.3)
    queue = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout
    assert queue.split() == [job_id, "tiny.sleeper"]        # reattached: not submitted a second time
    subprocess.run(["scancel", job_id], check=True)
    follower.join(timeout=120)
    result = followed["result"].result("sleeper")
    assert result.status == "cancelled" and result.slurm_job_id == job_id and "scancel" in result.error
    row = re.search(r'<tr id="job-sleeper">.*?</tr>', followed["result"].index.read_text(), re.S).group(0)
    assert "cancelled" in row


def test_sbatch_parameters_carry_dependencies_partition_and_gpus(workspace):  # noqa: F811
    from hacm.report import load_batch

    batch = load_batch(_batch(workspace, GOOD_JOBS))
    use = next(j for j in batch.jobs if j.name == "use")
    params = sbatch_parameters(use, batch, SlurmOptions(partition="gpu", gpus_per_job=2, time_min=90), ["17", "18"])
    assert params["dependency"] == "afterok:17:18" and params["partition"] == "gpu"
    assert params["gpus_per_node"] == 2 and params["time"] == 90 and params["job_name"] == "tiny.use"
    plain = sbatch_parameters(use, batch, SlurmOptions(), [])
    assert "dependency" not in plain and "partition" not in plain and "gpus_per_node" not in plain


def test_a_job_training_on_several_nodes_gets_them_and_runs_its_notebook_once(workspace):  # noqa: F811
    from hacm.report import load_batch
    from hacm.report.slurm import job_resources

    _notebook(workspace / "notebooks" / "trainer.ipynb", "config = ''\noverrides = {}\nreport_dir = '.'")
    jobs = [{"name": "big", "notebook": "trainer",
             "parameters": {"config": "synth_pretrain", "overrides": {"train.nodes": 2, "train.gpus_per_node": 4}}},
            {"name": "small", "notebook": "trainer", "parameters": {"config": "synth_pretrain"}},
            {"name": "other", "notebook": "produce"}]
    batch = load_batch(_batch(workspace, jobs))
    big, small, other = batch.jobs
    out = workspace / "report"
    assert [job_resources(j, out) for j in batch.jobs] == [(2, 4), (1, 1), (1, 1)]
    gpu = sbatch_parameters(big, batch, SlurmOptions(gpus_per_job=1), [], (2, 4))
    assert (gpu["nodes"], gpu["ntasks_per_node"], gpu["gpus_per_node"], gpu["use_srun"]) == (2, 1, 4, False)
    cpu = sbatch_parameters(big, batch, SlurmOptions(), [], (2, 4))
    assert cpu["nodes"] == 2 and "gpus_per_node" not in cpu
    assert "use_srun" not in sbatch_parameters(small, batch, SlurmOptions(), [], (1, 1))
