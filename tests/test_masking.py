import math

import pytest
import torch

from hacm.errors import ConfigError
from hacm.geometry import make_geometry
from hacm.masking import (MaskingConfig, TemporalProjections, attention_scores, branch_patches, branch_positions,
                          gumbel_topk, hierarchy_scores, keep_log_probs, keep_spread, masked_grid, motion_scores,
                          num_keep, restore, sample_keep)


def topk(scores, keep, tau, g, keep_high=True, normalise="release"):
    return gumbel_topk(keep_log_probs(scores, tau, normalise), keep, g, keep_high)


def test_config_validation():
    with pytest.raises(ConfigError, match="strategy"):
        MaskingConfig(strategy="bogus")
    with pytest.raises(ConfigError, match="attention"):
        MaskingConfig(attention="bogus")
    with pytest.raises(ConfigError, match="mask_ratio"):
        MaskingConfig(mask_ratio=1.0)
    with pytest.raises(ConfigError, match="tau"):
        MaskingConfig(tau=0.0)
    with pytest.raises(ConfigError, match="cross_grouping"):
        MaskingConfig(strategy="hacm", cross_grouping=False)
    with pytest.raises(ConfigError, match="normalise"):
        MaskingConfig(normalise="minmax")
    assert MaskingConfig().branch_criteria() == ("attention", "hierarchy")
    assert MaskingConfig(strategy="spatial_only").branch_criteria() == ("hierarchy", "hierarchy")
    assert MaskingConfig(strategy="motion", cross_grouping=False).branch_criteria() == ("motion",)


def test_a_strategy_brings_its_own_defaults():
    # MAMP masks the high-motion tokens over all patches with its own normalisation; MAE is one
    # random branch; HA-CM keeps the high-score tokens of two branches, standardised scores
    hacm, mamp, mae = MaskingConfig(), MaskingConfig(strategy="motion"), MaskingConfig(strategy="random")
    assert (hacm.keep_high, hacm.cross_grouping, hacm.normalise) == (True, True, "standard")
    assert (mamp.keep_high, mamp.cross_grouping, mamp.normalise) == (False, False, "release")
    assert mae.cross_grouping is False and mae.branch_criteria() == ("random",)
    # given values win over the strategy's
    assert MaskingConfig(strategy="motion", keep_high=True, normalise="standard").keep_high is True
    assert MaskingConfig(strategy="random", cross_grouping=True).branch_criteria() == ("random", "random")


def test_grouping_and_positions():
    even, odd = branch_patches(5, True)
    assert even.tolist() == [0, 2, 4] and odd.tolist() == [1, 3]
    (all_,) = branch_patches(5, False)
    assert all_.tolist() == [0, 1, 2, 3, 4]
    assert branch_positions(odd, 3).tolist() == [3, 4, 5, 9, 10, 11]
    assert num_keep(216, 0.9) == 22 and num_keep(10, 0.5) == 5


def test_gumbel_topk_prefers_high_scores():
    g = torch.Generator().manual_seed(0)
    scores = torch.arange(1, 21, dtype=torch.float32).expand(4000, 20)
    kept = torch.zeros(20)
    idx = topk(scores, 5, 0.5, g)
    kept.index_add_(0, idx.flatten(), torch.ones(idx.numel()))
    assert kept[15:].sum() > 2 * kept[:5].sum()
    # keep_high False keeps the low-score tokens instead
    low = torch.zeros(20)
    idx = topk(scores, 5, 0.5, g, keep_high=False)
    low.index_add_(0, idx.flatten(), torch.ones(idx.numel()))
    assert low[:5].sum() > 2 * low[15:].sum()


def test_gumbel_topk_limits_of_tau():
    g = torch.Generator().manual_seed(1)
    scores = torch.rand(50, 30, generator=g) + 0.1
    det = topk(scores, 6, 1e-4, g)
    assert (det.sort(-1).values == scores.topk(6).indices.sort(-1).values).all()
    counts = torch.zeros(30)
    one = scores[:1].expand(6000, 30)
    idx = topk(one, 6, 1e4, g)
    counts.index_add_(0, idx.flatten(), torch.ones(idx.numel()))
    expected = 6000 * 6 / 30
    assert (counts - expected).abs().max() < 0.15 * expected


