"""HA-CM token masking: criteria (scores), Gumbel-Max sampling, cross grouping, bookkeeping.

Tokens of one actor sequence form a (time patch, joint) grid of TP x V tokens, flattened
time-major: flat position p = t * V + v. Masking works in three steps:

1. Grouping (`branch_patches`): with cross grouping, even time patches form the temporal branch
   and odd time patches the spatial branch; without it there is one branch over all patches.
2. Scores: each branch's criterion gives one score per token of the branch (`hierarchy_scores`,
   `attention_scores`, `motion_scores`; `random` scores nothing and samples uniformly).
3. Sampling (`sample_keep`): each branch's scores become keep probabilities (`keep_log_probs`:
   the release's or a standardised normalisation, then / tau) and Gumbel-Max top-k keeps
   k = round((1 - mask_ratio) * L_branch) tokens (`masking.keep_count: floor`: MAMP's int(...)), returned as flat grid positions, so the decoder
   can put every kept token back at its own (time, joint) slot (`restore`), unlike the release
   (docs/differences.md). `keep_spread` says how far the draw is from random masking.

The criteria only decide which tokens are kept, so they run without gradient, in float64 (the
hierarchy criterion measures distances near the rim of the ball).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# The schema (and its allowed values) lives in hacm.config, importable without torch; hacm.viz
# reads STRATEGIES here.
from .config import ATTENTION_VARIANTS, KEEP_COUNTS, NORMALISATIONS, STRATEGIES, MaskingConfig  # noqa: F401
from .errors import ConfigError
from .geometry import Geometry

# ---------------------------------------------------------------------------------------------
# Grouping and bookkeeping


def branch_patches(num_patches: int, cross_grouping: bool) -> tuple[Tensor, ...]:
    """Time-patch indices of each branch: (even, odd) with cross grouping, else (all,)."""
    t = torch.arange(num_patches)
    return (t[0::2], t[1::2]) if cross_grouping else (t,)


def branch_positions(patches: Tensor, num_joints: int) -> Tensor:
    """Flat grid positions [L_b] of a branch's tokens, in the time-major order of its scores."""
    return (patches[:, None] * num_joints + torch.arange(num_joints)).flatten()


def num_keep(length: int, mask_ratio: float, keep_count: str = "round") -> int:
    """Tokens kept of `length`: rounded (hacm) or floored as MAMP's int(L * (1 - mask_ratio))."""
    kept = (1.0 - mask_ratio) * length
    if keep_count == "floor":
        return int(kept)
    if keep_count == "round":
        return int(round(kept))
    raise ConfigError(f"masking.keep_count: expected one of {', '.join(KEEP_COUNTS)}, got {keep_count!r}")


def masked_grid(keep: Tensor, length: int) -> Tensor:
    """keep [S, K] flat positions -> mask [S, length] bool, True where a token is masked."""
    mask = torch.ones(keep.shape[0], length, dtype=torch.bool, device=keep.device)
    return mask.scatter(1, keep, False)


def restore(kept: Tensor, keep: Tensor, fill: Tensor, length: int) -> Tensor:
    """Put kept tokens back on the grid: kept [S, K, D] at positions keep [S, K]; fill [D] elsewhere.

    Out-of-place scatter, so gradients reach both the kept tokens and the fill (mask token).
    """
    grid = fill.to(kept.dtype).expand(kept.shape[0], length, kept.shape[-1])      # [S, L, D]
    return grid.scatter(1, keep.unsqueeze(-1).expand(-1, -1, kept.shape[-1]), kept)


# ---------------------------------------------------------------------------------------------
# Criteria


def hierarchy_scores(points: Tensor, parent_point: Tensor, geometry: Geometry, parent_weight: float) -> Tensor:
    """Spatial criterion (docs/method.md): place of each joint in the skeleton hierarchy.

    points [S, TP, V, D'] the tokens' measuring points (`geometry.points`, float64, exact near the
    rim); parent_point [S, TP, D'] per time patch.
    score(t, w) = sum_v dist(h_tv, h_tw) + parent_weight * dist(f_t, h_tw)  -> [S, TP, V]
    """
    pairwise = geometry.pairwise_dist(points)                                       # [S, TP, V, V]
    to_parent = geometry.dist(points, parent_point.unsqueeze(-2))                   # [S, TP, V]
    return pairwise.sum(-2) + parent_weight * to_parent


def attention_scores(q: Tensor, k: Tensor, variant: str = "standard") -> Tensor:
    """Temporal criterion (docs/method.md): attention each token receives from its joint's time patches.

    q, k [S, TP, V, d] -> scores [S, TP, V] (column sums of the per-joint TP x TP attention).
    standard: softmax over the key time patches, logits / sqrt(d);
    release: softmax over joints, logits * sqrt(d) (the authors' code, kept for the ablation).
    """
    d = q.shape[-1]
    logits = torch.einsum("stvd,suvd->svtu", q, k)                                  # [S, V, TPq, TPk]
    if variant == "standard":
        attn = torch.softmax(logits / math.sqrt(d), dim=-1)
    elif variant == "release":
        attn = torch.softmax(logits * math.sqrt(d), dim=1)
    else:
        raise ConfigError(f"masking.attention: expected one of {', '.join(ATTENTION_VARIANTS)}, got {variant!r}")
    return attn.sum(-2).transpose(1, 2)                                             # [S, TPk, V]


