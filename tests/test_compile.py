"""train.compile: the compiled encoder/decoder compute what the eager ones compute.

Two backends are exercised. TorchInductor (the default of torch.compile, C++ kernels on the CPU)
compiles for about a minute even a toy encoder on a loaded 2-core machine, so its test is marked
slow and compares a forward pass. The training-loop test swaps in the "aot_eager" backend: the same
TorchDynamo graph capture and AOTAutograd forward/backward split that inductor starts from, without
the code generation, fast enough to run two optimiser steps through `train.run`.
"""
from __future__ import annotations

import functools

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

from hacm import checkpoint as ckpt
from hacm import train
from hacm.rundir import read_metrics
from test_train import make_toy_store, toy_config

# float64: the compiled graphs may reorder sums (rounding ~1e-16 relative), and AdamW's first
# steps move every parameter by about lr whatever the gradient's size, so a rounding-level
# gradient difference stays rounding-level only when it is far below eps (1e-8): in float64 it is.
# The same bounds as the DDP comparison (tests/test_ddp.py): 1e-9 on losses, 1e-7 on parameters.
LOSS_REL = 1e-9
PARAM_TOL = 1e-7
# float32 forward: fused kernels reorder reductions of up to 4 * dim = 128 terms (layer norms,
# softmax, matmuls); each reordering changes a result by ~sqrt(128) float32 ulps (1e-6 relative),
# and two blocks keep the total near 1e-6 (measured: 5e-7 of the largest feature). 1e-4 leaves two
# orders of magnitude for other CPUs' vector widths; a wrong compiled graph differs by O(1).
FORWARD_REL = 1e-4


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def test_compiled_pretraining_matches_eager(toy_store, tmp_path, monkeypatch, fresh_dynamo):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    runs = {}
    for compiled in (False, True):
        cfg = toy_config(toy_store.path, "pretrain", train={
            "epochs": 1, "warmup_epochs": 0, "batch_size": 16, "max_steps_per_epoch": 2, "log_every": 1,
            "dtype": "float64", "compile": compiled})
        train.run(cfg, tmp_path / str(compiled))
        runs[compiled] = ([r["loss"] for r in read_metrics(tmp_path / str(compiled)) if r["kind"] == "step"],
                          ckpt.load_checkpoint(tmp_path / str(compiled) / "checkpoints" / "last.pt")["model"])
        if not compiled:
            assert fresh_dynamo["stats"]["unique_graphs"] == 0
    # The compiled run went through TorchDynamo: one graph for the encoder's blocks, one for the decoder.
    assert fresh_dynamo["stats"]["unique_graphs"] == 2
    (eager_losses, eager_model), (compiled_losses, compiled_model) = runs[False], runs[True]
    # The second step's loss sees the weights after the first optimiser step.
    assert len(eager_losses) == 2 and compiled_losses == pytest.approx(eager_losses, rel=LOSS_REL, abs=0)
    assert compiled_model.keys() == eager_model.keys()      # checkpoints keep the eager state dict
    for k, v in eager_model.items():
        torch.testing.assert_close(compiled_model[k], v, rtol=LOSS_REL, atol=PARAM_TOL, msg=k)


@pytest.mark.slow
def test_inductor_compiled_encoder_matches_eager(toy_store, fresh_dynamo):
    cfg = toy_config(toy_store.path, "linprobe")
    torch.manual_seed(0)
    model = ckpt.build_model(cfg, num_classes=6).eval()
    x = torch.randn(4, 3, cfg.model.num_frames, 25, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eager, _ = model.encoder(x)
        train.compile_transformers(model)
        compiled, _ = model.encoder(x)
    assert fresh_dynamo["stats"]["unique_graphs"] == 1
    scale = eager.abs().max().item()
    torch.testing.assert_close(compiled, eager, rtol=FORWARD_REL, atol=FORWARD_REL * scale)
