"""HA-CM models: a MAMP-compatible skeleton ViT encoder, the masked pre-training model, the
downstream classifier, and loading of MAMP/HA-CM release checkpoints.

Shapes: a clip batch is x [N, C, T, 25, M]; every non-empty actor becomes one sequence, so the
models work on S <= N*M "present" sequences [S, T, 25, C]. All-zero actors (single-person clips
stored with M=2) are skipped entirely: they cost nothing and do not enter losses or statistics
(`model.pool_absent_actors` encodes and pools them downstream, as MAMP and the release do).
Tokens form a (time patch, joint) grid [S, TP, V, D], TP = T / t_patch, V = 18 with spatial
pruning or 25 without, flattened time-major (position t * V + v).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import losses
from .config import MaskingConfig, ModelConfig
from .errors import ConfigError, HacmError
from .geometry import make_geometry
from .masking import (
    MaskInfo,
    TemporalProjections,
    branch_patches,
    draw_masks,
    num_keep,
    patchify,
    restore,
)
from .skeleton import NUM_JOINTS, TRUNK_JOINTS, joint_set

HEADS = ("linprobe", "finetune")   # the classifier heads of the downstream protocols


# ---------------------------------------------------------------------------------------------
# Actors


def split_actors(x: Tensor, keep_absent: bool = False) -> tuple[Tensor, Tensor]:
    """x [N, C, T, V, M] -> present actor sequences [S, T, V, C] and actor_mask [N, M] (bool).

    keep_absent: every slot counts as present, all-zero ones included (MAMP and the release encode
    the empty second slot of a single-actor clip and average its features in)."""
    if keep_absent:
        actor_mask = torch.ones(x.shape[0], x.shape[4], dtype=torch.bool, device=x.device)
    else:
        actor_mask = x.abs().amax(dim=(1, 2, 3)) > 0                                 # [N, M]
    seqs = x.permute(0, 4, 2, 3, 1).flatten(0, 1)                                    # [N*M, T, V, C]
    return seqs[actor_mask.flatten()], actor_mask


def actor_mean(values: Tensor, actor_mask: Tensor) -> Tensor:
    """Mean over each sample's present actors: values [S, ...] -> [N, ...] (0 for an empty sample)."""
    sample = actor_mask.nonzero()[:, 0]                                              # [S]
    total = values.new_zeros((actor_mask.shape[0],) + values.shape[1:]).index_add(0, sample, values)
    count = actor_mask.sum(1).clamp_min(1).to(values.dtype)
    return total / count.view(-1, *([1] * (values.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# Transformer blocks (MAMP's parameter names, fused attention)


class DropPath(nn.Module):
    """Stochastic depth: drop the residual branch per sample with probability p while training."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [B, H, L, hd]
        x = F.scaled_dot_product_attention(q, k, v)                                  # scale head_dim^-0.5
        return self.proj(x.transpose(1, 2).reshape(B, L, D))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN ViT block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _init_weights(m: nn.Module) -> None:
    # MAMP/MAE: xavier-uniform linear layers, zero biases, unit LayerNorms.
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class JointsEmbed(nn.Module):
    """Temporal pooling of each joint: Conv2d with kernel = stride = (t_patch, 1)."""

    def __init__(self, dim_in: int, dim: int, t_patch: int):
        super().__init__()
        self.proj = nn.Conv2d(dim_in, dim, kernel_size=(t_patch, 1), stride=(t_patch, 1))

    def forward(self, x: Tensor) -> Tensor:                                          # [S, T, J, C]
        return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)                  # [S, TP, J, D]


# ---------------------------------------------------------------------------------------------
# Encoder


class Encoder(nn.Module):
    """Skeleton ViT encoder with MAMP's parameter names (joints_embed.proj, temp_embed, pos_embed,
    blocks.{i}.*, norm), spatial pruning and the map onto `cfg.geometry` before the blocks."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.geometry = make_geometry(cfg.geometry, cfg.curvature, cfg.ball_eps, cfg.clip_radius)
        # Not persistent: the state dict stays exactly MAMP's.
        self.register_buffer("joints", torch.tensor(joint_set(cfg.prune)), persistent=False)
        self.joints_embed = JointsEmbed(cfg.dim_in, cfg.dim, cfg.t_patch)
        self.temp_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, 1, cfg.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1, cfg.num_tokens_joints, cfg.dim))
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio, cfg.qkv_bias, r) for r in rates)
        self.norm = nn.LayerNorm(cfg.dim)
        nn.init.trunc_normal_(self.temp_embed, std=0.02)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.apply(_init_weights)

    def check_input(self, x: Tensor) -> None:
        cfg = self.cfg
        if x.dim() != 5 or x.shape[1] != cfg.dim_in or x.shape[2] != cfg.num_frames or x.shape[3] != NUM_JOINTS:
            raise HacmError(f"model input: expected [N, {cfg.dim_in}, {cfg.num_frames}, {NUM_JOINTS}, M], "
                            f"got {list(x.shape)}")

    def embed(self, seqs: Tensor) -> Tensor:
        """seqs [S, T, 25, C] -> Euclidean token embeddings with positional embeddings [S, TP, V, D]."""
        return self.joints_embed(seqs[:, :, self.joints]) + self.temp_embed + self.pos_embed

    def forward_tokens(self, points: Tensor) -> Tensor:
        """Blocks + final norm over any token subset: points [S, L, D] -> [S, L, D]."""
        for blk in self.blocks:
            points = blk(points)
        return self.norm(points)

    def forward_packed(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """All tokens of the present actors: x [N, C, T, 25, M] -> features [S, TP, V, D], actor_mask [N, M].
        With `pool_absent_actors` every slot is present (MAMP), so the classifier and kNN average it in."""
        self.check_input(x)
        seqs, actor_mask = split_actors(x, keep_absent=self.cfg.pool_absent_actors)
        tokens = self.geometry.expmap0(self.embed(seqs))                             # [S, TP, V, D]
        S, TP, V, D = tokens.shape
        return self.forward_tokens(tokens.reshape(S, TP * V, D)).view(S, TP, V, D), actor_mask

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [N, C, T, 25, M] -> features [N, M, TP, V, D] (zeros for absent actors), actor_mask [N, M]."""
        feats, actor_mask = self.forward_packed(x)
        N, M = actor_mask.shape
        out = feats.new_zeros((N * M,) + feats.shape[1:])
        out = out.index_copy(0, actor_mask.flatten().nonzero()[:, 0], feats)
        return out.view(N, M, *feats.shape[1:]), actor_mask


# ---------------------------------------------------------------------------------------------
# Pre-training model


@dataclass
class PretrainOutput:
    loss: Tensor
    loss_rec: Tensor
    loss_cc: Tensor
    mask: Tensor                     # [S, TP*V] bool, True = masked
    pred: Tensor                     # [S, TP*V, t_patch*C]
    target: Tensor                   # [S, TP*V, t_patch*C]
    keep: tuple[Tensor, ...] = field(default_factory=tuple)   # per branch [S, k_b]
    actor_mask: Tensor | None = None                          # [N, M]
    keep_spread: dict[str, float] = field(default_factory=dict)   # criterion -> mean max p / min p
    motion: Tensor | None = None     # [S, TP*V, t_patch*C] the target before each token is normalised


TOKEN_NORM_EPS = 1e-6


def normalise_tokens(motion: Tensor) -> Tensor:
    """Each token's values to mean 0 and variance 1 (MAE's normalised-pixel target, as MAMP)."""
    mean, var = motion.mean(-1, keepdim=True), motion.var(-1, keepdim=True)
    return (motion - mean) / (var + TOKEN_NORM_EPS).sqrt()


def denormalise_tokens(values: Tensor, motion: Tensor) -> Tensor:
    """Predictions of normalised tokens back in the units of `motion` (the tokens they predict), with
    each token's own mean and spread: the inverse of normalise_tokens."""
    mean, var = motion.mean(-1, keepdim=True), motion.var(-1, keepdim=True)
    return values * (var + TOKEN_NORM_EPS).sqrt() + mean