def motion_scores(x_patches: Tensor) -> Tensor:
    """MAMP's motion criterion: mean |change| of each token's patch since the previous time patch.

    x_patches [S, TP, V, P] (P = t_patch * 3 input coordinates) -> [S, TP, V]. Patch 0 has no
    previous patch and takes patch 1's score, as MAMP does; a zero there would make the first
    patch the least (MAMP: most) likely to be kept in every clip.
    """
    motion = torch.zeros_like(x_patches[..., 0])
    motion[:, 1:] = (x_patches[:, 1:] - x_patches[:, :-1]).abs().mean(-1)
    if motion.shape[1] > 1:
        motion[:, 0] = motion[:, 1]
    return motion


class TemporalProjections(nn.Module):
    """Query and key maps of the temporal criterion: FROZEN random projections, by design.

    The scores only feed a sort, so no loss can train these maps (in the release they silently
    stay at their initialisation). hacm makes that explicit: xavier-initialised buffers, saved
    with the model so masks are reproducible, never parameters.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("q_weight", nn.init.xavier_uniform_(torch.empty(dim, dim)))
        self.register_buffer("k_weight", nn.init.xavier_uniform_(torch.empty(dim, dim)))

    def forward(self, e: Tensor) -> tuple[Tensor, Tensor]:
        return F.linear(e, self.q_weight), F.linear(e, self.k_weight)


# ---------------------------------------------------------------------------------------------
# Sampling


def keep_log_probs(scores: Tensor, tau: float, normalise: str) -> Tensor:
    """log p of the Gumbel-Max keep distribution (docs/method.md, sampling): scores [S, L] -> [S, L].

    release: s / (tau * max|s|) (MAMP, the HA-CM release): the logits span at most 2 / tau, and
      scores with a large common offset (distances, attention sums) span far less, so the masks are
      close to random whatever tau is. max|s| rather than max s keeps the order right for
      non-positive scores.
    standard: (s - mean) / std / tau per row (one sequence, one branch): tau sets the spread.
    Equal scores give uniform sampling under both.
    """
    scores = scores.double()
    if normalise == "standard":
        centred = scores - scores.mean(-1, keepdim=True)
        std = scores.std(-1, unbiased=False, keepdim=True)
        logits = torch.where(std > 0, centred / std.clamp_min(torch.finfo(std.dtype).tiny), 0.0)
    elif normalise == "release":
        logits = scores / scores.abs().amax(-1, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)
    else:
        raise ConfigError(f"masking.normalise: expected one of {', '.join(NORMALISATIONS)}, got {normalise!r}")
    return torch.log_softmax(logits / tau, dim=-1)


def keep_spread(log_p: Tensor) -> Tensor:
    """max p / min p of each row [S, L] -> [S]: 1 is random masking, larger means the criterion acts."""
    return (log_p.amax(-1) - log_p.amin(-1)).exp()


def gumbel_topk(log_p: Tensor, keep: int, generator: torch.Generator | None = None,
                keep_high: bool = True) -> Tensor:
    """Gumbel-Max top-k: sample `keep` of the L tokens without replacement with probabilities p.

    log_p [S, L] (`keep_log_probs`) -> indices [S, keep]. keep_high=False keeps the lowest keys
    (MAMP: masks the likely tokens). Noise comes from `generator` for reproducibility.
    """
    device = generator.device if generator is not None else log_p.device
    u = torch.rand(log_p.shape, generator=generator, device=device, dtype=torch.float64).to(log_p.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1.0 - 1e-16)))
    key = log_p + gumbel
    return torch.topk(key if keep_high else -key, keep, dim=-1, sorted=False).indices


def sample_keep(branch_scores: list[Tensor], positions: list[Tensor], cfg: MaskingConfig,
                generator: torch.Generator | None) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Per branch: scores [S, L_b] and flat grid positions [L_b] -> kept positions [S, k_b] (sorted)
    and the log keep-probabilities [S, L_b] they were drawn from (`keep_log_probs`)."""
    keeps, log_ps = [], []
    for scores, pos in zip(branch_scores, positions):
        log_p = keep_log_probs(scores, cfg.tau, cfg.normalise)                      # [S, L_b]
        idx = gumbel_topk(log_p, num_keep(len(pos), cfg.mask_ratio, cfg.keep_count), generator, cfg.keep_high)  # [S, k_b]
        keeps.append(pos.to(idx.device)[idx].sort(-1).values)
        log_ps.append(log_p)
    return tuple(keeps), tuple(log_ps)


# ---------------------------------------------------------------------------------------------
# Drawing the masks of a batch


