"""Synthetic NTU-format data: people performing actions, seen by three Kinect-like cameras.

No real dataset can be downloaded here, so the default path generates one. The output is a
directory of real-format raw NTU `.skeleton` files plus `synth.json`, so the very same parser,
denoiser, splitter and loader run on it as on NTU RGB+D.

The procedural model, from the person outwards (docs/synthetic.md describes the world and its
calibration; every property is a knob of Population, Variation or SensorModel, see make_world):
  * a Subject (Population): bone lengths (children to adults, per-bone factors, left/right equal),
    a resting posture, a movement style (amplitude and speed factors, a dominant side);
  * an ActionSpec: a class, i.e. a motion program of Terms, each driving one joint angle
    (flex / abd / swing) or the root translation with a windowed sinusoid or smooth keyframes
    over the normalised action time u in [0, 1]; classes come in families of confusable actions
    that share their poses and differ in motion;
  * generate_sequence (Variation): every term as this take performs it, length, time warp, idle
    lead-in and tail, amplitude, phase, fidgets of free joints, facing (camera 1 or 3 by
    replication, as NTU), position, a bystander in some one-person takes; forward kinematics on
    the hacm.skeleton tree and ground contact -> a clean Performance in world coordinates;
  * record (SensorModel): one camera view (-45 / 0 / +45 degrees for cameras 1 / 2 / 3, height and
    distance by setup) plus the sensor: depth- and joint-dependent smoothed jitter, an optional
    slow drift, spikes, the far arm occluded and limbs swapped in side views, lost frames and
    spurious bodies the standard denoiser removes;
  * format_skeleton / write_synthetic: the NTU text layout of docs/data.md.

Randomness is keyed, never sequential: the subject comes from (seed, performer), the performance
from (seed, performer, replication, action) -- shared by the three cameras, as in NTU where the
cameras film the same take -- and the sensor from (seed, performer, replication, action,
camera). Any subset of the dataset is therefore reproducible and independent of write order.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.signal import lfilter

from hacm import lock
from hacm.errors import HacmError, did_you_mean
from hacm.fileio import make_dir, write_text_atomic
from hacm.progress import progress_bar
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS, PARENTS, SYMMETRY_PAIRS, mirror_permutation

FPS = 30.0
ANGLE_AXES = ("flex", "abd", "swing")   # joint angle axes (radians)
ROOT_AXES = ("x", "y", "z")             # root translation axes (metres, the body's own frame)
ROOT = "root"                           # pseudo-joint of Terms that move the whole body

# Ids of the randomness streams (first entry of every SeedSequence key), so streams never collide.
_SUBJECT, _PERFORMANCE, _SENSOR, _SETUP = 1, 2, 3, 4

_BASE_ID = 72057594037927936            # Kinect bodyIDs are large integers near 2**56


def _j(name: str) -> int:
    return JOINT_NAMES.index(name)


# ----------------------------------------------------------------------------------------------
# Rest skeleton (body frame: x = the person's left, y = up, z = the person's forward)

# Offset of each joint from its parent in metres, for a person of scale 1 (about 1.75 m tall).
# Left-side joints only; the right side is the mirror image (x negated).
_REST_LEFT_AND_CENTRE = {
    "spine_mid": (0.0, 0.26, -0.01),
    "spine_shoulder": (0.0, 0.24, 0.0),
    "neck": (0.0, 0.08, 0.01),
    "head": (0.0, 0.13, 0.04),            # in front of the neck axis so that head turns show
    "left_shoulder": (0.17, -0.04, 0.0),
    "left_elbow": (0.0, -0.28, 0.0),
    "left_wrist": (0.0, -0.25, 0.0),
    "left_hand": (0.0, -0.07, 0.0),
    "left_hand_tip": (0.0, -0.08, 0.0),
    "left_thumb": (-0.01, -0.03, 0.045),
    "left_hip": (0.08, -0.04, 0.0),
    "left_knee": (0.0, -0.42, 0.01),
    "left_ankle": (0.0, -0.40, -0.02),
    "left_foot": (0.0, -0.05, 0.12),
}


def _side(name: str) -> int:
    """+1 for left-side and centre joints, -1 for right-side joints."""
    return -1 if name.startswith("right_") else 1


def _rest_offsets() -> np.ndarray:
    off = np.zeros((NUM_JOINTS, 3))   # [25, 3]; the root's own offset stays 0
    for name, xyz in _REST_LEFT_AND_CENTRE.items():
        off[_j(name)] = xyz
        if name.startswith("left_"):
            off[_j("right_" + name[5:])] = (-xyz[0], xyz[1], xyz[2])
    return off


REST_OFFSETS = _rest_offsets()

def _topological_order() -> tuple[int, ...]:
    """Joints in an order where every parent comes before its children."""
    order, placed = [], set()
    while len(order) < NUM_JOINTS:
        for j in range(NUM_JOINTS):
            if j not in placed and (PARENTS[j] < 0 or PARENTS[j] in placed):
                order.append(j)
                placed.add(j)
    return tuple(order)


_FK_ORDER = _topological_order()


def _axis_signs() -> np.ndarray:
    """[25, 3] signs turning semantic angles (flex, abd, swing) into rotations about x, z, y.

    flex > 0 moves the joint's primary bone (to its first child) forward, abd > 0 moves it away
    from the body midline (to the person's left for centre joints), swing > 0 turns a forward
    pointing bone outwards (to the left for centre joints). The sign depends on whether the
    bone points up or down at rest and on the body side.
    """
    signs = np.ones((NUM_JOINTS, 3))
    for j, name in enumerate(JOINT_NAMES):
        children = [c for c in range(NUM_JOINTS) if PARENTS[c] == j]
        if not children:
            continue
        up = 1.0 if REST_OFFSETS[children[0], 1] >= 0 else -1.0
        side = _side(name)
        signs[j] = (up, -side * up, side)   # Rx(s*flex) moves a bone along +z by s*dy; Rz along -x
    return signs


_AXIS_SIGNS = _axis_signs()


def _rot_x(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([o, z, z, z, c, -s, z, s, c], -1).reshape(a.shape + (3, 3))


def _rot_y(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, z, s, z, o, z, -s, z, c], -1).reshape(a.shape + (3, 3))


def _rot_z(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(a.shape + (3, 3))


def forward_kinematics(offsets: np.ndarray, angles: np.ndarray, root_rot: np.ndarray,
                       root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joint positions and global rotations of one body.

    offsets [25, 3] bone vectors at rest, angles [T, 25, 3] semantic (flex, abd, swing),
    root_rot [T, 3, 3], root_pos [T, 3] -> positions [T, 25, 3], rotations [T, 25, 3, 3].
    The rotation of joint j turns the bones from j to its children:
    pos[child] = pos[j] + G[j] @ offsets[child], G[j] = G[parent(j)] @ L[j].
    """
    a = angles * _AXIS_SIGNS                                              # [T, 25, 3]
    local = _rot_y(a[..., 2]) @ _rot_z(a[..., 1]) @ _rot_x(a[..., 0])     # [T, 25, 3, 3]
    T = angles.shape[0]
    pos = np.zeros((T, NUM_JOINTS, 3))
    rot = np.zeros((T, NUM_JOINTS, 3, 3))
    for j in _FK_ORDER:
        p = PARENTS[j]
        if p < 0:
            pos[:, j] = root_pos
            rot[:, j] = root_rot @ local[:, j]
        else:
            pos[:, j] = pos[:, p] + rot[:, p] @ offsets[j]
            rot[:, j] = rot[:, p] @ local[:, j]
    return pos, rot


# ----------------------------------------------------------------------------------------------
# Motion programs

@dataclass(frozen=True)
class Term:
    """One driven degree of freedom of a motion program.

    joint: a hacm.skeleton joint name, "dom_*"/"sub_*" for the subject's dominant/other side
    (e.g. "dom_shoulder"), or "root" for the translation of the whole body.
    axis: "flex" | "abd" | "swing" for joints (radians), "x" | "y" | "z" for the root (metres,
    in the body's frame: x = left, y = up, z = forward).
    kind "keys": smooth (cosine) interpolation of `values` at equally spaced knots over u in [0, 1]
    (held before and after the action). kind "sin": amp * sin(2 pi cycles u + phase), faded in
    and out at the ends of the action; `rectify` keeps only the positive half-waves.
    """
    joint: str
    axis: str
    kind: str
    values: tuple[float, ...] = ()
    amp: float = 0.0
    cycles: float = 0.0
    phase: float = 0.0
    rectify: bool = False
    actor: int = 0

    def __post_init__(self):
        if self.joint == ROOT:
            if self.axis not in ROOT_AXES:
                raise ValueError(f"root term axis must be one of {ROOT_AXES}, got {self.axis!r}")
        else:
            name = self.joint
            if name.startswith(("dom_", "sub_")):
                name = "right_" + name[4:]
            if name not in JOINT_NAMES:
                raise ValueError(f"unknown joint {self.joint!r} in a motion term")
            if self.axis not in ANGLE_AXES:
                raise ValueError(f"joint term axis must be one of {ANGLE_AXES}, got {self.axis!r}")
        if self.kind not in ("keys", "sin") or (self.kind == "keys" and not self.values):
            raise ValueError(f"term kind must be 'keys' (with values) or 'sin', got {self.kind!r}")

    def evaluate(self, u: np.ndarray, phase_shift: float) -> np.ndarray:
        """Value over the normalised action time u [T] (clipped to [0, 1] outside the action)."""
        uc = np.clip(u, 0.0, 1.0)
        if self.kind == "keys":
            knots = np.asarray(self.values, dtype=float)
            if knots.size == 1:
                return np.full_like(u, knots[0])
            x = uc * (knots.size - 1)
            k = np.minimum(x.astype(int), knots.size - 2)
            w = 0.5 - 0.5 * np.cos(np.pi * (x - k))                    # ease in/out between knots
            return knots[k] * (1 - w) + knots[k + 1] * w
        wave = np.sin(2 * np.pi * self.cycles * uc + self.phase + phase_shift)
        if self.rectify:
            wave = np.maximum(wave, 0.0)
        fade = np.clip(np.minimum(uc, 1 - uc) / 0.12, 0.0, 1.0)
        fade = 0.5 - 0.5 * np.cos(np.pi * fade)
        return self.amp * wave * fade * ((u >= 0) & (u <= 1))

    def performed(self, rng: np.random.Generator, key_jitter: float, cycle_jitter: float) -> "Term":
        """This term as one performance does it: every keyframe value off by a relative N(0, key_jitter)
        (a rest value of 0 stays 0), a sinusoid's cycles by a factor exp(N(0, cycle_jitter))."""
        if self.kind == "keys":
            values = tuple(v * (1 + key_jitter * rng.standard_normal()) for v in self.values)
            return replace(self, values=values)
        return replace(self, amp=self.amp * (1 + key_jitter * rng.standard_normal()),
                       cycles=max(0.5, self.cycles * float(np.exp(cycle_jitter * rng.standard_normal()))))


def keys(joint: str, axis: str, *values: float, actor: int = 0) -> Term:
    return Term(joint, axis, "keys", values=tuple(values), actor=actor)


def sin(joint: str, axis: str, amp: float, cycles: float, phase: float = 0.0,
        rectify: bool = False, actor: int = 0) -> Term:
    return Term(joint, axis, "sin", amp=amp, cycles=cycles, phase=phase, rectify=rectify, actor=actor)


@dataclass(frozen=True)
class ActionSpec:
    """A class: a pattern of limb trajectories. `family` names the classes it is built to be confused
    with and what tells them apart (docs/synthetic.md lists them)."""
    name: str
    two_person: bool
    program: tuple[Term, ...]
    family: str
    seconds: float = 2.5          # typical duration of the action itself at speed 1
    separation: float = 1.0       # two-person: initial distance between the two roots (metres)


def _mirror(terms: Sequence[Term]) -> tuple[Term, ...]:
    """The same program performed with the other side of the body."""
    swap = {"left_": "right_", "right_": "left_", "dom_": "sub_", "sub_": "dom_"}
    out = []
    for t in terms:
        prefix = next((p for p in swap if t.joint.startswith(p)), None)
        if prefix is not None:
            out.append(replace(t, joint=swap[prefix] + t.joint[len(prefix):]))
        elif (t.joint == ROOT and t.axis == "x") or (t.joint != ROOT and t.axis != "flex"):
            # centre joints: abd and swing point to the person's left -> negate; so does root x
            out.append(replace(t, values=tuple(-v for v in t.values), amp=-t.amp))
        else:
            out.append(t)
    return tuple(out)


def _reversed(terms: Sequence[Term]) -> tuple[Term, ...]:
    """The program played backwards in time: the same poses, visited in the opposite order (sit down
    / stand up). Only keyframed terms reverse exactly; a rhythmic term stays as it is."""
    return tuple(replace(t, values=t.values[::-1]) if t.kind == "keys" else t for t in terms)


def _both_actors(terms: Sequence[Term]) -> tuple[Term, ...]:
    return tuple(terms) + tuple(replace(t, actor=1) for t in terms)


def _wave(side: str) -> tuple[Term, ...]:
    return (keys(f"{side}_shoulder", "abd", 0, 1.3, 1.3, 1.3, 0),
            keys(f"{side}_elbow", "abd", 0, 1.5, 1.5, 1.5, 0),
            sin(f"{side}_elbow", "abd", 0.35, 4.0))


def _gait(direction: float, actor: int = 0) -> tuple[Term, ...]:
    """Two gait cycles while the root travels `direction` metres along the body's forward axis."""
    return (sin("left_hip", "flex", 0.38, 2.0, actor=actor),
            sin("right_hip", "flex", 0.38, 2.0, np.pi, actor=actor),
            sin("left_knee", "flex", -0.7, 2.0, 0.5, rectify=True, actor=actor),
            sin("right_knee", "flex", -0.7, 2.0, 0.5 + np.pi, rectify=True, actor=actor),
            sin("left_shoulder", "flex", 0.3, 2.0, np.pi, actor=actor),
            sin("right_shoulder", "flex", 0.3, 2.0, actor=actor),
            sin(ROOT, "y", 0.02, 4.0, rectify=True, actor=actor),
            keys(ROOT, "z", 0.0, direction, actor=actor))


def _hands_together(swing: float) -> tuple[Term, ...]:
    """Both hands held together in front of the chest for the whole action."""
    arms = []
    for side in ("left", "right"):
        arms += [keys(f"{side}_shoulder", "flex", 0, 1.1, 1.1, 1.1, 0),
                 keys(f"{side}_elbow", "flex", 0, 0.9, 0.9, 0.9, 0),
                 keys(f"{side}_shoulder", "swing", 0, swing, swing, swing, 0)]
    return tuple(arms)


def _arm_swings(phase: float) -> tuple[Term, ...]:
    """Both arms swung forward and back, the right arm `phase` radians behind the left."""
    return (sin("left_shoulder", "flex", 0.75, 3.0), sin("right_shoulder", "flex", 0.75, 3.0, phase),
            sin("left_elbow", "flex", 0.3, 3.0, 0.4), sin("right_elbow", "flex", 0.3, 3.0, 0.4 + phase))


def _push(actor: int = 0) -> tuple[Term, ...]:
    """Both hands from the chest to full extension: rest, chest, extended, extended, rest."""
    return (keys("left_shoulder", "flex", 0, 0.9, 1.45, 1.45, 0, actor=actor),
            keys("right_shoulder", "flex", 0, 0.9, 1.45, 1.45, 0, actor=actor),
            keys("left_elbow", "flex", 0, 1.7, 0.1, 0.1, 0, actor=actor),
            keys("right_elbow", "flex", 0, 1.7, 0.1, 0.1, 0, actor=actor))


def _put_on_hat() -> tuple[Term, ...]:
    """Both hands lifted above the head, then lowered onto it, then back down."""
    return (keys("left_shoulder", "flex", 0, 2.5, 2.2, 0), keys("right_shoulder", "flex", 0, 2.5, 2.2, 0),
            keys("left_elbow", "flex", 0, 1.0, 1.9, 0), keys("right_elbow", "flex", 0, 1.0, 1.9, 0),
            keys("neck", "flex", 0, -0.1, 0.15, 0))


def _sit_down() -> tuple[Term, ...]:
    return (keys("left_hip", "flex", 0, 0, 1.45, 1.5), keys("right_hip", "flex", 0, 0, 1.45, 1.5),
            keys("left_knee", "flex", 0, 0, -1.45, -1.5), keys("right_knee", "flex", 0, 0, -1.45, -1.5),
            keys("spine_mid", "flex", 0, 0.45, 0.15, 0.05), keys(ROOT, "z", 0, 0, -0.12, -0.15))


_HANDSHAKE = (keys("right_shoulder", "flex", 0, 0.9, 0.9, 0.9, 0),
              keys("right_shoulder", "swing", 0, -0.35, -0.35, -0.35, 0),
              keys("right_elbow", "flex", 0, 0.5, 0.5, 0.5, 0),
              sin("right_elbow", "flex", 0.15, 3.0),
              keys(ROOT, "z", 0, 0.15, 0.15, 0.15, 0))

_HUG = (keys("left_shoulder", "flex", 0, 1.3, 1.4, 1.3, 0),
        keys("right_shoulder", "flex", 0, 1.3, 1.4, 1.3, 0),
        keys("left_shoulder", "swing", 0, 0.1, -0.7, 0.1, 0),
        keys("right_shoulder", "swing", 0, 0.1, -0.7, 0.1, 0),
        keys("left_elbow", "flex", 0, 0.5, 1.2, 0.5, 0),
        keys("right_elbow", "flex", 0, 0.5, 1.2, 0.5, 0),
        keys(ROOT, "z", 0, 0.45, 0.5, 0.5, 0.4))

_RAISE_ARM = (keys("dom_shoulder", "flex", 0, 0, 2.7, 2.7), keys("dom_elbow", "flex", 0, 0, 0.15, 0.15))

# Families of confusable classes, as real datasets have them. Classes of a family share their poses
# and differ in how they move through them: the order (one is the other played backwards, as NTU's
# put on / take off), the manner or axis (clapping / rubbing two hands, nod / shake head), the limb,
# the phase between limbs, or (two persons) the relation between the actors.
ACTIONS: tuple[ActionSpec, ...] = (
    # order: the same poses visited forwards and backwards
    ActionSpec("raise arm", False, _RAISE_ARM, "order", seconds=1.8),
    ActionSpec("lower arm", False, _reversed(_RAISE_ARM), "order", seconds=1.8),
    ActionSpec("sit down", False, _sit_down(), "order", seconds=2.6),
    ActionSpec("stand up", False, _reversed(_sit_down()), "order", seconds=2.6),
    ActionSpec("push", False, _push(), "order", seconds=2.0),
    ActionSpec("pull", False, _reversed(_push()), "order", seconds=2.0),
    ActionSpec("put on hat", False, _put_on_hat(), "order", seconds=2.6),
    ActionSpec("take off hat", False, _reversed(_put_on_hat()), "order", seconds=2.6),
    ActionSpec("walk forward", False, _gait(1.0), "order", seconds=2.6),
    ActionSpec("walk backward", False, _gait(-0.7), "order", seconds=2.6),
    # manner: the same pose, moved along another axis or with another rhythm
    ActionSpec("clap", False, _hands_together(-0.2) + (sin("left_shoulder", "swing", 0.17, 4.0),
                                                      sin("right_shoulder", "swing", 0.17, 4.0)),
               "manner", seconds=2.4),
    ActionSpec("rub hands", False, _hands_together(-0.28) + (sin("left_shoulder", "flex", 0.1, 6.0),
                                                            sin("right_shoulder", "flex", 0.1, 6.0, np.pi)),
               "manner", seconds=2.4),
    ActionSpec("nod", False, (sin("neck", "flex", 0.3, 3.0), sin("spine_shoulder", "flex", 0.04, 3.0)),
               "manner", seconds=2.0),
    ActionSpec("shake head", False, (sin("neck", "swing", 0.6, 3.0), sin("spine_shoulder", "swing", 0.06, 3.0)),
               "manner", seconds=2.0),
    # limb: the same movement by another limb, or the same leg used otherwise
    ActionSpec("wave right hand", False, _wave("right"), "limb"),
    ActionSpec("wave left hand", False, _mirror(_wave("right")), "limb"),
    ActionSpec("kick", False, (keys("dom_hip", "flex", 0, -0.3, 1.3, 0.2, 0),
                               keys("dom_knee", "flex", 0, -1.2, -0.1, -0.6, 0),
                               keys("sub_shoulder", "abd", 0, 0.2, 0.4, 0.2, 0)), "limb", seconds=1.6),
    ActionSpec("step forward", False, (keys("dom_hip", "flex", 0, 0.5, 0.25, 0, 0),
                                       keys("dom_knee", "flex", 0, -0.8, -0.1, 0, 0),
                                       keys("sub_knee", "flex", 0, 0, -0.3, -0.1, 0),
                                       keys(ROOT, "z", 0, 0.1, 0.3, 0.4, 0.4)), "limb", seconds=1.6),
    # phase: both arms through the same poses, together or alternately
    ActionSpec("swing both arms", False, _arm_swings(0.0), "phase", seconds=2.6),
    ActionSpec("swing arms alternately", False, _arm_swings(np.pi), "phase", seconds=2.6),
    # relation: two persons (actor 0 = the performer, actor 1 = the partner, facing each other)
    ActionSpec("handshake", True, _both_actors(_HANDSHAKE), "relation", seconds=2.6, separation=1.1),
    ActionSpec("push other person", True,
               _push(actor=0) + (keys(ROOT, "z", 0, 0.1, 0.2, 0.2, 0.2),
                                 keys(ROOT, "z", 0, 0, 0, -0.4, -0.45, actor=1),
                                 keys("spine_mid", "flex", 0, 0, 0, -0.3, 0, actor=1),
                                 keys("left_shoulder", "abd", 0, 0, 0, 0.5, 0.1, actor=1),
                                 keys("right_shoulder", "abd", 0, 0, 0, 0.5, 0.1, actor=1)),
               "relation", seconds=2.2, separation=0.8),
    ActionSpec("hug", True, _both_actors(_HUG), "relation", seconds=3.0, separation=1.55),
    ActionSpec("walk towards each other", True, _both_actors(_gait(0.6)), "relation", seconds=2.6,
               separation=2.6),
    ActionSpec("walk apart", True, _both_actors(_reversed(_gait(0.6))), "relation", seconds=2.6,
               separation=2.6),
)


def action_names() -> list[str]:
    return [a.name for a in ACTIONS]

# ----------------------------------------------------------------------------------------------
# Subjects and performances

@dataclass(frozen=True)
class Population:
    """Who performs: the performers' bodies and habits. Every class draws from the same population."""
    child_share: float = 0.15                              # performers who are children (NTU: 10-35 years)
    child_height: tuple[float, float] = (0.72, 0.86)       # height scale (1 = 1.75 m): 1.26-1.50 m
    adult_height: tuple[float, float] = (0.86, 1.12)       # 1.50-1.96 m
    bone_sd: float = 0.06          # per-bone length factor N(1, bone_sd) on top of the height
    left_handed: float = 0.15      # share of performers whose dominant side is the left
    posture_sd: float = 0.12       # resting joint angles (radians) around a relaxed stance


@dataclass(frozen=True)
class Variation:
    """How one performance differs from another of the same class by the same person."""
    key_jitter: float = 0.08       # relative sd of every keyframe value and rhythmic amplitude
    cycle_jitter: float = 0.2      # log sd of the number of cycles of a rhythmic term
    amplitude: tuple[float, float] = (0.8, 1.2)     # whole-performance amplitude factor
    tempo: tuple[float, float] = (0.8, 1.25)        # x the performer's own speed
    warp: tuple[float, float] = (0.75, 1.35)        # exponent of a monotone time warp of the action
    idle_seconds: tuple[float, float] = (0.05, 0.6) # still time before and after the action, each
    fidgets: float = 0.5           # mean number of small movements of joints the action leaves free
    fidget_amp: float = 0.2        # their amplitude (radians)
    facing_sd: float = 15.0        # degrees around the facing of the replication (camera 1 or 3)
    position_sd: float = 0.25      # metres, the performer's place in the room
    bystander_prob: float = 0.15   # one-person takes with a second person standing by in view
    coupling: float = 1.0          # gain of the secondary motion of free joints (the body moving as a whole)


@dataclass(frozen=True)
class Subject:
    performer: int
    offsets: np.ndarray      # [25, 3] bone vectors at rest (metres)
    posture: np.ndarray      # [25, 3] resting joint angles (flex, abd, swing)
    amplitude: float         # scales every motion-program angle and translation
    speed: float             # > 1 performs faster (shorter sequences)
    dominant: str            # "right" | "left"


def make_subject(seed: int, performer: int, partner: bool = False, population: Population = Population()) -> Subject:
    """The person with id `performer` (1-based), deterministic from (seed, performer); with
    `partner`, the (unnamed) person who performs the two-person actions with them."""
    rng = np.random.default_rng([_SUBJECT, seed, performer, int(partner)])
    child = rng.random() < population.child_share
    height = rng.uniform(*(population.child_height if child else population.adult_height))
    jitter = np.clip(rng.normal(1.0, population.bone_sd, NUM_JOINTS), 1 - 3 * population.bone_sd,
                     1 + 3 * population.bone_sd)
    for left, right in SYMMETRY_PAIRS:                        # people are (nearly) symmetric
        jitter[right] = jitter[left] * rng.normal(1.0, 0.01)
    offsets = REST_OFFSETS * height * jitter[:, None]
    sd = population.posture_sd
    posture = np.zeros((NUM_JOINTS, 3))
    for side in ("left", "right"):
        posture[_j(f"{side}_shoulder")] = (rng.normal(0.05, sd), abs(rng.normal(0.12, sd)), rng.normal(0, sd))
        posture[_j(f"{side}_elbow"), 0] = abs(rng.normal(0.15, 1.5 * sd))
        posture[_j(f"{side}_hip"), 1] = abs(rng.normal(0.04, 0.5 * sd))
        posture[_j(f"{side}_knee"), 0] = -abs(rng.normal(0.03, 0.5 * sd))
    posture[_j("spine_mid"), 0] = rng.normal(0.03, 0.6 * sd)
    posture[_j("neck"), 0] = rng.normal(0.02, sd)
    return Subject(performer=performer, offsets=offsets, posture=posture,
                   amplitude=float(rng.uniform(0.8, 1.2)), speed=float(rng.uniform(0.8, 1.25)),
                   dominant="left" if rng.random() < population.left_handed else "right")


@dataclass
class Performance:
    """A clean take in world coordinates (metres, y up, floor at y = 0)."""
    xyz: np.ndarray          # [A, T, 25, 3]
    rot: np.ndarray          # [A, T, 25, 3, 3] global joint rotations
    action_window: tuple[int, int]   # first and last frame of the action itself
    performers: int          # how many of the A bodies perform the action (the rest stand by)


def _resolve_joint(name: str, dominant: str) -> int:
    if name.startswith("dom_"):
        return _j(f"{dominant}_{name[4:]}")
    if name.startswith("sub_"):
        return _j(f"{'left' if dominant == 'right' else 'right'}_{name[4:]}")
    return _j(name)


# Degrees of freedom a fidget may move when the action leaves them free: a glance, a shrug, a hand
# lifted and dropped, weight shifted from one leg to the other.
_FIDGETS = (("neck", 2), ("neck", 0), ("spine_mid", 2), ("left_shoulder", 0), ("right_shoulder", 0),
            ("left_elbow", 0), ("right_elbow", 0), ("left_hip", 1), ("right_hip", 1), ("spine_mid", 1))


def _fidget(angles: np.ndarray, driven: set[tuple[int, int]], rng: np.random.Generator, variation: Variation) -> None:
    """Add Poisson(variation.fidgets) slow movements of free degrees of freedom to angles [T, 25, 3]."""
    T = angles.shape[0]
    t = np.arange(T) / FPS
    free = [(j, ax) for j, ax in ((_j(n), a) for n, a in _FIDGETS) if (j, ax) not in driven]
    for _ in range(min(rng.poisson(variation.fidgets), len(free))):
        j, ax = free[rng.integers(len(free))]
        centre, width = rng.uniform(0, T / FPS), rng.uniform(0.6, 2.0)      # a bump of 0.6-2 s
        bump = np.exp(-0.5 * ((t - centre) / (0.35 * width)) ** 2)
        angles[:, j, ax] += variation.fidget_amp * rng.uniform(0.4, 1.0) * rng.choice([-1, 1]) * bump


# Secondary motion: (driven joint, axis) -> [(follower, axis, gain)]. A body moves as a whole: the torso
# counter-turns against one arm reaching forward and leans into a reach, the head follows raised hands,
# an elbow bends as its shoulder lifts, knees soften as the hips flex.
_COUPLINGS = {
    ("left_shoulder", 0): [("spine_mid", 2, 0.12), ("spine_mid", 0, 0.06), ("neck", 0, -0.08), ("left_elbow", 0, 0.2),
                           ("right_shoulder", 0, -0.1)],
    ("right_shoulder", 0): [("spine_mid", 2, -0.12), ("spine_mid", 0, 0.06), ("neck", 0, -0.08), ("right_elbow", 0, 0.2),
                            ("left_shoulder", 0, -0.1)],
    ("left_shoulder", 1): [("spine_mid", 1, -0.08), ("neck", 1, -0.1)],
    ("right_shoulder", 1): [("spine_mid", 1, 0.08), ("neck", 1, 0.1)],
    ("left_hip", 0): [("left_knee", 0, -0.3), ("spine_mid", 0, 0.08), ("right_shoulder", 0, 0.15)],
    ("right_hip", 0): [("right_knee", 0, -0.3), ("spine_mid", 0, 0.08), ("left_shoulder", 0, 0.15)],
    ("spine_mid", 0): [("left_hip", 0, 0.2), ("right_hip", 0, 0.2), ("neck", 0, -0.3)],
    ("neck", 2): [("spine_shoulder", 2, 0.15)],
}
_COUPLING_LAG = 3      # frames (0.1 s) by which a follower trails what drives it


def _couple(angles: np.ndarray, driven: set[tuple[int, int]], gain: float) -> None:
    """Add secondary motion (_COUPLINGS, scaled by `gain`) of free joints to angles [T, 25, 3], from the
    movement of the driven ones away from their first-frame value, a few frames late."""
    if gain == 0:
        return
    delta = angles - angles[:1]                                              # [T, 25, 3]
    lagged = np.concatenate([np.repeat(delta[:1], _COUPLING_LAG, 0), delta[:-_COUPLING_LAG]])
    for (name, axis), followers in _COUPLINGS.items():
        source = (_j(name), axis)
        if source not in driven:
            continue
        for follower, f_axis, k in followers:
            if (_j(follower), f_axis) not in driven:
                angles[:, _j(follower), f_axis] += gain * k * lagged[:, source[0], axis]


def _body_motion(spec: ActionSpec, subject: Subject, actor: int, u: np.ndarray, phase_shift: float, scale: float,
                 rng: np.random.Generator, variation: Variation) -> tuple[np.ndarray, np.ndarray]:
    """Joint angles [T, 25, 3] and root translation [T, 3] (body frame) of one actor; actor None: a
    bystander who performs nothing."""
    T = u.shape[0]
    angles = np.broadcast_to(subject.posture, (T, NUM_JOINTS, 3)).copy()
    trans = np.zeros((T, 3))
    driven = set()
    for term in spec.program if actor is not None else ():
        if term.actor != actor:
            continue
        value = scale * term.performed(rng, variation.key_jitter, variation.cycle_jitter).evaluate(u, phase_shift)
        if term.joint == ROOT:
            trans[:, ROOT_AXES.index(term.axis)] += value
        else:
            j, ax = _resolve_joint(term.joint, subject.dominant), ANGLE_AXES.index(term.axis)
            angles[:, j, ax] += value
            driven.add((j, ax))
    _couple(angles, driven, variation.coupling)
    _fidget(angles, driven, rng, variation)
    # idle life: breathing and a slow sway, so that no frame is perfectly still
    t = np.arange(T) / FPS
    angles[:, _j("spine_mid"), 0] += 0.015 * np.sin(2 * np.pi * rng.uniform(0.2, 0.4) * t + rng.uniform(0, 6.3))
    trans[:, 0] += 0.012 * np.sin(2 * np.pi * rng.uniform(0.1, 0.3) * t + rng.uniform(0, 6.3))
    return angles, trans


def generate_sequence(spec: ActionSpec, subjects: Sequence[Subject], rng: np.random.Generator, *,
                      facing: float = 0.0, min_frames: int = 20, max_frames: int = 300,
                      variation: Variation = Variation()) -> Performance:
    """One clean performance of `spec` by subjects[0] (and subjects[1], the partner, if two-person).

    `facing`: the direction (radians about the vertical) the performer faces, 0 towards camera 2.
    Per-sample variation drawn from `rng` (`variation`): every term as this performance does it,
    length (the subjects' speed and a random tempo), idle time before and after the action, a
    monotone time warp, amplitude, phase, fidgets of free joints, facing and position; with
    `variation.bystander_prob` a one-person take has subjects[1] standing by.
    """
    two = spec.two_person
    if len(subjects) < (2 if two else 1):
        raise ValueError(f"{spec.name!r} needs {2 if two else 1} subjects, got {len(subjects)}")
    bystander = not two and len(subjects) > 1 and rng.random() < variation.bystander_prob
    lead = subjects[0]
    tempo = lead.speed * rng.uniform(*variation.tempo)
    action_frames = spec.seconds * FPS / tempo
    idle = rng.uniform(*variation.idle_seconds, 2) * FPS                  # before / after the action
    T = int(np.clip(round(action_frames + idle.sum()), min_frames, max_frames))
    # squeeze or stretch the idle parts first, the action only when it alone does not fit
    action_frames = min(action_frames, T - 2)
    start = (T - action_frames) * idle[0] / idle.sum()
    u = (np.arange(T) - start) / action_frames              # [T] normalised action time
    warp = rng.uniform(*variation.warp)
    u = np.where((u > 0) & (u < 1), np.clip(u, 0, 1) ** warp, u)
    phase_shift = rng.uniform(-0.6, 0.6)
    sample_amp = rng.uniform(*variation.amplitude)

    yaw = np.pi + facing + np.deg2rad(rng.normal(0, variation.facing_sd))    # pi: facing camera 2
    centre = np.array([rng.normal(0, variation.position_sd), 0, rng.normal(0, variation.position_sd)])
    if two:                  # face each other across the performer's facing direction
        half = spec.separation * rng.uniform(0.9, 1.1) / 2
        yaws = (yaw - np.pi / 2, yaw + np.pi / 2)
        places = (_rot_y(np.array(yaw)) @ [half, 0, 0], _rot_y(np.array(yaw)) @ [-half, 0, 0])
    elif bystander:          # a second person 1.2-2 m to one side, facing anywhere towards the room
        side = rng.choice([-1, 1]) * rng.uniform(1.2, 2.0)
        yaws = (yaw, np.pi + rng.uniform(-1.2, 1.2))
        places = (np.zeros(3), np.array([side, 0, rng.uniform(-0.3, 0.8)]))
    else:
        yaws, places = (yaw,), (np.zeros(3),)

    A = len(yaws)
    xyz, rot = np.zeros((A, T, NUM_JOINTS, 3)), np.zeros((A, T, NUM_JOINTS, 3, 3))
    for a in range(A):
        subject = subjects[a]
        angles, trans = _body_motion(spec, subject, a if (two or a == 0) else None, u, phase_shift,
                                     subject.amplitude * sample_amp, rng, variation)
        root_rot = _rot_y(np.full(T, yaws[a]))                                  # [T, 3, 3]
        root_pos = centre + places[a] + trans @ root_rot[0].T
        pos, r = forward_kinematics(subject.offsets, angles, root_rot, root_pos)
        pos[..., 1] += 0.02 - pos[..., 1].min(axis=1, keepdims=True)     # the lowest joint 2 cm above the floor
        xyz[a], rot[a] = pos, r
    s = int(np.clip(round(start), 0, T - 1))
    e = int(np.clip(round(start + action_frames), s, T - 1))
    return Performance(xyz=xyz, rot=rot, action_window=(s, e), performers=2 if two else 1)

# ----------------------------------------------------------------------------------------------
# Cameras and the sensor

@dataclass(frozen=True)
class CameraView:
    """World -> Kinect camera coordinates: x_cam = rotation @ x_world + translation (y up, z depth)."""
    setup: int
    camera: int
    rotation: np.ndarray     # [3, 3]
    translation: np.ndarray  # [3]


def camera_view(seed: int, setup: int, camera: int) -> CameraView:
    """Camera c of a setup: the scene turned by 45 * (c - 2) degrees about the vertical axis, as NTU's
    three Kinects; height (0.6-1.8 m), distance (2.5-3.8 m) and a downward tilt towards the
    performer's chest depend on the setup."""
    if camera not in (1, 2, 3):
        raise HacmError(f"synthetic camera ids are 1, 2 and 3, got {camera}")
    rng = np.random.default_rng([_SETUP, seed, setup])
    height, distance = rng.uniform(0.6, 1.8), rng.uniform(2.5, 3.8)
    tilt = np.arctan2(height - 1.1, distance) + rng.normal(0.0, 0.04)
    per_camera = rng.normal(0.0, 0.08, (3, 2))[camera - 1]       # cameras are not exactly symmetric
    yaw = np.deg2rad(45.0 * (camera - 2)) + 0.5 * per_camera[0]
    rotation = _rot_x(np.array(-tilt)) @ _rot_y(np.array(yaw))
    translation = np.array([0.0, -height, distance + per_camera[1]])
    return CameraView(setup=setup, camera=camera, rotation=rotation, translation=translation)


def facing_of(replication: int) -> float:
    """The direction a performer faces in a replication: as in NTU, once towards camera 1 (odd
    replications) and once towards camera 3 (even), so every take is seen from the front, at 45
    degrees and from the side."""
    return np.pi / 4 if replication % 2 else -np.pi / 4


# Noise of a joint relative to the trunk's: extremities are tracked worse than the torso.
_NOISE_GROUPS = ((("spine_base", "spine_mid", "spine_shoulder", "left_hip", "right_hip"), 1.0),
                 (("neck", "head", "left_shoulder", "right_shoulder"), 1.3),
                 (("left_elbow", "right_elbow", "left_knee", "right_knee"), 1.8),
                 (("left_wrist", "right_wrist", "left_ankle", "right_ankle"), 2.5),
                 (("left_hand", "right_hand", "left_foot", "right_foot"), 3.5),
                 (("left_hand_tip", "right_hand_tip", "left_thumb", "right_thumb"), 5.0))
_NOISE_SCALE = np.zeros(NUM_JOINTS)
for _names, _scale in _NOISE_GROUPS:
    _NOISE_SCALE[[_j(n) for n in _names]] = _scale
_ARM_CHAINS = {side: [_j(f"{side}_{n}") for n in ("elbow", "wrist", "hand", "hand_tip", "thumb")]
               for side in ("left", "right")}


@dataclass(frozen=True)
class SensorModel:
    """Kinect-v2-like corruption of a clean take. Rates are per file unless said otherwise."""
    noise_mm: float = 0.5            # sd per coordinate of a trunk joint's jitter at 3 m depth (mm)
    noise_correlation: float = 0.6   # its frame-to-frame AR(1) coefficient: the sensor's pipeline smooths
    drift_mm: float = 0.0            # sd of a trunk joint's slow estimation drift at 3 m (mm)
    drift_seconds: float = 1.0       # the drift's correlation time
    noise_depth_power: float = 2.0   # both grow as (depth / 3 m) ** power (the depth error of ToF cameras)
    spike_rate: float = 0.002        # jitter spikes per hand/foot joint and frame (a hand tracked off)
    spike_sd: float = 0.05           # spike displacement (metres, per coordinate)
    occlusion_prob: float = 0.6      # side views: chance that the far arm is occluded for a while
    inferred_sd: float = 0.04        # error of an inferred (occluded) joint, metres, a slow drift
    swap_prob: float = 0.15          # side views: chance of a stretch with left and right limbs swapped
    lost_file_prob: float = 0.25     # share of files that lose some frames (0 bodies)
    lost_max_fraction: float = 0.05  # those lose U(1%, lost_max_fraction) of their frames
    ghost_prob: float = 0.15         # short-lived extra body (<= 11 frames): denoise step (a)
    furniture_prob: float = 0.08     # flat static "furniture" body in most frames: denoise step (b)


@dataclass
class TrackedBody:
    kind: str                # "person" | "ghost" | "furniture"
    body_id: int
    frames: np.ndarray       # [n] file frame indices where the body is present (increasing)
    xyz: np.ndarray          # [n, 25, 3] camera coordinates (metres)
    quat: np.ndarray         # [n, 25, 4] joint orientations (w, x, y, z), unit
    state: np.ndarray        # [n, 25] tracking state: 2 tracked, 1 inferred


@dataclass
class Recording:
    num_frames: int
    bodies: list[TrackedBody]
    lost_frames: np.ndarray  # [k] file frames with no body at all


def _quaternions(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices [..., 3, 3] -> unit quaternions [..., 4] (w, x, y, z)."""
    m = rot
    d = np.stack([1 + m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2],
                  1 + m[..., 0, 0] - m[..., 1, 1] - m[..., 2, 2],
                  1 - m[..., 0, 0] + m[..., 1, 1] - m[..., 2, 2],
                  1 - m[..., 0, 0] - m[..., 1, 1] + m[..., 2, 2]], -1)
    q = 0.5 * np.sqrt(np.maximum(d, 0.0))
    q[..., 1] = np.copysign(q[..., 1], m[..., 2, 1] - m[..., 1, 2])
    q[..., 2] = np.copysign(q[..., 2], m[..., 0, 2] - m[..., 2, 0])
    q[..., 3] = np.copysign(q[..., 3], m[..., 1, 0] - m[..., 0, 1])
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _runs(rng: np.random.Generator, T: int, count: int) -> np.ndarray:
    """About `count` frame indices in short runs (1-3 frames), as when tracking drops out."""
    lost: set[int] = set()
    while len(lost) < count:
        start = int(rng.integers(0, T))
        lost.update(range(start, min(T, start + int(rng.integers(1, 4)))))
    return np.array(sorted(lost)[:count], dtype=np.int64)


def _stretch(rng: np.random.Generator, T: int, low: int, high: int) -> slice:
    """A random run of frames of length low..high (at most T)."""
    n = int(min(T, rng.integers(low, high + 1)))
    start = int(rng.integers(0, T - n + 1))
    return slice(start, start + n)


def _ar1(rng: np.random.Generator, shape: tuple[int, ...], rho: float) -> np.ndarray:
    """Unit-variance AR(1) noise over the first axis, started in its stationary distribution."""
    white = rng.standard_normal(shape) * np.sqrt(1 - rho ** 2)
    white[0] /= np.sqrt(1 - rho ** 2)
    return lfilter([1.0], [1.0, -rho], white, axis=0)


def sensor_noise(clean: np.ndarray, rng: np.random.Generator, sensor: SensorModel) -> np.ndarray:
    """Noise [T, 25, 3] for one body's clean camera coordinates [T, 25, 3]: a fast, lightly smoothed
    jitter plus a slow drift of each joint's estimate (what makes real bone lengths breathe within a
    clip), both growing with depth and from the trunk to the extremities."""
    shape = clean.shape
    jitter = 1e-3 * sensor.noise_mm * _ar1(rng, shape, sensor.noise_correlation)
    drift = 1e-3 * sensor.drift_mm * _ar1(rng, shape, float(np.exp(-1.0 / (sensor.drift_seconds * FPS))))
    depth = np.maximum(clean[..., 2:3], 0.5) / 3.0
    return (jitter + drift) * _NOISE_SCALE[None, :, None] * depth ** sensor.noise_depth_power


def _side_on(clean: np.ndarray) -> tuple[bool, str]:
    """Whether the camera sees the body from the side (shoulder line within 45 degrees of the viewing
    axis) and which arm is the far one."""
    shoulders = clean[:, _j("left_shoulder")] - clean[:, _j("right_shoulder")]      # [T, 3]
    dx, dz = np.abs(shoulders[:, 0]).mean(), shoulders[:, 2].mean()
    return bool(abs(dz) > dx), ("left" if dz > 0 else "right")


def _track(clean: np.ndarray, rng: np.random.Generator, sensor: SensorModel) -> tuple[np.ndarray, np.ndarray]:
    """What the tracker reports for one person [T, 25, 3] and the tracking state [T, 25]: noise and
    spikes everywhere; from the side, the far arm inferred (drifting) for a while and a stretch
    with left and right limbs swapped."""
    T = clean.shape[0]
    xyz = clean + sensor_noise(clean, rng, sensor)
    state = np.full((T, NUM_JOINTS), 2)
    spikes = (rng.random((T, NUM_JOINTS)) < sensor.spike_rate) & (_NOISE_SCALE >= 3.5)
    xyz[spikes] += rng.normal(0.0, sensor.spike_sd, (int(spikes.sum()), 3))
    state[spikes] = 1
    side_on, far = _side_on(clean)
    if side_on and rng.random() < sensor.occlusion_prob:
        span = _stretch(rng, T, 10, max(10, T // 2))
        n = span.stop - span.start
        ramp = np.sin(np.pi * np.arange(n) / max(n - 1, 1))[:, None, None]          # drift in and out
        drift = rng.normal(0.0, sensor.inferred_sd, (1, len(_ARM_CHAINS[far]), 3)) * np.linspace(0.3, 1.0, 5)[None, :, None]
        xyz[span, _ARM_CHAINS[far]] += ramp * drift
        state[span, _ARM_CHAINS[far]] = 1
    if side_on and rng.random() < sensor.swap_prob:
        span = _stretch(rng, T, 4, 20)
        swap = mirror_permutation()
        xyz[span] = xyz[span][:, swap]
    return xyz, state


def record(perf: Performance, view: CameraView, rng: np.random.Generator,
           sensor: SensorModel = SensorModel()) -> Recording:
    """What one Kinect reports for the take: camera coordinates plus noise, occlusions, swaps,
    lost frames and spurious bodies. Every person keeps one bodyID for the whole file."""
    A, T = perf.xyz.shape[:2]
    clean = perf.xyz @ view.rotation.T + view.translation              # [A, T, 25, 3]
    quat = _quaternions(view.rotation @ perf.rot)                       # [A, T, 25, 4]

    lost = np.zeros(0, dtype=np.int64)
    if rng.random() < sensor.lost_file_prob:
        lost = _runs(rng, T, max(1, round(rng.uniform(0.01, sensor.lost_max_fraction) * T)))
    seen = np.setdiff1d(np.arange(T), lost)                             # frames with bodies

    ids = iter(_BASE_ID + rng.choice(100_000, size=A + 2, replace=False))
    bodies = []
    for a in range(A):
        xyz, state = _track(clean[a], rng, sensor)
        bodies.append(TrackedBody("person", int(next(ids)), seen, xyz[seen], quat[a, seen], state[seen]))

    if rng.random() < sensor.ghost_prob:
        # a short-lived phantom: a displaced, noisier copy of the performer
        n = int(rng.integers(2, 12))
        start = int(rng.integers(0, T - n + 1))
        frames = np.intersect1d(np.arange(start, start + n), seen)
        if frames.size:
            shift = np.array([rng.choice([-1, 1]) * rng.uniform(0.6, 1.5), 0.0, rng.uniform(-0.3, 0.5)])
            xyz = clean[0, frames] + shift + rng.normal(0.0, 0.03, (frames.size, NUM_JOINTS, 3))
            bodies.append(TrackedBody("ghost", int(next(ids)), frames, xyz, quat[0, frames],
                                      np.full((frames.size, NUM_JOINTS), 2)))
    if rng.random() < sensor.furniture_prob:
        # a flat static object (a table edge, a sofa back) tracked as a body in most frames
        frames = seen[seen >= int(rng.uniform(0.0, 0.15) * T)]
        width, thickness = rng.uniform(1.0, 1.8), rng.uniform(0.05, 0.3)
        shape = rng.uniform(-0.5, 0.5, (NUM_JOINTS, 3)) * [width, thickness, 0.3]
        where = np.array([rng.choice([-1, 1]) * rng.uniform(0.8, 1.4), rng.uniform(-0.6, 0.0),
                          rng.uniform(3.4, 4.4)])
        xyz = where + shape + rng.normal(0.0, 0.005, (frames.size, NUM_JOINTS, 3))
        q = np.zeros((frames.size, NUM_JOINTS, 4))
        q[..., 0] = 1.0
        bodies.append(TrackedBody("furniture", int(next(ids)), frames, xyz, q,
                                  np.full((frames.size, NUM_JOINTS), 2)))
    return Recording(num_frames=T, bodies=bodies, lost_frames=lost)

World = tuple[Population, Variation, SensorModel]
_WORLD_SECTIONS = {"population": Population, "variation": Variation, "sensor": SensorModel}


def make_world(settings: Mapping[str, Any] | None = None) -> World:
    """The world's knobs from dotted settings, e.g. {"sensor.noise_mm": 2.0, "variation.fidgets": 0}
    (every other knob at its default). An unknown section or knob is an error naming the valid ones;
    ranges are given as lists or tuples of two numbers."""
    parts: dict[str, dict[str, Any]] = {name: {} for name in _WORLD_SECTIONS}
    for key, value in (settings or {}).items():
        section, _, knob = str(key).partition(".")
        if section not in _WORLD_SECTIONS:
            raise HacmError(f"synthetic world: unknown section {section!r} in {key!r}"
                            f"{did_you_mean(section, _WORLD_SECTIONS)}; sections: {', '.join(_WORLD_SECTIONS)}")
        names = [f.name for f in fields(_WORLD_SECTIONS[section])]
        if knob not in names:
            raise HacmError(f"synthetic world: unknown knob {key!r}{did_you_mean(knob, names)}; "
                            f"{section} has: {', '.join(names)}")
        default = getattr(_WORLD_SECTIONS[section](), knob)
        if isinstance(default, tuple):
            if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
                raise HacmError(f"synthetic world: {key} expected a range [low, high], got {value!r}")
            value = (float(value[0]), float(value[1]))
            if value[0] > value[1]:
                raise HacmError(f"synthetic world: {key} expected low <= high, got {list(value)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise HacmError(f"synthetic world: {key} expected a number >= 0, got {value!r}")
        parts[section][knob] = value
    return tuple(_WORLD_SECTIONS[name](**parts[name]) for name in _WORLD_SECTIONS)   # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# The NTU text layout

_JOINT_LINE = "%.7f %.7f %.7f %.4f %.4f %.3f %.3f %.5f %.5f %.5f %.5f %d"
_JOINT_BLOCK = "\n".join([_JOINT_LINE] * NUM_JOINTS)
_DEPTH = (365.0, 256.0, 212.0)      # Kinect v2 depth camera: focal length and centre (pixels)
_COLOUR = (1063.0, 960.0, 540.0)    # Kinect v2 colour camera


def _project(xyz: np.ndarray, camera: tuple[float, float, float]) -> np.ndarray:
    f, cx, cy = camera
    z = np.maximum(xyz[..., 2], 0.1)
    return np.stack([cx + f * xyz[..., 0] / z, cy - f * xyz[..., 1] / z], -1)


def format_skeleton(rec: Recording) -> str:
    """The whole `.skeleton` file text: frame count, then per frame the body count and bodies."""
    spine_base, spine_shoulder = _j("spine_base"), _j("spine_shoulder")
    per_frame: list[list[str]] = [[] for _ in range(rec.num_frames)]
    for body in rec.bodies:
        fields = np.concatenate([body.xyz, _project(body.xyz, _DEPTH), _project(body.xyz, _COLOUR),
                                 body.quat, body.state[..., None]], -1)        # [n, 25, 12]
        lean = body.xyz[:, spine_shoulder] - body.xyz[:, spine_base]           # [n, 3]
        lean /= np.maximum(np.linalg.norm(lean, axis=-1, keepdims=True), 1e-6)
        for t, block, (lx, _, lz) in zip(body.frames.tolist(), fields.reshape(len(body.frames), -1).tolist(),
                                          lean.tolist()):
            per_frame[t].append(f"{body.body_id} 0 1 1 1 1 0 {lx:.6f} {-lz:.6f} 2\n{NUM_JOINTS}\n"
                                + _JOINT_BLOCK % tuple(block))
    lines = [str(rec.num_frames)]
    for blocks in per_frame:
        lines.append(str(len(blocks)))
        lines.extend(blocks)
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# The dataset

@dataclass
class SynthSummary:
    out_dir: Path
    class_names: list[str]
    num_files: int
    num_frames: int          # frames written over all files (including lost ones)
    lost_frames: int         # frames written with 0 bodies
    ghost_bodies: int
    furniture_bodies: int
    bystanders: int          # files of one-person classes with a second person standing by
    bytes: int
    seconds: float


# The default size: the demo's. 10 performers split 6 / 4 by the NTU-60 cross-subject rule, both
# facings, three cameras: 1,500 clips of 25 classes (900 training, 600 test).
DEFAULT_PERFORMERS = 10
DEFAULT_REPLICATIONS = 2


def sample_name(setup: int, camera: int, performer: int, replication: int, action: int) -> str:
    return f"S{setup:03d}C{camera:03d}P{performer:03d}R{replication:03d}A{action:03d}"


def setup_of(performer: int, replication: int) -> int:
    """The setup (scene: camera height, distance, tilt) a performer's replication is recorded in.

    Replications cycle through the three setups, starting at a performer-dependent one: as in NTU,
    where performers come back on several days, every performer is seen in several setups once
    replications >= 2, so the cross-subject split is not also a cross-setup split."""
    return 1 + (performer - 1 + replication - 1) % 3


def _select(classes: Sequence[str] | None) -> list[int]:
    """Indices into ACTIONS of the requested classes, in ACTIONS order."""
    names = action_names()
    if classes is None:
        return list(range(len(ACTIONS)))
    if isinstance(classes, str):
        raise HacmError("classes: expected a list of class names, got a single string")
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise HacmError(f"unknown synthetic class(es) {unknown}; valid names: {names}")
    if len(set(classes)) != len(classes) or not classes:
        raise HacmError(f"classes: expected distinct names, at least one, got {list(classes)}")
    return [i for i, n in enumerate(names) if n in set(classes)]


def _write_take(job) -> dict[str, int]:
    """One performance (performer, replication, action), recorded by every camera: its files and counts."""
    out, seed, p, r, action, label, cameras, world, min_frames, max_frames = job
    population, variation, sensor = world
    spec = ACTIONS[action]
    setup = setup_of(p, r)
    # the partner performs the two-person actions and is the bystander of one-person takes
    subjects = [make_subject(seed, p, population=population), make_subject(seed, p, partner=True, population=population)]
    perf = generate_sequence(spec, subjects, np.random.default_rng([_PERFORMANCE, seed, p, r, action]),
                             facing=facing_of(r), min_frames=min_frames, max_frames=max_frames, variation=variation)
    counts = dict.fromkeys(("num_files", "num_frames", "lost_frames", "ghost_bodies", "furniture_bodies",
                            "bystanders", "bytes"), 0)
    for c in cameras:   # the cameras film the same take
        rec = record(perf, camera_view(seed, setup, c), np.random.default_rng([_SENSOR, seed, p, r, action, c]),
                     sensor)
        counts["bytes"] += write_text_atomic(out / f"{sample_name(setup, c, p, r, label + 1)}.skeleton",
                                             format_skeleton(rec), fsync=False)   # regenerable: no fsync
        counts["num_files"] += 1
        counts["num_frames"] += rec.num_frames
        counts["lost_frames"] += rec.lost_frames.size
        counts["ghost_bodies"] += sum(b.kind == "ghost" for b in rec.bodies)
        counts["furniture_bodies"] += sum(b.kind == "furniture" for b in rec.bodies)
        counts["bystanders"] += perf.xyz.shape[0] - perf.performers
    return counts


@lock.writer_of("out_dir", "raw-file directory")
def write_synthetic(out_dir, *, seed: int = 0, performers: int = DEFAULT_PERFORMERS,
                    replications: int = DEFAULT_REPLICATIONS, cameras: Sequence[int] = (1, 2, 3),
                    classes: Sequence[str] | None = None, min_frames: int = 20, max_frames: int = 300,
                    population: Population = Population(), variation: Variation = Variation(),
                    sensor: SensorModel = SensorModel(), workers: int | None = None,
                    progress: bool = True) -> SynthSummary:
    """Write one `SsssCcccPpppRrrrAaaa.skeleton` per performer x replication x camera x class,
    then `synth.json`. Labels follow the selected classes: A001 is the first of them (ACTIONS
    order). The setup is `setup_of(performer, replication)`, the facing `facing_of(replication)`.
    `population`, `variation` and `sensor` are the world's knobs (their defaults are the calibrated
    world of docs/synthetic.md); synth.json records them. Files of an earlier run with the same names are
    overwritten; any other `.skeleton` file in out_dir is an error (it would join the dataset).
    Takes are written by `workers` processes (default: every core); the bytes do not depend on it."""
    for what, value, low, high in (("performers", performers, 1, 999), ("replications", replications, 1, 999),
                                   ("min_frames", min_frames, 20, 300), ("max_frames", max_frames, 20, 300)):
        if not isinstance(value, (int, np.integer)) or not low <= value <= high:
            raise HacmError(f"{what}: expected an integer in [{low}, {high}], got {value!r}")
    if max_frames < min_frames:
        raise HacmError(f"max_frames ({max_frames}) must be >= min_frames ({min_frames})")
    cameras = tuple(cameras)
    if not cameras or len(set(cameras)) != len(cameras) or not set(cameras) <= {1, 2, 3}:
        raise HacmError(f"cameras: expected distinct ids from 1, 2, 3, got {list(cameras)}")
    chosen = _select(classes)
    class_names = [ACTIONS[i].name for i in chosen]

    out = make_dir(out_dir, "raw-file directory")
    jobs = [(p, r, label, c) for p in range(1, performers + 1) for r in range(1, replications + 1)
            for label in range(len(chosen)) for c in cameras]
    planned = {sample_name(setup_of(p, r), c, p, r, label + 1) + ".skeleton" for p, r, label, c in jobs}
    stale = sorted(f.name for f in out.glob("*.skeleton") if f.name not in planned)
    if stale:
        raise HacmError(f"{out}: holds {len(stale)} .skeleton file(s) this run would not write "
                        f"(e.g. {stale[0]}); use an empty directory")

    t0 = time.perf_counter()
    summary = SynthSummary(out, class_names, 0, 0, 0, 0, 0, 0, 0, 0.0)
    world = (population, variation, sensor)
    takes = [(out, seed, p, r, chosen[label], label, tuple(cameras), world, min_frames, max_frames)
             for p in range(1, performers + 1) for r in range(1, replications + 1) for label in range(len(chosen))]
    workers = max(1, min(int(workers or os.cpu_count() or 1), len(takes)))
    with (multiprocessing.get_context().Pool(workers) if workers > 1 else contextlib.nullcontext()) as pool:
        done = pool.imap_unordered(_write_take, takes, chunksize=8) if pool else map(_write_take, takes)
        for counts in progress_bar(done, total=len(takes), desc="synth", unit="take", disable=not progress):
            for name, value in counts.items():
                setattr(summary, name, getattr(summary, name) + value)
    summary.seconds = time.perf_counter() - t0

    meta = {"dataset": "synth", "class_names": class_names,
            "two_person_classes": [n for n, i in zip(class_names, chosen) if ACTIONS[i].two_person],
            "seed": seed, "performers": performers, "replications": replications, "cameras": list(cameras),
            "min_frames": min_frames, "max_frames": max_frames, "num_files": summary.num_files,
            "population": asdict(population), "variation": asdict(variation), "sensor": asdict(sensor),
            "generator": "hacm.data.synth"}
    write_text_atomic(out / "synth.json", json.dumps(meta, indent=1) + "\n")
    return summary
