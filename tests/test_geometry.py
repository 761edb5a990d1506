"""The geometry keeps what the hierarchy criterion reads: radii near the rim of the ball.

At the paper width (D = 256) token embeddings have norms of about 3-11, i.e. ball radii within
1e-3 .. 1e-9 of the rim. These tests fail on a map that collapses tokens onto one sphere
(geoopt's float32 projection), on distances that saturate (geoopt's ball distance caps at 16.8),
and on a map without a radial gradient.
"""
import math

import geoopt
import pytest
import torch

from hacm.data.dataset import SkeletonDataset
from hacm.errors import ConfigError
from hacm.geometry import RELEASE_BALL_EPS, clip_norm, make_geometry
from hacm.masking import MaskingConfig
from hacm.model import HACM, ModelConfig, split_actors

PAPER = ModelConfig(num_frames=72, t_patch=3, dim=256, depth=1, heads=8, decoder_depth=1)


def closed_form_dist(e1, e2, c=1.0):
    """Geodesic distance of expmap0(e1), expmap0(e2) in the ball of curvature -c, from the tangent
    vectors: hyperbolic law of cosines in its cancellation-free form (float64)."""
    a, b = 2 * e1.norm(dim=-1) * math.sqrt(c), 2 * e2.norm(dim=-1) * math.sqrt(c)
    cos = (e1 * e2).sum(-1) / (e1.norm(dim=-1) * e2.norm(dim=-1))
    half = ((1 - cos) / 2).clamp_min(0)                                            # sin^2(theta / 2)
    return torch.acosh(torch.cosh(a - b) + 2 * torch.sinh(a) * torch.sinh(b) * half) / math.sqrt(c)


