"""Loading MAMP-format checkpoints, checked against an independent plain-torch reference forward."""
import argparse
import dataclasses
import re

import pytest
import torch
import torch.nn.functional as F

from hacm.checkpoint import load_mamp_state_dict, load_pretrained_encoder
from hacm.errors import HacmError
from hacm.geometry import RELEASE_BALL_EPS
from hacm.model import Encoder, ModelConfig
from hacm.skeleton import TOKEN_JOINTS

CFG = ModelConfig(num_frames=12, t_patch=3, prune=False, dim=32, depth=2, heads=4, geometry="euclidean")


def mamp_state_dict(cfg, tp=None, joints=25, seed=0):
    """Random tensors under the exact key names and shapes of MAMP's released checkpoints (docs/differences.md)."""
    g = torch.Generator().manual_seed(seed)
    D, H = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    r = lambda *s: torch.randn(*s, generator=g) * 0.1   # noqa: E731
    sd = {"joints_embed.proj.weight": r(D, 3, cfg.t_patch, 1), "joints_embed.proj.bias": r(D),
          "temp_embed": r(1, tp or cfg.num_patches, 1, D), "pos_embed": r(1, 1, joints, D),
          "norm.weight": 1 + r(D), "norm.bias": r(D),
          "decoder_embed.weight": r(D, D), "mask_token": r(1, 1, D), "decoder_pred.weight": r(9, D)}
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(D), p + "norm1.bias": r(D),
                   p + "attn.qkv.weight": r(3 * D, D), p + "attn.qkv.bias": r(3 * D),
                   p + "attn.proj.weight": r(D, D), p + "attn.proj.bias": r(D),
                   p + "norm2.weight": 1 + r(D), p + "norm2.bias": r(D),
                   p + "mlp.fc1.weight": r(H, D), p + "mlp.fc1.bias": r(H),
                   p + "mlp.fc2.weight": r(D, H), p + "mlp.fc2.bias": r(D)})
    return sd


def reference_forward(sd, x, cfg, joints, hyperbolic):
    """MAMP's encoder math written out in plain torch, float64: conv, embeddings, [the HA-CM
    release's map: y = tanh(|e|) e / |e|, rescaled to norm 1 - 1e-5 where |y| >= 1 - 1e-5], pre-LN
    blocks with packed qkv and scale head_dim^-0.5, final LN. Shares no code with hacm."""
    sd = {k: v.double() for k, v in sd.items()}
    N, C, T, V, M = x.shape
    x = x.double().permute(0, 4, 1, 2, 3).reshape(N * M, C, T, V)[..., joints]      # [NM, C, T, V']
    x = F.conv2d(x, sd["joints_embed.proj.weight"], sd["joints_embed.proj.bias"], stride=(cfg.t_patch, 1))
    x = x.permute(0, 2, 3, 1) + sd["temp_embed"] + sd["pos_embed"]                    # [NM, TP, V', D]
    if hyperbolic:
        norm = x.norm(dim=-1, keepdim=True)
        x = torch.tanh(norm) * x / norm
        r = x.norm(dim=-1, keepdim=True)
        x = torch.where(r >= 1 - 1e-5, x / r * (1 - 1e-5), x)
    B, TP, Vp, D = x.shape
    x = x.reshape(B, TP * Vp, D)
    hd = D // cfg.heads
    for i in range(cfg.depth):
        w = lambda k: sd[f"blocks.{i}.{k}"]   # noqa: E731
        h = F.layer_norm(x, (D,), w("norm1.weight"), w("norm1.bias"))
        qkv = (h @ w("attn.qkv.weight").T + w("attn.qkv.bias")).reshape(B, -1, 3, cfg.heads, hd)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = torch.softmax((q @ k.transpose(-2, -1)) * hd ** -0.5, dim=-1)
        h = (a @ v).transpose(1, 2).reshape(B, -1, D)
        x = x + h @ w("attn.proj.weight").T + w("attn.proj.bias")
        h = F.layer_norm(x, (D,), w("norm2.weight"), w("norm2.bias"))
        h = F.gelu(h @ w("mlp.fc1.weight").T + w("mlp.fc1.bias"))
        x = x + h @ w("mlp.fc2.weight").T + w("mlp.fc2.bias")
    x = F.layer_norm(x, (D,), sd["norm.weight"], sd["norm.bias"])
    return x.view(N, M, TP, Vp, D)


