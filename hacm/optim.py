"""Optimisers, parameter groups and learning-rate schedules: the rules of MAMP, in one place.

- Schedule: set every iteration; linear warmup, then half-cosine from lr to min_lr.
- Weight decay: every tensor of two or more dimensions (the temporal / joint embeddings and the
  mask token included), never biases or norms (MAMP's rule in pre-training, timm's
  add_weight_decay with no skip list, and in fine-tuning, param_groups_lrd).
- Layer-wise lr decay (fine-tuning): encoder layer i's lr is scaled by decay^(depth + 1 - i), with
  the embeddings as layer 0, block b as layer b + 1 and everything after the blocks as depth + 1.
- Linear probe: SGD with momentum on the head only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hacm.config import RunConfig


def lr_at(step: int, steps_per_epoch: int, cfg: RunConfig) -> float:
    """The learning rate of optimiser step `step` (0-based, fractional epochs)."""
    t = cfg.train
    epoch = step / steps_per_epoch
    if epoch < t.warmup_epochs:
        return t.lr * epoch / t.warmup_epochs
    span = max(t.epochs - t.warmup_epochs, 1e-8)
    progress = min((epoch - t.warmup_epochs) / span, 1.0)
    return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def no_weight_decay(p: torch.Tensor) -> bool:
    """Biases and norm parameters, i.e. every tensor of fewer than two dimensions."""
    return p.ndim < 2


def encoder_layer_id(name: str, depth: int) -> int:
    """Layer index for layer-wise lr decay: embeddings 0, blocks.i -> i + 1, everything else depth + 1."""
    name = name.removeprefix("module.").removeprefix("encoder.")
    if name.startswith(("joints_embed", "temp_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def param_groups(model: nn.Module, cfg: RunConfig) -> list[dict]:
    """AdamW groups by (decay?, layer): each carries `lr_scale` for layer-wise lr decay."""
    depth, decay = cfg.model.depth, cfg.train.layer_decay
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = no_weight_decay(p)
        layer = encoder_layer_id(name, depth) if decay < 1.0 else depth + 1
        g = groups.setdefault((skip, layer), {
            "params": [], "weight_decay": 0.0 if skip else cfg.train.weight_decay,
            "lr_scale": decay ** (depth + 1 - layer)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if cfg.protocol == "linprobe":
        head = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD([{"params": head, "lr_scale": 1.0}], lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay)
    return torch.optim.AdamW(param_groups(model, cfg), lr=t.lr, betas=t.betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]
