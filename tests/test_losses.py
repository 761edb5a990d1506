"""The losses: the reconstruction sees masked tokens only, and the cross-contrast trains.

At the paper width the release's cross-contrast (raw dot products of LayerNorm-ed pooled vectors)
is saturated at initialisation and sends almost no gradient to the encoder; the cosine form with a
temperature does. Under DDP the similarity matrices span the global batch.
"""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hacm.losses import cross_contrast, masked_mse, total_loss, uniform_cross_contrast
from hacm.masking import MaskingConfig
from hacm.model import HACM, ModelConfig
from test_geometry import PAPER


def test_masked_mse_ignores_visible_positions():
    torch.manual_seed(0)
    pred, target = torch.randn(2, 10, 9), torch.randn(2, 10, 9)
    mask = torch.zeros(2, 10, dtype=torch.bool)
    mask[:, ::3] = True
    loss = masked_mse(pred, target, mask)
    expected = ((pred - target) ** 2).mean(-1)[mask].mean()
    assert torch.allclose(loss, expected)
    changed = pred.clone()
    changed[~mask] += 100.0
    assert torch.allclose(masked_mse(changed, target, mask), loss)
    pred.requires_grad_(True)
    masked_mse(pred, target, mask).backward()
    assert (pred.grad[~mask] == 0).all() and (pred.grad[mask] != 0).any()


@pytest.mark.parametrize("similarity", ["release", "cosine"])
def test_cross_contrast_minimal_when_similarities_are_identity(similarity):
    n, d = 6, 16
    # orthogonal pooled vectors: every row's softmax is (nearly) one-hot on itself
    z = torch.eye(n, d) * (10.0 if similarity == "release" else 1.0)
    low = cross_contrast(z, z, z, similarity=similarity, temperature=0.02)
    torch.manual_seed(0)
    high = cross_contrast(torch.randn(n, d), torch.randn(n, d), torch.randn(n, d), similarity=similarity,
                          temperature=0.02)
    assert low < 1e-6 and high > 10 * low
    # all-equal vectors: uniform rows, a known loss per term
    same = torch.ones(n, d)
    uniform = ((1 / n - 1) ** 2 * n + (1 / n) ** 2 * (n * n - n)) / (n * n)
    assert uniform_cross_contrast(n, terms=2) == pytest.approx(2 * uniform)
    assert torch.allclose(cross_contrast(same, same, same, similarity=similarity), torch.tensor(2 * uniform))
    assert torch.allclose(cross_contrast(same, same, same, similarity=similarity, odd_even_term=True),
                          torch.tensor(3 * uniform))


def test_cosine_is_scale_free_and_the_temperature_sharpens():
    torch.manual_seed(0)
    a, b, c = torch.randn(8, 16), torch.randn(8, 16), torch.randn(8, 16)
    base = cross_contrast(a, b, c)
    assert torch.allclose(cross_contrast(5 * a, 5 * b, 5 * c), base)            # cosine ignores norms
    assert not torch.allclose(cross_contrast(5 * a, 5 * b, 5 * c, similarity="release"),
                              cross_contrast(a, b, c, similarity="release"))
    assert not torch.allclose(cross_contrast(a, b, c, temperature=1.0), base)


def _encoder_grad_norm(model: HACM, x: torch.Tensor) -> tuple[float, float]:
    model.zero_grad(set_to_none=True)
    out = model(x, torch.Generator().manual_seed(0))
    out.loss_cc.backward()
    grad = torch.sqrt(sum((p.grad ** 2).sum() for p in model.encoder.parameters() if p.grad is not None))
    return out.loss_cc.item(), grad.item()


def test_cosine_contrast_trains_the_encoder_at_the_paper_width(synth_store):
    # Measured here (16 synthetic test clips, 25 actor sequences, D = 256, 2 blocks, seed 0): the
    # release's form reads 0.0019 against 0.077 for uniform rows (its logits are dot products of
    # LayerNorm-ed vectors, ~D in size: most rows are already one-hot), cosine / 0.1 reads 0.053 with
    # an encoder gradient norm of 0.12. The bounds below sit between the two, well clear of both.
    from hacm.data.dataset import SkeletonDataset

    ds = SkeletonDataset(synth_store, "synth-xsub", "test", window_size=72, p_interval=(0.95,))
    x = torch.stack([ds[i][0] for i in range(0, 16 * 7, 7)])
    cfg = ModelConfig(**{**PAPER.__dict__, "depth": 2})
    torch.manual_seed(0)
    release = HACM(ModelConfig(**{**cfg.__dict__, "cc_similarity": "release"}), MaskingConfig())
    torch.manual_seed(0)
    cosine = HACM(cfg, MaskingConfig())
    n = int((x.abs().amax(dim=(1, 2, 3)) > 0).sum())
    uniform = uniform_cross_contrast(n)
    loss_r, _ = _encoder_grad_norm(release, x)
    loss_c, grad_c = _encoder_grad_norm(cosine, x)
    assert loss_r < 0.5 * uniform                     # saturated: far below uniform rows at init
    assert loss_c > 0.5 * uniform                     # not saturated: near uniform at init
    assert grad_c > 0.02
    # the temperature sets how hard the rows are: a cold one is saturated too
    torch.manual_seed(0)
    cold = HACM(ModelConfig(**{**cfg.__dict__, "cc_temperature": 0.005}), MaskingConfig())
    assert _encoder_grad_norm(cold, x)[0] < 0.5 * uniform


# ---------------------------------------------------------------------------------------------
# DDP: two gloo ranks compute what one process with the whole batch computes


def _rank_cc(rank: int, world: int, init: str, rows: list[int], z: torch.Tensor, out: dict) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        start, stop = sum(rows[:rank]), sum(rows[:rank + 1])
        parts = [z[i, start:stop].clone().requires_grad_(True) for i in range(3)]
        loss = cross_contrast(*parts, similarity="cosine", temperature=0.2, odd_even_term=True)
        loss.backward()
        out[rank] = (loss.detach(), [p.grad for p in parts])
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_cross_contrast_spans_the_global_batch_under_ddp(tmp_path):
    torch.manual_seed(0)
    rows = [5, 3]                                     # ranks hold different numbers of sequences
    z = torch.randn(3, sum(rows), 16, dtype=torch.float64)
    full = [z[i].clone().requires_grad_(True) for i in range(3)]
    loss = cross_contrast(*full, similarity="cosine", temperature=0.2, odd_even_term=True)
    loss.backward()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank_cc, args=(2, f"file://{tmp_path / 'rendezvous'}", rows, z, out), nprocs=2, join=True)
        out = dict(out)
    # DDP averages the ranks' gradients: each rank's share is its loss times the world size
    assert torch.allclose((out[0][0] + out[1][0]) / 2, loss.detach(), rtol=1e-12)
    for rank in range(2):
        start, stop = sum(rows[:rank]), sum(rows[:rank + 1])
        for i in range(3):
            torch.testing.assert_close(out[rank][1][i] / 2, full[i].grad[start:stop], rtol=1e-10, atol=1e-12)
    # and with local columns only (no gather) the loss would differ
    local = cross_contrast(*[z[i, :5] for i in range(3)], similarity="cosine", temperature=0.2, odd_even_term=True)
    assert not torch.allclose(local, loss.detach())


def test_total_loss_weighting():
    cc, rec = torch.tensor(2.0), torch.tensor(4.0)
    assert total_loss(cc, rec, 0.5) == 3.0
    assert total_loss(cc, rec, 0.0) == 4.0
    assert total_loss(cc, rec, 0.25) == 0.25 * 2 + 0.75 * 4