def test_mamp_checkpoint_gives_reference_outputs():
    sd = mamp_state_dict(CFG)
    enc = Encoder(CFG).eval()
    report = load_mamp_state_dict(enc, {"model": sd, "epoch": 3})
    assert report.missing == [] and report.unexpected == [] and report.interpolated == {}
    assert report.ignored == ["decoder_embed.weight", "decoder_pred.weight", "mask_token"]
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        out, _ = enc(x)
    ref = reference_forward(sd, x, CFG, list(range(25)), hyperbolic=False)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_release_checkpoint_gives_the_release_outputs(scale):
    # ball_eps = the release's projection reproduces a released HA-CM checkpoint's encoder to float
    # tolerance, both inside the ball and with embeddings near the rim (scale 3: |e| of 5-20)
    cfg = dataclasses.replace(CFG, prune=True, geometry="poincare", ball_eps=RELEASE_BALL_EPS)
    sd = mamp_state_dict(cfg, joints=18)
    sd["joints_embed.proj.weight"] *= scale
    enc = Encoder(cfg).eval()
    load_mamp_state_dict(enc, sd)                      # a bare state dict works too
    x = torch.randn(2, 3, 12, 25, 2)
    with torch.no_grad():
        out, _ = enc(x)
    ref = reference_forward(sd, x, cfg, list(TOKEN_JOINTS), hyperbolic=True)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_temp_embed_interpolation_and_joint_selection():
    cfg = dataclasses.replace(CFG, prune=True)
    sd = mamp_state_dict(cfg, tp=8, joints=25)
    enc = Encoder(cfg)
    report = load_mamp_state_dict(enc, sd)
    assert report.interpolated == {"temp_embed": ((1, 8, 1, 32), (1, 4, 1, 32)),
                                   "pos_embed": ((1, 1, 25, 32), (1, 1, 18, 32))}
    assert torch.allclose(enc.pos_embed, sd["pos_embed"][:, :, list(TOKEN_JOINTS)])
    # linear interpolation of 8 -> 4 steps averages neighbouring pairs
    pairs = (sd["temp_embed"][:, 0::2] + sd["temp_embed"][:, 1::2]) / 2
    assert torch.allclose(enc.temp_embed, pairs, atol=1e-6)


def test_shape_mismatch_names_key_and_shapes():
    sd = mamp_state_dict(dataclasses.replace(CFG, t_patch=4, num_frames=12))
    with pytest.raises(HacmError, match=r"joints_embed.proj.weight.*\[32, 3, 4, 1\].*\[32, 3, 3, 1\]"):
        load_mamp_state_dict(Encoder(CFG), sd)


def test_missing_and_unexpected_keys_are_reported():
    sd = mamp_state_dict(CFG)
    del sd["norm.bias"]
    sd["head.fc.weight"] = torch.zeros(3, 32)
    report = load_mamp_state_dict(Encoder(CFG), {f"module.{k}": v for k, v in sd.items()})
    assert report.missing == ["norm.bias"] and report.unexpected == ["head.fc.weight"]


MAMP_PRETRAIN = "model_mamp.transformer.Transformer"


@pytest.mark.parametrize("model_cls, shown", [
    (MAMP_PRETRAIN, f"args.model '{MAMP_PRETRAIN}' is MAMP's"),
    ("model_mae.transformer.Transformer", "args.model 'model_mae.transformer.Transformer' is MAMP's"),
    ("model.transformer.Transformer", r"a 25-joint pos_embed \[1, 1, 25, 32\]"),
    (None, r"\(a 25-joint pos_embed \[1, 1, 25, 32\]"),
])
def test_a_mamp_checkpoint_is_refused_by_a_hyperbolic_encoder(tmp_path, model_cls, shown):
    # what MAMP's main_pretrain / main_finetune save: the weights and their argparse namespace
    raw = {"model": mamp_state_dict(CFG), "epoch": 399}
    if model_cls is not None:
        raw["args"] = argparse.Namespace(model=model_cls, lr=1e-3)
    path = tmp_path / "checkpoint-399.pth"
    torch.save(raw, path)
    hyperbolic = dataclasses.replace(CFG, geometry="poincare")
    with pytest.raises(HacmError) as err:
        load_pretrained_encoder(Encoder(hyperbolic), path, hyperbolic)
    message = str(err.value)
    assert message.startswith(f"{path}: a MAMP checkpoint (") and "--set model.geometry=euclidean" in message
    assert re.search(shown, message), message
    # the fix works, and gives MAMP's encoder
    enc = Encoder(CFG).eval()
    load_pretrained_encoder(enc, path, CFG)
    x = torch.randn(1, 3, 12, 25, 2)
    with torch.no_grad():
        ref = reference_forward(raw["model"], x, CFG, list(range(25)), hyperbolic=False)
        torch.testing.assert_close(enc(x)[0].double(), ref, rtol=1e-4, atol=1e-4)


def test_ha_cm_release_checkpoints_still_load_into_a_hyperbolic_encoder(tmp_path):
    cfg = dataclasses.replace(CFG, prune=True, geometry="poincare")
    for i, model in enumerate(("model_hacm.transformer.Transformer", "model.transformer.Transformer")):
        torch.save({"model": mamp_state_dict(cfg, joints=18), "args": argparse.Namespace(model=model)},
                   tmp_path / f"hacm{i}.pth")
        assert load_pretrained_encoder(Encoder(cfg), tmp_path / f"hacm{i}.pth", cfg).missing == []
    # without a run's config (the explorer looks at weights in either geometry) nothing is refused
    torch.save({"model": mamp_state_dict(CFG), "args": argparse.Namespace(model=MAMP_PRETRAIN)}, tmp_path / "mamp.pth")
    hyperbolic = Encoder(dataclasses.replace(CFG, geometry="poincare"))
    assert load_pretrained_encoder(hyperbolic, tmp_path / "mamp.pth").missing == []
