"""Shared fixtures: a small synthetic store, generated once per test session by the real
pipeline (`write_synthetic` -> `convert_ntu`), for tests that need realistic skeleton clips."""
from __future__ import annotations

import pytest

from hacm.data.convert import convert_ntu
from hacm.data.synth import write_synthetic


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory):
    """Path of a store with 6 performers x 25 classes x 3 cameras of synthetic clips (synth-xsub)."""
    root = tmp_path_factory.mktemp("synth_store")
    write_synthetic(root / "raw", seed=0, performers=6, replications=1, progress=False)
    return convert_ntu(root / "raw", root / "store", progress=False).store_path


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A one-node Slurm cluster (tests/slurm_cluster.py) for the session; clients reach it through
    SLURM_CONF. Skipped, saying why, where the daemons are not installed."""
    import os

    from slurm_cluster import LocalSlurm, missing_daemons

    missing = missing_daemons()
    if missing:
        pytest.skip(f"Slurm tests need {', '.join(missing)} (Debian slurm-wlm and munge: run .ci/install-slurm)")
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm"))
    cluster.start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
    assert not any(cluster.running()), "a Slurm daemon outlived the test session"