@pytest.fixture(scope="module")
def paper_tokens(synth_store):
    """Euclidean token embeddings [S, TP, V, D] of synthetic test clips at D = 256, at initialisation."""
    torch.manual_seed(0)
    model = HACM(PAPER, MaskingConfig())
    ds = SkeletonDataset(synth_store, "synth-xsub", "test", window_size=72, p_interval=(0.95,))
    x = torch.stack([ds[i][0] for i in range(0, len(ds), max(1, len(ds) // 24))])
    seqs, _ = split_actors(x)
    with torch.no_grad():
        return model, model.encoder.embed(seqs)


def test_paper_width_tokens_sit_next_to_the_rim(paper_tokens):
    # the premise of everything below; geoopt's float32 projection clips these, today's code did
    _, e = paper_tokens
    norms = e.norm(dim=-1)
    assert norms.min() > 2.5 and norms.median() > 3.5
    ball = geoopt.PoincareBall()
    clipped32 = ball.projx(ball.expmap0(e)).norm(dim=-1) >= 1 - 4e-3 - 1e-6
    assert clipped32.float().mean() > 0.95


def test_encoder_points_are_not_at_the_projection_bound(paper_tokens):
    model, e = paper_tokens
    geo = model.encoder.geometry
    radius = geo.expmap0(e.double()).norm(dim=-1)                                 # float64 in, float64 out
    at_bound = radius >= 1 - geo.ball_eps * (1 + 1e-6)
    assert at_bound.double().mean() < 0.01
    # the release's projection (1e-5) would clip a large share of them: the switch does what it says
    release = make_geometry("poincare", ball_eps=RELEASE_BALL_EPS).expmap0(e.double()).norm(dim=-1)
    assert (release >= 1 - RELEASE_BALL_EPS * (1 + 1e-6)).double().mean() > 0.05


def test_dist0_keeps_the_radius_of_every_token(paper_tokens):
    model, e = paper_tokens
    geo = model.encoder.geometry
    d0 = geo.dist0(geo.points(e))                                                   # float64
    # dist0(expmap0(e)) = 2 |e| in the ball of curvature -1, exactly, also at the rim
    torch.testing.assert_close(d0, 2 * e.double().norm(dim=-1), rtol=1e-9, atol=1e-9)
    assert d0.std() > 0.5 and len(torch.unique(d0.round(decimals=3))) > 100


def test_pairwise_distances_are_exact_where_the_ball_saturates(paper_tokens):
    model, e = paper_tokens
    geo = model.encoder.geometry
    e = e[:4, :3].double()                                                          # [4, 3, V, D]
    d = geo.pairwise_dist(geo.points(e))                                            # [4, 3, V, V]
    ref = closed_form_dist(e.unsqueeze(-2), e.unsqueeze(-3))
    ref = ref * (1 - torch.eye(e.shape[-2], dtype=ref.dtype))
    torch.testing.assert_close(d, ref, rtol=1e-8, atol=1e-8)
    # geoopt's ball distance saturates at 2 artanh(1 - 1e-7) for many of these pairs
    ball = geoopt.PoincareBall().to(torch.float64)
    p = ball.expmap0(e, project=False)
    capped = ball.dist(p.unsqueeze(-2), p.unsqueeze(-3)) >= 2 * math.atanh(1 - 1e-7) - 1e-6
    assert capped.double().mean() > 0.1 and (ref > 2 * math.atanh(1 - 1e-7) + 0.5).any()


def test_a_token_has_a_radial_gradient(paper_tokens):
    model, e = paper_tokens
    e = e[:2].clone().requires_grad_(True)
    radius = model.encoder.geometry.expmap0(e).norm(dim=-1)                         # float32 out
    radius.sum().backward()
    radial = (e.grad * e / e.norm(dim=-1, keepdim=True)).sum(-1)                    # d radius / d |e|
    assert (radial > 0).all()
    # d tanh|e| / d|e| = 1 / cosh^2 |e|
    torch.testing.assert_close(radial.double(), 1 / torch.cosh(e.detach().double().norm(dim=-1)) ** 2,
                               rtol=1e-3, atol=0)


def test_lorentz_points_agree_with_the_ball_where_the_ball_is_exact():
    torch.manual_seed(0)
    for c in (1.0, 0.5):
        geo = make_geometry("poincare", c)
        e = torch.randn(6, 5, 16, dtype=torch.float64) * 0.4
        ball = geoopt.PoincareBall(c=c).to(torch.float64)
        p = ball.expmap0(e)
        torch.testing.assert_close(geo.pairwise_dist(geo.points(e)),
                                   ball.dist(p.unsqueeze(-2), p.unsqueeze(-3)) * (1 - torch.eye(5, dtype=torch.float64)),
                                   rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(geo.dist0(geo.points(e)), ball.dist0(p), rtol=1e-9, atol=1e-9)
        # distinct points only: near 0, arcosh resolves distances to about sqrt(float64 eps) = 1e-8
        torch.testing.assert_close(geo.dist(geo.points(e[:, :1]), geo.points(e[:, 1:])), ball.dist(p[:, :1], p[:, 1:]),
                                   rtol=1e-7, atol=1e-7)
        torch.testing.assert_close(geo.expmap0(e), p)


def test_curvature_changes_distances():
    e = torch.randn(3, 8, dtype=torch.float64)
    g1, g2 = make_geometry("poincare", 1.0), make_geometry("poincare", 2.0)
    assert not torch.allclose(g1.pairwise_dist(g1.points(e)), g2.pairwise_dist(g2.points(e)))


def test_release_projection_reproduces_the_release_map():
    # the release: y = tanh(|e|) e / |e|; if |y| >= 1 then y * (1 - 1e-5) / |y| (written out, float64)
    e = torch.randn(50, 32, dtype=torch.float64) * torch.linspace(0.1, 12, 50, dtype=torch.float64)[:, None]
    y = torch.tanh(e.norm(dim=-1, keepdim=True)) * e / e.norm(dim=-1, keepdim=True)
    y = torch.where(y.norm(dim=-1, keepdim=True) >= 1 - 1e-5, y / y.norm(dim=-1, keepdim=True) * (1 - 1e-5), y)
    geo = make_geometry("poincare", ball_eps=RELEASE_BALL_EPS)
    torch.testing.assert_close(geo.expmap0(e), y, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(geo.expmap0(e.float()), y.float(), rtol=1e-6, atol=1e-7)


def test_clip_radius_is_feature_clipping():
    e = torch.randn(20, 16) * torch.linspace(0.1, 8, 20)[:, None]
    clipped = clip_norm(e, 2.0)
    norms = e.norm(dim=-1)
    torch.testing.assert_close(clipped.norm(dim=-1), norms.clamp_max(2.0))
    torch.testing.assert_close(clipped[norms <= 2.0], e[norms <= 2.0])
    assert clip_norm(e, None) is e
    # the map of a clipped token stays where float32 is exact
    geo = make_geometry("poincare", clip_radius=2.0)
    assert geo.expmap0(e).norm(dim=-1).max() <= math.tanh(2.0) + 1e-6
    torch.testing.assert_close(geo.dist0(geo.points(e)), 2 * clipped.double().norm(dim=-1))


def test_euclidean_is_identity_and_l2():
    geo = make_geometry("euclidean")
    u, v = torch.randn(4, 5), torch.randn(4, 5)
    assert geo.expmap0(u) is u
    torch.testing.assert_close(geo.dist(geo.points(u), geo.points(v)), (u - v).double().norm(dim=-1))
    torch.testing.assert_close(geo.dist0(geo.points(u)), u.double().norm(dim=-1))
    d = geo.pairwise_dist(geo.points(u))
    torch.testing.assert_close(d, torch.cdist(u.double(), u.double()) * (1 - torch.eye(4, dtype=torch.float64)))


def test_ball_coordinates_of_bf16_input_are_float32():
    # bf16 keeps 8 bits: a radius 0.996 would already be the rim
    geo = make_geometry("poincare")
    e = torch.randn(4, 32).bfloat16() * 0.4
    p = geo.expmap0(e)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, geo.expmap0(e.double()).float())


def test_bad_geometry_and_parameters():
    with pytest.raises(ConfigError, match="geometry"):
        make_geometry("hyperboloid")
    with pytest.raises(ConfigError, match="curvature"):
        make_geometry("poincare", 0.0)
    with pytest.raises(ConfigError, match="ball_eps"):
        make_geometry("poincare", ball_eps=0.0)
    with pytest.raises(ConfigError, match="clip_radius"):
        make_geometry("euclidean", clip_radius=-1.0)