def test_gumbel_topk_reproducible_and_robust():
    s = torch.randn(3, 12)
    a = topk(s, 4, 0.9, torch.Generator().manual_seed(5))
    b = topk(s, 4, 0.9, torch.Generator().manual_seed(5))
    assert (a == b).all()
    for bad in (torch.zeros(3, 12), -torch.rand(3, 12)):
        idx = topk(bad, 4, 0.9, torch.Generator().manual_seed(0))
        assert idx.shape == (3, 4) and all(len(set(r)) == 4 for r in idx.tolist())
    # non-positive scores: the largest (least negative) is still kept most often
    neg = -torch.arange(1, 11, dtype=torch.float32).expand(3000, 10)
    idx = topk(neg, 2, 0.2, torch.Generator().manual_seed(0))
    assert torch.bincount(idx.flatten(), minlength=10).argmax() == 0


def test_sample_keep_exact_counts_and_positions():
    cfg = MaskingConfig(mask_ratio=0.75)
    TP, V, S = 6, 5, 7
    patches = branch_patches(TP, True)
    positions = [branch_positions(p, V) for p in patches]
    scores = [torch.rand(S, len(p)) for p in positions]
    keep, log_ps = sample_keep(scores, positions, cfg, torch.Generator().manual_seed(0))
    for lp, pos in zip(log_ps, positions):   # a distribution over each branch's tokens
        torch.testing.assert_close(lp.exp().sum(-1), torch.ones(S, dtype=torch.float64))
        assert lp.shape == (S, len(pos))
    for k, pos in zip(keep, positions):
        assert k.shape == (S, num_keep(len(pos), 0.75))
        for row in k.tolist():
            assert len(set(row)) == len(row) and set(row) <= set(pos.tolist())
    mask = masked_grid(torch.cat(keep, 1), TP * V)
    assert (mask.sum(1) == TP * V - sum(k.shape[1] for k in keep)).all()


def test_restore_places_every_kept_token_at_its_own_position():
    S, L, D = 3, 12, 4
    g = torch.Generator().manual_seed(0)
    keep = torch.stack([torch.randperm(L, generator=g)[:5] for _ in range(S)])            # [S, 5]
    kept = torch.randn(S, 5, D)
    fill = torch.full((D,), -7.0)
    grid = restore(kept, keep, fill, L)
    for s in range(S):
        for j, p in enumerate(keep[s].tolist()):
            assert torch.equal(grid[s, p], kept[s, j])
        masked = masked_grid(keep, L)[s]
        assert (grid[s, masked] == -7.0).all() and masked.sum() == L - 5


def test_hierarchy_scores_match_a_loop():
    torch.manual_seed(0)
    geo = make_geometry("poincare")
    points = geo.points(torch.randn(2, 3, 4, 8) * 2)
    parent = geo.points(torch.randn(2, 3, 8))
    s = hierarchy_scores(points, parent, geo, 0.5)
    assert s.dtype == torch.float64
    for b in range(2):
        for t in range(3):
            for w in range(4):
                ref = sum(geo.dist(points[b, t, v], points[b, t, w]) for v in range(4) if v != w)
                ref = ref + 0.5 * geo.dist(parent[b, t], points[b, t, w])
                torch.testing.assert_close(s[b, t, w], ref, rtol=1e-9, atol=1e-9)
    # the parent term is weighted by parent_weight
    s0 = hierarchy_scores(points, parent, geo, 0.0)
    torch.testing.assert_close(s - s0, 0.5 * geo.dist(points, parent.unsqueeze(-2)))


