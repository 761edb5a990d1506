"""Where token embeddings live: the Poincaré ball (geoopt) or plain Euclidean space.

Every token starts as a Euclidean embedding e, a tangent vector at the origin. A geometry turns
it into two things, with the same verbs for both geometries so that masking and the model never
branch on the geometry or spell out a formula:

    expmap0(e)        what the ViT blocks read: the ball coordinates projx(expmap0(e)) of the
                      HA-CM release (the raw embedding for the Euclidean ablation)
    points(e)         the same tokens as float64 points on which `dist`, `dist0` and
                      `pairwise_dist` are exact: the hierarchy criterion and the explorer measure here

Why two: at the paper width (D = 256) token embeddings have norms of 3-11 at initialisation, so
the ball radius tanh(|e|) lies within 1e-3 .. 1e-9 of the rim. In float32 geoopt's projection
(eps 4e-3) puts every such token on one sphere: distances then depend on angles only and the
radial gradient is zero. And geoopt's ball distance is capped at 2 artanh(1 - 1e-7) = 16.8 in any
dtype (its artanh clamps), which about half of the token pairs exceed at D = 256. The hyperboloid
(Lorentz) model is the same space without a rim: geoopt's `Lorentz` in float64 keeps dist0 =
2 |e| and every pairwise distance exact for all norms met in practice (tests/test_geometry.py
checks it against a closed form and against the ball where the ball is not capped).

Two switches, from the model config:
- `ball_eps`: how far inside the rim the encoder's ball coordinates are projected. The map runs in
  float64, so this is the only clipping there is. The release projects at 1e-5 (keep that value to
  reproduce a released checkpoint's outputs); hacm's default 1e-12 clips no token at D = 256.
- `clip_radius`: feature clipping of the Euclidean norm before the map, e * min(1, r / |e|)
  (Guo et al., "Clipped Hyperbolic Classifiers Are Super-Hyperbolic Classifiers", CVPR 2022):
  keeps points where the ball is well conditioned even in float32. None = off (the release).
"""
from __future__ import annotations

from typing import Protocol

import geoopt
import torch
from geoopt.manifolds.lorentz import math as lorentz_math
from geoopt.manifolds.stereographic import math as ball_math
from torch import Tensor

from .config import DEFAULT_BALL_EPS, GEOMETRIES
from .errors import ConfigError

RELEASE_BALL_EPS = 1e-5      # the authors' projection: norm >= 1 rescaled to 1 - 1e-5


class Geometry(Protocol):
    name: str

    def expmap0(self, e: Tensor) -> Tensor: ...           # [..., D] -> [..., D], e's dtype (>= float32)
    def points(self, e: Tensor) -> Tensor: ...            # [..., D] -> [..., D'] float64 points
    def dist(self, p: Tensor, q: Tensor) -> Tensor: ...   # broadcast [..., D'] x [..., D'] -> [...]
    def dist0(self, p: Tensor) -> Tensor: ...             # [..., D'] -> [...] distance to the origin
    def pairwise_dist(self, p: Tensor) -> Tensor: ...     # [..., V, D'] -> [..., V, V], zero diagonal


def _out_dtype(e: Tensor) -> torch.dtype:
    # bf16 ball coordinates would put every token on the rim: keep at least float32
    return torch.promote_types(e.dtype, torch.float32)


def clip_norm(e: Tensor, radius: float | None) -> Tensor:
    """Feature clipping: e * min(1, radius / |e|) over the last dim; identity when radius is None."""
    if radius is None:
        return e
    norm = torch.linalg.vector_norm(e, dim=-1, keepdim=True)
    return e * (radius / norm.clamp_min(radius)).to(e.dtype)