class HACM(nn.Module):
    """Masked motion prediction with cross masking (docs/method.md)."""

    def __init__(self, cfg: ModelConfig, masking: MaskingConfig):
        super().__init__()
        self.cfg, self.masking = cfg, masking
        patches = branch_patches(cfg.num_patches, masking.cross_grouping)
        for p in patches:
            if len(p) == 0 or num_keep(len(p) * cfg.num_tokens_joints, masking.mask_ratio, masking.keep_count) < 1:
                raise ConfigError(f"masking.mask_ratio: {masking.mask_ratio} keeps no token of a "
                                  f"{len(p)}-patch branch with {cfg.num_tokens_joints} joints")
        if cfg.cc_weight > 0 and len(patches) < 2:
            raise ConfigError("model.cc_weight: the cross-contrast needs two branches "
                              "(masking.cross_grouping: true); set cc_weight: 0 without cross grouping")
        self.encoder = Encoder(cfg)
        self.register_buffer("trunk", torch.tensor(TRUNK_JOINTS), persistent=False)
        D, Dd = cfg.dim, cfg.decoder_dim
        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_temp_embed = nn.Parameter(torch.zeros(1, cfg.num_patches, 1, Dd))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, 1, cfg.num_tokens_joints, Dd))
        self.decoder_blocks = nn.ModuleList(Block(Dd, cfg.heads, cfg.mlp_ratio, cfg.qkv_bias, 0.0)
                                            for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(Dd)
        self.decoder_pred = nn.Linear(Dd, cfg.t_patch * cfg.dim_in)
        for p in (self.mask_token, self.decoder_temp_embed, self.decoder_pos_embed):
            nn.init.trunc_normal_(p, std=0.02)
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            m.apply(_init_weights)
        # The target's own Poincaré ball in R^C (release: expmap0 of each joint's motion vector).
        self.motion_geometry = make_geometry("poincare", cfg.curvature) if cfg.motion_expmap else None
        # Created last, so parameter initialisation does not depend on the masking strategy.
        self.temporal = TemporalProjections(D) if "attention" in masking.branch_criteria() else None

    # -- masking ------------------------------------------------------------------------------

    @torch.no_grad()
    def masks(self, x: Tensor, generator: torch.Generator | None = None,
              masking: MaskingConfig | None = None) -> MaskInfo:
        """The masks `forward` would draw with this generator state, under the model's masking
        config or another one (the explorer compares criteria on one model)."""
        self.encoder.check_input(x)
        seqs, actor_mask = split_actors(x)
        return self._masks(seqs, self.encoder.embed(seqs), actor_mask, generator, masking or self.masking)

    def _masks(self, seqs: Tensor, tokens: Tensor, actor_mask: Tensor, generator: torch.Generator | None,
               masking: MaskingConfig) -> MaskInfo:
        # The trunk joints' embeddings (no positional embedding, as the release) define the parent point.
        embed = self.encoder.joints_embed
        trunk = embed(seqs[:, :, self.trunk].to(embed.proj.weight.dtype))              # [S, TP, 7, D]
        return draw_masks(seqs[:, :, self.encoder.joints], tokens.detach(), trunk.detach(), actor_mask, masking,
                          geometry=self.encoder.geometry, temporal=self.temporal, t_patch=self.cfg.t_patch,
                          generator=generator)

    # -- reconstruction ------------------------------------------------------------------------

    def decode(self, z: Tensor, keep: Tensor) -> Tensor:
        """Encoder outputs z [S, K, D] of the tokens at flat positions keep [S, K] -> predictions [S, L, P]."""
        cfg = self.cfg
        TP, V = cfg.num_patches, cfg.num_tokens_joints
        y = self.decoder_embed(z)                                                    # [S, K, Dd]
        grid = restore(y, keep, self.mask_token.view(-1), TP * V)                    # [S, L, Dd]
        grid = grid.view(-1, TP, V, cfg.decoder_dim) + self.decoder_temp_embed + self.decoder_pos_embed
        grid = grid.flatten(1, 2)
        for blk in self.decoder_blocks:
            grid = blk(grid)
        return self.decoder_pred(self.decoder_norm(grid))                            # [S, L, t_patch*C]

    def target(self, seqs: Tensor) -> Tensor:
        """Normalised motion of the token joints: seqs [S, T, 25, C] -> [S, L, t_patch*C]."""
        return normalise_tokens(self.motion(seqs))

    def motion(self, seqs: Tensor) -> Tensor:
        """Motion of the token joints in the data's own units (per frame; through the target's ball
        when model.motion_expmap), as patches: seqs [S, T, 25, C] -> [S, L, t_patch*C]."""
        x = seqs[:, :, self.encoder.joints]
        x = x.to(torch.promote_types(x.dtype, torch.float32))                        # [S, T, V, C]
        motion = torch.zeros_like(x)
        motion[:, :-1] = x[:, 1:] - x[:, :-1]                                        # last frame 0
        if self.motion_geometry is not None:
            motion = self.motion_geometry.expmap0(motion)
        return patchify(motion, self.cfg.t_patch).flatten(1, 2)                      # [S, L, P]

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> PretrainOutput:
        """x [N, C, T, 25, M] -> losses and everything needed to inspect them."""
        encoder = self.encoder
        encoder.check_input(x)
        seqs, actor_mask = split_actors(x)                                           # [S, T, 25, C]
        if seqs.shape[0] == 0:
            raise HacmError("pre-training batch: every actor of every clip is all zeros")
        tokens = encoder.embed(seqs)                                                     # [S, TP, V, D]
        info = self._masks(seqs, tokens, actor_mask, generator, self.masking)
        points = encoder.geometry.expmap0(tokens)                                        # [S, TP, V, D]
        keep = torch.cat(info.keep, 1)                                               # [S, K]
        S, TP, V, D = points.shape
        visible = points.reshape(S, TP * V, D).gather(1, keep.unsqueeze(-1).expand(-1, -1, D))
        z = encoder.forward_tokens(visible)                                              # [S, K, D]
        pred = self.decode(z, keep)
        motion = self.motion(seqs)
        target = normalise_tokens(motion)
        mask = info.mask.flatten(1)
        loss_rec = losses.masked_mse(pred, target, mask)
        if self.cfg.cc_weight > 0:
            k_even = info.keep[0].shape[1]                                           # branch 0 = even patches
            loss_cc = losses.cross_contrast(z[:, k_even:].mean(1), z[:, :k_even].mean(1), z.mean(1),
                                            similarity=self.cfg.cc_similarity, temperature=self.cfg.cc_temperature,
                                            odd_even_term=self.cfg.cc_odd_even_term)
        else:
            loss_cc = loss_rec.new_zeros(())
        return PretrainOutput(losses.total_loss(loss_cc, loss_rec, self.cfg.cc_weight), loss_rec, loss_cc,
                              mask, pred, target, info.keep, actor_mask, info.spread_by_criterion(), motion)


# ---------------------------------------------------------------------------------------------
# Downstream classifier


class LinprobeHead(nn.Module):
    """MAMP's linear probe: BatchNorm without affine, then a linear layer (trunc-normal std 0.01)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, eps=1e-6)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, pooled: Tensor) -> Tensor:                                    # [N, D]
        return self.fc(self.bn(pooled))


class FinetuneHead(nn.Module):
    """MAMP's fine-tune head: dropout, mean over time, joints x D flattened, mean over actors, MLP.

    Initialised as MAMP's: its classifier runs `_init_weights` over the whole model after building
    the head, so both linear layers are xavier-uniform with zero biases (BatchNorm keeps 1 / 0).
    """

    def __init__(self, num_joints: int, dim: int, num_classes: int, dropout: float, hidden: int = 2048):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc1 = nn.Linear(num_joints * dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.apply(_init_weights)

    def forward(self, feats: Tensor, actor_mask: Tensor) -> Tensor:                 # [S, TP, V, D]
        x = self.dropout(feats).mean(1).flatten(1)                                   # [S, V*D]
        x = actor_mean(x, actor_mask)                                                # [N, V*D]
        return self.fc2(F.relu(self.bn(self.fc1(x))))


class ActionClassifier(nn.Module):
    """Encoder + head. linprobe freezes the encoder (no gradient, always eval mode), as MAMP."""

    def __init__(self, cfg: ModelConfig, num_classes: int, protocol: str = "linprobe", head_dropout: float = 0.3):
        super().__init__()
        if protocol not in HEADS:
            raise ConfigError(f"protocol: expected one of {', '.join(HEADS)}, got {protocol!r}")
        self.protocol = protocol
        self.encoder = Encoder(cfg)
        if protocol == "linprobe":
            self.encoder.requires_grad_(False)
            self.head = LinprobeHead(cfg.dim, num_classes)
        else:
            self.head = FinetuneHead(cfg.num_tokens_joints, cfg.dim, num_classes, head_dropout)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.protocol == "linprobe":
            self.encoder.eval()
        return self

    def _encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.protocol == "finetune"):
            return self.encoder.forward_packed(x)

    def features(self, x: Tensor) -> Tensor:
        """x [N, C, T, 25, M] -> [N, D]: mean over present actors, time and joints."""
        feats, actor_mask = self._encode(x)
        return actor_mean(feats.mean((1, 2)), actor_mask)

    def forward(self, x: Tensor) -> Tensor:
        """x [N, C, T, 25, M] -> logits [N, num_classes]."""
        if self.protocol == "linprobe":
            return self.head(self.features(x))
        return self.head(*self._encode(x))
