import torch

from hacm.losses import cross_contrast, masked_mse, total_loss


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


def test_cross_contrast_minimal_when_similarities_are_identity():
    n, d = 6, 16
    # orthogonal pooled vectors of large norm: every row's softmax is (nearly) one-hot on itself
    z = torch.eye(n, d) * 10.0
    low = cross_contrast(z, z, z)
    torch.manual_seed(0)
    high = cross_contrast(torch.randn(n, d), torch.randn(n, d), torch.randn(n, d))
    assert low < 1e-6 and high > 10 * low
    # all-equal vectors: uniform rows, a known loss per term
    same = torch.ones(n, d)
    uniform = ((1 / n - 1) ** 2 * n + (1 / n) ** 2 * (n * n - n)) / (n * n)
    assert torch.allclose(cross_contrast(same, same, same), torch.tensor(2 * uniform))
    assert torch.allclose(cross_contrast(same, same, same, odd_even_term=True), torch.tensor(3 * uniform))


def test_total_loss_weighting():
    cc, rec = torch.tensor(2.0), torch.tensor(4.0)
    assert total_loss(cc, rec, 0.5) == 3.0
    assert total_loss(cc, rec, 0.0) == 4.0
    assert total_loss(cc, rec, 0.25) == 0.25 * 2 + 0.75 * 4
