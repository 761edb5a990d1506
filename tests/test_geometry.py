import geoopt
import pytest
import torch

from hacm.errors import ConfigError
from hacm.geometry import make_geometry


def test_poincare_points_are_geoopt_points_inside_the_ball():
    torch.manual_seed(0)
    e = torch.randn(5, 7, 16) * 3
    for c in (1.0, 0.5):
        geo = make_geometry("poincare", c)
        ball = geoopt.PoincareBall(c=c)
        p = geo.to_manifold(e)
        assert torch.allclose(p, ball.projx(ball.expmap0(e)))
        assert (p.norm(dim=-1) < 1 / c ** 0.5).all()


def test_poincare_distances():
    torch.manual_seed(0)
    geo = make_geometry("poincare")
    u, v = geo.to_manifold(torch.randn(6, 8)), geo.to_manifold(torch.randn(6, 8))
    assert torch.allclose(geo.dist(u, v), geo.dist(v, u), rtol=1e-3)  # fp32 near the rim
    assert geo.dist(u, u).abs().max() < 1e-3
    assert torch.allclose(geo.dist0(u), geo.dist(u, torch.zeros_like(u)), atol=1e-5)
    # distance to the origin of expmap0(e) is 2 * |e| in geoopt's convention (c = 1) ...
    e = torch.randn(4, 8) * 0.3
    assert torch.allclose(geo.dist0(geo.to_manifold(e)), 2 * e.norm(dim=-1), atol=1e-4)
    # ... and logmap0 inverts the map
    assert torch.allclose(geo.logmap0(geo.to_manifold(e)), e, atol=1e-5)
    # pairwise distances broadcast
    assert geo.dist(u.unsqueeze(1), v.unsqueeze(0)).shape == (6, 6)


def test_curvature_changes_distances():
    e = torch.randn(3, 8)
    d1 = make_geometry("poincare", 1.0).dist0(make_geometry("poincare", 1.0).to_manifold(e))
    d2 = make_geometry("poincare", 2.0).dist0(make_geometry("poincare", 2.0).to_manifold(e))
    assert not torch.allclose(d1, d2)


def test_euclidean_is_identity_and_l2():
    geo = make_geometry("euclidean")
    u, v = torch.randn(4, 5), torch.randn(4, 5)
    assert geo.to_manifold(u) is u and geo.logmap0(u) is u
    assert torch.allclose(geo.dist(u, v), (u - v).norm(dim=-1))
    assert torch.allclose(geo.dist0(u), u.norm(dim=-1))


def test_poincare_runs_in_float32_for_bf16_input():
    geo = make_geometry("poincare")
    p = geo.to_manifold(torch.randn(4, 32).bfloat16() * 4)
    assert p.dtype == torch.float32 and torch.isfinite(geo.dist(p[:1], p)).all()


def test_bad_geometry_and_curvature():
    with pytest.raises(ConfigError, match="geometry"):
        make_geometry("hyperboloid")
    with pytest.raises(ConfigError, match="curvature"):
        make_geometry("poincare", 0.0)
