"""hacm.data.loader.default_num_workers: the loader processes a run gets when data.num_workers is unset."""
from __future__ import annotations

import os

import pytest
import torch

from hacm.data import loader


@pytest.mark.parametrize("cores, ranks_here, expected", [
    (16, None, 8),     # one GPU on a 16-core machine: capped at 8
    (16, "4", 3),      # four ranks on the node share its cores, one core each for the rank itself
    (6, None, 5),
    (2, "2", 1),       # never fewer than one worker on a GPU
])
def test_gpu_workers_follow_the_cores_this_rank_may_use(monkeypatch, cores, ranks_here, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    if ranks_here is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", ranks_here)
    assert loader.default_num_workers() == expected


def test_no_workers_when_the_model_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert loader.default_num_workers() == 0
