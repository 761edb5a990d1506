import dataclasses

import pytest
import torch

from hacm.errors import ConfigError, HacmError
from hacm.masking import MaskingConfig, motion_scores, num_keep, patchify
from hacm.model import HACM, ActionClassifier, Encoder, ModelConfig
from hacm.optim import encoder_layer_id
from hacm.skeleton import TOKEN_JOINTS

TINY = ModelConfig(num_frames=12, t_patch=3, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=2)
MASK = MaskingConfig(mask_ratio=0.6)


def clips(n=4, m=2, seed=0, empty_second=(0,)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, TINY.num_frames, 25, m, generator=g) * 0.3
    if m > 1:
        for i in empty_second:
            x[i, ..., 1] = 0
    return x


def build(cfg=TINY, masking=MASK, seed=0):
    torch.manual_seed(seed)
    return HACM(cfg, masking)


def run(model, x, seed=0):
    return model(x, torch.Generator().manual_seed(seed))


def test_shapes_and_exact_keep_counts():
    model = build()
    x = clips()
    out = run(model, x)
    S = int(out.actor_mask.sum())
    TP, V = TINY.num_patches, 18
    assert S == 7 and out.pred.shape == out.target.shape == out.motion.shape == (S, TP * V, 9)
    from hacm.model import normalise_tokens
    torch.testing.assert_close(normalise_tokens(out.motion), out.target)   # the target is the motion, normalised
    info = model.masks(x, torch.Generator().manual_seed(0))
    for k, patches in zip(info.keep, info.patches):
        assert k.shape == (S, num_keep(len(patches) * V, 0.6))
        assert set((k // V).unique().tolist()) <= set(patches.tolist())   # each branch keeps only its patches
    assert info.patches[0].tolist() == [0, 2] and info.patches[1].tolist() == [1, 3]
    assert torch.equal(info.mask.flatten(1), out.mask)                    # same generator state, same masks
    assert (out.mask.sum(1) == TP * V - sum(k.shape[1] for k in out.keep)).all()


def test_every_parameter_gets_a_gradient():
    for cfg in (TINY, dataclasses.replace(TINY, cc_odd_even_term=True, geometry="euclidean")):
        model = build(cfg)
        run(model, clips()).loss.backward()
        dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
        assert dead == []


def test_decoder_restores_every_kept_token_to_its_own_position():
    model = build()
    captured = {}
    model.decoder_blocks[0].register_forward_pre_hook(lambda m, a: captured.update(grid=a[0].detach()))
    embed_out = {}
    model.decoder_embed.register_forward_hook(lambda m, a, o: embed_out.update(y=o.detach()))
    out = run(model, clips())
    grid, y = captured["grid"], embed_out["y"]                                # [S, L, Dd], [S, K, Dd]
    pe = (model.decoder_temp_embed + model.decoder_pos_embed).flatten(1, 2).detach()[0]   # [L, Dd]
    keep = torch.cat(out.keep, 1)
    for s in range(grid.shape[0]):
        for j, p in enumerate(keep[s].tolist()):
            assert torch.allclose(grid[s, p], y[s, j] + pe[p], atol=1e-6)
        masked = out.mask[s].nonzero()[:, 0]
        assert torch.allclose(grid[s, masked], model.mask_token.detach()[0] + pe[masked], atol=1e-6)


def test_reconstruction_ignores_visible_predictions():
    model = build(dataclasses.replace(TINY, cc_weight=0.0))
    out = run(model, clips())
    out.pred.retain_grad()
    out.loss.backward()
    assert (out.pred.grad[~out.mask] == 0).all() and (out.pred.grad[out.mask] != 0).any()


def test_empty_second_actor_is_skipped():
    x1 = clips(m=1)
    x2 = torch.cat([x1, torch.zeros_like(x1)], dim=-1)
    model = build()
    a, b = run(model, x1), run(model, x2)
    assert torch.equal(b.actor_mask[:, 1], torch.zeros(4, dtype=torch.bool))
    for name in ("loss", "loss_rec", "loss_cc", "pred", "target"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-6), name
    for protocol in ("linprobe", "finetune"):
        torch.manual_seed(0)
        clf = ActionClassifier(TINY, 5, protocol).eval()
        assert torch.allclose(clf(x1), clf(x2), atol=1e-5)
        assert torch.allclose(clf.features(x1), clf.features(x2), atol=1e-6)
    feats, mask = Encoder(TINY)(x2)
    assert feats.shape == (4, 2, 4, 18, 32) and (feats[:, 1] == 0).all() and mask[:, 0].all()


def test_bf16_autocast():
    model = build()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(model, clips())
        logits = ActionClassifier(TINY, 5, "finetune")(clips())
    assert torch.isfinite(out.loss) and torch.isfinite(logits).all()
    out.loss.backward()


def masks_of(cfg=TINY, masking=MASK, x=None):
    return build(cfg, masking).masks(clips() if x is None else x, torch.Generator().manual_seed(3))


def test_ablation_switches_change_what_they_name():
    base = masks_of()
    # strategy: other criteria, other scores and masks
    for strategy in ("spatial_only", "temporal_only", "motion", "random"):
        other = masks_of(masking=dataclasses.replace(MASK, strategy=strategy))
        assert not torch.equal(other.keep[0], base.keep[0]) or not torch.equal(other.keep[1], base.keep[1])
    sp = masks_of(masking=dataclasses.replace(MASK, strategy="spatial_only"))
    assert torch.allclose(sp.scores[:, 1::2], base.scores[:, 1::2])                   # same odd criterion
    tp = masks_of(masking=dataclasses.replace(MASK, strategy="temporal_only"))
    assert torch.allclose(tp.scores[:, 0::2], base.scores[:, 0::2])                   # same even criterion
    assert not torch.allclose(tp.scores[:, 1::2], base.scores[:, 1::2])
    # motion: MAMP's per-patch motion of the token joints' input, in both branches
    x = clips()
    mo = masks_of(masking=dataclasses.replace(MASK, strategy="motion"), x=x)
    seqs = x.permute(0, 4, 2, 3, 1).flatten(0, 1)[mo.actor_mask.flatten()][:, :, list(TOKEN_JOINTS)]
    assert torch.allclose(mo.scores, motion_scores(patchify(seqs, TINY.t_patch)).double())
    # attention variant: only the temporal (even) branch's scores change
    rel = masks_of(masking=dataclasses.replace(MASK, attention="release"))
    assert not torch.allclose(rel.scores[:, 0::2], base.scores[:, 0::2])
    assert torch.equal(rel.scores[:, 1::2], base.scores[:, 1::2])
    # keep_high, tau and the normalisation: same scores, other masks
    for change in (dict(keep_high=False), dict(tau=0.05), dict(normalise="release")):
        other = masks_of(masking=dataclasses.replace(MASK, **change))
        assert torch.equal(other.scores, base.scores) and not torch.equal(other.mask, base.mask)
    # mask_ratio: how many tokens are kept
    other = masks_of(masking=dataclasses.replace(MASK, mask_ratio=0.25))
    assert other.keep[0].shape[1] == num_keep(36, 0.25) and torch.equal(other.scores, base.scores)
    # cross grouping off: one branch over all patches
    one = masks_of(dataclasses.replace(TINY, cc_weight=0.0),
                   dataclasses.replace(MASK, strategy="spatial_only", cross_grouping=False))
    assert len(one.keep) == 1 and one.keep[0].shape[1] == num_keep(72, 0.6)
    assert torch.allclose(one.scores, sp.scores)
    # geometry: hierarchy scores change, random masks do not
    eu = masks_of(dataclasses.replace(TINY, geometry="euclidean"))
    assert not torch.allclose(eu.scores[:, 1::2], base.scores[:, 1::2])
    assert torch.equal(eu.scores[:, 0::2], base.scores[:, 0::2])                      # attention uses Euclidean e
    rnd = dataclasses.replace(MASK, strategy="random")
    assert torch.equal(masks_of(masking=rnd).mask,
                       masks_of(dataclasses.replace(TINY, geometry="euclidean"), rnd).mask)
    # prune: 25 token joints instead of 18
    assert masks_of(dataclasses.replace(TINY, prune=False)).mask.shape == (7, 4, 25)


def test_loss_switches():
    x = clips()
    base = run(build(), x)
    assert torch.allclose(base.loss, 0.5 * base.loss_cc + 0.5 * base.loss_rec)
    no_cc = run(build(dataclasses.replace(TINY, cc_weight=0.0)), x)
    assert no_cc.loss_cc == 0 and torch.allclose(no_cc.loss, base.loss_rec)
    three = run(build(dataclasses.replace(TINY, cc_odd_even_term=True)), x)
    assert three.loss_cc > base.loss_cc and torch.allclose(three.loss_rec, base.loss_rec)
    # the similarity and its temperature change the contrast only (same masks, same reconstruction)
    for change in (dict(cc_similarity="release"), dict(cc_temperature=0.5)):
        other = run(build(dataclasses.replace(TINY, **change)), x)
        assert torch.equal(other.mask, base.mask) and torch.allclose(other.loss_rec, base.loss_rec)
        assert not torch.allclose(other.loss_cc, base.loss_cc)
    # motion_expmap: only the target changes (masks identical)
    plain = run(build(dataclasses.replace(TINY, motion_expmap=False)), x)
    assert torch.equal(plain.mask, base.mask) and not torch.allclose(plain.target, base.target)
    assert torch.allclose(plain.pred, base.pred)


def test_target_is_normalised_patchified_motion():
    model = build(dataclasses.replace(TINY, motion_expmap=False))
    x = torch.zeros(1, 3, 12, 25, 1)
    x[0, 0, :, 2, 0] = torch.arange(12.0) ** 2                     # joint 2 (neck, token 0) moves along x
    target = model.target(x.permute(0, 4, 2, 3, 1).flatten(0, 1)).view(1, 4, 18, 3, 3)
    motion = torch.zeros(12)
    motion[:-1] = torch.arange(1.0, 23.0, 2.0)
    patch0 = torch.stack([motion[:3], torch.zeros(3), torch.zeros(3)], -1).flatten()
    expected = (patch0 - patch0.mean()) / (patch0.var() + 1e-6).sqrt()
    assert torch.allclose(target[0, 0, 0].flatten(), expected, atol=1e-5)
    assert (target[0, :, 1:] == 0).all()                            # static joints: zero target


def test_classifier_protocols():
    x = clips()
    lin = ActionClassifier(TINY, 5, "linprobe").train()
    assert not lin.encoder.training and lin.head.training
    lin(x).sum().backward()
    assert all(p.grad is None for p in lin.encoder.parameters())
    assert all(p.grad is not None for p in lin.head.parameters())
    fin = ActionClassifier(dataclasses.replace(TINY, drop_path=0.2), 5, "finetune").train()
    fin(x).sum().backward()
    assert all(p.grad is not None for p in fin.parameters())
    assert fin.encoder.blocks[-1].drop_path.p == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="protocol"):
        ActionClassifier(TINY, 5, "bogus")


def test_finetune_head_is_xavier_initialised_with_zero_biases_as_mamp():
    torch.manual_seed(0)
    head = ActionClassifier(TINY, 60, "finetune").head
    for fc in (head.fc1, head.fc2):
        fan_out, fan_in = fc.weight.shape
        xavier_std = (2.0 / (fan_in + fan_out)) ** 0.5       # PyTorch's default init: about 1/sqrt(3 fan_in)
        assert fc.weight.std().item() == pytest.approx(xavier_std, rel=0.05), fc
        assert fc.weight.abs().max().item() <= (6.0 / (fan_in + fan_out)) ** 0.5
        assert torch.equal(fc.bias, torch.zeros_like(fc.bias)), fc
    assert torch.equal(head.bn.weight, torch.ones_like(head.bn.weight))
    assert torch.equal(head.bn.bias, torch.zeros_like(head.bn.bias))


def test_errors():
    with pytest.raises(ConfigError, match="num_frames"):
        ModelConfig(num_frames=13, t_patch=3)
    with pytest.raises(ConfigError, match="heads"):
        ModelConfig(dim=30, heads=4)
    with pytest.raises(ConfigError, match="cc_weight"):
        HACM(TINY, dataclasses.replace(MASK, strategy="random", cross_grouping=False))
    with pytest.raises(HacmError, match=r"expected \[N, 3, 12, 25, M\]"):
        build()(torch.zeros(2, 3, 10, 25, 2))
    with pytest.raises(HacmError, match="all zeros"):
        build()(torch.zeros(2, 3, 12, 25, 2))


def test_encoder_layer_id():
    assert encoder_layer_id("encoder.pos_embed", 8) == 0
    assert encoder_layer_id("joints_embed.proj.weight", 8) == 0
    assert encoder_layer_id("encoder.blocks.3.attn.qkv.weight", 8) == 4
    assert encoder_layer_id("encoder.norm.weight", 8) == 9
    assert encoder_layer_id("head.fc1.weight", 8) == 9


def test_the_target_is_the_motion_normalised_per_token_and_predictions_return_to_its_units():
    """The reconstruction figure shows motion in metres per frame: denormalise_tokens inverts the
    per-token normalisation of the target, so a perfect prediction is the motion itself."""
    from hacm.model import denormalise_tokens, normalise_tokens

    motion = torch.randn(2, 5, 9, dtype=torch.float64) * 0.03 + 0.01
    target = normalise_tokens(motion)
    torch.testing.assert_close(target.mean(-1), torch.zeros(2, 5, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(denormalise_tokens(target, motion), motion)
    # a prediction off by 0.5 normalised units is off by half the token's spread in metres per frame
    spread = (motion.var(-1, keepdim=True) + 1e-6).sqrt()
    torch.testing.assert_close(denormalise_tokens(target + 0.5, motion) - motion, (0.5 * spread).expand_as(motion))