class PoincareGeometry:
    """Poincaré ball of curvature -c (encoder input), measured on the isometric hyperboloid."""

    name = "poincare"

    def __init__(self, curvature: float = 1.0, ball_eps: float = DEFAULT_BALL_EPS,
                 clip_radius: float | None = None):
        if not curvature > 0:
            raise ConfigError(f"curvature: expected a positive number, got {curvature!r}")
        if not 0 < ball_eps < 1:
            raise ConfigError(f"ball_eps: expected a number in (0, 1), got {ball_eps!r}")
        if clip_radius is not None and not clip_radius > 0:
            raise ConfigError(f"clip_radius: expected a positive number or null, got {clip_radius!r}")
        self.curvature, self.ball_eps, self.clip_radius = float(curvature), float(ball_eps), clip_radius
        # Built from float64 values: PoincareBall stores c through a float32 softplus otherwise,
        # which moves the curvature by 1e-8 and every point near the rim with it.
        self.ball = geoopt.PoincareBall(c=torch.tensor(self.curvature, dtype=torch.float64))
        # Lorentz(k) has curvature -1/k: the same space as the ball
        self.hyperboloid = geoopt.Lorentz(k=torch.tensor(1.0 / self.curvature, dtype=torch.float64))

    def expmap0(self, e: Tensor) -> Tensor:
        """Ball coordinates projx(expmap0(e)), computed in float64, projected `ball_eps` inside the rim."""
        tangent = clip_norm(e.double(), self.clip_radius)
        on_ball = self.ball.expmap0(tangent, project=False)
        return ball_math.project(on_ball, k=self.ball.k, eps=self.ball_eps).to(_out_dtype(e))

    def points(self, e: Tensor) -> Tensor:
        """Tokens as hyperboloid points [..., D + 1]. The ball's metric is 4x Euclidean at the
        origin (conformal factor 2), so a ball tangent e is the hyperboloid tangent 2e."""
        tangent = 2.0 * clip_norm(e.double(), self.clip_radius)
        return self.hyperboloid.expmap0(torch.cat([torch.zeros_like(tangent[..., :1]), tangent], -1))

    def dist(self, p: Tensor, q: Tensor) -> Tensor:
        return self.hyperboloid.dist(p, q)

    def dist0(self, p: Tensor) -> Tensor:
        return self.hyperboloid.dist0(p)

    def pairwise_dist(self, p: Tensor) -> Tensor:
        """All pairs within the second-to-last axis: geoopt's Lorentz distance sqrt(k) arcosh(-<x, y>_L / k),
        the Minkowski products of all pairs from one matrix product instead of a [..., V, V, D] broadcast."""
        k = self.hyperboloid.k
        time_flipped = torch.cat([-p[..., :1], p[..., 1:]], -1)
        inner = time_flipped @ p.transpose(-1, -2)                                  # [..., V, V]
        # A point's product with itself is -k; far out, the float64 products cannot say so
        # (cancellation of two terms ~ cosh^2 |x|), so the diagonal is set, not computed.
        self_pair = torch.eye(p.shape[-2], dtype=torch.bool, device=p.device)
        inner = torch.where(self_pair, -k.to(inner.device), inner)
        return torch.where(self_pair, 0.0, k.sqrt() * lorentz_math.arcosh(-inner / k))


class EuclideanGeometry:
    """The ablation: embeddings are used as they are, distances are L2 (measured in float64 too)."""

    name = "euclidean"

    def __init__(self, clip_radius: float | None = None):
        if clip_radius is not None and not clip_radius > 0:
            raise ConfigError(f"clip_radius: expected a positive number or null, got {clip_radius!r}")
        self.clip_radius = clip_radius

    def expmap0(self, e: Tensor) -> Tensor:
        return clip_norm(e, self.clip_radius)

    def points(self, e: Tensor) -> Tensor:
        return clip_norm(e.double(), self.clip_radius)

    def dist(self, p: Tensor, q: Tensor) -> Tensor:
        return torch.linalg.vector_norm(p - q, dim=-1)

    def dist0(self, p: Tensor) -> Tensor:
        return torch.linalg.vector_norm(p, dim=-1)

    def pairwise_dist(self, p: Tensor) -> Tensor:
        self_pair = torch.eye(p.shape[-2], dtype=torch.bool, device=p.device)
        return torch.where(self_pair, 0.0, torch.cdist(p, p))


def make_geometry(name: str, curvature: float = 1.0, ball_eps: float = DEFAULT_BALL_EPS,
                  clip_radius: float | None = None) -> Geometry:
    if name == "poincare":
        return PoincareGeometry(curvature, ball_eps, clip_radius)
    if name == "euclidean":
        return EuclideanGeometry(clip_radius)
    raise ConfigError(f"geometry: expected one of {', '.join(GEOMETRIES)}, got {name!r}")
