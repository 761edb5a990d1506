"""How much two masks of one token grid agree, against what two unrelated random masks would share.

At mask ratio 0.9 two masks look alike whatever they are (nine tokens in ten are masked in both),
so the eye cannot tell HA-CM's mask from a random one. The numbers can: of the tokens the current
mask keeps, how many the other mask keeps too, and the Jaccard index of the two masked sets, each
next to its chance level, the expectation for two independent masks that each keep the same number
of tokens per branch uniformly at random (within their own branches: the per-token keep chance of
a branch of L_b tokens keeping k_b is k_b / L_b).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from hacm.errors import HacmError


@dataclass(frozen=True)
class MaskOverlap:
    kept: int                  # tokens the current mask keeps
    kept_common: int           # ... that the other mask keeps too
    chance_kept_common: float  # expected kept_common for independent uniform masks with these branch sizes
    jaccard: float             # |masked A & masked B| / |masked A | masked B|
    chance_jaccard: float      # the Jaccard index at the expected intersection of independent uniform masks

    def describe(self, other: str) -> str:
        share = self.kept_common / max(self.kept, 1)
        chance = self.chance_kept_common / max(self.kept, 1)
        return (f"vs {other}: {self.kept_common} of {self.kept} kept tokens in common ({100 * share:.0f} %, "
                f"chance {100 * chance:.0f} %); Jaccard of masked sets {self.jaccard:.2f} "
                f"(chance {self.chance_jaccard:.2f})")


def keep_chance(mask: np.ndarray, patches: Sequence[np.ndarray]) -> np.ndarray:
    """[TP, V] each token's keep probability under uniform sampling within its branch, with the
    branch keeping as many tokens as `mask` [TP, V] (True = masked) keeps there."""
    mask = np.asarray(mask, dtype=bool)
    chance = np.zeros(mask.shape)
    for p in patches:
        p = np.asarray(p)
        chance[p] = (~mask[p]).mean()
    return chance


def mask_overlap(mask_a, patches_a: Sequence, mask_b, patches_b: Sequence) -> MaskOverlap:
    """Overlap of masks a and b [TP, V] (True = masked) drawn with branches patches_a / patches_b
    (time-patch indices per branch, as MaskInfo.patches)."""
    a, b = np.asarray(mask_a, dtype=bool), np.asarray(mask_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 2:
        raise HacmError(f"mask_overlap: masks must be two [TP, V] grids of one shape, got {a.shape} and {b.shape}")
    qa, qb = keep_chance(a, patches_a), keep_chance(b, patches_b)
    expected_masked_common = float(((1 - qa) * (1 - qb)).sum())
    union_masked = int((a | b).sum())
    chance_union = int(a.sum()) + int(b.sum()) - expected_masked_common
    return MaskOverlap(kept=int((~a).sum()), kept_common=int((~a & ~b).sum()),
                       chance_kept_common=float((qa * qb).sum()),
                       jaccard=float((a & b).sum()) / union_masked if union_masked else 1.0,
                       chance_jaccard=expected_masked_common / chance_union if chance_union > 0 else 1.0)
