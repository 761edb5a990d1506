"""HA-CM pre-training losses (method.md 7-8); computed in float32 also under bf16 autocast."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Reconstruction: pred, target [S, L, P]; mask [S, L] True where masked. MSE over masked tokens only."""
    per_token = (pred.float() - target.float()).pow(2).mean(-1)                   # [S, L]
    mask = mask.float()
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def _to_identity(a: Tensor, b: Tensor) -> Tensor:
    """Row-softmax of the N x N similarity a b^T, regressed to the identity (each row finds itself)."""
    sim = torch.softmax(a @ b.T, dim=-1)                                            # [N, N]
    return F.mse_loss(sim, torch.eye(len(a), device=a.device, dtype=sim.dtype))


def cross_contrast(z_odd: Tensor, z_even: Tensor, z_all: Tensor, odd_even_term: bool = False) -> Tensor:
    """Cross-contrast: pooled encoder outputs per sequence [N, D] of the odd (spatial) branch, the even
    (temporal) branch and both. Odd vs all + even vs all (paper Figure 2) [+ even vs odd, the release]."""
    z_odd, z_even, z_all = z_odd.float(), z_even.float(), z_all.float()
    loss = _to_identity(z_odd, z_all) + _to_identity(z_even, z_all)
    if odd_even_term:
        loss = loss + _to_identity(z_even, z_odd)
    return loss


def total_loss(loss_cc: Tensor, loss_rec: Tensor, cc_weight: float) -> Tensor:
    """alpha * L_cc + (1 - alpha) * L_rec (paper Figure 2); alpha = cc_weight, 0 disables the contrast."""
    return cc_weight * loss_cc + (1.0 - cc_weight) * loss_rec