@dataclass
class MaskInfo:
    """The masks of a batch of sequences and everything that decided them."""
    keep: tuple[Tensor, ...]         # per branch [S, k_b] kept flat positions on the TP x V grid
    mask: Tensor                     # [S, TP, V] bool, True = masked
    scores: Tensor                   # [S, TP, V] float64, each token's score under its branch's criterion
    log_p: Tensor                    # [S, TP, V] float64 log keep-probability of each token within its branch
    patches: tuple[Tensor, ...]      # per branch: its time-patch indices
    criteria: tuple[str, ...]        # per branch: hierarchy | attention | motion | random
    actor_mask: Tensor               # [N, M] which actors are present (rows of S)
    tokens: Tensor                   # [S, TP, V, D] the tokens' Euclidean embeddings (tangent vectors)
    trunk: Tensor                    # [S, TP, 7, D] the trunk joints' embeddings; their mean is the parent

    @property
    def patch_branch(self) -> Tensor:
        """[TP] the branch of each time patch."""
        out = torch.zeros(self.mask.shape[1], dtype=torch.long)
        for b, p in enumerate(self.patches):
            out[p] = b
        return out

    def spread(self) -> tuple[Tensor, ...]:
        """Per branch [S]: max p / min p of the keep distribution (1 = random masking)."""
        return tuple(keep_spread(self.log_p[:, p].flatten(1)) for p in self.patches)

    def spread_by_criterion(self) -> dict[str, float]:
        """Mean keep-probability spread over sequences, per criterion (both branches pooled)."""
        out: dict[str, list[Tensor]] = {}
        for crit, spread in zip(self.criteria, self.spread()):
            out.setdefault(crit, []).append(spread)
        return {crit: torch.cat(v).mean().item() for crit, v in out.items()}


def patchify(x: Tensor, t_patch: int) -> Tensor:
    """x [S, T, V, C] -> [S, TP, V, t_patch*C]: each token's frames, time-major within the token."""
    S, T, V, C = x.shape
    return x.view(S, T // t_patch, t_patch, V, C).permute(0, 1, 3, 2, 4).reshape(S, T // t_patch, V, t_patch * C)


def _branch_scores(criterion: str, p: Tensor, tokens: Tensor, points, parent, motion, cfg: MaskingConfig,
                   geometry: Geometry, temporal: TemporalProjections | None) -> Tensor:
    """Scores [S, len(p), V] of one branch's patches p under its criterion."""
    if criterion == "hierarchy":
        return hierarchy_scores(points[:, p], parent[:, p], geometry, cfg.parent_weight)
    if criterion == "attention":
        if temporal is None:
            raise ConfigError("masking: the attention criterion needs a model built with it "
                              "(strategy hacm or temporal_only)")
        return attention_scores(*temporal(tokens[:, p].to(temporal.q_weight.dtype)), cfg.attention)
    if criterion == "motion":
        return motion[:, p]
    return tokens.new_zeros(tokens.shape[0], len(p), tokens.shape[2])   # random: uniform sampling


@torch.no_grad()
def draw_masks(token_seqs: Tensor, tokens: Tensor, trunk: Tensor, actor_mask: Tensor, cfg: MaskingConfig, *,
               geometry: Geometry, temporal: TemporalProjections | None, t_patch: int,
               generator: torch.Generator | None) -> MaskInfo:
    """The masks of one batch: each branch's criterion scores its tokens, Gumbel-Max keeps its share.

    token_seqs [S, T, V, C] the token joints' input (motion criterion); tokens [S, TP, V, D] their
    Euclidean embeddings; trunk [S, TP, 7, D] the trunk joints' embeddings (the parent point is
    their mean in the tangent space at the origin, then mapped: a point of the manifold, unlike
    the release's Euclidean mean of ball points).
    """
    with torch.autocast(tokens.device.type, enabled=False):
        S, TP, V, _ = tokens.shape
        patches, criteria = branch_patches(TP, cfg.cross_grouping), cfg.branch_criteria()
        points = parent = motion = None
        if "hierarchy" in criteria:
            points, parent = geometry.points(tokens), geometry.points(trunk.mean(-2))   # float64
        if "motion" in criteria:
            # over the whole grid, then per branch: "since the previous time patch" must not
            # become "since the previous patch of the branch" under cross grouping
            motion = motion_scores(patchify(token_seqs.float(), t_patch))             # [S, TP, V]
        scores = tokens.new_zeros(S, TP, V, dtype=torch.float64)
        for p, crit in zip(patches, criteria):
            p = p.to(tokens.device)
            scores[:, p] = _branch_scores(crit, p, tokens, points, parent, motion, cfg, geometry, temporal).double()
        positions = [branch_positions(p, V).to(tokens.device) for p in patches]
        keep, log_ps = sample_keep([scores.flatten(1)[:, pos] for pos in positions], positions, cfg, generator)
        log_p = torch.zeros_like(scores).flatten(1)
        for pos, lp in zip(positions, log_ps):
            log_p[:, pos] = lp
    mask = masked_grid(torch.cat(keep, 1), TP * V).view(S, TP, V)
    return MaskInfo(keep, mask, scores, log_p.view(S, TP, V), patches, criteria, actor_mask, tokens, trunk)