def test_standard_normalisation_lets_tau_set_the_spread():
    # scores with a large common offset: the release's s / (tau max|s|) barely separates them
    g = torch.Generator().manual_seed(0)
    scores = 100.0 + torch.rand(8, 60, generator=g, dtype=torch.float64)         # [S, L]
    release = keep_spread(keep_log_probs(scores, 0.9, "release"))
    assert release.max() < 1.02
    for tau in (0.3, 0.9, 3.0):
        spread = keep_spread(keep_log_probs(scores, tau, "standard"))
        z = (scores - scores.mean(-1, keepdim=True)) / scores.std(-1, unbiased=False, keepdim=True)
        torch.testing.assert_close(spread, ((z.amax(-1) - z.amin(-1)) / tau).exp().double())
        assert (spread >= math.exp(1 / tau) / 2).all()
    # equal scores are uniform under both
    for normalise in ("standard", "release"):
        assert torch.allclose(keep_spread(keep_log_probs(torch.full((2, 9), 3.0), 0.9, normalise)),
                              torch.ones(2, dtype=torch.float64))


def test_attention_scores_variants():
    torch.manual_seed(0)
    S, TP, V, d = 2, 5, 3, 8
    q, k = torch.randn(S, TP, V, d), torch.randn(S, TP, V, d)
    std = attention_scores(q, k, "standard")
    assert std.shape == (S, TP, V)
    # each query's row sums to 1 over time -> a joint's column sums total TP
    assert torch.allclose(std.sum(1), torch.full((S, V), float(TP)))
    ref = torch.zeros(S, TP, V)
    for v in range(V):
        a = torch.softmax(q[:, :, v] @ k[:, :, v].transpose(1, 2) / math.sqrt(d), dim=-1)      # [S, t, u]
        ref[:, :, v] = a.sum(1)
    assert torch.allclose(std, ref, atol=1e-5)
    rel = attention_scores(q, k, "release")
    # softmax over joints: for each (t, u) the joints share 1 -> summed over joints, TP per patch
    assert torch.allclose(rel.sum(-1), torch.full((S, TP), float(TP)), atol=1e-4)
    assert not torch.allclose(rel, std)


def test_motion_scores():
    x = torch.zeros(1, 4, 2, 6)
    x[0, 2, 1] = 3.0
    s = motion_scores(x)
    assert s[0, :, 0].tolist() == [0, 0, 0, 0]
    assert s[0, :, 1].tolist() == [0, 0, 3, 3]


def test_motion_score_of_patch_0_is_copied_from_patch_1_as_mamp():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 4, 6, generator=g)
    s = motion_scores(x)
    # MAMP's motion_aware_random_masking, written out on the same patches
    ref = torch.zeros_like(x)
    ref[:, 1:] = (x[:, 1:] - x[:, :-1]).abs()
    ref[:, 0] = ref[:, 1]
    assert torch.allclose(s, ref.mean(-1))
    assert (s[:, 0] > 0).all() and torch.equal(s[:, 0], s[:, 1])
    # one time patch: nothing to copy from, and no error
    assert motion_scores(x[:, :1]).eq(0).all()


def test_temporal_projections_are_frozen_buffers():
    proj = TemporalProjections(16)
    assert list(proj.parameters()) == []
    assert set(proj.state_dict()) == {"q_weight", "k_weight"}
    q, k = proj(torch.randn(2, 3, 16))
    assert q.shape == k.shape == (2, 3, 16) and not torch.allclose(q, k)


def test_keep_count_rounds_or_floors_as_mamp():
    # MAMP's int(L * (1 - mask_ratio)): 750 * (1 - 0.9) is 74.99999999999999 in floats -> 74; hacm rounds
    assert num_keep(750, 0.9) == 75 and num_keep(750, 0.9, "floor") == 74
    assert num_keep(750, 0.9, "floor") == int(750 * (1 - 0.9))
    assert num_keep(10, 0.75, "floor") == 2 and num_keep(10, 0.75) == 2      # 2.5 rounds to even
    with pytest.raises(ConfigError, match="masking.keep_count"):
        MaskingConfig(keep_count="ceil")
    positions = [branch_positions(torch.arange(30), 25)]                    # one branch of 750 tokens
    scores = [torch.rand(2, 750)]
    for mode, k in (("round", 75), ("floor", 74)):
        cfg = MaskingConfig(strategy="motion", keep_count=mode)
        keep, _ = sample_keep(scores, positions, cfg, torch.Generator().manual_seed(0))
        assert keep[0].shape == (2, k)
