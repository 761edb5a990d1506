"""The NTU RGB+D 25-joint skeleton: the single source of joint indices.

Everything else in hacm takes joint indices, parents, bones and the HA-CM trunk/token split
from here; no other module hard-codes a joint index.

The kinematic tree is rooted at the spine base (joint 0). NTU's published "parent" list is an
undirected bone list centred on the spine-shoulder; here it is re-rooted so that every joint has
exactly one parent and depth grows away from the pelvis, which is what the hierarchy criterion and
the Poincaré explorer need.
"""
from __future__ import annotations

import numpy as np

NUM_JOINTS = 25

JOINT_NAMES: tuple[str, ...] = (
    "spine_base",      # 0
    "spine_mid",       # 1
    "neck",            # 2
    "head",            # 3
    "left_shoulder",   # 4
    "left_elbow",      # 5
    "left_wrist",      # 6
    "left_hand",       # 7
    "right_shoulder",  # 8
    "right_elbow",     # 9
    "right_wrist",     # 10
    "right_hand",      # 11
    "left_hip",        # 12
    "left_knee",       # 13
    "left_ankle",      # 14
    "left_foot",       # 15
    "right_hip",       # 16
    "right_knee",      # 17
    "right_ankle",     # 18
    "right_foot",      # 19
    "spine_shoulder",  # 20
    "left_hand_tip",   # 21
    "left_thumb",      # 22
    "right_hand_tip",  # 23
    "right_thumb",     # 24
)

ROOT = 0

# PARENTS[j] is the parent of joint j in the tree rooted at the spine base (-1 for the root).
PARENTS: tuple[int, ...] = (
    -1,  # spine_base
    0,   # spine_mid      <- spine_base
    20,  # neck           <- spine_shoulder
    2,   # head           <- neck
    20,  # left_shoulder  <- spine_shoulder
    4,   # left_elbow
    5,   # left_wrist
    6,   # left_hand
    20,  # right_shoulder <- spine_shoulder
    8,   # right_elbow
    9,   # right_wrist
    10,  # right_hand
    0,   # left_hip       <- spine_base
    12,  # left_knee
    13,  # left_ankle
    14,  # left_foot
    0,   # right_hip      <- spine_base
    16,  # right_knee
    17,  # right_ankle
    18,  # right_foot
    1,   # spine_shoulder <- spine_mid
    7,   # left_hand_tip  <- left_hand
    7,   # left_thumb     <- left_hand
    11,  # right_hand_tip <- right_hand
    11,  # right_thumb    <- right_hand
)

# (child, parent) pairs: the 24 bones of the tree.
BONES: tuple[tuple[int, int], ...] = tuple((j, p) for j, p in enumerate(PARENTS) if p >= 0)

# The bone modality of MAMP and the HA-CM release (their feeders' `ntu_pairs`, 1-based there,
# inherited from 2s-AGCN), 0-based: (joint, reference) -> bone = joint - reference. Every joint
# appears once on the left, so the bone input keeps 25 vectors. It is not the tree above, and its
# quirks are kept on purpose, because checkpoints trained on bones saw exactly these vectors:
# it is rooted at the spine shoulder (20, 20): that bone is always zero; the spine base points
# from the spine mid (0, 1) instead of being the root; and the hand tips are taken from the
# thumbs (21, 22), (23, 24), not from the hands.
MAMP_BONE_PAIRS: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 20), (2, 20), (3, 2), (4, 20), (5, 4), (6, 5), (7, 6), (8, 20), (9, 8), (10, 9), (11, 10),
    (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18),
    (21, 22), (20, 20), (22, 7), (23, 24), (24, 11),
)

# The centring joint of the standard NTU preprocessing (spine mid, 0-based).
CENTRE_JOINT = 1

# Left/right mirror pairs (left, right).
SYMMETRY_PAIRS: tuple[tuple[int, int], ...] = (
    (4, 8), (5, 9), (6, 10), (7, 11),
    (12, 16), (13, 17), (14, 18), (15, 19),
    (21, 23), (22, 24),
)

# HA-CM spatial pruning: the 7 trunk ("parent"/"father") joints leave the token set.
TRUNK_JOINTS: tuple[int, ...] = (0, 1, 4, 8, 12, 16, 20)
# The 18 token joints, in the order the HA-CM release lays them out.
TOKEN_JOINTS: tuple[int, ...] = tuple(j for j in range(NUM_JOINTS) if j not in TRUNK_JOINTS)


def _depths() -> tuple[int, ...]:
    depth = []
    for j in range(NUM_JOINTS):
        d, k = 0, j
        while PARENTS[k] >= 0:
            k = PARENTS[k]
            d += 1
        depth.append(d)
    return tuple(depth)


# DEPTH[j]: number of bones between joint j and the spine base.
DEPTH: tuple[int, ...] = _depths()


def _trunk_ancestor(j: int) -> int:
    k = PARENTS[j]
    while k not in TRUNK_JOINTS:
        k = PARENTS[k]
    return k


# For each token joint (in TOKEN_JOINTS order), its nearest trunk ancestor.
TOKEN_TRUNK_ANCESTOR: tuple[int, ...] = tuple(_trunk_ancestor(j) for j in TOKEN_JOINTS)


def joint_set(prune: bool) -> tuple[int, ...]:
    """Joints that become tokens: the 18 token joints with spatial pruning, all 25 without."""
    return TOKEN_JOINTS if prune else tuple(range(NUM_JOINTS))


def bone_lengths(xyz: np.ndarray) -> np.ndarray:
    """Bone lengths of skeletons `[..., 25, 3]` -> `[..., 24]` in BONES order."""
    child = np.array([c for c, _ in BONES])
    parent = np.array([p for _, p in BONES])
    return np.linalg.norm(xyz[..., child, :] - xyz[..., parent, :], axis=-1)


def mirror_permutation() -> np.ndarray:
    """Joint permutation that swaps left and right (for mirroring augmentations and tests)."""
    perm = np.arange(NUM_JOINTS)
    for left, right in SYMMETRY_PAIRS:
        perm[left], perm[right] = right, left
    return perm
