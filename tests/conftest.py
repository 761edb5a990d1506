"""Shared fixtures: a small synthetic store, generated once per test session by the real
pipeline (`write_synthetic` -> `convert_ntu`), for tests that need realistic skeleton clips."""
from __future__ import annotations

import pytest

from hacm.data.convert import convert_ntu
from hacm.data.synth import write_synthetic


@pytest.fixture(scope="session")
def synth_store(tmp_path_factory):
    """Path of a store with 6 performers x 21 classes x 3 cameras of synthetic clips (synth-xsub)."""
    root = tmp_path_factory.mktemp("synth_store")
    write_synthetic(root / "raw", seed=0, performers=6, replications=1, progress=False)
    return convert_ntu(root / "raw", root / "store", progress=False).store_path
