"""Where token embeddings live: the Poincaré ball (geoopt) or plain Euclidean space.

Both geometries expose the same four operations, so the masking criteria and the model never
branch on the geometry and never spell out a hyperbolic formula themselves: every Poincaré
operation here is geoopt's. Hyperbolic arithmetic near the rim of the ball is ill-conditioned in
low precision, so the Poincaré operations always run in float32 (also under bf16 autocast).
"""
from __future__ import annotations

from typing import Protocol

import geoopt
import torch
from torch import Tensor

from .errors import ConfigError

GEOMETRIES = ("poincare", "euclidean")


class Geometry(Protocol):
    name: str

    def to_manifold(self, e: Tensor) -> Tensor: ...   # [..., D] tangent vectors at 0 -> points
    def dist(self, u: Tensor, v: Tensor) -> Tensor: ...   # broadcast [..., D] x [..., D] -> [...]
    def dist0(self, u: Tensor) -> Tensor: ...   # [..., D] -> [...] distance to the origin
    def logmap0(self, u: Tensor) -> Tensor: ...   # points -> tangent vectors at 0


class PoincareGeometry:
    """Poincaré ball of curvature -c: points are `ball.projx(ball.expmap0(e))`, distances geodesic."""

    name = "poincare"

    def __init__(self, curvature: float = 1.0):
        if not curvature > 0:
            raise ConfigError(f"curvature: expected a positive number, got {curvature!r}")
        self.curvature = float(curvature)
        self.ball = geoopt.PoincareBall(c=self.curvature)

    def to_manifold(self, e: Tensor) -> Tensor:
        return self.ball.projx(self.ball.expmap0(e.float()))

    def dist(self, u: Tensor, v: Tensor) -> Tensor:
        return self.ball.dist(u.float(), v.float())

    def dist0(self, u: Tensor) -> Tensor:
        return self.ball.dist0(u.float())

    def logmap0(self, u: Tensor) -> Tensor:
        return self.ball.logmap0(u.float())


class EuclideanGeometry:
    """The ablation: embeddings are used as they are, distances are L2."""

    name = "euclidean"

    def to_manifold(self, e: Tensor) -> Tensor:
        return e

    def dist(self, u: Tensor, v: Tensor) -> Tensor:
        return torch.linalg.vector_norm(u - v, dim=-1)

    def dist0(self, u: Tensor) -> Tensor:
        return torch.linalg.vector_norm(u, dim=-1)

    def logmap0(self, u: Tensor) -> Tensor:
        return u


def make_geometry(name: str, curvature: float = 1.0) -> Geometry:
    if name == "poincare":
        return PoincareGeometry(curvature)
    if name == "euclidean":
        return EuclideanGeometry()
    raise ConfigError(f"geometry: expected one of {', '.join(GEOMETRIES)}, got {name!r}")
