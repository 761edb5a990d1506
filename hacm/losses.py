"""HA-CM pre-training losses (docs/method.md): the masked reconstruction and the cross-contrast,
computed in (at least) float32 also under bf16 autocast."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import CC_SIMILARITIES
from .distributed import gather_rows, world_size
from .errors import ConfigError


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Reconstruction: pred, target [S, L, P]; mask [S, L] True where masked. MSE over masked tokens only."""
    per_token = (_at_least_float32(pred) - _at_least_float32(target)).pow(2).mean(-1)   # [S, L]
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def _to_identity(rows: Tensor, columns: Tensor, start: int, similarity: str, temperature: float) -> Tensor:
    """Row-softmax of the similarities of this rank's rows [n, D] to every sequence of the global
    batch [N, D], regressed to the identity (each row finds itself at column start + i).

    Returns the squared error summed over this rank's rows / N^2: the ranks' values add up to the
    MSE over the global N x N matrix that one process with the whole batch computes.
    """
    if similarity == "cosine":
        logits = F.normalize(rows, dim=-1) @ F.normalize(columns, dim=-1).T / temperature   # [n, N]
    elif similarity == "release":
        logits = rows @ columns.T
    else:
        raise ConfigError(f"model.cc_similarity: expected one of {', '.join(CC_SIMILARITIES)}, got {similarity!r}")
    n, N = logits.shape
    target = torch.zeros_like(logits)
    target[torch.arange(n), start + torch.arange(n)] = 1.0
    return (torch.softmax(logits, dim=-1) - target).pow(2).sum() / (N * N)


def cross_contrast(z_odd: Tensor, z_even: Tensor, z_all: Tensor, *, similarity: str = "cosine",
                   temperature: float = 0.1, odd_even_term: bool = False) -> Tensor:
    """Cross-contrast of pooled encoder outputs per sequence [n, D]: odd (spatial) branch vs all
    and even (temporal) branch vs all (paper Figure 2) [+ even vs odd, the release].

    similarity "release": raw dot products, as the authors' code; with LayerNorm-ed pooled vectors
    (norm about sqrt(D)) the row softmax is saturated from the first step and the term has almost
    no gradient. "cosine": cosine similarity / temperature, the standard remedy.
    Under torch.distributed the columns span the global batch and the returned value is this
    rank's share times the world size, so that DDP's gradient averaging gives exactly the
    gradient of the global-batch loss (and the mean of the ranks' values is that loss).
    """
    z_odd, z_even, z_all = (_at_least_float32(z) for z in (z_odd, z_even, z_all))
    all_columns, start = gather_rows(z_all)
    loss = (_to_identity(z_odd, all_columns, start, similarity, temperature)
            + _to_identity(z_even, all_columns, start, similarity, temperature))
    if odd_even_term:
        loss = loss + _to_identity(z_even, gather_rows(z_odd)[0], start, similarity, temperature)
    return loss * world_size()


def uniform_cross_contrast(n: int, terms: int = 2) -> float:
    """The cross-contrast of uniform rows (every similarity equal) for a batch of n sequences:
    what a term that has learnt nothing, and is not saturated, reads at initialisation. Each row
    contributes (1 - 1/n)^2 + (n - 1) / n^2 = (n - 1) / n, over n rows and n^2 entries."""
    return terms * (n - 1) / n ** 2


def total_loss(loss_cc: Tensor, loss_rec: Tensor, cc_weight: float) -> Tensor:
    """alpha * L_cc + (1 - alpha) * L_rec (paper Figure 2); alpha = cc_weight, 0 disables the contrast."""
    return cc_weight * loss_cc + (1.0 - cc_weight) * loss_rec
